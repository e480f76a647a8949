"""Research probe (dev/LOG.md, r7): where does each assistant message first go wrong under teacher
forcing? Per message kind (awareness = summary + plan + first call list of a turn, later call list,
reply) the share exact, and the place of the first wrong token: summary, plan, or in a call list its
function name, argument name, first or later token of a string value, a number, or elsewhere.

    python dev/where_wrong.py out/cpu/sft_pag data/cpu test   # 150 tasks, the awareness samples
"""

import os
import re
import sys
from collections import Counter

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nanoparl.chat import listing_of  # noqa: E402
from nanoparl.checkpoint import load_checkpoint  # noqa: E402
from nanoparl.pag import oracle_turns, sft_samples  # noqa: E402
from nanoparl.probe import message_runs  # noqa: E402
from nanoparl.tokenizer import Tokenizer  # noqa: E402
from nanoparl.world.tasks import load_tasks  # noqa: E402


def place(text):
    """Where in a call list the text written so far ends: the kind of the token that comes next."""
    call = text.split("[")[-1]
    if call.count("'") % 2 == 1:  # inside a quoted value
        return "string value, first token" if call.endswith("'") else "string value, later token"
    if re.search(r"[=\[,(]\s*-?\d*\.?\d*$", call) and re.search(r"=\s*\[?[\d., -]*$", call):
        return "number"
    if re.search(r"(^|\), |\[)\w*$", call):
        return "function name"
    if re.search(r"[(,]\s*\w*$", call):
        return "argument name"
    return "elsewhere"


def main(ckpt, data_dir, split, n_tasks=150):
    model, meta = load_checkpoint(ckpt)
    model.eval()
    tok = Tokenizer.load(meta["tokenizer"])
    total, exact, first_wrong = Counter(), Counter(), Counter()
    for task in load_tasks(os.path.join(data_dir, f"tasks_{split}.jsonl"))[:n_tasks]:
        for messages in sft_samples(task, "awareness", oracle_turns(task), listing_of(meta["format"])):
            ids, mask = tok.render(messages)
            with torch.no_grad():
                pred = model(torch.tensor([ids[:-1]])).argmax(-1)[0].tolist()
            for start, j in message_runs(mask):
                text = tok.decode(ids[start:j])
                kind = "awareness" if text.startswith("<summary>") else "calls" if "[" in text.split("</plan>")[-1][:2] else "reply"
                total[kind] += 1
                wrong = [k for k in range(start, j) if pred[k - 1] != ids[k]]
                if not wrong:
                    exact[kind] += 1
                else:
                    before = tok.decode(ids[start:wrong[0]])
                    if kind == "awareness" and "</plan>" not in before:
                        where = "summary" if "</summary>" not in before else "plan"
                    elif kind == "reply":
                        where = "reply"
                    else:
                        where = place(before.split("</plan>")[-1])
                    first_wrong[(kind, where)] += 1
    for kind in total:
        print(f"{kind:10s} exact {exact[kind]:4d} / {total[kind]:4d} = {exact[kind] / total[kind]:.3f}")
    for (kind, where), n in first_wrong.most_common():
        print(f"  {kind:10s} first wrong at {where:26s} {n:4d}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
