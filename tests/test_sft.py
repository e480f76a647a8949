"""SFT: masked loss, overfitting a handful of samples, exact resume, DDP == single process; the base
stage (loss on every token, --init chains it into SFT); the copy probe."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import train_sft
from nanoparl.checkpoint import load_checkpoint
from nanoparl.common import run_cli
from nanoparl.probe import evaluate
from nanoparl.sft_data import collate, load_samples
from nanoparl.tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conversation(i):
    code = f"{1000 + 37 * i}"
    return [
        {"role": "system", "content": "book(city: str)\ninsure(booking_id: str)"},
        {"role": "user", "content": f"Book a trip to city {i % 7}."},
        {"role": "assistant", "content": f"[book(city='c{i % 7}')]"},
        {"role": "tool", "content": json.dumps({"booking_id": code})},
        {"role": "assistant", "content": f"Booked, id {code}."},
        {"role": "user", "content": "Insure it."},
        {"role": "assistant", "content": f"[insure(booking_id='{code}')]"},
        {"role": "tool", "content": json.dumps({"insured": True})},
        {"role": "assistant", "content": "Insured."},
    ]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sftdata")
    convs = [conversation(i) for i in range(40)]
    texts = [m["content"] for c in convs for m in c]
    Tokenizer.train(texts, vocab_size=300).save(str(d / "tokenizer.json"))
    (d / "format.json").write_text('{"functions": "signatures"}')
    files = {"sft_plain_train": convs[:32], "sft_plain_val": convs[32:], "base_train": convs[:32],
             "sft_pag_train": convs[:32], "sft_pag_val": convs[32:]}
    for name, part in files.items():
        with open(d / f"{name}.jsonl", "w") as f:
            for c in part:
                f.write(json.dumps({"messages": c}) + "\n")
    return str(d)


def test_loss_ignores_mask0_tokens(data_dir):
    tok = Tokenizer.load(os.path.join(data_dir, "tokenizer.json"))
    conv = conversation(3)[:4]  # ends with a tool message: nothing trained comes after it
    other = conv[:3] + [{"role": "tool", "content": '{"booking_id": "9999", "extra": "zzz"}'}]
    samples = [tuple(np.array(x) for x in tok.render(c)) for c in (conv, other)]
    torch.manual_seed(0)
    from nanoparl.model import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                          intermediate_size=32, block_size=128))
    losses = []
    for s in samples:
        idx, targets = collate([s], tok.end_id)
        assert ((targets != -1).numpy() == (s[1][1:] == 1)).all()  # targets exist exactly on mask 1
        losses.append(model(idx, targets=targets)[1].item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-7)


def test_malformed_sample_names_file_and_line(tmp_path, data_dir):
    tok = Tokenizer.load(os.path.join(data_dir, "tokenizer.json"))
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": conversation(0)}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_samples(str(path), tok, 512)


def run(data_dir, out, *extra):
    return train_sft.main(["--preset", "micro", "--data", "plain", "--data-dir", data_dir, "--out", str(out),
                           "--log-every", "1000", *extra])


def test_micro_run_overfits_a_handful(data_dir, tmp_path):
    metrics = run(data_dir, tmp_path / "a", "--max-steps", "150", "--batch-size", "8", "--lr", "1e-2",
                  "--warmup-steps", "10", "--eval-every", "1000", "--save-every", "1000")
    model, meta = load_checkpoint(str(tmp_path / "a"))
    assert meta["step"] == 150 and meta["policy"] == "history"
    tok = Tokenizer.load(os.path.join(data_dir, "tokenizer.json"))
    samples, _ = load_samples(os.path.join(data_dir, "sft_plain_train.jsonl"), tok, 512)
    m = evaluate(model, samples, tok, torch.device("cpu"), 8)
    assert m["val_loss"] < 0.3, m
    assert metrics["val_loss"] < 1.0


def test_resume_is_exact(data_dir, tmp_path):
    common = ["--max-steps", "8", "--batch-size", "4", "--save-every", "4", "--eval-every", "4",
              "--keep-last", "5"]
    run(data_dir, tmp_path / "full", *common)
    # a run killed somewhere in steps 5..8 leaves exactly the step-4 checkpoint on disk
    os.makedirs(tmp_path / "killed")
    for name in ("model_4.safetensors", "meta_4.json", "train_4.pt"):
        os.link(tmp_path / "full" / name, tmp_path / "killed" / name)
    run(data_dir, tmp_path / "killed", *common, "--resume")
    a = load_checkpoint(str(tmp_path / "full"), 8)[0].state_dict()
    b = load_checkpoint(str(tmp_path / "killed"), 8)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_micro_batches_accumulate_to_the_full_batch(data_dir, tmp_path):
    # on the CPU in fp32 (on a GPU, bf16 autocast rounds the two summation orders apart)
    common = ["--max-steps", "3", "--batch-size", "4", "--eval-every", "1000", "--save-every", "1000", "--device", "cpu"]
    run(data_dir, tmp_path / "full", *common)
    run(data_dir, tmp_path / "micro", *common, "--micro-batch-size", "1")
    a = load_checkpoint(str(tmp_path / "full"))[0].state_dict()
    b = load_checkpoint(str(tmp_path / "micro"))[0].state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run(data_dir, tmp_path / "nan", "--max-steps", "30", "--batch-size", "4", "--lr", "1e30",
            "--warmup-steps", "1", "--save-every", "1", "--eval-every", "1000", "--grad-clip", "0")
    assert str(e.value.code).startswith("error: step ") and "the last good checkpoint (step" in e.value.code
    model, meta = load_checkpoint(str(tmp_path / "nan"))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(SystemExit, match=r"^error: step \d+: the loss is nan: stopping; no checkpoint was saved$"):
        run(data_dir, tmp_path / "none", "--max-steps", "5", "--lr", "1e30", "--muon-lr", "1e30", "--save-every", "100")
    assert "exact awareness - call" in capsys.readouterr().out  # plain data has no awareness: "-", not -1.000


def test_ddp_two_ranks_equal_one_process(data_dir, tmp_path):
    common = ["--preset", "micro", "--data", "plain", "--data-dir", data_dir, "--max-steps", "3",
              "--batch-size", "4", "--eval-every", "1000", "--save-every", "1000", "--device", "cpu"]  # gloo
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    "--master_port=29517", os.path.join(ROOT, "train_sft.py"), *common,
                    "--micro-batch-size", "1",  # 2 accumulated micro-batches per rank: no_sync, then sync
                    "--out", str(tmp_path / "ddp")], check=True, env=env, cwd=ROOT, capture_output=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "train_sft.py"), *common, "--out", str(tmp_path / "one")],
                   check=True, env=env, cwd=ROOT, capture_output=True)
    a = load_checkpoint(str(tmp_path / "ddp"))[0].state_dict()
    b = load_checkpoint(str(tmp_path / "one"))[0].state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_every_token_targets_cover_user_and_tool_text(data_dir):
    tok = Tokenizer.load(os.path.join(data_dir, "tokenizer.json"))
    ids, mask = (np.array(x) for x in tok.render(conversation(1)))
    idx, sft = collate([(ids, mask)], tok.end_id)
    _, base = collate([(ids, mask)], tok.end_id, every_token=True)
    assert (base[0] == torch.from_numpy(ids[1:])).all()  # every next token is a target
    assert (sft[0] != -1).sum() < (base[0] != -1).sum() == len(ids) - 1


def test_base_stage_then_sft_from_it(data_dir, tmp_path):
    run(data_dir, tmp_path / "base", "--data", "base", "--max-steps", "6", "--batch-size", "4",
        "--eval-every", "3", "--save-every", "3")
    model, meta = load_checkpoint(str(tmp_path / "base"))
    assert meta["kind"] == "base" and meta["step"] == 6
    assert {"digit_first", "digit_later", "exact_call"} <= set(meta["metrics"])
    run(data_dir, tmp_path / "sft", "--data", "pag", "--init", str(tmp_path / "base"), "--max-steps", "2",
        "--batch-size", "4", "--eval-every", "1000")
    sft_model, sft_meta = load_checkpoint(str(tmp_path / "sft"))
    assert sft_meta["kind"] == "sft" and sft_meta["policy"] == "awareness"
    assert sft_model.config == model.config


class Oracle(torch.nn.Module):
    """A 'model' that predicts the next token of the samples it was given, except at chosen
    positions: a stand-in with known answers for the copy probe."""

    def __init__(self, samples, vocab_size, wrong=()):
        super().__init__()
        self.next = {tuple(ids[:t + 1].tolist()): int(ids[t + 1]) for ids, _ in samples for t in range(len(ids) - 1)}
        self.wrong, self.vocab_size = set(wrong), vocab_size

    def forward(self, idx):
        logits = torch.zeros(*idx.shape, self.vocab_size)
        for b, row in enumerate(idx.tolist()):
            for t in range(len(row)):
                nxt = self.next.get(tuple(row[:t + 1]), 0)
                if (b, t) in self.wrong:
                    nxt = (nxt + 1) % self.vocab_size
                logits[b, t, nxt] = 1.0
        return logits


def test_copy_probe_counts_digits_and_message_kinds(data_dir):
    tok = Tokenizer.load(os.path.join(data_dir, "tokenizer.json"))
    conv = conversation(5)  # its last call copies the 4-digit booking id 1185
    ids, mask = (np.array(x) for x in tok.render(conv))
    samples = [(ids, mask)]
    perfect = evaluate(Oracle(samples, tok.vocab_size), samples, tok, torch.device("cpu"), 1)
    assert perfect["digit_first"] == perfect["digit_later"] == perfect["val_exact"] == 1.0
    assert perfect["exact_call"] == perfect["exact_reply"] == 1.0 and perfect["exact_awareness"] == -1.0
    # break one later digit: the last one the assistant writes is in the id of the insure(...) call
    digit_ids = {tok.hf.token_to_id(str(d)) for d in range(10)}
    later = [t for t in range(len(ids) - 1) if mask[t + 1] and ids[t + 1] in digit_ids and ids[t] in digit_ids]
    m = evaluate(Oracle(samples, tok.vocab_size, wrong=[(0, later[-1])]), samples, tok,
                           torch.device("cpu"), 1)
    assert m["digit_later"] == pytest.approx(1 - 1 / len(later)) and m["digit_first"] == 1.0
    assert m["exact_call"] == pytest.approx(1 / 2) and m["exact_reply"] == 1.0  # one of the two calls broke


def test_message_runs_are_the_assistant_messages():
    from nanoparl.probe import message_runs
    assert message_runs([0, 1, 1, 0, 0, 1, 0, 1]) == [(1, 3), (5, 6), (7, 8)]
    assert message_runs([]) == [] and message_runs([0, 0]) == []


def test_sft_data_must_name_its_format_and_be_text(data_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(data_dir, bad)
    cases = ((None, r"no \S+/format.json"), ('{"functions": "emoji"}', r"\S+/format.json: \"functions\" is 'emoji'"))
    for fmt, message in cases:
        if fmt is None:
            os.remove(bad / "format.json")
        else:
            (bad / "format.json").write_text(fmt)
        with pytest.raises(SystemExit, match=f"^error: {message}"):
            run_cli(lambda: run(str(bad), tmp_path / "a"))
    shutil.copy(os.path.join(data_dir, "format.json"), bad)
    (bad / "sft_plain_train.jsonl").write_bytes(os.urandom(100) + b"\xff")
    with pytest.raises(SystemExit, match=r"^error: \S+/sft_plain_train.jsonl: not UTF-8 text"):
        run_cli(lambda: run(str(bad), tmp_path / "b"))


def test_init_from_a_run_with_another_tokenizer_of_the_same_size_is_refused(data_dir, tmp_path):
    other = json.load(open(os.path.join(data_dir, "tokenizer.json")))
    vocab = other["model"]["vocab"]
    a, b = list(vocab)[-2:]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # the same size, two tokens swapped
    (tmp_path / "tokenizer.json").write_text(json.dumps(other))
    run(data_dir, tmp_path / "base", "--max-steps", "1")
    meta_path = tmp_path / "base" / "meta_1.json"
    meta_path.write_text(json.dumps(dict(json.load(open(meta_path)), tokenizer=str(tmp_path / "tokenizer.json"))))
    os.remove(tmp_path / "base" / "tokenizer.json")  # so that the meta's path is the one in use
    with pytest.raises(SystemExit, match=r"^error: --init \S+ was trained with another tokenizer than \S+tokenizer.json"):
        run(data_dir, tmp_path / "sft", "--max-steps", "1", "--init", str(tmp_path / "base"))
