"""The task generator: every task replays and passes its own checker; splits; files; data_gen.py."""

import json
import os
import subprocess
import sys

import pytest

from nanoparl.env import ToolEnv, check, parse_calls
from nanoparl.world import base, filesystem_intents, messaging, tickets, trading, travel
from nanoparl.world.registry import READ_ONLY
from nanoparl.world.tasks import (CATEGORIES, DEFAULT_SETTINGS, FRAMES, generate_splits, load_tasks, new_words,
                                  replay, save_tasks, split_phrasings, split_pool, split_templates,
                                  user_messages, words)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = dict(DEFAULT_SETTINGS, long_output_chars=2700)


@pytest.fixture(autouse=True, scope="module")
def strict_env():
    """Tool exceptions are bugs: here they must raise, not hide behind an Error result."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ToolEnv, "strict", True)
        yield


@pytest.fixture(scope="module")
def splits():
    """Two seeds, all classes and categories, up to 6 turns."""
    out = {}
    for seed in (0, 1):
        for split, tasks in generate_splits(SETTINGS, seed, {"train": 200, "val": 20, "test": 100,
                                                              "unseen": 100}).items():
            out.setdefault(split, []).extend(tasks)
    return out


def _all(splits):
    return [t for tasks in splits.values() for t in tasks]


# ----------------------------------------------------------------------------
# Every task is well formed and passes its own ground truth


def test_every_task_passes_its_own_ground_truth(splits):
    for task in _all(splits):
        steps = [list(turn) for turn in task["ground_truth"]]  # each ground-truth call its own step
        result = check(task, steps)
        assert result["passed"], (task["id"], result)
        assert not any(r.startswith("Error") for turn in replay(task) for r in turn), task["id"]


def test_task_shape(splits):
    tasks = _all(splits)
    assert {t["category"] for t in tasks} == set(CATEGORIES)
    for task in tasks:
        n = len(task["question"])
        assert n == len(task["ground_truth"]) and 1 <= n <= SETTINGS["max_turns"]
        assert 1 <= len(task["involved_classes"]) <= 2
        assert all(len(turn) <= 4 for turn in task["ground_truth"])
        assert all(len(parse_calls(c)) == 1 for turn in task["ground_truth"] for c in turn)
        empty = [k for k, turn in enumerate(task["ground_truth"]) if not turn]
        if task["category"] in ("miss_param", "miss_func"):
            assert len(empty) == 1 and task["ground_truth"][empty[0] + 1], task["id"]
        else:
            assert not empty and not task["missed_function"]
        if task["category"] == "miss_func":
            (turn, names), = task["missed_function"].items()
            assert int(turn) == empty[0] + 1
            before = {c.split("(")[0] for t in task["ground_truth"][:int(turn)] for c in t}
            assert not set(names) & before
            assert task["ground_truth"][int(turn)][0].startswith(names[0] + "(")


def test_ids_come_back_as_four_digits(splits):
    for task in _all(splits)[:200]:
        for turn in replay(task):
            for r in turn:
                for key, value in json.loads(r).items():
                    if key in ("order_id", "booking_id", "card_id", "user_id", "message_id") or key == "id":
                        assert len(str(value)) == 4 and str(value).isdigit(), (key, value)


def test_long_context_outputs_are_long_but_capped(splits):
    lengths = {c: [] for c in CATEGORIES}
    for task in _all(splits):
        lengths[task["category"]].append(sum(len(r) for turn in replay(task) for r in turn))
    assert max(lengths["long_context"]) <= SETTINGS["long_output_chars"]
    mean = {c: sum(v) / len(v) for c, v in lengths.items()}
    assert mean["long_context"] > 2 * mean["base"]


# ----------------------------------------------------------------------------
# Mutations of generated tasks fail


def test_dropping_a_state_changing_call_fails(splits):
    n = 0
    for task in _all(splits):
        for k, turn in enumerate(task["ground_truth"]):
            changing = [i for i, c in enumerate(turn) if c.split("(")[0] not in READ_ONLY | {"cd"}]
            if not changing:
                continue
            steps = [list(t) for t in task["ground_truth"]]
            del steps[k][changing[-1]]
            if not steps[k]:
                steps[k] = ["get_watchlist()"]  # keep the turn non-empty: we want the state check
            result = check(task, steps)
            assert not result["passed"] and result["failed_turn"] == k, (task["id"], k, result)
            assert result["error_type"] == "state_mismatch", (task["id"], k, result)
            n += 1
            break
    assert n > 200


def test_ask_turns_fail_when_answered_with_a_call(splits):
    for task in _all(splits):
        if task["category"] not in ("miss_param", "miss_func"):
            continue
        k = next(k for k, t in enumerate(task["ground_truth"]) if not t)
        steps = [list(t) for t in task["ground_truth"]]
        steps[k] = list(steps[k + 1])  # acting at once instead of asking / refusing
        result = check(task, steps)
        assert result["error_type"] == "unexpected_call" and result["failed_turn"] == k


def test_extra_reads_still_pass(splits):
    for task in _all(splits)[:300]:
        reads = [c for t in task["ground_truth"] for c in t if c.split("(")[0] in READ_ONLY]
        steps = [list(t) for t in task["ground_truth"]]
        for turn in steps:
            if turn and reads:
                turn.insert(0, reads[0])  # a read that worked once is harmless later (state unchanged)
        result = check(task, steps)
        if not result["passed"]:  # only a read whose own arguments no longer exist may differ
            assert result["error_type"] == "response_mismatch", (task["id"], result)


# ----------------------------------------------------------------------------
# Splits, determinism, files


def test_templates_and_pools_split_cleanly():
    for module in (base, filesystem_intents, messaging, tickets, trading, travel):
        for name in ("PEOPLE", "STEMS", "DIRS", "TITLES", "COMPANIES", "CITIES", "USERNAMES"):
            pool = getattr(module, name, None)
            if pool:
                assert split_pool(pool, "test") and not set(split_pool(pool, "test")) & set(split_pool(pool, "train"))
    assert split_pool(travel.CITIES, "unseen") == split_pool(travel.CITIES, "test")
    assert split_templates(["a", "b", "c", "d"], "unseen") == ["c"]
    assert split_templates(["a", "b", "c", "d"], "train") == ["a", "b", "d"]
    assert split_templates(["a", "b", "c", "d"], "test") == ["a", "b", "d"]


def test_test_phrasings_are_unseen_combinations_of_seen_parts():
    templates = ["a {x}", "b {x}", "c {x}", "d {x}", "e {x}"]
    train, test = split_phrasings(templates, "train"), split_phrasings(templates, "test")
    assert split_phrasings(templates, "val") == train
    assert test and not set(train) & set(test)
    assert {t for t, f in test} == {t for t, f in train} == set(split_templates(templates, "train"))
    assert {f for t, f in train} == set(FRAMES)  # every frame is seen in train
    unseen = split_phrasings(templates, "unseen")
    assert {t for t, f in unseen} == {"c {x}"}


@pytest.mark.parametrize("split", ["test", "unseen"])
def test_no_user_message_of_a_held_out_split_appears_in_train(splits, split):
    train = set().union(*map(user_messages, splits["train"]))
    held = set().union(*map(user_messages, splits[split]))
    assert held and not train & held
    held_cities = split_pool(travel.CITIES, split)
    assert any(city in m for m in held for city in held_cities)
    assert not any(city in m for m in train for city in held_cities)


def test_test_uses_only_train_words_and_unseen_does_not(splits):
    known = {w for t in splits["train"] for m in user_messages(t) for w in words(m)}
    new = {s: [m for t in splits[s] for m in user_messages(t) if new_words(m, t, known)]
           for s in ("test", "unseen")}
    # test's phrasings are all train's, but 400 train tasks do not say every rare one (data_gen's
    # cpu split: 0 of 1,097 test messages hold a new word, 765 of 1,084 unseen ones)
    assert len(new["test"]) < 0.02 * sum(len(user_messages(t)) for t in splits["test"])
    assert len(new["unseen"]) > 0.3 * sum(len(user_messages(t)) for t in splits["unseen"])


def test_same_seed_same_bytes(tmp_path):
    sizes = {"train": 40, "val": 8, "test": 8}
    paths = []
    for i in range(2):
        tasks = [t for ts in generate_splits(SETTINGS, 7, sizes).values() for t in ts]
        paths.append(tmp_path / f"{i}.jsonl")
        save_tasks(paths[-1], tasks)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert load_tasks(paths[0]) == tasks
    other = [t for ts in generate_splits(SETTINGS, 8, sizes).values() for t in ts]
    assert other != tasks


def test_settings_restrict_classes_turns_categories():
    settings = dict(SETTINGS, classes=["TravelAPI"], max_turns=2, categories=["miss_func"])
    tasks = generate_splits(settings, 0, {"train": 30})["train"]
    assert all(t["involved_classes"] == ["TravelAPI"] and t["category"] == "miss_func" for t in tasks)
    assert all(len(t["question"]) <= 2 for t in tasks)
    env = ToolEnv.for_task(tasks[0])
    assert set(env.available_functions()) < set(env._owner)


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = generate_splits(SETTINGS, 0, {"train": 1})["train"][0]
    path.write_text(json.dumps(good) + "\n" + "{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_tasks(path)
    path.write_text(json.dumps({"id": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: task is missing"):
        load_tasks(path)


def test_data_gen_script_micro(tmp_path):
    outs = []
    for hash_seed in ("1", "2"):  # set iteration order must not leak into the files
        out = tmp_path / hash_seed
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "data_gen.py"), "--preset", "micro", "--seed", "3",
                               "--out", str(out), "--n-train", "60", "--n-val", "8", "--n-test", "12"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("overlap 0;") == 2  # test and unseen share no message with train
        outs.append([(out / f"tasks_{s}.jsonl").read_bytes() for s in ("train", "val", "test", "unseen")])
    assert outs[0] == outs[1]
    assert len(load_tasks(tmp_path / "1" / "tasks_train.jsonl")) == 60
