"""Research probe (dev/LOG.md, r7): which half of the test split's hold-out fails a model, the
held-out values (every 4th value of each pool) or the held-out phrasings (every 3rd template)?
Writes two test splits drawn exactly like the real one (same seeds), each holding out one half only:

    python dev/split_probe.py data/cpu /tmp/probe     # -> /tmp/probe/{values,phrasings}/tasks_test.jsonl
    python eval.py --ckpt out/cpu/sft_pag --data-dir /tmp/probe/values --split test

values:    test's held-out values, train's phrasings;  phrasings: test's held-out phrasings, train's values.
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
    pool, templates = tasks.split_pool, tasks.split_templates
    train_split = {"values": ("templates", templates), "phrasings": ("pool", pool)}
    for name, (which, fn) in train_split.items():
        # the half that is NOT held out is drawn as for train
        patched = (lambda f: (lambda items, split: f(items, "train")))(fn)
        setattr(tasks, "split_templates" if which == "templates" else "split_pool", patched)
        try:
            made = [tasks.make_task(settings, "test", i, seed) for i in range(n)]
        finally:
            tasks.split_pool, tasks.split_templates = pool, templates
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        tasks.save_tasks(os.path.join(folder, "tasks_test.jsonl"), made)
        for f in ("tokenizer.json", "format.json"):
            shutil.copy(os.path.join(data_dir, f), folder)
        print(f"{name}: {len(made)} tasks -> {folder}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
