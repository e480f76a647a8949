"""The agent loop and eval.py: the oracle scores 1.0 through the same loop, masks, caps, overflow."""

import json
import os
import subprocess
import sys

import pytest
import torch

from nanoparl.agent import AgentLoop, OracleLoop
from nanoparl.chat import listing_of
from nanoparl.checkpoint import save_checkpoint
from nanoparl.model import GPT, GPTConfig
from nanoparl.tokenizer import Tokenizer
from nanoparl.world.tasks import load_tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_gen import same_first_step, verify_prompt, verify_samples  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("agentdata")
    subprocess.run([sys.executable, os.path.join(ROOT, "data_gen.py"), "--preset", "micro", "--seed", "3",
                    "--out", str(out), "--n-train", "60", "--n-val", "8", "--n-test", "24"],
                   cwd=ROOT, check=True, capture_output=True)
    tok = Tokenizer.load(str(out / "tokenizer.json"))
    listing = listing_of(json.load(open(out / "format.json")))
    return str(out), tok, listing, load_tasks(str(out / "tasks_test.jsonl"))


def tiny_model(tok, block_size=2048):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                         intermediate_size=32, block_size=block_size)).eval()


@pytest.mark.parametrize("policy", ["history", "awareness"])
def test_oracle_passes_every_task_through_the_loop(data, policy):
    _, tok, listing, tasks = data
    rollouts = OracleLoop(tiny_model(tok), tok, policy, listing).run(tasks)
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
    _, tok, listing, tasks = data
    rollouts = AgentLoop(tiny_model(tok), tok, "history", listing, step_tokens=12, seed=1).run(tasks[:4], samples=2)
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
    _, tok, listing, tasks = data
    model = tiny_model(tok, block_size=200)  # shorter than any system prompt + first turn
    rollouts = AgentLoop(model, tok, "history", listing, step_tokens=8).run(tasks[:3], samples=2)
    assert all(r.verdict["error_type"] == "context_overflow" and not r.verdict["passed"] for r in rollouts)


# ----------------------------------------------------------------------------
# Rollout log-probs, the 20-step cap, batched == one at a time


class ScriptedGPT(GPT):
    """A real GPT (its forward runs, with or without the cache) whose logits are overridden:
    after a token of a script, the script's next token is certain; right after the trigger token
    (default <|assistant|>) only the first tokens of `choice_scripts` are allowed and the real model
    picks among them. So greedy decoding writes whole scripted steps ("[get_watchlist()]", "Done.")
    chosen by the model's context."""

    def __init__(self, config, tok, scripts, choice_scripts, trigger=None):
        super().__init__(config)
        succ = torch.full((config.vocab_size,), -1, dtype=torch.long)
        firsts = []
        for text in scripts:
            ids = tok.encode(text) + [tok.end_id]
            assert len(set(ids)) == len(ids)
            for a, b in zip(ids, ids[1:]):
                assert succ[a] in (-1, b), f"token {a} has two successors"
                succ[a] = b
            if text in choice_scripts:
                firsts.append(ids[0])
        self.register_buffer("succ", succ, persistent=False)
        allowed = torch.zeros(config.vocab_size, dtype=torch.bool)
        allowed[firsts] = True
        self.register_buffer("allowed", allowed, persistent=False)
        self.trigger = tok.role_ids["assistant"] if trigger is None else trigger

    def forward(self, idx, targets=None, cache=None, rows=None):
        logits = super().forward(idx, cache=cache, rows=rows)  # (B, T, V)
        nxt = self.succ[idx]  # (B, T), -1 = no rule
        forced = torch.full_like(logits, -1e4).scatter_(-1, nxt.clamp_min(0)[..., None], 1e4)
        logits = torch.where((nxt >= 0)[..., None], forced, logits)
        choose = logits.masked_fill(~self.allowed, -1e4)
        return torch.where((idx == self.trigger)[..., None], choose, logits)


def scripted_model(tok, choices, weight_std=None, block_size=4096):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                       intermediate_size=32, block_size=block_size)
    model = ScriptedGPT(config, tok, ["[get_watchlist()]", "Done."], choices).eval()
    if weight_std:  # large random weights: the choice depends on the context, and never on a near-tie
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.normal_(0.0, weight_std)
    return model


