"""eval.py and data_gen.py on bad or awkward input: rows that keep their names, flags refused before
any work, progress per finished rollout, plain progress lines in a log file, the default preset."""

import errno
import json
import os
import re
import shutil
import sys

import pytest
import torch

from nanoparl.chat import data_listing, listing_of
from nanoparl.checkpoint import save_checkpoint
from nanoparl.common import PRESETS, default_preset, run_cli
from nanoparl.model import GPT, GPTConfig
from nanoparl.tokenizer import Tokenizer
from nanoparl.world.tasks import load_tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import data_gen  # noqa: E402
import eval as evaluation  # noqa: E402

SMALL = ["--preset", "micro", "--n-train", "30", "--n-val", "4", "--n-test", "8", "--n-base", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("robust_eval") / "data"
    data_gen.main(SMALL + ["--out", str(out)])
    return str(out)


def tiny_checkpoint(data_dir, run_dir):
    tok = Tokenizer.load(os.path.join(data_dir, "tokenizer.json"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                          intermediate_size=32, block_size=2048))
    save_checkpoint(str(run_dir), 0, model, meta={"tokenizer": os.path.join(data_dir, "tokenizer.json"),
                                                  "policy": "awareness"})
    return str(run_dir)


def eval_args(data_dir, *extra):
    return ["--preset", "micro", "--data-dir", data_dir, "--max-tasks", "4", "--step-tokens", "4", *extra]


# ----------------------------------------------------------------------------
# eval.py

def test_runs_with_the_same_folder_name_get_their_own_rows(data, tmp_path, capsys):
    a = tiny_checkpoint(data, tmp_path / "a" / "sft_pag")
    b = tiny_checkpoint(data, tmp_path / "b" / "sft_pag")
    other = tiny_checkpoint(data, tmp_path / "b" / "other")
    out = tmp_path / "new" / "folder" / "results.json"  # --out's folder is created
    results = evaluation.main(eval_args(data, "--ckpt", a, b, other, "--show", "1", "--out", str(out)))
    assert list(results) == ["a/sft_pag", "b/sft_pag", "other"]
    assert list(json.load(open(out))) == ["a/sft_pag", "b/sft_pag", "other"]
    printed = capsys.readouterr().out
    for name in results:  # a transcript names its row, and the table has one line per row
        assert f"=== {name} | " in printed
        assert any(line.startswith(name + " ") for line in printed.splitlines())


def test_row_names():
    assert evaluation.row_names(["/x/a/run", "/x/b/run", "/x/c"]) == ["a/run", "b/run", "c"]
    assert evaluation.row_names(["/x/oracle"], taken=["oracle"]) == ["x/oracle"]
    with pytest.raises(SystemExit, match="given twice"):
        evaluation.row_names(["runs/a", "runs/../runs/a"])


def refused(run, capsys):
    """Run; it must stop with SystemExit. -> the message (argparse writes it to stderr)."""
    with pytest.raises(SystemExit) as e:
        run()
    return f"{e.value.code} {capsys.readouterr().err}"


@pytest.mark.parametrize("extra, message", [
    (["--samples", "0"], "--samples must be at least 1"),
    (["--max-tasks", "0"], "--max-tasks must be at least 1"),
    (["--batch-tasks", "0"], "--batch-tasks must be at least 1"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--temperature", "-1"], "--temperature must be at least 0"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--ckpt", "no/such/run"], "not a run directory"),
    (["--out", "."], "is a directory"),
    (["--split", "val", "--data-dir", "no/such/dir"], "no no/such/dir/tasks_val.jsonl"),
])
def test_bad_eval_input_stops_before_any_rollout(data, extra, message, monkeypatch, capsys):
    def rollouts_ran(*a, **kw):
        raise AssertionError("rollouts ran before the input was checked")
    monkeypatch.setattr(evaluation.AgentLoop, "run", rollouts_ran)
    assert message in refused(lambda: evaluation.main(eval_args(data, "--agent", "oracle", *extra)), capsys)


def test_a_data_folders_listing_is_read_or_its_file_named(data, tmp_path, capsys):
    # required: without it, training rendered one system prompt and recorded another in its checkpoint
    with pytest.raises(ValueError, match=r"no \S+/format.json: it says how the data lists functions"):
        data_listing(str(tmp_path))
    (tmp_path / "format.json").write_text('{"functions": "names"}')
    assert data_listing(str(tmp_path)) == "names"
    for text, message in (('{"functions": ', "format.json: not a JSON object"), ("[1]", "format.json: not a JSON object"),
                          ('{"functions": "emoji"}', "format.json: \"functions\" is 'emoji'; expected one of")):
        (tmp_path / "format.json").write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            data_listing(str(tmp_path))
    for name in ("tasks_test.jsonl", "tokenizer.json"):
        shutil.copy(os.path.join(data, name), tmp_path)
    message = refused(lambda: evaluation.main(eval_args(str(tmp_path), "--agent", "oracle")), capsys)
    assert "format.json: \"functions\" is 'emoji'" in message


