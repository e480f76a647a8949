"""Supervised fine-tuning (the SFT warm-up of PARL-MT and the SFT baselines) and the base stage.

    python train_sft.py --preset cpu --data plain --data-dir data --out out/sft_plain
    python train_sft.py --preset cpu --data pag   --data-dir data --out out/sft_pag
    python train_sft.py --preset gpu --data base  --data-dir data --out out/base        # base stage
    python train_sft.py --preset gpu --data pag --init out/base --data-dir data --out out/sft_pag
    torchrun --nproc_per_node=2 train_sft.py --preset cpu --data pag ...   # DDP

--data plain trains on whole conversations (the `history` context policy); --data pag trains on one
sequence per user turn with the model writing <summary> and <plan> first (the `awareness` policy).
The loss is next-token cross entropy on mask-1 tokens only (what the assistant wrote).

--data base is the base stage, the stand-in for the pretrained model the paper starts from: the
same loss on EVERY token of environment conversations generated from tasks of their own (never
val or test), so the model also learns to predict user text, tool output and system text. Every
value recurs there (user message -> call -> tool echo -> summary -> later call), which is the
signal for copying. It is the same loop as SFT with another loss mask, hence one script; --init
chains base -> SFT.

Every evaluation logs a copy probe, teacher-forced on val assistant tokens (nanoparl/probe.py): the
accuracy of the first digit of a number and of its later digits (the later ones can only be
copied, never guessed), and exact match of whole messages by kind (awareness, call, reply).

Batches are padded, not packed: every sample is one conversation (or one turn) whose tokens may only
attend to each other, and per-sample batches keep the exact-match metric and the loss mask trivial.
Padding waste is kept small by drawing each batch from samples of similar length (length buckets).

Resume: `--resume` reloads the newest intact checkpoint of --out (weights, optimizer state, RNG
states, step; a corrupt newest one is skipped, saying why). The data order is a pure function of
(seed, step), so a resumed run sees exactly the batches the uninterrupted run would have seen.
Ctrl-C saves a checkpoint at the end of the current step and exits with status 130; --resume goes
on from there. A folder that already holds checkpoints needs --resume or --overwrite.
"""

import argparse
import contextlib
import filecmp
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from nanoparl.chat import data_listing
from nanoparl.checkpoint import copy_tokenizer, list_steps, load_checkpoint, save_checkpoint, training_state
from nanoparl.cli import ArgumentParser, check_flags
from nanoparl.common import (PRESETS, JsonlLogger, StopOnSignal, add_threads_flag, autocast, begin_run,
                             cleanup_distributed, get_preset, log0, parse_args_with_preset,
                             resume_step, run_cli, seed_everything)
from nanoparl.model import GPT, GPTConfig
from nanoparl.optim import make_optimizer
from nanoparl.probe import evaluate, probe_line
from nanoparl.sft_data import batch_indices, collate, load_samples
from nanoparl.tokenizer import Tokenizer


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=["plain", "pag", "base"], required=True,
                   help="plain: history policy; pag: awareness policy; base: loss on every token of base_*.jsonl")
    g.add_argument("--data-dir", default="data",
                   help="written by data_gen.py (sft_<data>_{train,val}.jsonl or base_{train,val}.jsonl, tokenizer.json)")
    g = p.add_argument_group("run")
    g.add_argument("--preset", default=None, choices=sorted(PRESETS), help="default: gpu with CUDA, else cpu")
    g.add_argument("--out", required=True, help="run directory for checkpoints and logs")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--resume", action="store_true", help="continue from the newest intact checkpoint in --out")
    x.add_argument("--overwrite", action="store_true", help="delete the checkpoints and log in --out, then start over")
    g.add_argument("--init", default=None, help="start from this checkpoint's weights instead of random init")
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--device", default="auto", help="auto: cuda (the GPU of the rank) > mps > cpu")
    add_threads_flag(g)
    g = p.add_argument_group("optimisation (default: the preset's 'sft' section, 'base' for --data base)")
    g.add_argument("--max-steps", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=None, help="global batch (samples), split across ranks")
    g.add_argument("--micro-batch-size", type=int, default=None,
                   help="samples per forward/backward on one rank; gradients accumulate up to the batch")
    g.add_argument("--lr", type=float, default=None, help="AdamW lr (embedding, lm_head, norms; all weights without Muon)")
    g.add_argument("--muon-lr", type=float, default=None, help="Muon lr for the 2-D block weights; 0 = AdamW there too")
    g.add_argument("--min-lr-frac", type=float, default=0.1, help="the cooldown decays to lr * this")
    g.add_argument("--warmup-steps", type=int, default=None)
    g.add_argument("--cooldown-frac", type=float, default=None, help="share of steps, at the end, of linear decay")
    g.add_argument("--weight-decay", type=float, default=0.1)
    g.add_argument("--grad-clip", type=float, default=1.0)
    g = p.add_argument_group("model overrides (default: the preset's)")
    g.add_argument("--n-layer", type=int, default=None)
    g.add_argument("--n-embd", type=int, default=None)
    g.add_argument("--n-head", type=int, default=None)
    g.add_argument("--n-kv-head", type=int, default=None)
    g.add_argument("--intermediate-size", type=int, default=None)
    g.add_argument("--qk-norm", type=int, choices=[0, 1], default=None, help="RMSNorm on q and k (1) or not (0)")
    g = p.add_argument_group("evaluation, logging, checkpoints")
    g.add_argument("--eval-every", type=int, default=None)
    g.add_argument("--eval-samples", type=int, default=None, help="val samples per evaluation")
    g.add_argument("--save-every", type=int, default=None)
    g.add_argument("--keep-last", type=int, default=2, help="checkpoints kept in --out (0: all)")
    g.add_argument("--log-every", type=int, default=10)
    args = parse_args_with_preset(p, argv, lambda preset, data: ("model", "base" if data == "base" else "sft"))
    pos, count = (1, None), (0, None)
    check_flags(p, args, seed=count, threads=pos, max_steps=count, batch_size=pos, micro_batch_size=pos, lr=count,
                muon_lr=count, min_lr_frac=(0, 1), warmup_steps=count, cooldown_frac=(0, 1), weight_decay=count,
                grad_clip=count, n_layer=pos, n_embd=pos, n_head=pos, n_kv_head=pos, intermediate_size=pos,
                qk_norm=(0, 1), eval_every=pos, eval_samples=count, save_every=pos, keep_last=count, log_every=pos)
    return args


