"""train_rl.py end to end: RL raises the reward, ratio 1 on-policy, MT-GRPO runs, exact resume, bad --init.

One tiny PAG-SFT checkpoint (1 layer, width 32, 60 steps on MathAPI-only two-turn tasks) is built
once per module and is the --init of every run. Everything is seeded and runs on the CPU, so every
number below is deterministic.
"""

import json
import os
import re
import shutil
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import data_gen  # noqa: E402
import train_rl  # noqa: E402
import train_sft  # noqa: E402
from nanoparl.agent import AgentLoop, trajectory_summaries, trajectory_summary  # noqa: E402
from nanoparl.chat import listing_of  # noqa: E402
from nanoparl.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from nanoparl.common import autocast  # noqa: E402
from nanoparl.rl import composite_reward, policy_loss, token_logprobs  # noqa: E402
from nanoparl.tokenizer import Tokenizer  # noqa: E402
from nanoparl.world.tasks import load_tasks  # noqa: E402

TINY = ["--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--n-kv-head", "1", "--intermediate-size", "64"]


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    """-> (data dir, PAG-SFT run dir). Base MathAPI tasks of at most two turns: short, quickly learnt."""
    root = tmp_path_factory.mktemp("rl")
    data, run = str(root / "data"), str(root / "sft")
    data_gen.main(["--preset", "micro", "--out", data, "--classes", "MathAPI", "--max-turns", "2",
                   "--categories", "base", "--n-train", "120", "--n-val", "4", "--n-test", "4"])
    train_sft.main(["--preset", "micro", "--data", "pag", "--data-dir", data, "--out", run, *TINY,
                    "--max-steps", "60", "--lr", "1e-2", "--batch-size", "16", "--eval-every", "1000",
                    "--eval-samples", "4", "--log-every", "1000"])
    return data, run


def rl(data, init, out, *extra):
    """train_rl.main with small steps and almost no evaluation (the last step always evaluates)."""
    return train_rl.main(["--preset", "micro", "--init", init, "--data-dir", data, "--out", str(out),
                          "--eval-every", "1000", "--eval-tasks", "1", "--step-tokens", "48", *extra])


def mean_reward(run, data, tasks, samples=8, seed=7):
    """Mean composite reward (and its parts) of tasks x samples temperature-1 rollouts of a run."""
    model, meta = load_checkpoint(run)
    tok = Tokenizer.load(os.path.join(data, "tokenizer.json"))
    rollouts = AgentLoop(model.eval(), tok, "awareness", listing_of(meta["format"]), step_tokens=48, seed=seed).run(tasks, samples)
    trajs = trajectory_summaries(rollouts, "awareness")
    assert trajs == [trajectory_summary(r, "awareness") for r in rollouts]  # requirements once per task
    scored = [composite_reward(t) for t in trajs]
    return float(np.mean([s[0] for s in scored])), {k: float(np.mean([s[1][k] for s in scored])) for k in scored[0][1]}


def test_pag_rl_raises_the_reward(sft, tmp_path):
    data, init = sft
    out = tmp_path / "pag_rl"
    rl(data, init, out, "--algo", "pag-rl", "--max-steps", "10", "--lr", "3e-3", "--tasks-per-step", "8",
       "--group-size", "8", "--ppo-epochs", "2")
    tasks = load_tasks(os.path.join(data, "tasks_train.jsonl"))[:8]
    before, parts_before = mean_reward(init, data, tasks)
    after, parts_after = mean_reward(str(out), data, tasks)
    # measured: 0.050 -> 0.154 (0.14-0.16 with --seed 1, 2, 3), mostly the awareness recall rising
    assert after > before + 0.05, (before, after, parts_before, parts_after)
    meta = json.load(open(out / "meta_10.json"))
    assert meta["algo"] == "pag-rl" and meta["policy"] == "awareness" and meta["kind"] == "rl"
    rewards = [json.loads(line) for line in open(out / "log.jsonl") if '"reward"' in line]
    assert [r["step"] for r in rewards] == list(range(1, 11))
    assert os.path.exists(out / "episodes_10.txt")


