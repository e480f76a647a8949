"""BFCL-style evaluation of one or more checkpoints on held-out tasks -> one table (+ JSON).

    python eval.py --ckpt out/sft_plain out/sft_pag --data-dir data --split test --out results.json
    python eval.py --agent oracle --data-dir data          # the ceiling: replays the ground truth
    python eval.py --ckpt out/pag_rl --samples 4 --temperature 1.0 --show 2

Each checkpoint runs with the context policy it was trained with (--policy overrides); its row is
named after its run folder, with parent folders added where two runs share a name (a/sft_pag,
b/sft_pag). A task passes when every turn passes the checker (env.check). Reported per category
and overall (the unweighted mean of the four categories, as BFCL does):
  acc         share of (task, sample) rollouts that pass
  pass^k      tau-bench's: mean over tasks of C(c, k) / C(n, k), c passes out of n = --samples
  pass@k      share of tasks with at least one pass among their k = --samples rollouts; with
              mixed (share of tasks whose rollouts disagree, 0 < c < k), printed when k > 1: the
              groups from which GRPO's task-success reward can learn anything
  steps       assistant steps per task;   redundant: calls beyond the ground truth per task
  invalid     calls per task that returned an error (bad name, arguments, parse, domain error)
  ctx/step    context tokens before each step (mean and max); gen: generated tokens per task
  recall      awareness policy: share of the facts later turns need found in the summaries
  by turn     share of the k-th user turns that pass the checker, k = 0, 1, ...
  errors      first failing reason: state_mismatch, response_mismatch, empty_turn,
              unexpected_call, force_terminated, context_overflow
"""

import argparse
import json
import math
import os
import sys
import time
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from nanoparl.agent import AgentLoop, OracleLoop, trajectory_summaries, transcript
from nanoparl.chat import data_listing, listing_of
from nanoparl.checkpoint import CheckpointError, load_checkpoint
from nanoparl.cli import ArgumentParser, check_flags
from nanoparl.common import (PRESETS, add_threads_flag, get_device, get_preset, log0,
                             parse_args_with_preset, run_cli, seed_everything, set_threads)
from nanoparl.files import write_file
from nanoparl.model import GPT, GPTConfig
from nanoparl.report import seed_base
from nanoparl.rl import composite_reward
from nanoparl.tokenizer import Tokenizer
from nanoparl.world.tasks import CATEGORIES, SPLITS, load_tasks


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to evaluate")
    g.add_argument("--ckpt", nargs="*", default=[], help="run directories or model_<step>.safetensors files")
    g.add_argument("--agent", choices=["model", "oracle"], default="model",
                   help="oracle replays the ground truth through the same loop (must score 1.0)")
    g.add_argument("--policy", choices=["history", "awareness"], default=None,
                   help="context policy (default: the checkpoint's; history for the oracle)")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", default="data")
    g.add_argument("--split", default="test", choices=SPLITS,
                   help="test: in-domain (held-out values, unseen combinations of seen phrasings); "
                        "unseen: held-out values and words train never has")
    g.add_argument("--max-tasks", type=int, default=None,
                   help="evaluate the first N tasks only (tasks cycle through categories; None: all)")
    g = p.add_argument_group("sampling")
    g.add_argument("--samples", type=int, default=1, help="rollouts per task (pass^k uses k = this)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--step-tokens", type=int, default=None, help="max tokens per assistant step")
    g.add_argument("--batch-tasks", type=int, default=64, help="tasks per engine batch")
    g = p.add_argument_group("run")
    g.add_argument("--preset", default=None, choices=list(PRESETS),
                   help="eval defaults, the oracle's model (default: gpu with CUDA, else cpu)")
    g.add_argument("--show", type=int, default=0, help="print N transcripts with summaries and plans")
    g.add_argument("--out", default=None, help="write the metrics as JSON here")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto")
    add_threads_flag(g)
    args = parse_args_with_preset(p, argv, lambda preset, data: ("rl", "eval"))  # step_tokens: as in RL
    # flags that would crash after the work (--samples 0) or silently mean something else
    # (--max-tasks 0 used to mean "all") stop here
    pos, count = (1, None), (0, None)
    check_flags(p, args, samples=pos, max_tasks=pos, step_tokens=pos, batch_tasks=pos, top_k=pos, top_p=None,
                show=count, temperature=count, seed=count, threads=pos)
    if args.top_p is not None and not 0 < args.top_p <= 1:
        p.error(f"--top-p must be in (0, 1] (got {args.top_p})")
    return args


# ----------------------------------------------------------------------------
# Metrics

def pass_hat_k(passes, n, k):
    """tau-bench pass^k for one task: C(c, k) / C(n, k)."""
    return math.comb(passes, k) / math.comb(n, k)