def test_empty_task_file_and_a_run_given_twice(data, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "tasks_test.jsonl").write_text("")
    assert "holds no tasks" in refused(lambda: evaluation.main(eval_args(str(empty), "--agent", "oracle")), capsys)
    run = tiny_checkpoint(data, tmp_path / "run")
    assert "given twice" in refused(lambda: evaluation.main(eval_args(data, "--ckpt", run, run)), capsys)


def test_out_folder_is_made_before_the_evaluation(data, tmp_path, monkeypatch):
    def rollouts_ran(*a, **kw):
        raise AssertionError("rollouts ran")
    monkeypatch.setattr(evaluation.AgentLoop, "run", rollouts_ran)
    out = tmp_path / "later" / "x.json"
    with pytest.raises(AssertionError, match="rollouts ran"):
        evaluation.main(eval_args(data, "--agent", "oracle", "--out", str(out)))
    assert out.parent.is_dir()


class Recorder:
    def __init__(self):
        self.updates = []

    def update(self, n):
        self.updates.append(n)


def test_progress_moves_per_finished_rollout_not_per_batch(data):
    tok = Tokenizer.load(os.path.join(data, "tokenizer.json"))
    tasks = load_tasks(os.path.join(data, "tasks_test.jsonl"))
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                          intermediate_size=32, block_size=2048)).eval()
    progress = Recorder()
    listing = listing_of(json.load(open(os.path.join(data, "format.json"))))
    loop = evaluation.CountingOracleLoop(model, tok, "history", listing, progress=progress)
    rollouts = loop.run(tasks, samples=2)  # one batch: the oracle's tasks end at different steps
    moves = [n for n in progress.updates if n > 0]
    assert sum(progress.updates) == len(rollouts) == 2 * len(tasks)
    assert len(moves) >= 2, progress.updates


def test_progress_in_a_log_file_is_plain_lines(monkeypatch, capsys):
    progress = evaluation.Progress("eval x", 10, tty=False)
    for _ in range(10):  # fast: no line before the end (at most one per 10 s)
        progress.update(1)
    assert capsys.readouterr().out.splitlines() == ["eval x: 10/10 rollouts | 0s"]
    clock = iter(range(0, 1000, 20))  # 20 s between calls: a line at every further 10%
    monkeypatch.setattr(evaluation.time, "time", lambda: next(clock))
    progress = evaluation.Progress("eval x", 10, tty=False)
    for n in (1, 1, 3, 5):
        progress.update(n)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines] == [f"eval x: {n}/10 rollouts" for n in (1, 2, 5, 10)]
    assert "\r" not in "".join(lines)


# ----------------------------------------------------------------------------
# data_gen.py

def test_data_gen_default_preset_is_the_other_scripts_default():
    assert data_gen.parse_args([]).preset == default_preset()


def test_flags_default_to_the_preset_and_override_it():
    args = data_gen.parse_args(["--preset", "micro", "--n-val", "7"])
    assert args.n_train == PRESETS["micro"]["data"]["n_train"] and args.n_val == 7
    assert args.classes == PRESETS["micro"]["data"]["classes"] and args.vocab_size == 512
    assert data_gen.parse_args(["--preset", "micro", "--classes", "MathAPI,TicketAPI"]).classes == ["MathAPI",
                                                                                                    "TicketAPI"]


@pytest.mark.parametrize("extra, message", [
    (["--max-tasks", "0"], "--max-tasks must be at least 1"),
    (["--n-val", "0"], "--n-val must be at least 1"),
    (["--vocab-size", "100"], "--vocab-size must be at least 266"),
    (["--mask-p", "2"], "--mask-p must be in [0, 1]"),
    (["--verify-with", "no/such/run"], "not a run directory"),
    (["--classes", "MathAPI"], "could not make task"),
    (["--classes", "MathAPI,NoSuchAPI"], "unknown classes/categories: ['NoSuchAPI']"),
])
def test_bad_data_gen_input_stops_before_writing(tmp_path, extra, message, capsys):
    out = tmp_path / "d"
    assert message in refused(lambda: data_gen.main(SMALL + ["--out", str(out)] + extra), capsys)
    assert not out.exists()


