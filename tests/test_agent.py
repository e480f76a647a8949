"""The agent loop and eval.py: the oracle scores 1.0 through the same loop, masks, caps, overflow."""

import json
import os
import subprocess
import sys

import pytest
import torch

from nanoparl.agent import AgentLoop
from nanoparl.model import GPT, GPTConfig
from nanoparl.tasks import load_tasks
from nanoparl.tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("agentdata")
    subprocess.run([sys.executable, os.path.join(ROOT, "data_gen.py"), "--preset", "micro", "--seed", "3",
                    "--out", str(out), "--n-train", "60", "--n-val", "8", "--n-test", "24"],
                   cwd=ROOT, check=True, capture_output=True)
    tok = Tokenizer.load(str(out / "tokenizer.json"))
    fmt = json.load(open(out / "format.json"))
    return str(out), tok, fmt, load_tasks(str(out / "tasks_test.jsonl"))


def tiny_model(tok, block_size=2048):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                         intermediate_size=32, block_size=block_size)).eval()


@pytest.mark.parametrize("policy", ["history", "awareness"])
def test_oracle_passes_every_task_through_the_loop(data, policy):
    _, tok, fmt, tasks = data
    rollouts = AgentLoop(tiny_model(tok), tok, policy, fmt).run(tasks, agent="oracle")
    assert all(r.verdict["passed"] for r in rollouts), [r.verdict for r in rollouts if not r.verdict["passed"]]
    for r in rollouts:  # every assistant token was forced here, so all masks are 0
        assert all(m == 0 for seg in r.segments for m in seg["mask"])
    n_segments = [len(r.segments) for r in rollouts]
    assert n_segments == [1 if policy == "history" else len(r.task["question"]) for r in rollouts]


def test_eval_oracle_scores_one_in_every_category(data, tmp_path):
    data_dir, _, _, _ = data
    out = tmp_path / "oracle.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), "--agent", "oracle", "--preset", "micro",
                        "--data-dir", data_dir, "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.load(open(out))["oracle"]
    for cat in ("base", "miss_param", "miss_func", "long_context", "overall"):
        assert res[cat]["accuracy"] == 1.0, (cat, res[cat])


def test_sampled_rollouts_mask_only_model_tokens(data):
    _, tok, fmt, tasks = data
    rollouts = AgentLoop(tiny_model(tok), tok, "history", fmt, step_tokens=12, seed=1).run(tasks[:4], samples=2)
    for r in rollouts:
        seg = r.segments[0]
        assert len(seg["tokens"]) == len(seg["mask"]) == len(seg["logprobs"]) == len(seg["turn_ids"])
        ids = seg["tokens"]
        # a mask-1 token only ever follows a forced <|assistant|>: system, user and tool messages
        # (role token, content, <|end|>) are entirely mask 0
        role = None
        for t, m in zip(ids, seg["mask"]):
            if m == 0 and t in tok.role_ids.values():
                role = t
            if m == 1:
                assert role == tok.role_ids["assistant"]
        assert any(seg["mask"]) and seg["mask"][0] == 0
        assert sum(seg["mask"]) == r.generated


def test_context_overflow_ends_the_task_without_an_exception(data):
    _, tok, fmt, tasks = data
    model = tiny_model(tok, block_size=200)  # shorter than any system prompt + first turn
    rollouts = AgentLoop(model, tok, "history", fmt, step_tokens=8).run(tasks[:3], samples=2)
    assert all(r.verdict["error_type"] == "context_overflow" and not r.verdict["passed"] for r in rollouts)