def metrics(rollouts, policy, samples):
    """rollouts (group-major) -> {category: {...}, "overall": {...}}."""
    by_cat = {}
    for i in range(0, len(rollouts), samples):
        group = rollouts[i:i + samples]
        by_cat.setdefault(group[0].task["category"], []).append(group)
    out = {}
    for cat, groups in by_cat.items():
        rs = [r for g in groups for r in g]
        gt_calls = [sum(map(len, r.task["ground_truth"])) for r in rs]
        calls = [sum(t["n_calls"] for turn in r.turns for t in turn["steps"]) for r in rs]
        redundant = []
        for r in rs:
            extra = 0
            for k, turn in enumerate(r.turns):
                n = sum(s["n_calls"] for s in turn["steps"])
                extra += max(0, n - len(r.task["ground_truth"][k]))
            redundant.append(extra)
        ctx = [c for r in rs for c in r.context_tokens]
        recall = ([composite_reward(t)[1]["awareness"] for t in trajectory_summaries(rs, policy)]
                  if policy == "awareness" else [])
        passes = [sum(r.verdict["passed"] for r in g) for g in groups]  # per task, out of `samples`
        out[cat] = {
            "tasks": len(groups),
            "accuracy": float(np.mean([r.verdict["passed"] for r in rs])),
            f"pass^{samples}": float(np.mean([pass_hat_k(c, samples, samples) for c in passes])),
            f"pass@{samples}": float(np.mean([c > 0 for c in passes])),
            "mixed": float(np.mean([0 < c < samples for c in passes])),
            "steps": float(np.mean([sum(len(t["steps"]) for t in r.turns) for r in rs])),
            "calls": float(np.mean(calls)), "gt_calls": float(np.mean(gt_calls)),
            "redundant_calls": float(np.mean(redundant)),
            "invalid_calls": float(np.mean([sum(t["n_errors"] for turn in r.turns for t in turn["steps"])
                                            for r in rs])),
            "ctx_mean": float(np.mean(ctx)) if ctx else 0.0, "ctx_max": int(max(ctx, default=0)),
            "gen_tokens": float(np.mean([r.generated for r in rs])),
            "awareness_recall": float(np.mean(recall)) if policy == "awareness" else None,
            "errors": dict(Counter(r.verdict["error_type"] for r in rs if r.verdict["error_type"])),
        }
    cats = [c for c in CATEGORIES if c in out]
    overall = {key: float(np.mean([out[c][key] for c in cats]))
               for key in out[cats[0]] if isinstance(out[cats[0]][key], (int, float))}
    overall["ctx_max"] = max(out[c]["ctx_max"] for c in cats)
    overall["tasks"] = sum(out[c]["tasks"] for c in cats)
    errors = Counter()
    for c in cats:
        errors.update(out[c]["errors"])
    overall["errors"] = dict(errors)
    overall["awareness_recall"] = (float(np.mean([out[c]["awareness_recall"] for c in cats]))
                                   if policy == "awareness" else None)
    # accuracy by turn index: share of the rollouts' k-th turns that pass the checker
    rs = [r for r in rollouts if r.verdict]
    n_turns = max((len(r.verdict["turns"]) for r in rs), default=0)
    overall["turn_accuracy"] = [float(np.mean([r.verdict["turns"][k] for r in rs if len(r.verdict["turns"]) > k]))
                                for k in range(n_turns)]
    out["overall"] = overall
    return out


# ----------------------------------------------------------------------------
# Running the rollouts, with progress per finished rollout

class Progress:
    """Rollouts finished so far. On a terminal, a tqdm bar; when stderr goes to a file or a pipe
    (run.sh tees stdout and stderr into one log), a bar's carriage returns would glue it to the log
    lines, so it prints a plain line instead: at every further 10%, at most one per 10 s, and the last."""

    def __init__(self, desc, total, tty=None):
        self.desc, self.total, self.done = desc, total, 0
        self.t0 = self.last = time.time()
        tty = sys.stderr.isatty() if tty is None else tty
        self.bar = tqdm(total=total, desc=desc, unit="rollout", leave=False) if tty else None
        self.next_share = 0.1

    def update(self, n):
        if n <= 0:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        share, now = self.done / self.total, time.time()
        if self.done == self.total or (share >= self.next_share and now - self.last >= 10):
            log0(f"{self.desc}: {self.done}/{self.total} rollouts | {now - self.t0:.0f}s")
            self.last, self.next_share = now, math.floor(share * 10 + 1e-9) / 10 + 0.1

    def close(self):
        if self.bar is not None:
            self.bar.close()


