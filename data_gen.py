"""Make the data: multi-turn tasks in train / val / test splits (then tokenizer and SFT data).

    python data_gen.py --preset micro --seed 0 --out data/micro
    python data_gen.py --preset cpu --seed 0 --out data          # the main job's data
    python data_gen.py --preset cpu --n-train 10000 --out /tmp/d  # override single settings

Writes DATA/tasks_{train,val,test}.jsonl (BFCL v3 multi-turn format, see nanoparl/tasks.py) and
prints, per split and category: tasks, turns and calls per task, share of read-only calls, tool
output length in characters, and the train/test overlap of user messages (which must be 0: test
holds out entities and phrasings). The same seed gives the same bytes.
"""

import argparse
import os
import time

from nanoparl.common import get_preset
from nanoparl.tasks import CATEGORIES, DOMAINS, class_counts, generate_splits, save_tasks, task_stats, \
    user_messages

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
g = parser.add_argument_group("run")
g.add_argument("--preset", default="cpu", choices=["micro", "cpu", "gpu"], help="sets every default below")
g.add_argument("--seed", type=int, default=0, help="same seed -> same files, byte for byte")
g.add_argument("--out", default="data", help="output directory")
g = parser.add_argument_group("tasks (default: the preset's 'data' section)")
g.add_argument("--n-train", type=int, default=None, help="number of train tasks")
g.add_argument("--n-val", type=int, default=None, help="number of val tasks (drawn like train)")
g.add_argument("--n-test", type=int, default=None, help="number of test tasks (held-out entities/phrasings)")
g.add_argument("--classes", default=None, help=f"comma-separated API classes, from {','.join(DOMAINS)}")
g.add_argument("--max-turns", type=int, default=None, help="user turns per task, at most")
g.add_argument("--categories", default=None, help=f"comma-separated, from {','.join(CATEGORIES)}")
args = parser.parse_args()


def main():
    t0 = time.time()
    settings = dict(get_preset(args.preset)["data"])
    for key in ("n_train", "n_val", "n_test", "max_turns"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    for key in ("classes", "categories"):
        if getattr(args, key):
            settings[key] = getattr(args, key).split(",")
    unknown = set(settings["classes"]) - set(DOMAINS) | set(settings["categories"]) - set(CATEGORIES)
    if unknown:
        parser.error(f"unknown classes/categories: {sorted(unknown)}")
    sizes = {split: settings.pop(f"n_{split}") for split in ("train", "val", "test")}
    print(f"preset {args.preset} | seed {args.seed} | sizes {sizes} | settings {settings}")

    # ---- tasks
    splits = generate_splits(settings, args.seed, sizes)
    os.makedirs(args.out, exist_ok=True)
    for split, tasks in splits.items():
        save_tasks(os.path.join(args.out, f"tasks_{split}.jsonl"), tasks)
    t_tasks = time.time() - t0

    print(f"{'split':6s} {'category':13s} {'tasks':>6s} {'turns/t':>8s} {'calls/t':>8s} {'read%':>6s} "
          f"{'out chars/t':>11s} {'max':>5s}")
    for split, tasks in splits.items():
        for category, row in sorted(task_stats(tasks).items()):
            n = row["tasks"]
            print(f"{split:6s} {category:13s} {n:6d} {row['turns'] / n:8.2f} {row['calls'] / n:8.2f} "
                  f"{100 * row['read_only'] / max(1, row['calls']):5.0f}% {row['out_chars'] / n:11.0f} "
                  f"{row['max_out_chars']:5d}")
    print("calls per class (train):", dict(class_counts(splits["train"]).most_common()))
    train_msgs = set().union(set(), *map(user_messages, splits["train"]))
    test_msgs = set().union(set(), *map(user_messages, splits["test"]))
    print(f"user messages: train {len(train_msgs)} unique, test {len(test_msgs)} unique, "
          f"train/test overlap {len(train_msgs & test_msgs)}")
    print(f"tasks written to {args.out} in {t_tasks:.1f}s")

    # ---- PAG / SFT data (issue #4) ----


if __name__ == "__main__":
    main()
