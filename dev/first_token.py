"""Research probe (dev/LOG.md, r5): for every string argument of the ground-truth calls, is the
FIRST token of its value predicted right under teacher forcing? Counted per argument name.

    python dev/first_token.py out/cpu/sft_pag data/cpu test   # 150 tasks, the awareness samples
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
from nanoparl.tokenizer import Tokenizer  # noqa: E402
from nanoparl.world.tasks import load_tasks  # noqa: E402


def main(ckpt, data_dir, split, n_tasks=150):
    model, meta = load_checkpoint(ckpt)
    model.eval()
    tok = Tokenizer.load(meta["tokenizer"])
    right, wrong = Counter(), Counter()
    for task in load_tasks(os.path.join(data_dir, f"tasks_{split}.jsonl"))[:n_tasks]:
        for messages in sft_samples(task, "awareness", oracle_turns(task), listing_of(meta["format"])):
            ids, mask = tok.render(messages)
            with torch.no_grad():
                pred = model(torch.tensor([ids[:-1]])).argmax(-1)[0].tolist()
            for j in range(1, len(ids)):
                if not mask[j]:
                    continue
                start = j
                while start > 0 and mask[start - 1]:
                    start -= 1
                call = tok.decode(ids[start:j]).split("[")[-1]  # the call list written so far
                opening = re.search(r"\((?:.*, )?(\w+)='$", call)  # a value's opening quote just written
                if opening and call.count("'") % 2 == 1:
                    (right if pred[j - 1] == ids[j] else wrong)[opening.group(1)] += 1
    for arg in sorted(set(right) | set(wrong), key=lambda a: -(right[a] + wrong[a])):
        print(f"{arg:18s} first token right {right[arg]:4d} / {right[arg] + wrong[arg]:4d}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