class CountingLoop(AgentLoop):
    """An AgentLoop that reports finished rollouts as they finish, not once per batch (a 64-task
    batch can take minutes). Every pass of AgentLoop.run's decode loop ends in _flush, where each
    rollout's `done` is up to date, so that is where we count."""

    def __init__(self, *a, progress, **kw):
        super().__init__(*a, **kw)
        self.progress, self.finished = progress, 0

    def run(self, tasks, samples=1):
        self.finished = 0
        rollouts = super().run(tasks, samples)
        self.progress.update(len(rollouts) - self.finished)  # tasks whose prompt alone overflowed
        return rollouts

    def _flush(self, engine, rollouts, appends):
        super()._flush(engine, rollouts, appends)
        done = sum(r.done for r in rollouts)
        self.progress.update(done - self.finished)
        self.finished = done


class CountingOracleLoop(CountingLoop, OracleLoop):
    """The oracle (agent.OracleLoop), counted the same way."""


def evaluate(model, tok, tasks, policy, listing, args, agent="model", desc=None):
    """tasks x args.samples rollouts (group-major), batch_tasks tasks per engine."""
    progress = Progress(desc or f"eval {policy}", len(tasks) * args.samples)
    cls = CountingOracleLoop if agent == "oracle" else CountingLoop
    loop = cls(model, tok, policy, listing, step_tokens=args.step_tokens, temperature=args.temperature,
               top_k=args.top_k, top_p=args.top_p, seed=args.seed, progress=progress)
    rollouts = []
    for i in range(0, len(tasks), args.batch_tasks):
        rollouts += loop.run(tasks[i:i + args.batch_tasks], args.samples)
    progress.close()
    return rollouts


# ----------------------------------------------------------------------------
# Inputs, checked before any rollout runs: a bad one ends in one line, not a traceback

def row_names(paths, taken=()):
    """One table row per --ckpt: the run folder's name, and for names that clash (a/sft_pag and
    b/sft_pag) as many parent folders as it takes to tell them apart, so no row overwrites another."""
    parts = [os.path.abspath(p).split(os.sep) for p in paths]
    for i, path in enumerate(paths):
        if parts[i] in parts[:i]:
            raise SystemExit(f"error: --ckpt {path} is given twice")
    depth = [1] * len(parts)
    while True:  # ends: distinct absolute paths differ at the latest when written out in full
        names = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clash = [i for i, name in enumerate(names) if names.count(name) > 1 or name in taken]
        if not clash:
            return names
        for i in clash:
            depth[i] += 1


def seed_groups(results):
    """Rows that differ only in a trailing seed suffix (parl_mt_s1, parl_mt_s2, ... from
    `SEEDS=3 bash run.sh`) -> {row without the suffix: {metric: (mean, std, n)}} for groups of two
    or more. std is the sample standard deviation (ddof=1): with 3 seeds the population one would
    understate the spread. Metrics: overall accuracy, steps per task, context tokens per step, and
    the share of rollouts that ended in an empty turn (the decline collapse)."""
    groups = {}
    for name, res in results.items():
        if seed_base(name):
            groups.setdefault(seed_base(name), []).append(res["overall"])
    out = {}
    for base, rows in groups.items():
        if len(rows) < 2:
            continue
        vals = {"accuracy": [o["accuracy"] for o in rows], "steps": [o["steps"] for o in rows],
                "ctx_mean": [o["ctx_mean"] for o in rows],
                "empty_turn": [o["errors"].get("empty_turn", 0) / o["tasks"] for o in rows]}
        out[base] = {k: (float(np.mean(v)), float(np.std(v, ddof=1)), len(v)) for k, v in vals.items()}
    return out


def check_out(path):
    """--out is written after the whole evaluation, so make sure now that it can be."""
    if path is None:
        return
    if os.path.isdir(path):
        raise SystemExit(f"error: --out {path} is a directory; give a file name, e.g. {path}/results.json")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"error: --out {path}: cannot create its folder ({e.strerror or e})")
    if not os.access(folder, os.W_OK):
        raise SystemExit(f"error: --out {path}: its folder {folder} is not writable")


def read_tasks(args):
    path = os.path.join(args.data_dir, f"tasks_{args.split}.jsonl")
    if not os.path.exists(path):
        raise SystemExit(f"error: no {path} (run data_gen.py --out {args.data_dir} first, or fix --data-dir)")
    try:
        tasks = load_tasks(path)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    if not tasks:
        raise SystemExit(f"error: {path} holds no tasks")
    return tasks[:args.max_tasks]


