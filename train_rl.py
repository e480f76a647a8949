"""RL after SFT: PAG-RL (PARL-MT's phase 2) and the MT-GRPO baseline.

    python train_rl.py --preset cpu --algo pag-rl  --init out/sft_pag   --data-dir data --out out/pag_rl
    python train_rl.py --preset cpu --algo mt-grpo --init out/sft_plain --data-dir data --out out/mt_grpo
    torchrun --nproc_per_node=2 train_rl.py ...      # rollout groups sharded by rank

One step: draw --tasks-per-step train tasks, roll each out --group-size times at temperature 1 with
the engine (agent.py; the context policy is the init checkpoint's unless --policy says otherwise),
score every rollout, turn scores into advantages, then take --ppo-epochs passes of the clipped
policy-gradient loss over the sampled tokens (mask 1; system, user and tool tokens get no gradient).
  --algo pag-rl   composite reward (rl.composite_reward: success, progress, format, validity,
                  efficiency, awareness recall) with GRPO advantages, one per rollout;
  --algo mt-grpo  turn-level rewards + lam * outcome advantage (rl.mt_grpo_advantages), one
                  advantage per (rollout, turn), spread over that turn's tokens.

The simplest correct loop, and what it simplifies against the paper (whose RL hyperparameters are
not public; every number here is ours):
- on-policy: rollouts come from the current weights, so at the first inner epoch the ratio is 1
  (the engine's sampling log-probs equal the training forward's: temperature 1, no truncation);
- groups whose rewards are all equal carry zero advantage; their sequences are skipped (unless a KL
  term needs them), and their share is logged;
- token-level loss normalisation over the whole step (DAPO style), optional k3 KL to the init model;
- no value model, no reward model, no entropy bonus, no dynamic sampling or over-long filtering;
- awareness-policy rollouts are one sequence per user turn (the context is rebuilt each turn), each
  trained with its rollout's (or turn's) advantage.

--resume, --overwrite and Ctrl-C behave as in train_sft.py: a folder with checkpoints needs one of
the two flags, and Ctrl-C saves a checkpoint at the end of the current step (exit status 130).
"""

import argparse
import copy
import os
import time

import numpy as np
import torch
import torch.distributed as dist

from nanoparl.agent import AgentLoop, trajectory_summaries, transcript
from nanoparl.chat import listing_of
from nanoparl.checkpoint import copy_tokenizer, load_checkpoint, save_checkpoint, training_state
from nanoparl.cli import ArgumentParser, check_flags
from nanoparl.common import (PRESETS, JsonlLogger, StopOnSignal, add_threads_flag, autocast, begin_run,
                             cleanup_distributed, log0, parse_args_with_preset, resume_step,
                             run_cli, seed_everything)
from nanoparl.files import write_file
from nanoparl.probe import evaluate, probe_line
from nanoparl.rl import (DEFAULT_WEIGHTS, composite_reward, expand_advantages, grpo_advantages,
                         mt_grpo_advantages, outcome_reward, policy_loss, token_logprobs,
                         turn_rewards, zero_advantage_share)
