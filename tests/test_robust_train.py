"""Training scripts and checkpoints under bad conditions: every bad input ends in one clear line,
runs cannot run away or clobber each other, checkpoints survive moves, full disks, corruption and
Ctrl-C. A tiny model (1 layer, width 32) on 40 synthetic conversations: each run takes a second."""

import errno
import json
import os
import shutil
import signal

import pytest
import torch

import train_rl
import train_sft
from nanoparl import checkpoint as ckpt
from nanoparl.checkpoint import CheckpointError, list_steps, load_checkpoint, save_checkpoint
from nanoparl.common import add_threads_flag, init_distributed, run_cli, set_threads
from nanoparl.model import GPT, GPTConfig
from nanoparl.tokenizer import Tokenizer

TINY = ["--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--n-kv-head", "1", "--intermediate-size", "64"]


def conversation(i):
    return [{"role": "system", "content": "add(a: int, b: int)"},
            {"role": "user", "content": f"Add {i} and {i + 3}."},
            {"role": "assistant", "content": f"[add(a={i}, b={i + 3})]"},
            {"role": "tool", "content": json.dumps({"result": 2 * i + 3})},
            {"role": "assistant", "content": f"It is {2 * i + 3}."}]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("robust_data")
    convs = [conversation(i) for i in range(40)]
    Tokenizer.train([m["content"] for c in convs for m in c], vocab_size=300).save(str(d / "tokenizer.json"))
    (d / "format.json").write_text('{"functions": "signatures"}')
    for name, part in {"sft_plain_train": convs[:32], "sft_plain_val": convs[32:]}.items():
        with open(d / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps({"messages": c}) + "\n" for c in part)
    return str(d)


def sft(data_dir, out, *extra):
    return train_sft.main(["--preset", "micro", "--data", "plain", "--data-dir", data_dir, "--out", str(out),
                           *TINY, "--batch-size", "4", "--eval-every", "1000", "--eval-samples", "4",
                           "--log-every", "1000", *extra])


def weights(run, step=None):
    return load_checkpoint(str(run), step)[0].state_dict()


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------
# threads

def test_threads_flag_default_comes_from_the_env(monkeypatch):
    import argparse
    for env, want in (("", None), ("3", 3)):
        monkeypatch.setenv("THREADS", env)
        p = argparse.ArgumentParser()
        add_threads_flag(p)
        assert p.parse_args([]).threads == want
    monkeypatch.setenv("THREADS", "two")
    with pytest.raises(SystemExit, match="THREADS='two'"):
        add_threads_flag(argparse.ArgumentParser())
    monkeypatch.delenv("THREADS")
    assert train_sft.parse_args(["--data", "plain", "--out", "x", "--threads", "1"]).threads == 1
    assert train_rl.parse_args(["--algo", "pag-rl", "--init", "x", "--out", "y", "--threads", "1"]).threads == 1
    before = torch.get_num_threads()
    try:
        set_threads(2)
        assert torch.get_num_threads() == 2 and os.environ["RAYON_NUM_THREADS"] == "2"
    finally:
        torch.set_num_threads(before)
        monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    with pytest.raises(SystemExit, match="--threads must be at least 1"):
        set_threads(0)


