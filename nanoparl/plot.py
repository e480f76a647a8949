"""The results figure: training reward per RL step, and val accuracy against RL steps and against RL
minutes (rollouts + update, evaluation not counted) of each RL run (needs matplotlib).

matplotlib is not a dependency: without it, plot_runs prints a note and returns None.
"""

import glob
import json
import os

from nanoparl.files import atomic_open


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_runs(out_dir, name="rl_curves.png"):
    runs = {}
    for log in sorted(glob.glob(os.path.join(out_dir, "*", "log.jsonl"))):
        records = read_log(log)
        if any("reward" in r for r in records):  # RL runs only (SFT logs have no reward)
            runs[os.path.basename(os.path.dirname(log))] = records
    if not runs:
        print("plot: no RL logs found, no figure")
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot: matplotlib is not installed; `pip install matplotlib` to get the figure "
              f"(the numbers are in {out_dir}/*/log.jsonl)")
        return None
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4))
    for run, records in runs.items():
        train = [r for r in records if "reward" in r]
        val = [r for r in records if "val_accuracy" in r]
        minutes = {0: 0.0}  # step -> RL minutes spent before it
        for r in train:
            minutes[r["step"]] = minutes.get(r["step"] - 1, 0.0) + r.get("time_s", 0.0) / 60
        ax1.plot([r["step"] for r in train], [r["reward"] for r in train], label=run)
        ax2.plot([r["step"] for r in val], [r["val_accuracy"] for r in val], marker="o", label=run)
        ax3.plot([minutes.get(r["step"], 0.0) for r in val], [r["val_accuracy"] for r in val], marker="o",
                 label=run)
    ax1.set(xlabel="RL step", ylabel="mean training reward", title="reward")
    ax2.set(xlabel="RL step", ylabel="val accuracy", title="accuracy (val, greedy)")
    ax3.set(xlabel="RL minutes (rollouts + update)", ylabel="val accuracy", title="accuracy at equal wall time")
    ax1.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, name)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    print(f"plot: wrote {path}")
    return path