from nanoparl.sft_data import load_samples
from nanoparl.tokenizer import Tokenizer
from nanoparl.world.tasks import CATEGORIES, load_tasks


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--algo", choices=["pag-rl", "mt-grpo"], required=True)
    g.add_argument("--init", required=True, help="the SFT run (or checkpoint file) to start from")
    g.add_argument("--policy", choices=["history", "awareness"], default=None, help="default: the init checkpoint's")
    g.add_argument("--data-dir", default="data")
    g.add_argument("--out", required=True)
    g.add_argument("--preset", default=None, choices=sorted(PRESETS), help="default: gpu with CUDA, else cpu")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--resume", action="store_true", help="continue from the newest intact checkpoint in --out")
    x.add_argument("--overwrite", action="store_true", help="delete the checkpoints and log in --out, then start over")
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--device", default="auto", help="auto: cuda (the GPU of the rank) > mps > cpu")
    add_threads_flag(g)
    g = p.add_argument_group("RL (default: the preset's 'rl' section)")
    g.add_argument("--max-steps", type=int, default=None)
    g.add_argument("--tasks-per-step", type=int, default=None, help="global, split across ranks")
    g.add_argument("--group-size", type=int, default=None, help="rollouts per task (G)")
    g.add_argument("--ppo-epochs", type=int, default=None, help="inner epochs over each batch (mu)")
    g.add_argument("--minibatches", type=int, default=None,
                   help="optimizer steps per inner epoch (the batch's sequences dealt round-robin)")
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--clip", type=float, default=0.2)
    g.add_argument("--kl", type=float, default=0.0, help="k3 KL coefficient to the init model (0: off)")
    g.add_argument("--lam", type=float, default=1.0, help="mt-grpo: weight of the outcome advantage")
    g.add_argument("--temperature", type=float, default=1.0, help="rollout temperature (1: ratio 1 on-policy)")
    g.add_argument("--step-tokens", type=int, default=None, help="max tokens per assistant step")
    g.add_argument("--micro-batch", type=int, default=16, help="sequences per forward/backward")
    for name, w in DEFAULT_WEIGHTS.items():
        g.add_argument(f"--w-{name}", type=float, default=w, help="pag-rl reward weight")
    g = p.add_argument_group("evaluation, logging, checkpoints")
    g.add_argument("--eval-every", type=int, default=None)
    g.add_argument("--eval-tasks", type=int, default=None, help="val tasks per evaluation")
    g.add_argument("--save-every", type=int, default=None)
    g.add_argument("--keep-last", type=int, default=2, help="checkpoints kept in --out (0: all)")
    g.add_argument("--dump-episodes", type=int, default=2, help="decoded episodes written per eval")
    args = parse_args_with_preset(p, argv, lambda preset, data: ("rl",))
    pos, count = (1, None), (0, None)
    # GRPO's advantage is a reward minus the mean of its group: a group of one rollout, or of identical
    # (greedy) rollouts, has advantage 0 everywhere, and the run learns nothing
    alone = "a group of one has advantage 0 (its reward minus its own mean), so nothing to learn"
    check_flags(p, args, seed=count, threads=pos, max_steps=count, tasks_per_step=pos, ppo_epochs=pos,
                minibatches=pos, lr=count, group_size=(2, None, alone), clip=count, kl=count, lam=None,
                temperature=count, step_tokens=pos, micro_batch=pos, eval_every=pos, eval_tasks=pos,
                save_every=pos, keep_last=count, dump_episodes=count, **{f"w_{name}": count for name in DEFAULT_WEIGHTS})
    if args.temperature == 0:
        raise SystemExit("error: --temperature must be above 0: greedy rollouts of one task are identical, so "
                         "every group has advantage 0 and the run learns nothing")
    return args


