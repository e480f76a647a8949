"""Checkpoints: bitwise round trip, clear errors naming the file, atomic writes, HF export."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from nanoparl.checkpoint import (CheckpointError, export_hf, list_steps, load_checkpoint,
                                 load_train_state, save_checkpoint)
from nanoparl.model import GPT, GPTConfig
from nanoparl.tokenizer import Tokenizer

CFG = dict(vocab_size=300, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=64,
           block_size=64)


def make(tie=False, qk_norm=False):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG, tie_embeddings=tie, qk_norm=qk_norm))
    if qk_norm:  # non-trivial norm gains, so that a dropped or misnamed q_norm/k_norm shows
        for name, p in model.named_parameters():
            if "_norm." in name:
                torch.nn.init.uniform_(p, 0.5, 1.5)
    return model


@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_is_bitwise(tmp_path, tie):
    model = make(tie)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 4, dtype=torch.long), targets=torch.zeros(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    rng = torch.get_rng_state()
    save_checkpoint(str(tmp_path), 7, model, meta={"note": "x"},
                    train_state={"optimizer": opt.state_dict(), "rng": rng})
    loaded, meta = load_checkpoint(str(tmp_path))
    assert meta["step"] == 7 and meta["note"] == "x" and meta["config"]["tie_embeddings"] == tie
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    state = load_train_state(str(tmp_path), 7)
    assert torch.equal(state["rng"], rng)
    assert state["optimizer"]["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_newest_step_and_keep_last(tmp_path):
    model = make()
    for step in (1, 2, 3):
        save_checkpoint(str(tmp_path), step, model, keep_last=2)
    assert list_steps(str(tmp_path)) == [2, 3]
    assert load_checkpoint(str(tmp_path))[1]["step"] == 3
    assert load_checkpoint(str(tmp_path / "model_2.safetensors"))[1]["step"] == 2
    # weights written but meta missing (killed mid-save): that step does not count
    os.remove(tmp_path / "meta_3.json")
    assert load_checkpoint(str(tmp_path))[1]["step"] == 2


def test_clear_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(str(tmp_path))
    save_checkpoint(str(tmp_path), 1, make())
    weights = tmp_path / "model_1.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="model_1.safetensors"):
        load_checkpoint(str(tmp_path))
    weights.unlink()  # missing
    with pytest.raises(CheckpointError, match="model_1.safetensors: missing"):
        load_checkpoint(str(tmp_path))
    (tmp_path / "meta_1.json").write_text("{trunc")
    with pytest.raises(CheckpointError, match="meta_1.json"):
        load_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match="train_1.pt"):
        load_train_state(str(tmp_path), 1)


def test_mismatched_config_is_a_clear_error(tmp_path):
    save_checkpoint(str(tmp_path), 1, make())
    meta = json.loads((tmp_path / "meta_1.json").read_text())
    meta["config"]["n_embd"] = 64
    (tmp_path / "meta_1.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(str(tmp_path))


def hf_export(tmp_path, tie, qk_norm=False):
    tok = Tokenizer.train(["hello world 123 [f(a=1)]"] * 20, vocab_size=300)
    tok.save(str(tmp_path / "tokenizer.json"))
    model = make(tie, qk_norm)
    save_checkpoint(str(tmp_path / "run"), 5, model, meta={"tokenizer": str(tmp_path / "tokenizer.json")})
    out = export_hf(str(tmp_path / "run"), str(tmp_path / "hf"))
    return model, out


@pytest.mark.parametrize("tie", [False, True])
def test_export_hf_names_and_shapes(tmp_path, tie):
    model, out = hf_export(tmp_path, tie)
    tensors = load_file(os.path.join(out, "model.safetensors"))
    c = model.config
    kv = c.n_kv_head * c.head_dim
    want = {"model.embed_tokens.weight": (c.vocab_size, c.n_embd), "model.norm.weight": (c.n_embd,)}
    if not tie:
        want["lm_head.weight"] = (c.vocab_size, c.n_embd)
    for i in range(c.n_layer):
        p = f"model.layers.{i}."
        want.update({
            p + "self_attn.q_proj.weight": (c.n_embd, c.n_embd),
            p + "self_attn.k_proj.weight": (kv, c.n_embd),
            p + "self_attn.v_proj.weight": (kv, c.n_embd),
            p + "self_attn.o_proj.weight": (c.n_embd, c.n_embd),
            p + "mlp.gate_proj.weight": (c.intermediate_size, c.n_embd),
            p + "mlp.up_proj.weight": (c.intermediate_size, c.n_embd),
            p + "mlp.down_proj.weight": (c.n_embd, c.intermediate_size),
            p + "input_layernorm.weight": (c.n_embd,),
            p + "post_attention_layernorm.weight": (c.n_embd,),
        })
    assert {k: tuple(v.shape) for k, v in tensors.items()} == want
    config = json.loads(open(os.path.join(out, "config.json")).read())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_key_value_heads"] == 2
    assert os.path.exists(os.path.join(out, "tokenizer.json"))


def test_export_hf_qk_norm_is_qwen3(tmp_path):
    model, out = hf_export(tmp_path, False, qk_norm=True)
    tensors = load_file(os.path.join(out, "model.safetensors"))
    hd = model.config.head_dim
    for i in range(model.config.n_layer):
        for name in ("q_norm", "k_norm"):
            key = f"model.layers.{i}.self_attn.{name}.weight"
            assert tuple(tensors[key].shape) == (hd,)
            assert torch.equal(tensors[key], getattr(model.layers[i].self_attn, name).weight.detach())
    config = json.loads(open(os.path.join(out, "config.json")).read())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["model_type"] == "qwen3"


@pytest.mark.parametrize("tie,qk_norm", [(False, False), (True, False), (False, True)])
def test_export_hf_logits_match_transformers(tmp_path, tie, qk_norm):
    transformers = pytest.importorskip("transformers")
    model, out = hf_export(tmp_path, tie, qk_norm)
    arch = transformers.Qwen3ForCausalLM if qk_norm else transformers.LlamaForCausalLM
    hf = arch.from_pretrained(out, torch_dtype=torch.float32).eval()
    idx = torch.randint(0, 300, (2, 17))
    with torch.no_grad():
        ours = model.eval()(idx)
        theirs = hf(idx).logits
    assert (ours - theirs).abs().max() < 1e-4
