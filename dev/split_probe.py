"""Research probe (dev/LOG.md, r7, r11): which half of a held-out split fails a model, the held-out
values (every 4th value of each pool) or the words (test: unseen phrasing+frame pairs; unseen: every
3rd phrasing)? Writes three test files, each holding out one thing only:

    python dev/split_probe.py data/cpu /tmp/probe     # -> /tmp/probe/{values,frames,phrasings}/tasks_test.jsonl
    python eval.py --ckpt out/cpu/sft_pag --data-dir /tmp/probe/values --split test

values:    test's held-out values, said as train says things;  frames: test's phrasing+frame pairs,
train's values;  phrasings: the unseen split's words (held-out phrasings), train's values.
The tokenizer and format.json are copied from the data folder, so its checkpoints load as they are.
"""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nanoparl.common import get_preset  # noqa: E402
from nanoparl.world import tasks  # noqa: E402


def main(data_dir, out, preset="cpu", n=400, seed=0):
    settings = {k: v for k, v in get_preset(preset)["data"].items() if not k.startswith("n_")}
    pool, phrasings = tasks.split_pool, tasks.split_phrasings
    probes = {"values": ("test", "split_phrasings", phrasings), "frames": ("test", "split_pool", pool),
              "phrasings": ("unseen", "split_pool", pool)}
    for name, (split, which, fn) in probes.items():
        # the half that is NOT held out is drawn as for train
        setattr(tasks, which, (lambda f: (lambda items, split: f(items, "train")))(fn))
        try:
            made = [tasks.make_task(settings, split, i, seed) for i in range(n)]
        finally:
            tasks.split_pool, tasks.split_phrasings = pool, phrasings
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        tasks.save_tasks(os.path.join(folder, "tasks_test.jsonl"), made)
        for f in ("tokenizer.json", "format.json"):
            shutil.copy(os.path.join(data_dir, f), folder)
        print(f"{name}: {len(made)} tasks -> {folder}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