def step_tasks(tasks, n, step, seed):
    """The tasks of one RL step: a pure function of (seed, step), so --resume replays the order."""
    per_epoch = max(1, len(tasks) // n)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(len(tasks))
    return [tasks[i] for i in perm[k * n:(k + 1) * n]]


def score(rollouts, args, policy, samples):
    """-> (per-rollout advantages, rewards, reward parts, zero-advantage share). Groups are adjacent.
    PAG-RL: one scalar per rollout (GRPO over the composite reward), the same for all its tokens;
    MT-GRPO: one value per turn (turn advantage + lam * outcome advantage), for that turn's tokens."""
    trajs = trajectory_summaries(rollouts, policy)
    groups = [r.group for r in rollouts]
    if args.algo == "pag-rl":
        weights = {k: getattr(args, f"w_{k}") for k in DEFAULT_WEIGHTS}
        scored = [composite_reward(t, weights) for t in trajs]
        rewards = [s[0] for s in scored]
        adv = grpo_advantages(rewards, groups)
        advantages = list(adv)  # 0-d tensors
        parts = {k: float(np.mean([s[1][k] for s in scored])) for k in scored[0][1]}
    else:
        turns = [turn_rewards(t)[0] for t in trajs]
        outcome = [outcome_reward(t)[0] for t in trajs]
        advantages = mt_grpo_advantages(turns, outcome, groups, args.lam)
        rewards = [o + float(np.mean(tr)) if tr else o for o, tr in zip(outcome, turns)]
        parts = {"outcome": float(np.mean(outcome)), "turn": float(np.mean([np.mean(t) for t in turns if t]))}
    return advantages, rewards, parts, zero_advantage_share(rewards, groups)


def build_batch(rollouts, advantages, keep_zero):
    """Sequences to train on: (tokens, mask, old log-probs, per-token advantage) per segment."""
    seqs = []
    for r, adv in zip(rollouts, advantages):
        if not keep_zero and bool((adv == 0).all()):
            continue
        for seg in r.segments:
            turn_ids = torch.tensor([t if t >= 0 else -1 for t in seg["turn_ids"]])[None]
            # a scalar (PAG-RL) goes to every token of the rollout, a per-turn vector (MT-GRPO) by turn
            tok_adv = expand_advantages(adv.view(1) if adv.dim() == 0 else [adv], turn_ids)[0]
            seqs.append((seg["tokens"], seg["mask"], seg["logprobs"], tok_adv))
    return seqs


def pad(seqs, device):
    T = max(len(s[0]) for s in seqs)
    tokens = torch.zeros(len(seqs), T, dtype=torch.long)
    mask, old, adv = (torch.zeros(len(seqs), T) for _ in range(3))
    for i, (t, m, lp, a) in enumerate(seqs):
        n = len(t)
        tokens[i, :n], mask[i, :n], old[i, :n], adv[i, :n] = torch.tensor(t), torch.tensor(m, dtype=torch.float), \
            torch.tensor(lp), a
    # position t's log-prob comes from logits at t-1: drop the first position everywhere
    return tokens.to(device), mask[:, 1:].to(device), old[:, 1:].to(device), adv[:, 1:].to(device)


def main(argv=None):
    with StopOnSignal() as stop:  # Ctrl-C: save at the end of the step (restored on the way out)
        return train(parse_args(argv), stop)


def train(args, stop):
    rank, world, device = begin_run(args, "tasks_per_step")
    seed_everything(args.seed + rank)

    model, init_meta = load_checkpoint(args.init)
    model.to(device)
    if not init_meta.get("tokenizer"):
        raise SystemExit(f"error: --init {args.init}: its metadata names no tokenizer (not a training run's checkpoint?)")
    tok = Tokenizer.load(init_meta["tokenizer"])
    if rank == 0:  # the run folder carries its tokenizer; written now, so a bad --out fails at once
        copy_tokenizer(args.out, init_meta["tokenizer"])
    policy = args.policy or init_meta.get("policy", "history")
    listing = listing_of(init_meta.get("format"), args.init)
    ref = copy.deepcopy(model).eval() if args.kl > 0 else None
    train_tasks = load_tasks(os.path.join(args.data_dir, "tasks_train.jsonl"))
    val_tasks = load_tasks(os.path.join(args.data_dir, "tasks_val.jsonl"))[:args.eval_tasks]
    for split, tasks in (("train", train_tasks), ("val", val_tasks)):
        if not tasks:  # else every step "trains" on nothing and logs reward nan
            raise SystemExit(f"error: {os.path.join(args.data_dir, f'tasks_{split}.jsonl')} holds no tasks")
    # the copy probe of train_sft.py, on the SFT val samples of this policy (teacher-forced)
    probe_file = os.path.join(args.data_dir, f"sft_{'pag' if policy == 'awareness' else 'plain'}_val.jsonl")
    probe_samples = (load_samples(probe_file, tok, model.config.block_size)[0][:200]
                     if os.path.exists(probe_file) else [])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step = resume_step(args, model, opt, rank)
    if step is None:  # --resume of a run that has reached --max-steps
        cleanup_distributed()
        return {}
    logger = JsonlLogger(os.path.join(args.out, "log.jsonl"))
    meta = dict(init_meta, kind="rl", algo=args.algo, policy=policy, init=os.path.abspath(args.init),
                format={"functions": listing}, preset=args.preset)
    meta.pop("metrics", None)
    meta.pop("step", None)
    meta.pop("config", None)
    n_local = args.tasks_per_step // world
    G = args.group_size
    log0(f"{args.algo} | policy {policy} | init {args.init} | {len(train_tasks)} train tasks | "
         f"{args.tasks_per_step} tasks x {G} rollouts per step | world {world} | {device}")

    def run_eval():  # -> ({category: greedy val accuracy, "overall": their mean}, copy probe)
        model.eval()
        loop = AgentLoop(model, tok, policy, listing, step_tokens=args.step_tokens, temperature=0.0, seed=0)
        rollouts = [r for i in range(0, len(val_tasks), 64) for r in loop.run(val_tasks[i:i + 64])]
        res = {c: float(np.mean([r.verdict["passed"] for r in rollouts if r.task["category"] == c]))
               for c in CATEGORIES if any(r.task["category"] == c for r in rollouts)}
        res["overall"] = float(np.mean(list(res.values())))  # unweighted over categories, as eval.py
        write_file(os.path.join(args.out, f"episodes_{step}.txt"),
                   "".join(transcript(r) + "\n" for r in rollouts[:args.dump_episodes]))
        probe = evaluate(model, probe_samples, tok, device, 16) if probe_samples else {}
        if probe:
            log0(f"step {step} | copy probe | {probe_line(probe)}")
        model.eval()
        return res, probe

    def checkpoint():  # -> the path of the weights written
        if rank == 0:
            save_checkpoint(args.out, step, model, meta=dict(meta, metrics=metrics), keep_last=args.keep_last,
                            train_state=training_state(opt, step, log_rows))
        if world > 1:
            dist.barrier()
        return os.path.join(args.out, f"model_{step}.safetensors")

    metrics = {}
    while True:
        last_step = step >= args.max_steps
        log_rows = logger.rows  # the log as this step begins (training_state)
        if not last_step:  # between two optimizer steps: a consistent state to save
            stop.save_and_exit_if_requested(checkpoint, step)
        if rank == 0 and (step % args.eval_every == 0 or last_step):
            res, probe = run_eval()
            metrics = {"val_accuracy": res["overall"], **{f"val_{c}": res[c] for c in res if c != "overall"}}
            log_metrics = dict(metrics, **probe)
            log0(f"step {step} | val accuracy {metrics['val_accuracy']:.3f} | " +
                 " | ".join(f"{k[4:]} {v:.2f}" for k, v in metrics.items() if k != "val_accuracy"))
            logger.log(step=step, **log_metrics)
        if last_step or (step > 0 and step % args.save_every == 0):
            checkpoint()
        elif world > 1:
            dist.barrier()
        if last_step:
            break

        # ---- 1. rollouts: this rank's n_local tasks x G samples at `temperature`, group-major (a
        # task's G samples are adjacent); each Rollout holds its segments (token ids, loss mask,
        # log-probs at sampling time, turn id per token) and the checker's verdict
        t0 = time.time()
        tasks = step_tasks(train_tasks, args.tasks_per_step, step, args.seed)[rank * n_local:(rank + 1) * n_local]
        model.eval()
        loop = AgentLoop(model, tok, policy, listing, step_tokens=args.step_tokens, temperature=args.temperature,
                         seed=args.seed * 100003 + step * 101 + rank)
        rollouts = loop.run(tasks, G)
        t_sample = time.time() - t0 - loop.env_seconds
        # ---- 2. rewards -> advantages, per group of G (score, above): PAG-RL one scalar per rollout,
        # MT-GRPO one value per turn
        advantages, rewards, parts, zero_share = score(rollouts, args, policy, G)
        # ---- 3. the batch: one sequence per segment (awareness: one per user turn), each with its
        # per-token advantage; groups whose advantages are all 0 carry no signal and are dropped
        seqs = build_batch(rollouts, advantages, keep_zero=args.kl > 0)

        # ---- 4. clipped policy update: ppo_epochs passes over the batch, each split into
        # `minibatches` optimizer steps, each run in micro-batches of [micro_batch, T] tokens; the
        # loss is summed over tokens and divided by n_tok, the optimizer step's trained tokens on all
        # ranks (token-level normalisation, rl.policy_loss)
        t1 = time.time()
        model.train()
        stats_acc = []
        for epoch, part in [(e, p) for e in range(args.ppo_epochs) for p in range(args.minibatches)]:
            chunk = seqs[part::args.minibatches]  # every rank takes the same number of optimizer steps
            n_tok = torch.tensor(float(sum(sum(s[1][1:]) for s in chunk)))
            if world > 1:
                dist.all_reduce(n_tok)
            for i in range(0, len(chunk), args.micro_batch):
                tokens, mask, old, adv = pad(chunk[i:i + args.micro_batch], device)
                with autocast(device):
                    logits = model(tokens)
                logp = token_logprobs(logits[:, :-1].float(), tokens[:, 1:])
                logp_ref = None
                if ref is not None:
                    with torch.no_grad(), autocast(device):
                        logp_ref = token_logprobs(ref(tokens)[:, :-1].float(), tokens[:, 1:])
                loss, stats = policy_loss(logp, old, adv, mask, clip=args.clip, logp_ref=logp_ref,
                                          kl_coef=args.kl, num_tokens=max(n_tok.item(), 1.0))
                loss.backward()
                stats_acc.append(stats)
            if world > 1:  # plain all-reduce: ranks may hold different numbers of sequences
                for p in model.parameters():
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if torch.isfinite(grad_norm):
                opt.step()
            opt.zero_grad(set_to_none=True)
        t_train = time.time() - t1
        step += 1

        # ---- 5. the log line: rewards and their parts, accuracy, lengths, KL, clip fraction, times
        stats = {"reward": float(np.mean(rewards)),
                 "accuracy": float(np.mean([r.verdict["passed"] for r in rollouts])),
                 "steps_per_task": float(np.mean([sum(len(t["steps"]) for t in r.turns) for r in rollouts])),
                 "tokens_per_task": float(np.mean([r.generated for r in rollouts])),
                 "zero_adv": zero_share,
                 "kl": float(np.mean([s["kl"] for s in stats_acc])) if stats_acc else 0.0,
                 "clip": float(np.mean([s["clip_frac"] for s in stats_acc])) if stats_acc else 0.0,
                 **parts}
        if world > 1:  # every rank holds the same number of rollouts: the mean of rank means is exact
            values = torch.tensor(list(stats.values()), dtype=torch.float64)
            dist.all_reduce(values)
            stats = dict(zip(stats, (values / world).tolist()))
        log0(f"step {step} | reward {stats['reward']:.3f} | " + " ".join(f"{k} {stats[k]:.2f}" for k in parts) +
             f" | acc {stats['accuracy']:.2f} | steps/task {stats['steps_per_task']:.1f} | "
             f"tok/task {stats['tokens_per_task']:.0f} | zero-adv {stats['zero_adv']:.2f} | kl {stats['kl']:.4f} | "
             f"clip {stats['clip']:.3f} | time sample {t_sample:.1f}s env {loop.env_seconds:.1f}s train {t_train:.1f}s")
        logger.log(step=step, **stats, time_s=t_sample + loop.env_seconds + t_train)  # plot: val vs RL minutes
    cleanup_distributed()
    return metrics


if __name__ == "__main__":
    run_cli(main)
