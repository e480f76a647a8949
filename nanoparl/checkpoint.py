"""Checkpoints: safetensors weights + JSON metadata, written atomically; export to Hugging Face.

A run directory holds, per saved step:
    model_<step>.safetensors   the weights (GPT.state_dict(), HF-like names)
    train_<step>.pt            optimizer + RNG + data-loader state, only for resumable training runs
    meta_<step>.json           config, step, tokenizer path, metrics -- written LAST

Every file goes to a temp name first and is renamed into place (os.replace is atomic), and the meta
file is the commit marker: a step whose meta file exists is complete. A run killed mid-save leaves
at worst a stray *.tmp file and the previous checkpoint intact.
"""

import glob
import json
import os
import re
import shutil

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from nanoparl.model import GPT, GPTConfig


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or does not match its config. Names the file."""


def _atomic(path, write):
    tmp = f"{path}.tmp"
    write(tmp)
    with open(tmp, "rb+") as f:  # make the bytes durable before the rename makes them visible
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path, obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
    _atomic(path, write)


def save_checkpoint(run_dir, step, model, meta=None, train_state=None, keep_last=None):
    """Write model_<step>.safetensors (+ train_<step>.pt) + meta_<step>.json atomically.

    meta: JSON-serialisable extras (tokenizer path, metrics, args); config and step are added.
    train_state: any torch-serialisable dict (optimizer state, RNG states, data position).
    keep_last: delete all but the newest keep_last checkpoints after writing.
    """
    os.makedirs(run_dir, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DDP
    # tied weights share storage; safetensors refuses shared tensors, so store each tensor once
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        tensors.pop("lm_head.weight", None)
    _atomic(os.path.join(run_dir, f"model_{step}.safetensors"), lambda tmp: save_file(tensors, tmp))
    if train_state is not None:
        _atomic(os.path.join(run_dir, f"train_{step}.pt"), lambda tmp: torch.save(train_state, tmp))
    full_meta = dict(meta or {}, step=step, config=model.config.to_dict())
    _write_json(os.path.join(run_dir, f"meta_{step}.json"), full_meta)
    if keep_last:
        for old in list_steps(run_dir)[:-keep_last]:
            for name in (f"meta_{old}.json", f"model_{old}.safetensors", f"train_{old}.pt"):
                path = os.path.join(run_dir, name)
                if os.path.exists(path):
                    os.remove(path)


def list_steps(run_dir):
    """Steps with a complete checkpoint (meta file present), ascending."""
    steps = []
    for path in glob.glob(os.path.join(run_dir, "meta_*.json")):
        m = re.fullmatch(r"meta_(\d+)\.json", os.path.basename(path))
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def resolve(path, step=None):
    """A run directory (newest step, or `step`) or a model_<step>.safetensors file -> (run_dir, step)."""
    if os.path.isdir(path):
        steps = list_steps(path)
        if not steps:
            raise CheckpointError(f"no checkpoint (meta_<step>.json) in {path}")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {path} (have {steps})")
        return path, step
    m = re.fullmatch(r"model_(\d+)\.safetensors", os.path.basename(path))
    if not m:
        raise CheckpointError(f"{path}: not a run directory or a model_<step>.safetensors file")
    return os.path.dirname(path) or ".", int(m.group(1))


def load_meta(run_dir, step):
    path = os.path.join(run_dir, f"meta_{step}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing checkpoint metadata") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: corrupt JSON ({e})") from None


def load_checkpoint(path, step=None, device="cpu"):
    """-> (model, meta). path: a run directory (newest complete step) or a model_<step> file."""
    run_dir, step = resolve(path, step)
    meta = load_meta(run_dir, step)
    try:
        config = GPTConfig(**meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{os.path.join(run_dir, f'meta_{step}.json')}: bad config ({e})") from None
    weights = os.path.join(run_dir, f"model_{step}.safetensors")
    if not os.path.exists(weights):
        raise CheckpointError(f"{weights}: missing weights file")
    try:
        state = load_file(weights)
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{weights}: unreadable or truncated ({e})") from None
    model = GPT(config)
    if config.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    expected = {k: v.shape for k, v in model.state_dict().items()}
    got = {k: v.shape for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))[:3]
        extra = sorted(set(got) - set(expected))[:3]
        wrong = [k for k in expected if k in got and expected[k] != got[k]][:3]
        raise CheckpointError(f"{weights}: does not match its config (missing {missing}, "
                              f"unexpected {extra}, wrong shape {wrong})")
    model.load_state_dict(state)
    return model.to(device), meta


def training_state(optimizer, step):
    """What a training run needs to continue exactly: optimizer, RNG states, step."""
    return {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(), "step": step}


def resume_training(run_dir, model, optimizer):
    """Load the newest checkpoint of run_dir into model and optimizer and restore the RNG states.
    -> the step to continue from (0 when run_dir holds no checkpoint yet)."""
    steps = list_steps(run_dir) if os.path.isdir(run_dir) else []
    if not steps:
        return 0
    model.load_state_dict(load_checkpoint(run_dir, steps[-1])[0].state_dict())
    state = load_train_state(run_dir, steps[-1])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    return state["step"]


def load_train_state(run_dir, step):
    path = os.path.join(run_dir, f"train_{step}.pt")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing training state (was it saved by a training run?)") from None
    except Exception as e:  # pickle/zip errors have many types
        raise CheckpointError(f"{path}: unreadable or truncated ({e})") from None


# ----------------------------------------------------------------------------
# Hugging Face export

def export_hf(ckpt_path, out_dir):
    """Write a transformers model directory: config.json, model.safetensors, tokenizer.json.

    LlamaForCausalLM, or Qwen3ForCausalLM for a model with qk_norm (Qwen3 is Llama plus an RMSNorm
    on each head's q and k before rotary, named self_attn.q_norm / k_norm, exactly as ours).
    Our module names already match HF's inside `model.` (lm_head is top level), and rotary
    embeddings use HF's rotate-half convention, so the weights are copied without any permutation.
    """
    model, meta = load_checkpoint(ckpt_path)
    c = model.config
    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            if not c.tie_embeddings:
                tensors[name] = t.contiguous()
        else:
            tensors[f"model.{name}"] = t.contiguous()
    _atomic(os.path.join(out_dir, "model.safetensors"),
            lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    tok_path = meta.get("tokenizer")
    bos = eos = None
    if tok_path and os.path.exists(tok_path):
        shutil.copyfile(tok_path, os.path.join(out_dir, "tokenizer.json"))
        with open(tok_path) as f:
            added = {t["content"]: t["id"] for t in json.load(f).get("added_tokens", [])}
        bos, eos = added.get("<|bos|>"), added.get("<|end|>")
    hf_config = {
        "architectures": ["Qwen3ForCausalLM" if c.qk_norm else "LlamaForCausalLM"],
        "model_type": "qwen3" if c.qk_norm else "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_kv_head,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.block_size,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": c.tie_embeddings,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    }
    if c.qk_norm:  # Qwen3 options that Llama lacks: full attention in every layer, no sliding window
        hf_config.update(use_sliding_window=False, sliding_window=None, max_window_layers=c.n_layer)
    _write_json(os.path.join(out_dir, "config.json"), hf_config)
    return out_dir
