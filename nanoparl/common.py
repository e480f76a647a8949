"""Shared plumbing: presets, device and dtype, seeding, torch.distributed, logging.

Every script picks a preset with `--preset micro|cpu|gpu`; PRESETS below is the one place
where their numbers live. Individual command-line flags override single entries.
"""

import contextlib
import json
import os
import random
import time

import numpy as np
import torch
import torch.distributed as dist

# ----------------------------------------------------------------------------
# Presets: one dict per preset, one section per stage. Later stages add their sections here.

PRESETS = {
    # micro: tests; every stage runs in seconds on a laptop core
    "micro": {
        "model": dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, intermediate_size=192,
                      block_size=2048, rope_theta=10000.0, qk_norm=True),
        "tokenizer": dict(vocab_size=512),
        "pag": dict(augment=0.5, mask_p=0.1, functions="signatures", rename=True),
        # data: task generation (nanoparl/tasks.py); long_output_chars caps a long_context task's tool output
        "data": dict(n_train=200, n_val=40, n_test=40, n_base=40, max_turns=4, long_output_chars=1500,
                     classes=["GorillaFileSystem", "TicketAPI", "TradingBot", "TravelAPI", "MessageAPI", "MathAPI"],
                     categories=["base", "miss_param", "miss_func", "long_context"]),
        "base": dict(batch_size=8, lr=3e-3, muon_lr=0.02, max_steps=20, warmup_steps=5, cooldown_frac=0.3,
                     eval_every=10, eval_samples=32, save_every=10),
        "sft": dict(batch_size=8, lr=3e-3, muon_lr=0.02, max_steps=60, warmup_steps=10, cooldown_frac=0.3,
                    eval_every=30, eval_samples=32, save_every=30),
        "rl": dict(tasks_per_step=4, group_size=4, ppo_epochs=1, lr=3e-4, max_steps=6, step_tokens=96,
                   eval_every=3, eval_tasks=8, save_every=3),
        "eval": dict(max_tasks=None, step_tokens=96),
    },
    # cpu: the whole main job on 2 CPU cores (~1M parameters; README, "Teaching a tiny model to copy")
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
        # circuit appears (README, "Teaching a tiny model to copy")
        "sft": dict(batch_size=32, lr=2e-3, muon_lr=0.02, max_steps=1300, warmup_steps=100, cooldown_frac=0.3,
                    eval_every=100, eval_samples=200, save_every=100),
        # base: the stage exists (train_sft.py --data base) but run.sh skips it at max_steps=0: at equal
        # wall time, SFT alone copies sooner on 2 cores (README, "Teaching a tiny model to copy")
        "base": dict(batch_size=32, lr=2e-3, muon_lr=0.02, max_steps=0, warmup_steps=100, cooldown_frac=0.3,
                     eval_every=250, eval_samples=200, save_every=50),
        "rl": dict(tasks_per_step=8, group_size=8, ppo_epochs=2, lr=1e-4, max_steps=15, step_tokens=160,
                   eval_every=15, eval_tasks=100, save_every=5),
        # the first 200 test tasks (50 per category: tasks cycle through the categories)
        "eval": dict(max_tasks=200, step_tokens=160),
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
        # base then SFT, as in the paper (a pretrained base) and nanochat (base_train -> sft)
        "base": dict(batch_size=64, lr=1e-3, muon_lr=0.02, max_steps=2000, warmup_steps=100, cooldown_frac=0.3,
                     eval_every=500, eval_samples=500, save_every=500),
        "sft": dict(batch_size=64, lr=1e-3, muon_lr=0.02, max_steps=3000, warmup_steps=100, cooldown_frac=0.3,
                    eval_every=500, eval_samples=500, save_every=500),
        "rl": dict(tasks_per_step=32, group_size=8, ppo_epochs=2, lr=5e-5, max_steps=200, step_tokens=256,
                   eval_every=25, eval_tasks=500, save_every=25),
        "eval": dict(max_tasks=None, step_tokens=256),
    },
}


def get_preset(name):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def default_preset():
    """gpu where CUDA is available, else cpu (the README's main job follows this)."""
    return "gpu" if torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------
# Device and precision

def get_device(name="auto"):
    """cuda > mps > cpu, unless a device is named explicitly."""
    if name != "auto":
        return torch.device(name)
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

def init_distributed():
    """Returns (rank, world_size, device). Single process when not launched by torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, get_device()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), get_device()


def is_rank0():
    return not dist.is_initialized() or dist.get_rank() == 0


def cleanup_distributed():
    if dist.is_initialized():
        dist.destroy_process_group()


def log0(*args, **kwargs):
    """print on rank 0 only, flushed (log lines are read by people tailing a file)."""
    if is_rank0():
        print(*args, **kwargs, flush=True)


class JsonlLogger:
    """Appends one JSON object per call to a file (rank 0 only); handy for plots."""

    def __init__(self, path):
        self.path = path

    def log(self, **record):
        if not is_rank0():
            return
        record.setdefault("time", time.time())
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
