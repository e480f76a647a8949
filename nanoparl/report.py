"""The main job's last table: every row on the three evaluation splits side by side, with its cost.

    python -m nanoparl.report out/cpu

Reads what run.sh leaves in the folder: eval.py's JSON for the headline test split
(results.json, the oracle's row included), the unseen-words split (results_unseen.json) and val
(results_val.json), and each stage's wall time (<stage>.DONE holds its seconds). Rows
trained with several seeds (<run>_s1, <run>_s2, ...) are shown as mean +- sample std.
"""

import json
import os
import sys

import numpy as np

SPLIT_FILES = {"test": "results.json", "unseen": "results_unseen.json", "val": "results_val.json"}


def _load(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        results = json.load(f)
    results.pop("seed_groups", None)
    return results


def seed_base(name):
    """A row trained with seed s is named <run>_s<s> (`SEEDS=3 bash run.sh`): -> <run>, or None."""
    base, sep, seed = name.rpartition("_s")
    return base if sep and seed.isdigit() and base else None


def _cell(values, width=15):
    """One number, or mean +- std over seeds."""
    if not values:
        return f"{'-':>{width}s}"
    if len(values) == 1:
        return f"{values[0]:>{width}.3f}"
    return f"{np.mean(values):>{width - 8}.3f} +- {np.std(values, ddof=1):.3f}"


def stage_seconds(out_dir, name):
    path = os.path.join(out_dir, f"{name}.DONE")
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def report(out_dir):
    """-> the table as text (also printed by main)."""
    splits = {s: _load(os.path.join(out_dir, f)) for s, f in SPLIT_FILES.items()}
    rows = {}  # row name -> [run names]
    for name in splits["test"]:
        rows.setdefault(seed_base(name) or name, []).append(name)
    lines = [f"{'model':14s} {'policy':9s} {'seeds':>5s} " + " ".join(f"{s:>15s}" for s in SPLIT_FILES) +
             f" {'steps/task':>10s} {'ctx/step':>8s} {'wall s':>7s}"]
    for row, runs in rows.items():
        test = [splits["test"][r]["overall"] for r in runs]
        cells = [_cell([o["accuracy"] for o in test])]
        for split in ("unseen", "val"):
            cells.append(_cell([splits[split][r]["overall"]["accuracy"] for r in runs if r in splits[split]]))
        seconds = [stage_seconds(out_dir, r) for r in runs]
        wall = f"{int(np.mean(seconds)):7d}" if all(s is not None for s in seconds) else f"{'-':>7s}"
        lines.append(f"{row:14s} {test[0].get('policy', '-'):9s} {len(runs):5d} " + " ".join(cells) +
                     f" {np.mean([o['steps'] for o in test]):10.2f} "
                     f"{np.mean([o['ctx_mean'] for o in test]):8.0f} {wall}")
    lines.append("test: in-domain (held-out values, unseen combinations of train's phrasings); unseen: "
                 "held-out values and words no train message has; wall s: the stage's time (per seed)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(sys.argv[1] if len(sys.argv) > 1 else "out/cpu"))