def test_first_inner_step_is_on_policy_and_only_sampled_tokens_get_gradient(sft):
    data, init = sft
    model, meta = load_checkpoint(init)
    tok = Tokenizer.load(os.path.join(data, "tokenizer.json"))
    tasks = load_tasks(os.path.join(data, "tasks_train.jsonl"))[:4]
    rollouts = AgentLoop(model.eval(), tok, "awareness", listing_of(meta["format"]), step_tokens=48, temperature=1.0,
                         seed=3).run(tasks, 4)
    args = train_rl.parse_args(["--algo", "pag-rl", "--init", init, "--out", "unused"])
    advantages, rewards, _, _ = train_rl.score(rollouts, args, "awareness", 4)
    seqs = train_rl.build_batch(rollouts, advantages, keep_zero=True)
    assert len(seqs) > len(rollouts)  # awareness: one sequence per user turn
    tokens, mask, old, adv = train_rl.pad(seqs, torch.device("cpu"))
    assert mask.sum() > 0 and (adv[mask.bool()] != 0).any()

    def loss_and_grads(old, adv):
        model.train()
        model.zero_grad(set_to_none=True)
        with autocast(torch.device("cpu")):
            logits = model(tokens)  # (B, T, V), as in train_rl's update
        logp = token_logprobs(logits[:, :-1].float(), tokens[:, 1:])
        loss, stats = policy_loss(logp, old, adv, mask, clip=0.2)
        loss.backward()
        return stats, [p.grad.clone() for p in model.parameters()]

    stats, grads = loss_and_grads(old, adv)
    # the engine's sampling log-probs (KV cache, temperature 1) equal the training forward's
    assert stats["ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    assert stats["ratio_max"] == pytest.approx(1.0, abs=1e-5)
    assert stats["clip_frac"] == 0.0
    assert sum(g.abs().sum() for g in grads) > 0
    # garbage advantages and old log-probs on mask-0 tokens (system, user, tool, padding) change nothing
    garbage = ~mask.bool()
    stats2, grads2 = loss_and_grads(old.masked_fill(garbage, float("nan")), adv.masked_fill(garbage, 1e6))
    assert stats2 == stats
    assert all(torch.equal(a, b) for a, b in zip(grads, grads2))


def test_mt_grpo_runs_and_logs(sft, tmp_path, capsys):
    data, init = sft
    out = tmp_path / "mt_grpo"
    rl(data, init, out, "--algo", "mt-grpo", "--policy", "history", "--max-steps", "2", "--tasks-per-step", "2",
       "--group-size", "4")
    meta = json.load(open(out / "meta_2.json"))
    assert meta["algo"] == "mt-grpo" and meta["policy"] == "history" and meta["kind"] == "rl"
    assert meta["step"] == 2 and os.path.exists(out / "model_2.safetensors")
    a, b = load_checkpoint(str(out))[0].state_dict(), load_checkpoint(init)[0].state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)  # the turn advantages moved the weights
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step 2 | reward")]
    assert len(lines) == 1, lines
    num = r"-?\d+\.\d+"
    assert re.match(rf"step 2 \| reward {num} \| outcome {num} turn {num} \| acc {num} \| steps/task {num} \| "
                    rf"tok/task \d+ \| zero-adv {num} \| kl {num} \| clip {num} \| time sample {num}s env {num}s "
                    rf"train {num}s$", lines[0]), lines[0]
    logged = [json.loads(line) for line in open(out / "log.jsonl")]
    assert {"reward", "accuracy", "zero_adv", "kl", "outcome", "turn"} <= set(logged[-2]) and logged[-2]["step"] == 2