def test_data_gen_refuses_a_file_as_out_and_takes_single_turn_val(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert "is a file" in refused(lambda: data_gen.main(SMALL + ["--out", str(tmp_path / "f")]), capsys)
    assert "cannot create it" in refused(lambda: data_gen.main(SMALL + ["--out", str(tmp_path / "f" / "d")]), capsys)
    data_gen.main(SMALL + ["--out", str(tmp_path / "d"), "--max-turns", "1", "--categories", "base", "--n-val", "1"])
    assert "no val task has 2 turns or more" in capsys.readouterr().out


def test_seed_groups_mean_and_sample_std():
    def row(acc, steps, ctx, empty, tasks=10):
        return {"overall": {"accuracy": acc, "steps": steps, "ctx_mean": ctx, "tasks": tasks,
                            "errors": {"empty_turn": empty} if empty else {}}}
    results = {"sft_pag": row(0.5, 6.0, 250, 0),
               "parl_mt_s1": row(0.6, 5.0, 240, 1), "parl_mt_s2": row(0.7, 6.0, 260, 0),
               "parl_mt_s3": row(0.8, 7.0, 250, 2),
               "mt_grpo_s1": row(0.1, 9.0, 500, 0),          # one seed: no group
               "a/b_sx": row(0.0, 1.0, 1, 0)}                # not a seed suffix
    groups = evaluation.seed_groups(results)
    assert list(groups) == ["parl_mt"]
    g = groups["parl_mt"]
    assert g["accuracy"][0] == pytest.approx(0.7) and g["accuracy"][2] == 3
    assert g["accuracy"][1] == pytest.approx(0.1)            # sample std of 0.6, 0.7, 0.8
    assert g["steps"][:2] == pytest.approx((6.0, 1.0))
    assert g["empty_turn"][0] == pytest.approx(0.1)           # (1 + 0 + 2) / 3 / 10 tasks


# ----------------------------------------------------------------------------
# data_gen.py: an existing data folder is protected; a full disk or Ctrl-C leaves the old data whole

def folder_bytes(folder):  # a stopped run's .partial folder aside (the next run removes it)
    return {f: (folder / f).read_bytes() for f in sorted(os.listdir(folder)) if f != ".partial"}


def test_data_gen_protects_an_existing_data_folder(data, tmp_path, capsys):
    out = tmp_path / "d"
    shutil.copytree(data, out)
    (out / "sft_pag_verified_val.jsonl").write_text("")  # verified from the old data: stale after a rewrite
    before = folder_bytes(out)
    message = refused(lambda: data_gen.main(SMALL + ["--out", str(out), "--seed", "1"]), capsys)
    assert message.startswith("2 error: --out") and "already holds data" in message and "--overwrite" in message
    assert folder_bytes(out) == before
    data_gen.main(SMALL + ["--out", str(out), "--seed", "1", "--overwrite"])
    after = folder_bytes(out)
    assert sorted(after) == sorted(set(before) - {"sft_pag_verified_val.jsonl"})  # no .partial, no .tmp
    assert after["tasks_train.jsonl"] != before["tasks_train.jsonl"]  # seed 1's data, not seed 0's


def test_data_gen_full_disk_or_ctrl_c_leaves_the_old_data_whole(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "d"
    shutil.copytree(data, out)
    before = folder_bytes(out)
    fsync, calls = os.fsync, []

    def full_at_the_second_file(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)
    monkeypatch.setattr(os, "fsync", full_at_the_second_file)
    message = refused(lambda: run_cli(lambda: data_gen.main(SMALL + ["--out", str(out), "--overwrite"])), capsys).strip()
    assert re.fullmatch(r"error: cannot write \S+/tasks_val.jsonl: No space left on device", message), message
    monkeypatch.setattr(os, "fsync", fsync)
    assert folder_bytes(out) == before

    def ctrl_c(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(data_gen.Tokenizer, "train", ctrl_c)  # half-way: the tasks are written by then
    for folder in (out, tmp_path / "new"):
        assert refused(lambda: run_cli(lambda: data_gen.main(SMALL + ["--out", str(folder), "--overwrite"])),
                       capsys).strip() == "130 interrupted"
    assert folder_bytes(out) == before
    assert data_gen.data_files(str(tmp_path / "new")) == []  # no data, so a rerun needs no --overwrite


def test_the_oracle_row_and_checkpoint_rows_share_one_table(data, tmp_path, capsys):
    run = tiny_checkpoint(data, tmp_path / "sft_pag")
    results = evaluation.main(eval_args(data, "--agent", "oracle", "--ckpt", run))
    assert list(results) == ["oracle", "sft_pag"] and results["oracle"]["overall"]["accuracy"] == 1.0
    table = capsys.readouterr().out.split("split, 4 tasks")[1].splitlines()
    assert [line.split()[:2] for line in table[2:4]] == [["oracle", "history"], ["sft_pag", "awareness"]]


def test_a_checkpoint_with_an_unknown_listing_is_refused_before_any_rollout(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    tiny_checkpoint(data, run)
    meta = json.load(open(run / "meta_0.json"))
    (run / "meta_0.json").write_text(json.dumps(dict(meta, format={"functions": "emoji"})))

    def rollouts_ran(*a, **kw):
        raise AssertionError("rollouts ran before the input was checked")
    monkeypatch.setattr(evaluation.AgentLoop, "run", rollouts_ran)
    message = refused(lambda: evaluation.main(eval_args(data, "--agent", "oracle", "--ckpt", str(run))), capsys)
    assert f"error: {run}: its format lists functions as 'emoji'; expected one of" in message
    (run / "meta_0.json").write_text(json.dumps(dict(meta, format="names")))
    message = refused(lambda: evaluation.main(eval_args(data, "--agent", "oracle", "--ckpt", str(run))), capsys)
    assert f"error: {run}: its format is 'names', not an object such as" in message
