"""Shared plumbing: presets, device and dtype, threads, seeding, torch.distributed, logging, and the
pieces that make a script fail in one clear line (flag checks, Ctrl-C between steps, run_cli).

Every script picks a preset with `--preset micro|cpu|gpu`; PRESETS below is the one place
where their numbers live. Individual command-line flags override single entries.
"""

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time

import numpy as np
import torch
import torch.distributed as dist

from nanoparl.checkpoint import CheckpointError, prepare_run_dir, resume_training
from nanoparl.cli import ArgumentParser
from nanoparl.files import keep_lines, read_text

# ----------------------------------------------------------------------------
# Presets: one dict per preset, one section per stage. Later stages add their sections here.

PRESETS = {
    # micro: tests; every stage runs in seconds on a laptop core
    "micro": {
        "model": dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, intermediate_size=192,
                      block_size=2048, rope_theta=10000.0, qk_norm=True),
        "tokenizer": dict(vocab_size=512),
        "pag": dict(augment=0.5, mask_p=0.1, functions="signatures", rename=True),
        # data: task generation (nanoparl/world/tasks.py); long_output_chars caps a long_context
        # task's tool output
        "data": dict(n_train=200, n_val=40, n_test=40, n_base=40, max_turns=4, long_output_chars=1500,
                     classes=["GorillaFileSystem", "TicketAPI", "TradingBot", "TravelAPI", "MessageAPI", "MathAPI"],
                     categories=["base", "miss_param", "miss_func", "long_context"]),
        "base": dict(batch_size=8, micro_batch_size=8,
                     lr=3e-3, muon_lr=0.02, max_steps=20, warmup_steps=5, cooldown_frac=0.3,
                     eval_every=10, eval_samples=32, save_every=10),
        "sft": dict(batch_size=8, micro_batch_size=8,
                    lr=3e-3, muon_lr=0.02, max_steps=60, warmup_steps=10, cooldown_frac=0.3,
                    eval_every=30, eval_samples=32, save_every=30),
        "rl": dict(tasks_per_step=4, group_size=4, ppo_epochs=1, minibatches=1, lr=3e-4, max_steps=6, step_tokens=96,
                   eval_every=3, eval_tasks=8, save_every=3),
        "eval": dict(max_tasks=None),
    },
    # cpu: the whole main job on 2 CPU cores (~1M parameters; dev/LOG.md, "Teaching a tiny model to copy")
    "cpu": {
        "model": dict(n_layer=4, n_head=4, n_kv_head=2, n_embd=128, intermediate_size=384,
                      block_size=1536, rope_theta=10000.0, qk_norm=True),
        "tokenizer": dict(vocab_size=1024),
        "pag": dict(augment=1.0, mask_p=0.1, functions="names", rename=True),
        # data: the ID-heavy classes only (tickets, trading, travel + math) and at most 4 turns, so
        # that a 1M-parameter model sees each function often within the 2-core budget
        "data": dict(n_train=4000, n_val=200, n_test=400, n_base=4000, max_turns=4, long_output_chars=1500,
                     classes=["TicketAPI", "TradingBot", "TravelAPI", "MathAPI"],
                     categories=["base", "miss_param", "miss_func", "long_context"]),
        # sft: Muon + QK-norm + names-only prompt + a long plateau: the recipe under which the copy
        # circuit appears (dev/LOG.md, "Teaching a tiny model to copy")
        "sft": dict(batch_size=32, micro_batch_size=32,
                    lr=2e-3, muon_lr=0.02, max_steps=1300, warmup_steps=100, cooldown_frac=0.3,
                    eval_every=100, eval_samples=200, save_every=100),
        # base: the stage exists (train_sft.py --data base) but run.sh skips it at max_steps=0: at equal
        # wall time, SFT alone copies sooner on 2 cores (dev/LOG.md, "Teaching a tiny model to copy")
        "base": dict(batch_size=32, micro_batch_size=32,
                     lr=2e-3, muon_lr=0.02, max_steps=0, warmup_steps=100, cooldown_frac=0.3,
                     eval_every=250, eval_samples=200, save_every=50),
        # rl: val every 5 steps, so the RL curves have points to show (README, rl_curves.png)
        "rl": dict(tasks_per_step=8, group_size=8, ppo_epochs=2, minibatches=1, lr=1e-4, max_steps=15, step_tokens=160,
                   eval_every=5, eval_tasks=100, save_every=5),
        # the first 200 test tasks (50 per category: tasks cycle through the categories)
        "eval": dict(max_tasks=200),
    },
    # gpu: one GPU with 24 GB; ~30M parameters
    "gpu": {
        "model": dict(n_layer=8, n_head=8, n_kv_head=4, n_embd=512, intermediate_size=1408,
                      block_size=2048, rope_theta=10000.0, qk_norm=True),
        "tokenizer": dict(vocab_size=4096),
        "pag": dict(augment=1.0, mask_p=0.1, functions="descriptions", rename=True),
        # data: all six classes, up to 6 turns, long_context outputs up to ~900 tokens
        "data": dict(n_train=20000, n_val=500, n_test=1000, n_base=20000, max_turns=6, long_output_chars=2700,
                     classes=["GorillaFileSystem", "TicketAPI", "TradingBot", "TravelAPI", "MessageAPI", "MathAPI"],
                     categories=["base", "miss_param", "miss_func", "long_context"]),
        # base then SFT, as in the paper (a pretrained base) and nanochat (base_train -> sft);
        # micro-batches of 16 samples keep activations within 24 GB (bench.py --only memory)
        "base": dict(batch_size=64, micro_batch_size=16,
                     lr=1e-3, muon_lr=0.02, max_steps=2000, warmup_steps=100, cooldown_frac=0.3,
                     eval_every=500, eval_samples=500, save_every=500),
        "sft": dict(batch_size=64, micro_batch_size=16,
                    lr=1e-3, muon_lr=0.02, max_steps=3000, warmup_steps=100, cooldown_frac=0.3,
                    eval_every=500, eval_samples=500, save_every=500),
        "rl": dict(tasks_per_step=32, group_size=8, ppo_epochs=2, minibatches=1, lr=5e-5, max_steps=200, step_tokens=256,
                   eval_every=25, eval_tasks=500, save_every=25),
        "eval": dict(max_tasks=None),
    },
}


