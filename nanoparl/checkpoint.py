"""Checkpoints: safetensors weights + JSON metadata, written atomically; export to Hugging Face.

A run directory holds, per saved step:
    model_<step>.safetensors   the weights (GPT.state_dict(), HF-like names)
    train_<step>.pt            optimizer + RNG + data-loader state, only for resumable training runs
    meta_<step>.json           config, step, tokenizer, metrics -- written LAST
and once per run:
    tokenizer.json             a copy of the data's tokenizer, so that the run folder stands alone
                               (move the data or the clone and the checkpoints still load)

Every file is serialised in memory, written to a temp name and renamed into place (os.replace is
atomic), and the meta file is the commit marker: a step whose meta file exists is complete. A run
killed mid-save leaves the previous checkpoint intact; a failed write (disk full) removes its temp
file and raises a CheckpointError that names the file and the OS reason.

    python -m nanoparl.checkpoint export out/cpu/parl_mt hf/parl_mt   # -> a transformers folder
"""

import glob
import io
import json
import os
import re
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save as safetensors_bytes

from nanoparl.cli import ArgumentParser
from nanoparl.files import read_text, write_file
from nanoparl.model import GPT, GPTConfig


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, non-finite or does not match its config; a checkpoint
    file that cannot be written. The message names the file."""


# ----------------------------------------------------------------------------
# Atomic writes

def _atomic(path, data):
    """Write bytes to path atomically (files.write_file). Serialising in memory first (not by
    torch.save or safetensors writing the file themselves) means a full disk surfaces here as the
    OS's own error (ENOSPC, "No space left on device"), not as a library's "unexpected pos"."""
    try:
        write_file(path, data)
    except OSError as e:
        raise CheckpointError(str(e)) from e


def _json_bytes(obj):
    return json.dumps(obj, indent=2).encode()


def _torch_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def copy_tokenizer(run_dir, src, replace=False):
    """Copy the tokenizer file src into run_dir/tokenizer.json (atomically, once): a run folder
    carries its own tokenizer, so moving the data folder or the clone breaks nothing. A run folder
    whose copy differs was trained with another tokenizer: an error, unless replace (an export)."""
    dst = os.path.join(run_dir, "tokenizer.json")
    if os.path.abspath(src) == os.path.abspath(dst):
        return dst
    try:
        with open(src, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read the tokenizer {src}: {e.strerror or e}") from e
    if os.path.exists(dst) and not replace:
        with open(dst, "rb") as f:
            if f.read() != data:
                raise CheckpointError(f"{dst} differs from {src}: the run in {run_dir} was trained with another "
                                      f"tokenizer (use the data folder it was trained on, or --overwrite)")
        return dst
    _atomic(dst, data)
    return dst


def save_checkpoint(run_dir, step, model, meta=None, train_state=None, keep_last=None):
    """Write model_<step>.safetensors (+ train_<step>.pt) + meta_<step>.json atomically.

    meta: JSON-serialisable extras (metrics, args); config and step are added. A "tokenizer" entry
    (a path) is copied into run_dir/tokenizer.json, and the meta then says "tokenizer.json":
    relative to the run folder.
    train_state: any torch-serialisable dict (optimizer state, RNG states, data position).
    keep_last: delete all but the newest keep_last checkpoints after writing (0 or None: keep all).
    """
    os.makedirs(run_dir, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DDP
    full_meta = dict(meta or {}, step=step, config=model.config.to_dict())
    if full_meta.get("tokenizer"):
        copy_tokenizer(run_dir, full_meta["tokenizer"])
        full_meta["tokenizer"] = "tokenizer.json"
    # tied weights share storage; safetensors refuses shared tensors, so store each tensor once
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        tensors.pop("lm_head.weight", None)
    files = [(f"model_{step}.safetensors", lambda: safetensors_bytes(tensors))]
    if train_state is not None:
        files.append((f"train_{step}.pt", lambda: _torch_bytes(train_state)))
    files.append((f"meta_{step}.json", lambda: _json_bytes(full_meta)))  # last: the commit marker
    created = []
    try:
        for name, data in files:
            path = os.path.join(run_dir, name)
            if not os.path.exists(path):
                created.append(path)
            _atomic(path, data())
    except BaseException:  # a full disk half-way: remove what this call added, keep what was there
        for path in created:
            if os.path.exists(path):
                os.remove(path)
        raise
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
        meta = json.loads(read_text(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing checkpoint metadata") from None
    except ValueError as e:  # not JSON, or not even text
        raise CheckpointError(f"{path}: corrupt JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: corrupt (not a JSON object)")
    return meta


def tokenizer_path(run_dir, meta, meta_path):
    """Where a checkpoint's tokenizer is now: the copy in its run folder, else (checkpoints written
    before runs carried a copy) the absolute path stored in the meta, if it still exists."""
    stored = meta["tokenizer"]
    own = os.path.join(run_dir, "tokenizer.json")
    if os.path.exists(own):
        return os.path.abspath(own)
    if os.path.isabs(stored) and os.path.exists(stored):
        return stored
    raise CheckpointError(f"{meta_path}: its tokenizer is not in the run folder ({own}) nor at {stored}; "
                          f"copy the tokenizer.json of the data folder it was trained on into {run_dir}")


def load_checkpoint(path, step=None, device="cpu"):
    """-> (model, meta). path: a run directory (newest complete step) or a model_<step> file.
    meta["tokenizer"], when present, is returned as a path that exists now (tokenizer_path)."""
    run_dir, step = resolve(path, step)
    meta = load_meta(run_dir, step)
    meta_path = os.path.join(run_dir, f"meta_{step}.json")
    try:
        config = GPTConfig(**meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_path}: bad config ({e})") from None
    if meta.get("tokenizer"):
        meta["tokenizer"] = tokenizer_path(run_dir, meta, meta_path)
    weights = os.path.join(run_dir, f"model_{step}.safetensors")
    if not os.path.exists(weights):
        raise CheckpointError(f"{weights}: missing weights file")
    try:
        state = load_file(weights)
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{weights}: unreadable or truncated ({e})") from None
    for name, t in state.items():  # NaN weights would load and evaluate as a silent 0% row
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{weights}: tensor {name} holds non-finite values (NaN or inf)")
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


# ----------------------------------------------------------------------------
# Training runs: the run folder, resume

RUN_FILES = re.compile(r"(meta_\d+\.json(\.corrupt)?|model_\d+\.safetensors|train_\d+\.pt|.*\.tmp|"
                       r"tokenizer\.json|log\.jsonl|episodes_\d+\.txt)")


def prepare_run_dir(run_dir, resume=False, overwrite=False, remove=True):
    """Create run_dir; refuse one that holds checkpoints unless --resume or --overwrite says what to
    do with them. Otherwise a new run's checkpoints would be ranked against the old ones by step,
    keep_last would delete the new ones, and eval / --init would pick up the old weights.
    --overwrite deletes the old run's files (remove=False: only check, for ranks other than 0), and so
    does a folder without checkpoints (the log of a run that saved nothing)."""
    old = [f for f in os.listdir(run_dir) if RUN_FILES.fullmatch(f)] if os.path.isdir(run_dir) else []
    has_checkpoints = any(f.startswith(("meta_", "model_", "train_")) for f in old)
    if has_checkpoints and not resume and not overwrite:
        raise CheckpointError(f"{run_dir} already holds checkpoints (steps {list_steps(run_dir)}): pass --resume "
                              f"to continue that run, or --overwrite to delete them and start over")
    if overwrite or not has_checkpoints:  # no checkpoints: only the log of a run that saved nothing goes
        stale = old if overwrite else [f for f in old if f == "log.jsonl" or f.startswith("episodes_")]
        for f in stale if remove else []:
            os.remove(os.path.join(run_dir, f))
    os.makedirs(run_dir, exist_ok=True)


def training_state(optimizer, step, log_rows=None):
    """What a training run needs to continue exactly: optimizer, RNG states, step, and the rows of
    log.jsonl when this step began (resume cuts the log back to them, as the resumed run redoes the rest)."""
    return {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(), "step": step, "log_rows": log_rows}


def resume_training(run_dir, model, optimizer, log=print, set_aside=True):
    """Load the newest intact checkpoint of run_dir into model and optimizer and restore the RNG
    states. -> (the step to continue from, the rows log.jsonl held when that step began); (0, 0)
    when run_dir holds no checkpoint yet (weights without a meta file cannot be resumed).

    A newest checkpoint that cannot be loaded (truncated, corrupt, non-finite) is skipped for the one
    before it, saying which and why; the skipped meta files are renamed to meta_<step>.json.corrupt
    (set_aside; nothing is deleted) so that eval and keep_last no longer count them. A checkpoint of
    another model config is an error, not corruption: resume with the flags of the run."""
    steps = list_steps(run_dir) if os.path.isdir(run_dir) else []
    if not steps:
        orphans = sorted(os.path.basename(f) for pattern in ("model_*", "train_*")
                         for f in glob.glob(os.path.join(run_dir, pattern)))
        if orphans:  # weights without a meta file: a step that never completed, or a meta file lost
            raise CheckpointError(f"{run_dir} holds {', '.join(orphans[:3])} but no meta_<step>.json (written last, "
                                  f"when a step is complete): nothing to resume; --overwrite to start over")
        return 0, 0
    bad = []
    for step in reversed(steps):
        try:
            meta = load_meta(run_dir, step)
        except CheckpointError as e:
            bad.append((step, e))
            continue
        if not isinstance(meta.get("config"), dict):
            bad.append((step, CheckpointError(f"{run_dir}/meta_{step}.json: no model config in it")))
            continue
        if meta.get("config") != model.config.to_dict():
            raise CheckpointError(f"{run_dir}/meta_{step}.json was saved with another model config "
                                  f"({meta.get('config')}) than this run builds ({model.config.to_dict()}); "
                                  f"resume with the flags of that run")
        try:
            loaded = load_checkpoint(run_dir, step)[0]
            state = load_train_state(run_dir, step)
            break
        except CheckpointError as e:
            bad.append((step, e))
    else:
        raise CheckpointError(f"no intact checkpoint to resume in {run_dir}: " +
                              "; ".join(f"step {s}: {e}" for s, e in bad))
    for s, e in bad:
        log(f"resume: skipping the checkpoint of step {s} ({e})")
        if set_aside and os.path.exists(os.path.join(run_dir, f"meta_{s}.json")):
            os.replace(os.path.join(run_dir, f"meta_{s}.json"), os.path.join(run_dir, f"meta_{s}.json.corrupt"))
    model.load_state_dict(loaded.state_dict())
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{run_dir}/train_{step}.pt: its optimizer state does not fit this run's "
                              f"optimizer ({e}); resume with the flags of that run") from None
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    log(f"resumed from {run_dir} step {state['step']}")
    return state["step"], state.get("log_rows")


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
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CheckpointError(f"cannot export to {out_dir}: it exists and is not a folder")
    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            if not c.tie_embeddings:
                tensors[name] = t.contiguous()
        else:
            tensors[f"model.{name}"] = t.contiguous()
    _atomic(os.path.join(out_dir, "model.safetensors"), safetensors_bytes(tensors, metadata={"format": "pt"}))
    bos = eos = None
    if meta.get("tokenizer"):  # load_checkpoint found it (or raised)
        copy_tokenizer(out_dir, meta["tokenizer"], replace=True)
        tokens = json.loads(read_text(meta["tokenizer"])).get("added_tokens", [])
        added = {t["content"]: t["id"] for t in tokens}
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
    _atomic(os.path.join(out_dir, "config.json"), _json_bytes(hf_config))
    return out_dir


# ----------------------------------------------------------------------------
# Command line

def main(argv=None):
    """python -m nanoparl.checkpoint export CKPT OUT_DIR"""
    p = ArgumentParser(prog="python -m nanoparl.checkpoint", description="Checkpoint tools.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write a Hugging Face transformers folder (LlamaForCausalLM, or "
                                      "Qwen3ForCausalLM with qk_norm): config.json, model.safetensors, tokenizer.json")
    e.add_argument("ckpt", help="a run directory (its newest step) or a model_<step>.safetensors file")
    e.add_argument("out_dir", help="the folder to write (created if needed)")
    e.add_argument("--step", type=int, default=None, help="export this step of a run directory")
    args = p.parse_args(argv)
    try:
        run_dir, step = resolve(args.ckpt, args.step)
        out = export_hf(os.path.join(run_dir, f"model_{step}.safetensors"), args.out_dir)
    except (CheckpointError, OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"exported {run_dir} step {step} to {out}: {', '.join(sorted(os.listdir(out)))}")
    return out


if __name__ == "__main__":
    main()