# ----------------------------------------------------------------------------

def main(argv=None):
    with StopOnSignal() as stop:  # Ctrl-C: save at the end of the step (restored on the way out)
        return train(parse_args(argv), stop)


def train(args, stop):
    rank, world, device = begin_run(args, "batch_size")
    seed_everything(args.seed)

    tok_path = os.path.join(args.data_dir, "tokenizer.json")
    tok = Tokenizer.load(tok_path)
    listing = data_listing(args.data_dir)  # how the data listed functions: recorded in every checkpoint
    if rank == 0:  # the run folder carries its tokenizer; written now, so a bad --out fails at once
        copy_tokenizer(args.out, tok_path)
    model_cfg = dict(get_preset(args.preset)["model"], vocab_size=tok.vocab_size, qk_norm=bool(args.qk_norm),
                     **{k: getattr(args, k) for k in ("n_layer", "n_embd", "n_head", "n_kv_head", "intermediate_size")})
    if args.init:
        model, init_meta = load_checkpoint(args.init)
        model_cfg = model.config.to_dict()
        if model.config.vocab_size != tok.vocab_size:
            raise SystemExit(f"error: --init {args.init} has a vocabulary of {model.config.vocab_size} tokens, the "
                             f"tokenizer of {args.data_dir} {tok.vocab_size}: they come from different data")
        if init_meta.get("tokenizer") and not filecmp.cmp(init_meta["tokenizer"], tok_path, shallow=False):
            raise SystemExit(f"error: --init {args.init} was trained with another tokenizer than {tok_path} (the same "
                             f"size, other tokens): train on the data folder it was trained on")
    else:
        model = GPT(GPTConfig(**model_cfg))
    model.to(device)
    block = model.config.block_size
    # the base stage is probed on the PAG val samples: the assistant tokens PAG-SFT will learn next
    train_file = "base_train.jsonl" if args.data == "base" else f"sft_{args.data}_train.jsonl"
    val_file = "sft_pag_val.jsonl" if args.data == "base" else f"sft_{args.data}_val.jsonl"
    train, dropped = load_samples(os.path.join(args.data_dir, train_file), tok, block)
    val, _ = load_samples(os.path.join(args.data_dir, val_file), tok, block)
    val = val[:args.eval_samples]
    lengths = np.array([len(ids) for ids, _ in train])
    log0(f"preset {args.preset} | {model.num_params(False) / 1e6:.2f}M params | {len(train)} train samples "
         f"({dropped} over block_size {block} dropped) | {len(val)} val samples | world {world} | {device}")

    opt = make_optimizer(model, args.lr, args.weight_decay, muon_lr=args.muon_lr)

    step = resume_step(args, model, opt, rank)
    if step is None:  # --resume of a run that has reached --max-steps
        cleanup_distributed()
        return {}

    ddp = DDP(model) if world > 1 else model
    meta = {"tokenizer": tok_path, "policy": "awareness" if args.data == "pag" else "history",
            "format": {"functions": listing}, "data": args.data, "preset": args.preset,
            "kind": "base" if args.data == "base" else "sft"}
    logger = JsonlLogger(os.path.join(args.out, "log.jsonl")) if rank == 0 else None

    def lr_factor(it):
        """Linear warmup, a constant plateau, then a linear cooldown to min_lr_frac over the last
        cooldown_frac of the steps. The plateau matters: the copy circuit appears only while the rate
        is still high (a cosine over the run had it too low by then)."""
        if it < args.warmup_steps:
            return (it + 1) / args.warmup_steps
        cooldown = max(1, int(args.cooldown_frac * args.max_steps))
        frac = (it - (args.max_steps - cooldown)) / cooldown
        return 1.0 - (1 - args.min_lr_frac) * min(max(frac, 0.0), 1.0)

    def stop_diverged(what):  # one line that says what is left: the last good checkpoint, or none
        steps = list_steps(args.out)
        kept = f"the last good checkpoint (step {steps[-1]}) in {args.out} is kept" if steps else "no checkpoint was saved"
        cleanup_distributed()
        sys.exit(f"error: step {step}: {what}: stopping; {kept}" if rank == 0 else 1)

    def checkpoint(metrics):  # -> the path of the weights written
        # a finite loss can still be followed by an update that overflows: never save such weights
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            stop_diverged("the weights are not finite")
        if rank == 0:
            save_checkpoint(args.out, step, model, meta=dict(meta, metrics=metrics),
                            train_state=training_state(opt, step, log_rows), keep_last=args.keep_last)
        if world > 1:
            dist.barrier()
        return os.path.join(args.out, f"model_{step}.safetensors")

    metrics, t0, tokens = {}, time.time(), 0
    local_bs = args.batch_size // world
    while True:
        last_step = step >= args.max_steps
        log_rows = logger.rows if logger else None  # the log as this step begins (training_state)
        if not last_step:  # between two optimizer steps: a consistent state to save
            stop.save_and_exit_if_requested(lambda: checkpoint(metrics), step)
        if step % args.eval_every == 0 or last_step:
            metrics = evaluate(model, val, tok, device, max(local_bs, 8)) if rank == 0 else {}
            if rank == 0:
                log0(f"step {step} | {probe_line(metrics)} | {time.time() - t0:.0f}s")
            if logger:
                logger.log(step=step, time_s=time.time() - t0, **metrics)
        if last_step or (step > 0 and step % args.save_every == 0):
            checkpoint(metrics)
        if last_step:
            break

        lr = lr_factor(step)
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * lr
        ids = batch_indices(lengths, args.batch_size, step, args.seed)
        rows = [train[i] for i in ids[rank * local_bs:(rank + 1) * local_bs]]
        # gradient accumulation: micro-batches of micro_batch_size samples bound the activation
        # memory (README, "The gpu preset"); each is padded to its own longest sample
        micro = [collate(rows[i:i + args.micro_batch_size], tok.end_id, every_token=args.data == "base")
                 for i in range(0, len(rows), args.micro_batch_size)]
        # normalise by the GLOBAL number of trained tokens, so that N ranks == 1 rank and
        # k micro-batches == 1 batch exactly
        n_tok = sum((targets != -1).sum() for _, targets in micro).float().to(device)
        if world > 1:
            dist.all_reduce(n_tok)
        loss = 0.0
        for j, (idx, targets) in enumerate(micro):
            idx, targets = idx.to(device), targets.to(device)
            last_micro = j == len(micro) - 1
            with ddp.no_sync() if world > 1 and not last_micro else contextlib.nullcontext():
                with autocast(device):
                    logits = ddp(idx)
                loss_sum = torch.nn.functional.cross_entropy(
                    logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1, reduction="sum")
                micro_loss = loss_sum / n_tok * world  # DDP averages gradients over ranks; undo that
                micro_loss.backward()
            loss = loss + micro_loss.detach()
        reported = loss.detach() / world
        if world > 1:
            dist.all_reduce(reported)
        if not torch.isfinite(reported):
            stop_diverged(f"the loss is {reported.item()}")
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += int(lengths[ids].sum())  # real tokens of the global batch, padding not counted
        if step % args.log_every == 0 or step == args.max_steps:
            dt = time.time() - t0
            log0(f"step {step} | loss {reported.item():.4f} | lr x{lr:.3f} | {tokens / dt / 1e3:.1f}k tok/s | {dt:.0f}s")
            if logger:
                logger.log(step=step, loss=reported.item(), lr_factor=lr, time_s=dt)
    cleanup_distributed()
    return metrics


if __name__ == "__main__":
    run_cli(main)
