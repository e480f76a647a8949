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


def test_run_sh_errors_are_one_line_on_stderr():
    """run.sh runs $PYTHON (this interpreter here: a venv need not be active) and says what is wrong
    in one line, `error: ...`, on stderr."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run_sh(*args, **env):
        return subprocess.run(["bash", os.path.join(root, "run.sh"), *args], capture_output=True, text=True,
                              env={**os.environ, "PYTHON": sys.executable, **env})
    r = run_sh(PRESET="nope")
    assert r.returncode == 1 and r.stderr.strip() == "error: unknown PRESET=nope; choose one of ['cpu', 'gpu', 'micro']"
    r = run_sh("--bogus")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "error: unknown argument: --bogus (only --full)\n")
    r = run_sh(SEEDS="0")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "error: SEEDS=0 must be a positive integer\n")
    r = run_sh(PRESET="micro", PYTHON=os.path.join(root, "no", "python"))
    assert r.returncode == 1 and r.stderr.startswith("error: PYTHON=") and r.stderr.count("\n") == 1, r.stderr


def test_every_preset_number_has_a_flag_with_it_as_default(capsys):
    """One home per setting: each script's flags take their defaults from the preset, and --help
    prints them (common.parse_args_with_preset)."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import data_gen
    import eval as evaluation
    import train_rl
    import train_sft
    cpu = PRESETS["cpu"]
    sft = train_sft.parse_args(["--preset", "cpu", "--data", "pag", "--out", "x"])
    base = train_sft.parse_args(["--preset", "cpu", "--data", "base", "--out", "x", "--lr", "0.5"])
    assert all(getattr(sft, k) == v for k, v in cpu["sft"].items())
    assert base.max_steps == cpu["base"]["max_steps"] and base.lr == 0.5
    assert sft.n_layer == cpu["model"]["n_layer"] and sft.qk_norm == cpu["model"]["qk_norm"]
    rl = train_rl.parse_args(["--preset", "micro", "--algo", "pag-rl", "--init", "x", "--out", "y"])
    assert all(getattr(rl, k) == v for k, v in PRESETS["micro"]["rl"].items())
    ev = evaluation.parse_args(["--preset", "cpu"])
    assert ev.max_tasks == cpu["eval"]["max_tasks"] and ev.step_tokens == cpu["rl"]["step_tokens"]
    data = data_gen.parse_args(["--preset", "cpu"])
    assert all(getattr(data, k) == v for k, v in cpu["data"].items())
    assert (data.augment, data.functions, data.vocab_size) == (1.0, "names", cpu["tokenizer"]["vocab_size"])
    with pytest.raises(SystemExit):
        train_sft.parse_args(["--preset", "cpu", "--data", "pag", "--out", "x", "--help"])
    assert f"(preset: {cpu['sft']['max_steps']})" in capsys.readouterr().out