def load_runs(args):
    """-> [(row name, model, tokenizer, policy, function listing, agent)], every model loaded before
    any runs. A checkpoint's function listing is the one its meta names, else the data folder's
    (the oracle's too)."""
    runs = []
    try:
        if args.agent == "oracle":
            tok = Tokenizer.load(os.path.join(args.data_dir, "tokenizer.json"))
            # the oracle's texts are forced; a random model of the preset only carries the KV cache
            model = GPT(GPTConfig(**dict(get_preset(args.preset)["model"], vocab_size=tok.vocab_size)))
            runs.append(("oracle", model, tok, args.policy or "history", data_listing(args.data_dir), "oracle"))
        for name, path in zip(row_names(args.ckpt, taken=[r[0] for r in runs]), args.ckpt):
            model, meta = load_checkpoint(path)
            if not meta.get("tokenizer"):
                raise SystemExit(f"error: --ckpt {path}: its metadata names no tokenizer")
            tok = Tokenizer.load(meta["tokenizer"])
            listing = listing_of(meta["format"], path) if "format" in meta else data_listing(args.data_dir)
            runs.append((name, model, tok, args.policy or meta.get("policy", "history"), listing, "model"))
    except (CheckpointError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    return runs


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    seed_everything(args.seed)
    device = get_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device}: this machine has no CUDA")
    if args.agent == "model" and not args.ckpt:
        raise SystemExit("error: give --ckpt (one or more), or --agent oracle")
    check_out(args.out)
    tasks = read_tasks(args)
    runs = load_runs(args)

    results = {}
    for name, model, tok, policy, listing, agent in runs:
        model.to(device).eval()
        t0 = time.time()
        rollouts = evaluate(model, tok, tasks, policy, listing, args, agent, desc=f"eval {name} ({policy})")
        results[name] = metrics(rollouts, policy, args.samples)
        results[name]["overall"].update(policy=policy, seconds=time.time() - t0)
        for r in rollouts[:args.show * args.samples:args.samples]:
            print(transcript(r, name, max_chars=300))

    k = args.samples
    w = max([18] + [len(name) for name in results])  # the model column fits every row's name
    header = (f"{'model':{w}s} {'policy':9s} " + " ".join(f"{c[:12]:>12s}" for c in CATEGORIES) +
              f" {'overall':>8s} {f'pass^{k}':>7s} {'steps':>6s} {'redund':>6s} {'invalid':>7s} "
              f"{'ctx/step':>8s} {'ctx max':>7s} {'gen tok':>7s} {'recall':>6s}")
    print(f"\n{args.split} split, {len(tasks)} tasks, {k} sample(s) each, temperature {args.temperature}")
    print(header)
    for name, res in results.items():
        o = res["overall"]
        recall = f"{o['awareness_recall']:6.2f}" if o["awareness_recall"] is not None else f"{'-':>6s}"
        print(f"{name:{w}s} {o['policy']:9s} " +
              " ".join(f"{res[c]['accuracy']:12.3f}" if c in res else f"{'-':>12s}" for c in CATEGORIES) +
              f" {o['accuracy']:8.3f} {o[f'pass^{k}']:7.3f} {o['steps']:6.2f} {o['redundant_calls']:6.2f} "
              f"{o['invalid_calls']:7.2f} {o['ctx_mean']:8.0f} {o['ctx_max']:7d} {o['gen_tokens']:7.0f} {recall}")
    if k > 1:
        for name, res in results.items():
            o = res["overall"]
            print(f"{name}: pass@{k} {o[f'pass@{k}']:.3f} | tasks with mixed outcomes {o['mixed']:.3f}")
    for name, res in results.items():
        if res["overall"]["errors"]:
            print(f"{name}: errors {res['overall']['errors']}")
    for name, res in results.items():
        print(f"{name}: turns passed by turn index " +
              " ".join(f"{k}:{a:.2f}" for k, a in enumerate(res["overall"]["turn_accuracy"])))
    seeds = seed_groups(results)
    if seeds:
        print("\nmean +- std over seeds (rows named <run>_s<seed>; sample std)")
        print(f"{'model':{w}s} {'seeds':>5s} {'overall':>15s} {'steps':>13s} {'ctx/step':>11s} {'empty turn':>13s}")
        for base, m in seeds.items():
            a, st, c, e = m["accuracy"], m["steps"], m["ctx_mean"], m["empty_turn"]
            print(f"{base:{w}s} {a[2]:5d} {a[0]:7.3f} +- {a[1]:.3f} {st[0]:6.2f} +- {st[1]:4.2f} "
                  f"{c[0]:5.0f} +- {c[1]:3.0f} {e[0]:6.3f} +- {e[1]:.3f}")
    if args.out:
        groups = {base: {k: {"mean": v[0], "std": v[1], "n": v[2]} for k, v in m.items()}
                  for base, m in seeds.items()}
        write_file(args.out, json.dumps({**results, "seed_groups": groups} if groups else results, indent=2))
    return results


if __name__ == "__main__":
    run_cli(main)
