"""Every script's command line: a bad flag, a NaN, an infinity or a negative number ends in one line
`error: ...` that names the flag, before any work starts; argparse's own errors are one line too."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import bench  # noqa: E402
import data_gen  # noqa: E402
import eval as evaluation  # noqa: E402
import train_rl  # noqa: E402
import train_sft  # noqa: E402
from nanoparl.common import run_cli  # noqa: E402

SFT = ["--preset", "micro", "--data", "plain", "--out", "never"]
RL = ["--preset", "micro", "--algo", "pag-rl", "--init", "x", "--out", "never"]


def refused(run, capsys):
    """Run; it must stop with SystemExit. -> "<exit code> <stderr>" (one line, without a traceback)."""
    with pytest.raises(SystemExit) as e:
        run()
    return f"{e.value.code} {capsys.readouterr().err}".strip()


@pytest.mark.parametrize("script, argv, message", [
    (train_sft, SFT + ["--lr", "nan"], "error: --lr must be a finite number (got nan)"),
    (train_sft, SFT + ["--lr", "inf"], "error: --lr must be a finite number (got inf)"),
    (train_sft, SFT + ["--lr", "-1"], "error: --lr must be at least 0 (got -1.0)"),
    (train_sft, SFT + ["--min-lr-frac", "2"], "error: --min-lr-frac must be in [0, 1] (got 2.0)"),
    (train_sft, SFT + ["--grad-clip=-inf"], "error: --grad-clip must be a finite number"),
    (train_sft, SFT + ["--seed", "-1"], "error: --seed must be at least 0"),
    (train_rl, RL + ["--group-size", "1"], "error: --group-size must be at least 2 (got 1): a group of one has "
                                           "advantage 0"),
    (train_rl, RL + ["--temperature", "0"], "error: --temperature must be above 0: greedy rollouts"),
    (train_rl, RL + ["--kl", "-0.1"], "error: --kl must be at least 0"),
    (train_rl, RL + ["--w-format", "nan"], "error: --w-format must be a finite number"),
    (evaluation, ["--temperature", "nan"], "error: --temperature must be a finite number"),
    (evaluation, ["--top-p", "nan"], "error: --top-p must be a finite number"),
    (data_gen, ["--augment", "inf"], "error: --augment must be a finite number"),
    (data_gen, ["--long-output-chars", "-5"], "error: --long-output-chars must be at least 1"),
])
def test_every_number_is_checked_in_one_line(script, argv, message, capsys):
    got = refused(lambda: script.parse_args(argv), capsys)
    assert message in got and "\n" not in got


@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope"], "2 error: argument --preset: invalid choice: 'nope'"),
    (["--only", "bogus"], "2 error: --only bogus: the sections are model,"),
    (["--seq-len", "-5"], "error: --seq-len must be at least 1 (got -5)"),
    (["--only", "memory", "--batch-size", "0"], "error: --batch-size must be at least 1 (got 0)"),
    (["--only", "memory", "--device", "nope"], "error: --device nope: "),
])
def test_bench_goes_through_the_same_checks(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench.py", *argv])
    got = refused(lambda: run_cli(bench.main), capsys)
    assert got.startswith(message) and "\n" not in got


def test_argparse_errors_are_one_line_and_help_is_whole():
    for argv in (["train_sft.py", "--bogus"], ["eval.py", "--samples", "two"], ["train_rl.py"]):
        r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    r = subprocess.run([sys.executable, "-m", "nanoparl.checkpoint", "export"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    r = subprocess.run([sys.executable, "eval.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("usage: ") and "--temperature" in r.stdout
