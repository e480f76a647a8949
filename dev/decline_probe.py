"""Research probe (dev/LOG.md, r11): does a model read the function listing when it declines?

For every val (or given split's) task of category miss_func, the turn whose function is held back is rendered as the
checkpoint's policy renders it (history: the whole conversation so far; awareness: system + the
previous turn + this user message, the oracle's texts), and the model's greedy first step is
compared in two worlds: the listing as it is (the function is missing: the right step declines)
and the listing with the function put back (the right step calls it). A model that reads the
listing declines in the first world and calls in the second.

    python dev/decline_probe.py out/cpu/sft_pag data/cpu [train|val|test]
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nanoparl.checkpoint import load_checkpoint  # noqa: E402
from nanoparl.chat import listing_of  # noqa: E402
from nanoparl.pag import CANNOT_REPLY, PLAN_CANNOT, oracle_turns, sft_samples  # noqa: E402
from nanoparl.tokenizer import Tokenizer  # noqa: E402
from nanoparl.world.tasks import load_tasks  # noqa: E402


@torch.no_grad()
def first_step(model, tok, messages, max_new=40):
    ids = tok.render(messages, add_generation_prompt=True)[0]
    out = []
    for _ in range(max_new):
        nxt = int(model(torch.tensor([ids + out]))[0, -1].argmax())
        if nxt == tok.end_id or "</plan>" in tok.decode(out):
            break
        out.append(nxt)
    return tok.decode(out)


def main(ckpt, data_dir, split="val", n=50):
    model, meta = load_checkpoint(ckpt)
    model.eval()
    tok, policy = Tokenizer.load(meta["tokenizer"]), meta.get("policy", "history")
    listing = listing_of(meta.get("format"))
    counts = {"missing: declines": 0, "put back: calls it": 0}
    tasks = [t for t in load_tasks(os.path.join(data_dir, f"tasks_{split}.jsonl")) if t["category"] == "miss_func"][:n]
    for task in tasks:
        (added, (fn,)), = task["missed_function"].items()
        k = int(added) - 1  # the declined turn
        turns = oracle_turns(task)
        samples = sft_samples(task, policy, turns, listing)
        msgs = samples[k] if policy == "awareness" else samples[0]
        user_at = [i for i, m in enumerate(msgs) if m["role"] == "user"][-1 if policy == "awareness" else k]
        context = msgs[:user_at + 1]
        step = first_step(model, tok, context)
        counts["missing: declines"] += PLAN_CANNOT in step or step.startswith(CANNOT_REPLY[:12])
        back = [dict(context[0], content=context[0]["content"] + "\n" + fn)] + context[1:]
        step = first_step(model, tok, back)
        counts["put back: calls it"] += fn in step and PLAN_CANNOT not in step
    print(f"{ckpt} ({policy}), {len(tasks)} declined turns of {split}:", counts)


if __name__ == "__main__":
    main(*sys.argv[1:4])
