"""How much GPU memory a preset needs: weights, gradients, optimizer state, activations and the
rollout KV cache, from the preset's shapes and activation bytes per token measured on a CPU forward.
bench.py prints it (`python bench.py --preset gpu --only memory`); no GPU is needed to compute it."""

import torch

from nanoparl.common import get_preset
from nanoparl.model import GPT, GPTConfig


def saved_activation_bytes(model, T):
    """Bytes autograd keeps for backward per token, measured: one (1, T) forward with a hook on
    every tensor saved for backward (each storage counted once), fp32 as on CPU. Under CUDA's bf16
    autocast the matmul inputs are saved in bf16, so this is an upper bound there."""
    seen = {}

    def pack(t):
        if t.device.type != "meta":
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    idx = torch.randint(0, model.config.vocab_size, (1, T))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(idx, targets=idx)[1]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    del loss
    return sum(n for ptr, n in seen.items() if ptr not in params) / T


def memory_estimate(preset, seq_len=None):
    """Peak GPU memory of a preset's SFT step and RL step, in bytes, from shapes plus the measured
    activation bytes per token. -> dict of named parts, and their sums under 'sft' and 'rl'.

    SFT: fp32 weights + grads + optimizer state (Muon: 1 buffer for block matrices, AdamW: 2
    elsewhere) + activations of one micro-batch (micro_batch_size samples; gradients accumulate over
    the batch) of seq_len tokens each (default block_size: the worst case).
    RL: weights + grads + AdamW state + the larger of the rollout (bf16 KV cache for tasks_per_step x
    group_size rows of block_size tokens, plus one prefill chunk of logits) and the update (a
    micro-batch of 16 sequences of block_size tokens). No reference model (--kl 0, the default)."""
    p = get_preset(preset)
    config = GPTConfig(vocab_size=p["tokenizer"]["vocab_size"], **p["model"])
    model = GPT(config)
    T = seq_len or config.block_size
    n_params = sum(x.numel() for x in model.parameters())
    muon = sum(x.numel() for n, x in model.named_parameters() if n.startswith("layers.") and x.dim() == 2)
    act = saved_activation_bytes(model, min(T, 256))  # per token; attention's share grows little with T
    sft, rl = p["sft"], p["rl"]
    rows = rl["tasks_per_step"] * rl["group_size"]
    kv = 2 * config.n_layer * rows * config.block_size * config.n_kv_head * config.head_dim * 2
    prefill_logits = rows * 512 * config.vocab_size * 4  # Engine's prefill_chunk of fp32 logits
    parts = {
        "params": n_params,
        "weights": 4 * n_params,
        "grads": 4 * n_params,
        "sft_optimizer": 4 * muon + 8 * (n_params - muon) if sft.get("muon_lr") else 8 * n_params,
        "activation_bytes_per_token": act,
        "sft_activations": act * min(sft["batch_size"], sft["micro_batch_size"]) * T,
        "rl_optimizer": 8 * n_params,
        "rl_kv_cache": kv,
        "rl_rollout": kv + prefill_logits,
        "rl_update_activations": act * 16 * config.block_size,
    }
    parts["sft"] = parts["weights"] + parts["grads"] + parts["sft_optimizer"] + parts["sft_activations"]
    parts["rl"] = (parts["weights"] + parts["grads"] + parts["rl_optimizer"]
                   + max(parts["rl_rollout"], parts["rl_update_activations"]))
    return parts


def memory_report(preset, seq_lens=(None,)):
    """memory_estimate as printable lines: SFT at each sequence length (None: block_size), then RL,
    each against 24 GB."""
    gib, p, lines = 2 ** 30, get_preset(preset), []
    for T in seq_lens:
        m = memory_estimate(preset, T)
        label = f"{T} tokens" if T else f"block_size {p['model']['block_size']}"
        lines.append(f"memory[{preset}] {m['params'] / 1e6:.1f}M params, activations "
                     f"{m['activation_bytes_per_token'] / 1024:.0f} KiB/token (fp32, measured), SFT micro-batch "
                     f"{min(p['sft']['batch_size'], p['sft']['micro_batch_size'])} x {label}:")
        lines.append(f"  SFT: weights {m['weights'] / gib:.2f} + grads {m['grads'] / gib:.2f} + optimizer "
                     f"{m['sft_optimizer'] / gib:.2f} + activations {m['sft_activations'] / gib:.2f} = "
                     f"{m['sft'] / gib:.1f} GiB -> {'fits' if m['sft'] < 24 * gib else 'does NOT fit'} in 24 GB")
    lines.append(f"  RL: weights + grads + AdamW {(m['weights'] + m['grads'] + m['rl_optimizer']) / gib:.2f} + "
                 f"max(rollout {m['rl_rollout'] / gib:.2f} [KV cache {m['rl_kv_cache'] / gib:.2f}], update "
                 f"{m['rl_update_activations'] / gib:.2f}) = {m['rl'] / gib:.1f} GiB -> "
                 f"{'fits' if m['rl'] < 24 * gib else 'does NOT fit'} in 24 GB")
    return lines