def get_preset(name):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def default_preset():
    """gpu where CUDA is available, else cpu (the README's main job follows this)."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def parse_args_with_preset(parser, argv, sections):
    """Parse `argv` with the preset's numbers as the parser's defaults: PRESETS is the one home of a
    setting, a flag overrides it, `--help` shows the value the run will use, and a script reads
    every setting from args. --preset (and --data, which picks train_sft.py's section) are read
    first; sections(preset_name, data) names the preset sections that feed this parser."""
    early = ArgumentParser(add_help=False)
    early.add_argument("--preset", default=default_preset())
    early.add_argument("--data")
    known, _ = early.parse_known_args(argv)
    if known.preset in PRESETS:  # else the parser's choices reject it, in its own words
        actions = {a.dest: a for a in parser._actions}
        for section in sections(known.preset, known.data):
            for key, value in PRESETS[known.preset][section].items():
                if key in actions:
                    actions[key].default = value
                    actions[key].help = (actions[key].help or "") + " (preset: %(default)s)"
    for a in parser._actions:  # the other defaults, in --help too
        shown = a.default not in (None, False, argparse.SUPPRESS) and "default" not in (a.help or "")
        if a.option_strings and shown:
            a.help = (a.help or "") + " (default: %(default)s)"
    args = parser.parse_args(argv)
    args.preset = args.preset or known.preset
    return args


def add_threads_flag(parser):
    """--threads for every script: default $THREADS when set, else one thread per idle core.

    Why not simply torch's default (one thread per core)? On an idle machine it is the faster one
    (2 cores: bench.py's cpu-preset training step 0.65 s with 2 threads, 1.05 s with 1; run.sh on
    the micro preset 79-86 s against 101 s). On a machine that other jobs are using it is a trap:
    threads that wait for each other on shared cores are far slower than one thread (with a second
    job running: the same training step 8.2 s with 2 threads, 1.1 s with 1; run.sh micro 654 s
    against 74 s). So when neither --threads nor $THREADS is given, set_threads() counts the idle
    cores at start-up (idle_cores) and uses that many, at least 1, at most torch's default."""
    env = os.environ.get("THREADS", "")
    if env and not (env.isdigit() and int(env) > 0):
        raise SystemExit(f"error: THREADS={env!r} must be a positive integer (or unset)")
    default = int(env) if env else None
    now = f"$THREADS = {default}" if default else "$THREADS is unset"
    parser.add_argument("--threads", type=int, default=default,
                        help=f"CPU threads for torch and the tokenizer (default: $THREADS if set, else one per "
                             f"core that is idle at start-up, at most {torch.get_num_threads()} here; now {now})")


def _cpu_times():
    """(idle, total) jiffies of all cores together, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def idle_cores(window=0.2):
    """How many cores sat idle over the next `window` seconds (a float), or None where unknown."""
    a = _cpu_times()
    time.sleep(window)
    b = _cpu_times()
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)


def set_threads(n):
    """Apply --threads. None: one thread per idle core (at least 1, at most torch's default), unless
    $OMP_NUM_THREADS already decided. Also caps the thread pool of the Rust tokenizers library,
    which reads RAYON_NUM_THREADS when it first runs. -> the number of threads in use."""
    if n is None:
        if "OMP_NUM_THREADS" in os.environ or torch.get_num_threads() == 1:
            return torch.get_num_threads()
        idle = idle_cores()
        if idle is None:
            return torch.get_num_threads()
        n = max(1, min(torch.get_num_threads(), round(idle)))
    if n < 1:
        raise SystemExit(f"error: --threads must be at least 1 (got {n})")
    torch.set_num_threads(n)
    os.environ["RAYON_NUM_THREADS"] = str(n)
    return n


# ----------------------------------------------------------------------------
# Device and precision

def get_device(name="auto"):
    """cuda > mps > cpu, unless a device is named explicitly (a name torch does not know: one line)."""
    if name != "auto":
        try:
            return torch.device(name)
        except RuntimeError as e:
            raise SystemExit(f"error: --device {name}: {e}") from None
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device):
    """bf16 autocast on CUDA only. On CPU, bf16 matmul is ~500x slower than fp32 here, so fp32."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------
# torch.distributed: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK

def init_distributed(device_name="auto"):
    """Returns (rank, world_size, device). Single process when not launched by torchrun.

    Under torchrun each rank takes the GPU of its LOCAL_RANK and talks NCCL; with --device cpu (or
    no GPU) the ranks talk gloo, which is how the tests run two ranks on a machine with one GPU."""
    device = get_device(device_name)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, device
    if device.type == "cuda":
        local_rank, n_gpus = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
        if local_rank >= n_gpus:
            raise SystemExit(f"error: torchrun started local rank {local_rank} but this machine has {n_gpus} "
                             f"GPU(s): one rank per GPU (--nproc_per_node={n_gpus}), or --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def is_rank0():
    return not dist.is_initialized() or dist.get_rank() == 0


def cleanup_distributed():
    if dist.is_initialized():
        dist.destroy_process_group()


def begin_run(args, split_flag):
    """How both training scripts open: threads, ranks (torchrun), then the run folder --out, refused
    if it holds checkpoints unless --resume or --overwrite says what to do with them; the other
    ranks wait until rank 0 has prepared it. split_flag names the flag whose global count is split
    across ranks. -> (rank, world, device)"""
    set_threads(args.threads)
    rank, world, device = init_distributed(args.device)
    n = getattr(args, split_flag)
    if n % world:
        raise SystemExit(f"error: --{split_flag.replace('_', '-')} {n} must be divisible by the {world} ranks")
    prepare_run_dir(args.out, args.resume, args.overwrite, remove=rank == 0)
    if world > 1:
        dist.barrier()
    return rank, world, device


def resume_step(args, model, optimizer, rank):
    """The step a training run starts from: 0, or with --resume the step of the newest intact
    checkpoint in --out, loaded into model and optimizer (checkpoint.resume_training). None when
    that run is already at --max-steps: nothing to train, its checkpoints are left as they are.
    Otherwise log.jsonl is cut back to its rows when that step began: the resumed run logs the rest
    again, so its log equals an uninterrupted run's (a checkpoint older than this leaves the log be)."""
    if not args.resume:
        return 0
    step, log_rows = resume_training(args.out, model, optimizer, log=log0, set_aside=rank == 0)
    if step >= args.max_steps:
        log0(f"{args.out} is at step {step}, at or past --max-steps {args.max_steps}: nothing to train "
             f"(its checkpoints are left as they are)")
        return None
    log_path = os.path.join(args.out, "log.jsonl")
    if rank == 0 and log_rows is not None and os.path.exists(log_path):
        keep_lines(log_path, log_rows)
    return step


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM during training asks the loop to stop at the next step boundary,
    where weights, optimizer and RNG are consistent, so the loop can save a checkpoint there and
    --resume continues exactly. A second signal stops at once (KeyboardInterrupt), saving nothing.

        with StopOnSignal() as stop:
            while ...:
                stop.save_and_exit_if_requested(save, step)   # every rank, at the same point
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.flag, self.old = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread only
            self.old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)

    def _handler(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        # os.write, not print: print inside a handler can land in the middle of another print
        os.write(2, f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then stopping "
                    f"(again to stop now, without saving)\n".encode())

    def requested(self):
        """True on every rank when any rank got a signal (an all-reduce under torchrun)."""
        if not dist.is_initialized():
            return self.flag
        flag = torch.tensor([float(self.flag)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def save_and_exit_if_requested(self, save, step):
        """At a step boundary: if a signal came, save() (-> the path of the weights) and exit 130."""
        if self.requested():
            path = save()
            log0(f"interrupted at step {step}: saved {path}; continue with --resume")
            cleanup_distributed()
            sys.exit(130)


def run_cli(main):
    """Run a script's main() so that a bad input (a missing or malformed file, a corrupt or
    mismatched checkpoint, a full disk) ends in one line `error: ...` and exit status 1, and Ctrl-C
    outside the training loop in `interrupted` and 130, instead of a traceback. Other exceptions
    (bugs) keep their traceback."""
    try:
        main()
    except (CheckpointError, OSError, ValueError) as e:
        cleanup_distributed()
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        cleanup_distributed()
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def log0(*args, **kwargs):
    """print on rank 0 only, flushed (log lines are read by people tailing a file)."""
    if is_rank0():
        print(*args, **kwargs, flush=True)


class JsonlLogger:
    """Appends one JSON object per call to a file (rank 0 only); handy for plots. rows counts the
    file's rows (a checkpoint records it: resume cuts the log back to the rows of the saved step)."""

    def __init__(self, path):
        self.path = path
        self.rows = read_text(path).count("\n") if os.path.exists(path) else 0

    def log(self, **record):
        if not is_rank0():
            return
        record.setdefault("time", time.time())
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.rows += 1