def test_more_torchrun_ranks_than_gpus_is_one_line(monkeypatch):
    """Two ranks on a machine with one GPU: NCCL used to fail in rank 1 with a long trace (seen on an
    H100); now one line that says what to do. --device cpu puts the ranks on gloo instead."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for key, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as e:
        init_distributed("auto")
    assert str(e.value) == ("error: torchrun started local rank 1 but this machine has 1 GPU(s): one rank per "
                            "GPU (--nproc_per_node=1), or --device cpu")


def test_default_threads_are_the_idle_cores(monkeypatch):
    """No --threads, no $THREADS: one thread per core idle at start-up (a busy machine gets 1)."""
    from nanoparl import common
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(common.time, "sleep", lambda s: None)
    monkeypatch.setattr(common.os, "cpu_count", lambda: 2)
    before = torch.get_num_threads()
    try:
        for idle_jiffies, want in ((200, 2), (10, 1), (110, 1)):  # of 200 jiffies on 2 cores
            times = iter([(0, 0), (idle_jiffies, 200)])
            monkeypatch.setattr(common, "_cpu_times", lambda: next(times))
            torch.set_num_threads(2)
            assert set_threads(None) == want and torch.get_num_threads() == want
        monkeypatch.setattr(common, "_cpu_times", lambda: None)  # not Linux: torch's default stays
        torch.set_num_threads(2)
        assert set_threads(None) == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user decided: no probe
        monkeypatch.setattr(common, "_cpu_times", lambda: 1 / 0)
        assert set_threads(None) == 2
    finally:
        torch.set_num_threads(before)
        monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)


# ----------------------------------------------------------------------------
# stop conditions, bad flags

@pytest.mark.parametrize("flag,value", [("--max-steps", "-1"), ("--eval-every", "0"), ("--save-every", "0"),
                                        ("--batch-size", "0"), ("--log-every", "0"), ("--keep-last", "-1")])
def test_bad_settings_are_one_line(data_dir, tmp_path, flag, value):
    with pytest.raises(SystemExit, match=f"error: {flag} must be at least"):
        sft(data_dir, tmp_path / "a", flag, value)
    assert not os.path.exists(tmp_path / "a")  # refused before anything was written


def test_unknown_preset_and_conflicting_flags_are_argparse_errors(capsys):
    for argv in (["--preset", "nope"], ["--resume", "--overwrite"]):
        with pytest.raises(SystemExit) as e:
            train_sft.parse_args(["--data", "plain", "--out", "x", *argv])
        assert e.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_resume_past_max_steps_stops_at_once_and_deletes_nothing(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    sft(data_dir, run, "--max-steps", "4", "--save-every", "2")
    files = {f: os.path.getmtime(run / f) for f in os.listdir(run)}
    assert sft(data_dir, run, "--max-steps", "2", "--resume") == {}
    assert {f: os.path.getmtime(run / f) for f in os.listdir(run)} == files
    assert "at step 4, at or past --max-steps 2: nothing to train" in capsys.readouterr().out


# ----------------------------------------------------------------------------
# the run folder: refuse, --overwrite

def test_rerun_without_resume_is_refused_and_overwrite_starts_over(data_dir, tmp_path):
    run = tmp_path / "run"
    sft(data_dir, run, "--max-steps", "4", "--save-every", "2")
    with pytest.raises(CheckpointError, match=r"already holds checkpoints \(steps \[2, 4\]\).*--resume.*--overwrite"):
        sft(data_dir, run, "--max-steps", "2")
    assert list_steps(str(run)) == [2, 4]
    sft(data_dir, run, "--max-steps", "2", "--save-every", "1", "--overwrite")
    assert list_steps(str(run)) == [1, 2]  # the old run's step 4 is gone, the new run's steps kept
    logged = [json.loads(line)["step"] for line in open(run / "log.jsonl")]
    assert logged == [0, 2, 2]  # the old run's log went with it


# ----------------------------------------------------------------------------
# checkpoints: tokenizer copy, atomic writes, non-finite weights, export

def tiny_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=300, n_layer=1, n_head=2, n_kv_head=1, n_embd=16, intermediate_size=32,
                         block_size=64))


def test_checkpoint_loads_after_moving_the_run_and_the_data(data_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    vocab = Tokenizer.load(str(data / "tokenizer.json")).vocab_size
    save_checkpoint(str(tmp_path / "run"), 3, tiny_model(), meta={"tokenizer": str(data / "tokenizer.json")})
    assert json.load(open(tmp_path / "run" / "meta_3.json"))["tokenizer"] == "tokenizer.json"
    shutil.move(tmp_path / "run", tmp_path / "moved")
    shutil.rmtree(data)
    model, meta = load_checkpoint(str(tmp_path / "moved"))
    assert meta["tokenizer"] == str(tmp_path / "moved" / "tokenizer.json")
    assert Tokenizer.load(meta["tokenizer"]).vocab_size == vocab


def test_old_checkpoint_with_an_absolute_tokenizer_path(data_dir, tmp_path):
    run = tmp_path / "old"
    save_checkpoint(str(run), 1, tiny_model())
    meta = json.load(open(run / "meta_1.json"))
    meta["tokenizer"] = os.path.join(data_dir, "tokenizer.json")  # what checkpoints used to store
    (run / "meta_1.json").write_text(json.dumps(meta))
    assert load_checkpoint(str(run))[1]["tokenizer"] == meta["tokenizer"]
    meta["tokenizer"] = str(tmp_path / "gone" / "tokenizer.json")
    (run / "meta_1.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"meta_1.json: its tokenizer is not in the run folder .*gone"):
        load_checkpoint(str(run))


def test_full_disk_names_the_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    run = tmp_path / "run"
    save_checkpoint(str(run), 1, tiny_model())

    fsync, calls = os.fsync, []

    def full_at_the_second_file(fd):  # the weights fit, the training state does not
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)
    monkeypatch.setattr(ckpt.os, "fsync", full_at_the_second_file)
    with pytest.raises(CheckpointError, match=r"cannot write .*train_2.pt: No space left on device"):
        save_checkpoint(str(run), 2, tiny_model(), train_state={"x": 1})
    assert sorted(os.listdir(run)) == ["meta_1.json", "model_1.safetensors"]  # no temp file, no half step
    monkeypatch.undo()
    assert load_checkpoint(str(run))[1]["step"] == 1


def test_non_finite_weights_are_refused_at_load(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    save_checkpoint(str(tmp_path), 1, model)
    with pytest.raises(CheckpointError, match=r"model_1.safetensors: tensor layers.0.mlp.up_proj.weight holds non-finite"):
        load_checkpoint(str(tmp_path))


def test_export_command_writes_a_transformers_folder(data_dir, tmp_path, capsys):
    save_checkpoint(str(tmp_path / "run"), 5, tiny_model(), meta={"tokenizer": os.path.join(data_dir, "tokenizer.json")})
    ckpt.main(["export", str(tmp_path / "run"), str(tmp_path / "hf")])
    assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors", "tokenizer.json"]
    config = json.load(open(tmp_path / "hf" / "config.json"))
    assert config["num_hidden_layers"] == 1 and config["eos_token_id"] is not None
    assert "exported" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="error: no checkpoint"):
        ckpt.main(["export", str(tmp_path / "hf"), str(tmp_path / "hf2")])


# ----------------------------------------------------------------------------
# resume over a corrupt checkpoint, Ctrl-C

def test_resume_skips_a_corrupt_newest_checkpoint(data_dir, tmp_path, capsys):
    full, run = tmp_path / "full", tmp_path / "run"
    sft(data_dir, full, "--max-steps", "4", "--save-every", "2", "--keep-last", "5")
    shutil.copytree(full, run)
    data = (run / "model_4.safetensors").read_bytes()
    (run / "model_4.safetensors").write_bytes(data[:len(data) // 2])  # the newest step is truncated
    capsys.readouterr()
    sft(data_dir, run, "--max-steps", "4", "--save-every", "2", "--keep-last", "5", "--resume")
    out = capsys.readouterr().out
    assert "resume: skipping the checkpoint of step 4" in out and "model_4.safetensors" in out
    assert f"resumed from {run} step 2" in out
    assert os.path.exists(run / "meta_4.json.corrupt")  # set aside, not deleted
    assert same(weights(full, 4), weights(run, 4))  # went on from step 2 exactly


def test_ctrl_c_saves_the_current_step_and_resume_continues_exactly(data_dir, tmp_path, monkeypatch, capsys):
    common = ["--max-steps", "5", "--save-every", "1000", "--keep-last", "0"]
    sft(data_dir, tmp_path / "full", *common)
    handler = signal.getsignal(signal.SIGINT)
    real = train_sft.batch_indices

    def ctrl_c_in_step_2(lengths, batch_size, step, seed):
        if step == 2:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers, in the middle of a step
        return real(lengths, batch_size, step, seed)
    monkeypatch.setattr(train_sft, "batch_indices", ctrl_c_in_step_2)
    with pytest.raises(SystemExit) as e:
        sft(data_dir, tmp_path / "run", *common)
    assert e.value.code == 130
    assert list_steps(str(tmp_path / "run")) == [3]  # step 2 ran to its end, then the loop saved
    assert f"interrupted at step 3: saved {tmp_path / 'run' / 'model_3.safetensors'}" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is handler  # the script's handler was removed on the way out
    monkeypatch.undo()
    sft(data_dir, tmp_path / "run", *common, "--resume")
    assert same(weights(tmp_path / "full", 5), weights(tmp_path / "run", 5))


# ----------------------------------------------------------------------------
# one line, not a traceback

def test_bad_inputs_end_in_one_line(data_dir, tmp_path, capsys):
    other = tmp_path / "other_vocab"
    save_checkpoint(str(other), 1, tiny_model())  # a 300-token model; the data's tokenizer has fewer
    cases = [
        (["--data-dir", str(tmp_path / "nowhere")], "no tokenizer at"),
        (["--init", str(tmp_path / "no_run")], "no_run"),
        (["--init", str(other)], "come from different data"),
        (["--device", "nope"], "--device nope"),
    ]
    for extra, words in cases:
        with pytest.raises(SystemExit) as e:
            run_cli(lambda: sft(data_dir, tmp_path / "a", *extra))
        assert str(e.value).startswith("error: ") and words in str(e.value) and "\n" not in str(e.value)
    empty = tmp_path / "empty"
    shutil.copytree(data_dir, empty)
    (empty / "sft_plain_train.jsonl").write_text("")
    with pytest.raises(SystemExit, match="error: .*sft_plain_train.jsonl: no usable samples"):
        run_cli(lambda: sft(str(empty), tmp_path / "b"))


def test_rl_without_tasks_is_one_line(data_dir, tmp_path):
    init = tmp_path / "init"
    save_checkpoint(str(init), 1, tiny_model(), meta={"tokenizer": os.path.join(data_dir, "tokenizer.json")})
    (tmp_path / "tasks_train.jsonl").write_text("")
    (tmp_path / "tasks_val.jsonl").write_text("")
    argv = ["--preset", "micro", "--algo", "pag-rl", "--init", str(init), "--data-dir", str(tmp_path),
            "--out", str(tmp_path / "rl")]
    with pytest.raises(SystemExit, match=r"error: .*tasks_train.jsonl holds no tasks"):
        train_rl.main(argv)
    with pytest.raises(SystemExit, match="error: --group-size must be at least 2"):
        train_rl.main(argv + ["--group-size", "0"])


def test_resume_with_another_tokenizer_is_refused(data_dir, tmp_path):
    run = tmp_path / "run"
    sft(data_dir, run, "--max-steps", "2")
    other = tmp_path / "other"
    shutil.copytree(data_dir, other)
    convs = [conversation(100 + i) for i in range(40)]
    Tokenizer.train([m["content"] for c in convs for m in c] * 3, vocab_size=280).save(str(other / "tokenizer.json"))
    with pytest.raises(CheckpointError, match=r"run/tokenizer.json differs from .*other/tokenizer.json"):
        sft(str(other), run, "--max-steps", "4", "--resume")


def test_rl_init_without_a_tokenizer_is_one_line(tmp_path):
    save_checkpoint(str(tmp_path / "init"), 1, tiny_model())  # weights only, no "tokenizer" in the meta
    with pytest.raises(SystemExit, match="error: --init .*names no tokenizer"):
        train_rl.main(["--preset", "micro", "--algo", "pag-rl", "--init", str(tmp_path / "init"),
                       "--data-dir", str(tmp_path), "--out", str(tmp_path / "rl")])


# ----------------------------------------------------------------------------
# resume: what it refuses, and a log that equals the uninterrupted run's

def test_killed_past_its_last_checkpoint_resumes_to_the_same_log(data_dir, tmp_path, monkeypatch):
    common = ["--max-steps", "6", "--eval-every", "2", "--save-every", "2", "--log-every", "1", "--keep-last", "0"]
    sft(data_dir, tmp_path / "full", *common)
    real = train_sft.batch_indices

    def killed_in_step_5(lengths, batch_size, step, seed):  # after step 4's checkpoint and step 5's log row
        if step == 5:
            raise KeyboardInterrupt  # a second Ctrl-C, or SIGKILL: nothing is saved
        return real(lengths, batch_size, step, seed)
    monkeypatch.setattr(train_sft, "batch_indices", killed_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        sft(data_dir, tmp_path / "run", *common)
    monkeypatch.undo()
    assert list_steps(str(tmp_path / "run")) == [2, 4]
    sft(data_dir, tmp_path / "run", *common, "--resume")

    def log(run):  # timestamps aside
        return [{k: v for k, v in json.loads(line).items() if k not in ("time", "time_s")}
                for line in open(run / "log.jsonl")]
    assert [row["step"] for row in log(tmp_path / "run")] == [0, 1, 2, 2, 3, 4, 4, 5, 6, 6]
    assert log(tmp_path / "run") == log(tmp_path / "full")
    assert same(weights(tmp_path / "full", 6), weights(tmp_path / "run", 6))


def test_resume_refuses_weights_without_meta_and_skips_a_meta_without_config(data_dir, tmp_path):
    run = tmp_path / "run"
    sft(data_dir, run, "--max-steps", "4", "--save-every", "2", "--keep-last", "0")
    for step in (2, 4):
        os.remove(run / f"meta_{step}.json")
    log = (run / "log.jsonl").read_bytes()
    with pytest.raises(CheckpointError, match=r"holds model_2.safetensors, model_4.safetensors, train_2.pt but no "
                                              r"meta_<step>.json .*nothing to resume; --overwrite"):
        sft(data_dir, run, "--max-steps", "4", "--resume")
    assert (run / "log.jsonl").read_bytes() == log and len(os.listdir(run)) == 6  # nothing overwritten

    other = tmp_path / "other"
    sft(data_dir, other, "--max-steps", "2", "--save-every", "2")
    meta = json.load(open(other / "meta_2.json"))
    del meta["config"]
    (other / "meta_2.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"^no intact checkpoint to resume in .*other: step 2: .*meta_2.json: "
                                              r"no model config in it$"):
        sft(data_dir, other, "--max-steps", "4", "--resume")


def test_a_run_that_saved_nothing_leaves_no_log_rows_behind(data_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 0, "loss": 9.0}\n{"step": 1, "loss": 8.0}\n')  # killed before a save
    sft(data_dir, run, "--max-steps", "2", "--resume")
    assert [json.loads(line)["step"] for line in open(run / "log.jsonl")] == [0, 2, 2]  # this run's rows only


def test_export_onto_a_file_and_a_meta_of_random_bytes_name_the_path(data_dir, tmp_path):
    save_checkpoint(str(tmp_path / "run"), 5, tiny_model(), meta={"tokenizer": os.path.join(data_dir, "tokenizer.json")})
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit, match=r"^error: cannot export to \S+/taken: it exists and is not a folder$"):
        ckpt.main(["export", str(tmp_path / "run"), str(tmp_path / "taken")])
    (tmp_path / "run" / "meta_5.json").write_bytes(os.urandom(64) + b"\xff")
    with pytest.raises(SystemExit, match=r"^error: \S+/meta_5.json: corrupt JSON \(\S+/meta_5.json: not UTF-8"):
        ckpt.main(["export", str(tmp_path / "run"), str(tmp_path / "hf")])