def test_resume_is_exact(sft, tmp_path):
    data, init = sft
    # with a KL term: the reference must stay the init model after a resume, not the resumed weights
    common = ["--algo", "pag-rl", "--max-steps", "4", "--save-every", "2", "--keep-last", "5", "--tasks-per-step",
              "2", "--group-size", "4", "--ppo-epochs", "2", "--lr", "3e-3", "--kl", "0.1"]
    rl(data, init, tmp_path / "full", *common)
    # a run killed somewhere in steps 3..4 leaves exactly the step-2 checkpoint on disk
    os.makedirs(tmp_path / "killed")
    for name in ("model_2.safetensors", "meta_2.json", "train_2.pt"):
        shutil.copy(tmp_path / "full" / name, tmp_path / "killed" / name)
    rl(data, init, tmp_path / "killed", *common, "--resume")
    a = load_checkpoint(str(tmp_path / "full"), 4)[0].state_dict()
    b = load_checkpoint(str(tmp_path / "killed"), 4)[0].state_dict()
    c = load_checkpoint(init)[0].state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)  # RL changed the weights
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_init_names_the_file(sft, tmp_path):
    data, init = sft
    with pytest.raises(CheckpointError, match="no_such_run"):
        rl(data, str(tmp_path / "no_such_run"), tmp_path / "a", "--algo", "pag-rl")
    with pytest.raises(CheckpointError, match=r"nope.meta_5\.json"):  # a weights file whose run is gone
        rl(data, str(tmp_path / "nope" / "model_5.safetensors"), tmp_path / "a", "--algo", "pag-rl")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        rl(data, str(tmp_path), tmp_path / "b", "--algo", "pag-rl")  # a directory without checkpoints
    bad = tmp_path / "bad"
    shutil.copytree(init, bad)
    step = max(int(n[5:-5]) for n in os.listdir(bad) if n.startswith("meta_"))
    (bad / f"meta_{step}.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=f"meta_{step}.json"):
        rl(data, str(bad), tmp_path / "c", "--algo", "pag-rl")
    (bad / f"meta_{step}.json").write_text(open(os.path.join(init, f"meta_{step}.json")).read())
    (bad / f"model_{step}.safetensors").write_bytes(b"\x00" * 10)  # truncated weights
    with pytest.raises(CheckpointError, match=f"model_{step}.safetensors"):
        rl(data, str(bad), tmp_path / "d", "--algo", "pag-rl")


def test_torchrun_two_ranks_shard_the_groups(sft, tmp_path):
    """2 gloo ranks each roll out half of the step's groups; rank 0 writes the checkpoint."""
    import subprocess
    data, init = sft
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
                        os.path.join(ROOT, "train_rl.py"), "--preset", "micro", "--algo", "pag-rl", "--init", init,
                        "--data-dir", data, "--out", str(out), "--max-steps", "2", "--tasks-per-step", "4",
                        "--group-size", "2", "--eval-every", "1000", "--eval-tasks", "1", "--step-tokens", "32",
                        "--device", "cpu"],  # gloo ranks, also on a machine with one GPU
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "world 2" in r.stdout and "step 2 | reward" in r.stdout
    assert load_checkpoint(str(out))[1]["step"] == 2


def test_ctrl_c_saves_and_resume_continues_exactly(sft, tmp_path, monkeypatch, capsys):
    """SIGINT during a step: the step finishes, the loop saves it and exits 130; --resume then ends
    where the uninterrupted run ends. Resuming a run that is past --max-steps does nothing."""
    import signal
    data, init = sft
    common = ["--algo", "pag-rl", "--max-steps", "2", "--save-every", "1000", "--tasks-per-step", "2",
              "--group-size", "2", "--lr", "3e-3"]
    rl(data, init, tmp_path / "full", *common)
    real = train_rl.step_tasks

    def ctrl_c_in_step_0(tasks, n, step, seed):
        if step == 0:
            signal.raise_signal(signal.SIGINT)
        return real(tasks, n, step, seed)
    monkeypatch.setattr(train_rl, "step_tasks", ctrl_c_in_step_0)
    with pytest.raises(SystemExit) as e:
        rl(data, init, tmp_path / "run", *common)
    assert e.value.code == 130 and "interrupted at step 1: saved" in capsys.readouterr().out
    monkeypatch.undo()
    rl(data, init, tmp_path / "run", *common, "--resume")
    a = load_checkpoint(str(tmp_path / "full"), 2)[0].state_dict()
    b = load_checkpoint(str(tmp_path / "run"), 2)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def log(run):  # timestamps aside
        return [{k: v for k, v in json.loads(line).items() if k not in ("time", "time_s")}
                for line in open(run / "log.jsonl")]
    assert log(tmp_path / "run") == log(tmp_path / "full") and len(log(tmp_path / "full")) == 4
    assert rl(data, init, tmp_path / "run", *common[:2], "--max-steps", "1", "--resume") == {}
    assert "at step 2, at or past --max-steps 1: nothing to train" in capsys.readouterr().out