@pytest.mark.parametrize("policy", ["history", "awareness"])
def test_rollout_logprobs_equal_a_training_forward(data, policy):
    """Temperature 1, no truncation: the log-prob the engine recorded for every token (sampled or
    forced) is what a plain cache-less forward over the finished segment gives (GRPO ratio = 1)."""
    _, tok, listing, tasks = data
    model = tiny_model(tok)
    rollouts = AgentLoop(model, tok, policy, listing, step_tokens=10, seed=2).run(tasks[:4], samples=2)
    n_sampled = 0
    for r in rollouts:
        expected = 1 if policy == "history" else len(r.turns)
        assert len(r.segments) == expected
        for seg in r.segments:
            ids = seg["tokens"]
            assert len(ids) == len(seg["mask"]) == len(seg["logprobs"]) == len(seg["turn_ids"])
            assert ids[0] == tok.bos_id and seg["logprobs"][0] == 0.0
            with torch.no_grad():
                logits = model(torch.tensor([ids]))[0]  # (T, V)
            ref = torch.log_softmax(logits[:-1], dim=-1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
            got = torch.tensor(seg["logprobs"][1:])
            assert torch.allclose(got, ref, atol=1e-4, rtol=0), (got - ref).abs().max()
            n_sampled += sum(seg["mask"])
    assert n_sampled > 0


def test_twenty_call_steps_then_force_terminated(data):
    """A model that always answers with a call list: 20 call steps run in the turn, the 21st ends
    the task as force_terminated (BFCL's cap); no exception, the env ran every call."""
    _, tok, listing, tasks = data
    model = scripted_model(tok, choices=["[get_watchlist()]"])
    rollouts = AgentLoop(model, tok, "history", listing, temperature=0).run(tasks[1:3], samples=2)
    for r in rollouts:
        assert r.done and r.error == "force_terminated"
        assert r.verdict["error_type"] == "force_terminated" and not r.verdict["passed"]
        assert r.turn == 0 and len(r.model_turns) == 1
        assert r.model_turns[0] == ["[get_watchlist()]"] * 20
        steps = r.turns[0]["steps"]
        assert len(steps) == 20 and all(s["kind"] == "calls" and s["n_calls"] == 1 for s in steps)
        assert r.env.n_calls == 20
        # 21 sampled steps: 20 executed, the 21st written but never executed
        assert sum(m["role"] == "assistant" for m in r.turns[0]["messages"]) == 21


@pytest.mark.parametrize("policy", ["history", "awareness"])
def test_batched_rollouts_equal_one_task_at_a_time(data, policy):
    """Greedy rollouts of a ragged batch (different prompts, steps, tool outputs per row) equal the
    same tasks run alone: same tokens, same executed calls, same verdicts."""
    _, tok, listing, tasks = data
    model = scripted_model(tok, choices=["[get_watchlist()]", "Done."], weight_std=1.0)
    loop = AgentLoop(model, tok, policy, listing, temperature=0)
    batch = tasks[:6]
    together = loop.run(batch, samples=2)
    alone = [r for t in batch for r in loop.run([t], samples=1)]
    assert any(len(turn) for r in alone for turn in r.model_turns)  # some rows made calls
    assert any(not turn for r in alone for turn in r.model_turns)   # and some answered in text
    for i, r in enumerate(together):
        a = alone[i // 2]
        assert r.model_turns == a.model_turns
        assert r.verdict == a.verdict and r.error == a.error
        assert [s["tokens"] for s in r.segments] == [s["tokens"] for s in a.segments]
        for s, t in zip(r.segments, a.segments):
            assert s["mask"] == t["mask"] and s["turn_ids"] == t["turn_ids"]
            assert max(abs(x - y) for x, y in zip(s["logprobs"], t["logprobs"])) < 1e-4


# ----------------------------------------------------------------------------
# data_gen.py --verify-with: model-aware verification


def pag_samples(data_dir, split="val"):
    with open(os.path.join(data_dir, f"sft_pag_{split}.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_verify_first_step_comparison():
    assert same_first_step("[f(a=1, b='x')]", "[f(b='x', a=1)]")  # keyword order, spacing
    assert same_first_step(" [f(a=1)] ", "[f(a=1)]")
    assert not same_first_step("[f(a=2)]", "[f(a=1)]")
    assert not same_first_step("[g(a=1)]", "[f(a=1)]")
    assert not same_first_step("[f(a=1), f(a=1)]", "[f(a=1)]")
    assert not same_first_step("[f(a=1)", "[f(a=1)]")
    assert not same_first_step("Done.", "[f(a=1)]")
    assert same_first_step("Could you tell me the amount?", "Could you tell me the amount?")
    assert not same_first_step("Could you tell me the price?", "Could you tell me the amount?")
    assert not same_first_step("[f(a=1)]", "None of the available functions can do that.")


def test_verify_prompt_is_the_trained_prefix(data):
    """prompt + the expected step + <|end|> is exactly how the SFT sample renders: a model that
    learned the data reproduces the step from this prompt."""
    data_dir, tok, _, _ = data
    for sample in pag_samples(data_dir):
        ids, expected = verify_prompt(tok, sample["messages"])
        target = tok.encode(expected, allow_special=True) + [tok.end_id]
        full, mask = tok.render(sample["messages"])
        assert full[:len(ids) + len(target)] == ids + target
        assert mask[len(ids)] == 1 and not expected.startswith("<summary>")


def test_verify_passes_a_model_that_writes_the_expected_step(data):
    """A scripted model that writes one sample's first step after </plan>: that sample (and any
    with the same step) passes, the others fail -- through the batched Engine path."""
    data_dir, tok, _, _ = data
    samples = pag_samples(data_dir)
    steps = [verify_prompt(tok, s["messages"])[1] for s in samples]
    plan_end = tok.special["</plan>"]
    pick = next(i for i, step in enumerate(steps)
                if len(set(ids := tok.encode(step) + [tok.end_id])) == len(ids) and plan_end not in ids)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                       intermediate_size=32, block_size=2048)
    model = ScriptedGPT(config, tok, [steps[pick]], [steps[pick]], trigger=plan_end).eval()
    results = verify_samples(model, tok, samples, batch_size=8)
    assert results[pick] == (True, steps[pick])
    assert [ok for ok, _ in results] == [same_first_step(steps[pick], step) for step in steps]
    assert sum(ok for ok, _ in results) < len(samples)


def test_data_gen_verify_with_a_checkpoint(data, tmp_path):
    data_dir, tok, _, _ = data
    ckpt = tmp_path / "ckpt"
    save_checkpoint(str(ckpt), 0, tiny_model(tok),
                    meta={"tokenizer": os.path.join(data_dir, "tokenizer.json"), "policy": "awareness"})
    out = tmp_path / "data"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "data_gen.py"), "--preset", "micro", "--seed", "3",
                        "--out", str(out), "--n-train", "60", "--n-val", "8", "--n-test", "24",
                        "--verify-with", str(ckpt), "--verify-max", "10"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "model-aware verification" in r.stdout
    all_line = next(line for line in r.stdout.splitlines() if line.strip().startswith("all "))
    passed, total = (int(x) for x in all_line.split("(")[0].split()[1::2])
    assert total == 10 and 0 <= passed <= total
    with open(out / "sft_pag_verified_val.jsonl") as f:
        assert len(f.readlines()) == passed


def test_eval_metrics_pass_at_k_and_mixed_groups():
    from eval import metrics
    from nanoparl.agent import Rollout

    def rollout(task_id, passed):
        task = {"id": task_id, "category": "base", "ground_truth": [["f()"], ["g()"]]}
        return Rollout(task=task, group=0, turns=[{"steps": [{"n_calls": 1, "n_errors": 0}]}] * 2,
                       context_tokens=[10], verdict={"passed": passed, "turns": [True, passed],
                                                     "error_type": None if passed else "state_mismatch"})

    # three tasks x 4 samples: 4/4 pass, 1/4 pass, 0/4 pass
    outcomes = [[True] * 4, [True, False, False, False], [False] * 4]
    rollouts = [rollout(f"t{i}", p) for i, g in enumerate(outcomes) for p in g]
    base = metrics(rollouts, "history", 4)["base"]
    assert base["accuracy"] == pytest.approx(5 / 12)
    assert base["pass@4"] == pytest.approx(2 / 3)     # t0 and t1 pass at least once
    assert base["mixed"] == pytest.approx(1 / 3)      # only t1 gives GRPO a success signal
    assert base["pass^4"] == pytest.approx(1 / 3)     # only t0 passes all four
    by_turn = metrics(rollouts, "history", 4)["overall"]["turn_accuracy"]
    assert by_turn == pytest.approx([1.0, 5 / 12])    # every first turn passes, the second as the task
