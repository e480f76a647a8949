"""PAG: oracle awareness, sufficiency, masks of both policies, bounded context, augmentation, data_gen."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from nanoparl.common import PRESETS
from nanoparl.env import check
from nanoparl.env import parse_calls
from nanoparl.chat import SYSTEM_HEADER, available_functions, split_awareness, system_message, user_message
from nanoparl.pag import (CANNOT_REPLY, EMPTY_SUMMARY, PLAN_ASK, PLAN_CANNOT, augment,
                          check_sufficiency, fresh_value, oracle_turns, sft_samples,
                          summary_requirements)
from nanoparl.tokenizer import Tokenizer
from nanoparl.world.registry import FUNCTION_DOCS
from nanoparl.world.tasks import generate_splits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = dict(classes=["GorillaFileSystem", "TicketAPI", "TradingBot", "TravelAPI", "MessageAPI", "MathAPI"],
                max_turns=6, categories=["base", "miss_param", "miss_func", "long_context"])


@pytest.fixture(scope="module")
def tasks():
    out = []
    for seed in (0, 1, 2):
        out += generate_splits(SETTINGS, seed, {"train": 80, "val": 0, "test": 20})["train"]
    return out


@pytest.fixture(scope="module")
def tok(tasks):
    texts = [m["content"] for t in tasks[:100] for s in sft_samples(t, "awareness") for m in s]
    return Tokenizer.train(texts, vocab_size=600)


def ground_truth_steps(task):
    return [[f"[{c}]" for c in calls] for calls in task["ground_truth"]]


def test_summaries_hold_what_later_turns_need(tasks):
    kept = 0
    for task in tasks:
        turns = oracle_turns(task)
        reason = check_sufficiency(task, turns)
        if reason is None:
            kept += 1
            for m, values in enumerate(summary_requirements(task)):
                assert all(v in turns[m]["summary"] for v in values)
        else:  # a dropped task really lacks the value
            m = int(reason.split()[3])
            assert any(v not in turns[m]["summary"] for v in summary_requirements(task)[m])
    assert kept >= 0.97 * len(tasks)
    assert oracle_turns(tasks[0])[0]["summary"] == EMPTY_SUMMARY
    # some summaries really carry an ID across turns (not only trivially satisfied ones)
    assert sum(len(v) for t in tasks for v in summary_requirements(t)) > 0


def test_sufficiency_catches_a_forgotten_id(tasks):
    task = next(t for t in tasks if any(summary_requirements(t)) and check_sufficiency(t) is None)
    turns = oracle_turns(task)
    m = next(i for i, v in enumerate(summary_requirements(task)) if v)
    value = summary_requirements(task)[m][0]
    turns[m]["summary"] = turns[m]["summary"].replace(value, "????")
    assert value in check_sufficiency(task, turns)


def test_plan_lists_exactly_the_steps_of_the_turn(tasks):
    for task in tasks:
        for k, turn in enumerate(oracle_turns(task)):
            calls = task["ground_truth"][k]
            if calls:
                assert turn["plan"] == " ".join(f"{i + 1}. {c.split('(')[0]}" for i, c in enumerate(calls))
                assert [s for s, _ in turn["steps"][:-1]] == [f"[{c}]" for c in calls]
            elif task["category"] == "miss_func":
                held_back = task["missed_function"][str(k + 1)][0]
                assert turn["plan"] == f"1. {held_back}: {PLAN_CANNOT}" and turn["steps"] == [(CANNOT_REPLY, None)]
            else:
                assert turn["plan"] == PLAN_ASK and turn["steps"][0][0].startswith("Could you tell me the ")
                assert "missing value" not in turn["steps"][0][0]  # the missing argument is named


def test_masks_of_both_policies(tasks, tok):
    task = next(t for t in tasks if len(t["question"]) >= 3)
    for policy in ("history", "awareness"):
        for messages in sft_samples(task, policy):
            ids, mask = tok.render(messages)
            pos = 1
            for m in messages:
                n = len(tok.render_message(m)[0])
                want = 1 if m["role"] == "assistant" and m["train"] else 0
                assert mask[pos + 1:pos + n] == [want] * (n - 1), (policy, m)
                pos += n
            if policy == "awareness":
                trained = [m for m in messages if m["role"] == "assistant" and m["train"]]
                untrained = [m for m in messages if m["role"] == "assistant" and not m["train"]]
                assert split_awareness(trained[0]["content"])[0] is not None  # summary first
                assert all(split_awareness(m["content"])[0] is None for m in trained[1:])
                # the previous awareness is context, never a target
                assert not untrained or split_awareness(untrained[0]["content"])[0] is not None


def context_tokens(tok, task, policy):
    """Tokens the model reads before acting at each user turn."""
    out = []
    turns = oracle_turns(task)
    for k in range(len(turns)):
        messages = sft_samples(task, policy, turns)[0 if policy == "history" else k]
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        cut = users[k] if policy == "history" else users[-1]
        out.append(len(tok.render(messages[:cut + 1], add_generation_prompt=True)[0]))
    return out


def test_awareness_context_is_shorter_and_bounded(tasks, tok):
    long_tasks = [t for t in tasks if len(t["question"]) >= 4]
    assert long_tasks
    for task in long_tasks:
        hist, aware = context_tokens(tok, task, "history"), context_tokens(tok, task, "awareness")
        assert aware[-1] < hist[-1]
        # bounded: the awareness context never exceeds system + two turns' worth of text
        per_turn = max(b - a for a, b in zip(hist, hist[1:]))
        assert max(aware) <= aware[0] + 2 * per_turn + 200


def test_augmentation_keeps_tasks_valid_and_is_deterministic(tasks):
    for task in tasks[:60]:
        aug = augment(task, seed=3, mask_p=0.2)
        assert aug["ground_truth"] == task["ground_truth"]
        assert check(aug, ground_truth_steps(aug))["passed"]
        assert aug == augment(task, seed=3, mask_p=0.2)
        oracle_turns(aug)  # the oracle replays it without error
    changed = sum(augment(t, seed=3)["question"] != t["question"] for t in tasks[:60])
    assert changed > 20


def test_renamed_entities_are_fresh_consistent_and_valid(tasks):
    renamed = 0
    for task in tasks[:80]:
        aug = augment(task, seed=3, paraphrase_turns=False, perturb_functions=False, rename=True)
        assert check(aug, ground_truth_steps(aug))["passed"]  # replays and passes its own checker
        assert aug == augment(task, seed=3, paraphrase_turns=False, perturb_functions=False, rename=True)
        oracle_turns(aug)
        if aug["ground_truth"] == task["ground_truth"]:
            continue
        renamed += 1
        old, new = ({v for turn in t["ground_truth"] for c in turn for _, kw in parse_calls(c) for v in kw.values()
                     if isinstance(v, str)} for t in (task, aug))
        text = " ".join(m["content"] for turn in aug["question"] for m in turn)
        for value in new - old:  # a fresh value: the same shape, and the user says it
            assert any(len(o) == len(value) for o in old)
            assert value in text
    assert renamed > 30


def test_fresh_value_keeps_the_shape():
    import random
    v = fresh_value("Laptop battery-9 x2", random.Random(0))
    assert len(v) == 19 and v[6] == " " and v[14] == "-" and v[15].isdigit() and v[0].isupper()
    assert v != "Laptop battery-9 x2"


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_data_gen_writes_sft_data_deterministically(tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        r = subprocess.run([sys.executable, os.path.join(ROOT, "data_gen.py"), "--preset", "micro", "--seed", "5",
                            "--out", str(out), "--n-train", "40", "--n-val", "8", "--n-test", "8"],
                           cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs.append(out)
    assert "context tokens at the start of the last turn" in r.stdout and "awareness:" in r.stdout
    for name in ("sft_plain_train.jsonl", "sft_pag_train.jsonl", "sft_pag_val.jsonl", "tokenizer.json"):
        assert digest(outs[0] / name) == digest(outs[1] / name), name
    tok = Tokenizer.load(str(outs[0] / "tokenizer.json"))
    rows = [json.loads(line) for line in open(outs[0] / "sft_pag_train.jsonl")]
    block = PRESETS["micro"]["model"]["block_size"]
    assert rows and all(len(tok.render(r["messages"])[0]) <= block for r in rows)


@pytest.mark.parametrize("functions", ["names", "signatures", "descriptions"])
def test_function_listings(tasks, functions):
    task = next(t for t in tasks if t["category"] == "miss_func")
    lines = system_message(task, 0, functions)["content"].split("\n")
    names = available_functions(task, 0)
    assert lines[0] == SYSTEM_HEADER and len(lines) == 1 + len(names)
    for line, name in zip(lines[1:], names):
        want = {"names": name, "signatures": FUNCTION_DOCS[name][0]}.get(functions)
        assert line == want if want else line.startswith(FUNCTION_DOCS[name][0] + " - ")
    # the turn that adds the held-back function lists it the same way
    k, added = next((int(k), v) for k, v in task["missed_function"].items())
    added_line = user_message(task, k, functions)["content"].split("New functions:\n")[1].split("\n")[0]
    assert added_line.startswith(added[0]) and (added_line == added[0]) == (functions == "names")
    with pytest.raises(ValueError, match="functions"):
        system_message(task, 0, {"functions": "everything"})


def test_data_gen_base_corpus_has_its_own_tasks(tmp_path):
    out = tmp_path / "d"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "data_gen.py"), "--preset", "micro", "--seed", "5",
                        "--out", str(out), "--n-train", "20", "--n-val", "8", "--n-test", "8", "--n-base", "12"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in open(out / "base_train.jsonl")]
    assert {row["task_id"] for row in rows} == {f"base_{c}_{i}" for i, c in
                                               zip(range(12), ["base", "miss_param", "miss_func", "long_context"] * 3)}
    # every task gives its whole conversation and one awareness sample per turn
    assert len(rows) > 12 and any("<summary>" in m["content"] for row in rows for m in row["messages"])
    test_users = set()
    for line in open(out / "tasks_test.jsonl"):
        test_users |= {m["content"] for turn in json.loads(line)["question"] for m in turn}
    base_users = {m["content"].split("\nNew functions:")[0] for row in rows for m in row["messages"]
                  if m["role"] == "user"}
    assert base_users and not base_users & test_users  # drawn like train: test's phrasings stay held out
