"""Every preset has the same sections and keys; the gpu preset's model trains and decodes (on CPU,
a short sequence: what a first GPU run would hit first); the memory estimate (nanoparl/memory.py) matches the
tensors it counts."""

import pytest
import torch

from nanoparl.memory import memory_estimate, saved_activation_bytes
from nanoparl.common import PRESETS
from nanoparl.engine import Engine
from nanoparl.model import GPT, GPTConfig, KVCache
from nanoparl.optim import make_optimizer


def test_presets_have_the_same_sections_and_keys():
    reference = PRESETS["gpu"]
    for name, preset in PRESETS.items():
        assert set(preset) == set(reference), name
        for section in reference:
            if isinstance(reference[section], dict):
                assert set(preset[section]) == set(reference[section]), (name, section)


def test_gpu_preset_model_steps_and_decodes():
    p = PRESETS["gpu"]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=p["tokenizer"]["vocab_size"], **p["model"]))
    opt = make_optimizer(model, p["sft"]["lr"], 0.1, muon_lr=p["sft"]["muon_lr"])
    idx = torch.randint(0, model.config.vocab_size, (2, 24))
    _, loss = model(idx, targets=idx)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(torch.isfinite(x).all() for x in model.parameters())
    model.eval()
    engine = Engine(model, 2, 32)
    engine.append(range(2), idx[:, :8].tolist())
    out, reasons = engine.generate([0, 1], [1, 1], stop_tokens=[0], temperature=0)
    with torch.no_grad():
        want = model(idx[:, :8])[:, -1].argmax(-1).tolist()
    assert [o[0] for o in out] == want


def test_memory_estimate_counts_the_real_tensors():
    m = memory_estimate("micro", seq_len=64)
    p = PRESETS["micro"]
    config = GPTConfig(vocab_size=p["tokenizer"]["vocab_size"], **p["model"])
    model = GPT(config)
    assert m["weights"] == sum(x.nbytes for x in model.parameters())
    opt = make_optimizer(model, p["sft"]["lr"], 0.1, muon_lr=p["sft"]["muon_lr"])
    model(torch.zeros(1, 4, dtype=torch.long), targets=torch.zeros(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    state = sum(v.nbytes for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    assert m["sft_optimizer"] == state
    rows = p["rl"]["tasks_per_step"] * p["rl"]["group_size"]
    cache = KVCache(config, rows, config.block_size, dtype=torch.bfloat16)
    assert m["rl_kv_cache"] == cache.k.nbytes + cache.v.nbytes
    # activations grow with the batch's tokens, and a 4-layer model keeps more per token than 2
    assert m["sft_activations"] == pytest.approx(m["activation_bytes_per_token"] * p["sft"]["batch_size"] * 64)
    deeper = saved_activation_bytes(GPT(GPTConfig(**dict(config.to_dict(), n_layer=4))), 32)
    assert deeper > 1.5 * saved_activation_bytes(model, 32)


def test_run_sh_refuses_an_unknown_preset_in_one_line():
    import os
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(["bash", os.path.join(root, "run.sh")], env=dict(os.environ, PRESET="nope"),
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip() == "unknown PRESET=nope; choose one of ['cpu', 'gpu', 'micro']"
