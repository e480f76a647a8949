"""Make the data: multi-turn tasks in train / val / test splits, the tokenizer, and SFT data.

    python data_gen.py --preset micro --seed 0 --out data/micro
    python data_gen.py --preset cpu --seed 0 --out data          # the main job's data
    python data_gen.py --preset cpu --n-train 10000 --out /tmp/d  # override single settings

Writes DATA/tasks_{train,val,test,unseen}.jsonl (BFCL v3 multi-turn format; the splits are
explained in nanoparl/world/tasks.py) and prints, per split and category: tasks, turns and calls
per task, share of read-only calls, tool output length in characters; for test and unseen, their
overlap with train's user messages (which must be 0) and how many of their messages hold a word no
train message has (test: none; unseen: most). The same seed gives the same bytes.

Then (PAG, nanoparl/pag.py): the oracle writes a summary and a plan for every user turn, the
sufficiency check drops samples whose summary misses a fact a later turn needs, augmentation adds
reworded copies of train tasks (as in the paper; ours also renames their string values to fresh
random strings, pag.rename_entities, so that they must be copied; the plain SFT data gets the same
copies, so that the two SFT rows differ only in the awareness), a byte-level BPE tokenizer is
trained on the train conversations, and five files are written:
    sft_plain_{train,val}.jsonl   history policy: one sample per task (the SFT baseline)
    sft_pag_{train,val}.jsonl     awareness policy: one sample per user turn (PAG-SFT)
    base_train.jsonl              the base stage's corpus (train_sft.py --data base): --n-base
                                  tasks of their own ("base_*" ids, drawn like train tasks from a
                                  separate random stream, so never val or test), each rendered both
                                  ways (the whole conversation, and one awareness sample per turn)
with statistics: samples kept and dropped (by reason), tokens per sample, and the context tokens
at the start of the last turn under each policy (how much the awareness policy compresses).

With --verify-with CKPT (a trained checkpoint, e.g. PAG-SFT), the paper's model-aware verification
runs last: for every awareness sample of --verify-split, the model reads the awareness context of
that turn (system + previous turn + this user message) followed by the ORACLE's summary and plan
(forced), and greedily writes the turn's first step. A sample is kept only if that step is the
ground-truth first call (compared parsed: same function, same literal arguments) or, for an ask /
cannot-do turn, the oracle's reply text exactly. Prints the pass counts per category and writes the
kept samples to sft_pag_verified_{split}.jsonl:
    python data_gen.py --preset cpu --out data --overwrite --verify-with out/sft_pag --verify-max 500

An --out that holds data already is refused unless --overwrite. Every file is written atomically
into --out/.partial and moved into --out at the end: a run stopped half-way leaves the old data
whole (or no data), never a mix, and a .partial folder that the next run removes.
"""

import argparse
import json
import os
import re
import shutil
import signal
import time
from collections import Counter, defaultdict

import numpy as np
import torch

from nanoparl.chat import FUNCTION_LISTINGS, awareness_text, split_awareness
from nanoparl.checkpoint import CheckpointError, load_checkpoint, resolve
from nanoparl.cli import ArgumentParser, check_flags
from nanoparl.common import PRESETS, add_threads_flag, get_device, parse_args_with_preset, run_cli, set_threads
from nanoparl.engine import Engine
from nanoparl.env import ParseError, parse_calls
from nanoparl.files import read_text, write_file, write_jsonl
from nanoparl.pag import augment, check_sufficiency, oracle_turns, sft_samples
from nanoparl.tokenizer import SPECIAL_TOKENS, Tokenizer
from nanoparl.world.registry import DOMAINS
from nanoparl.world.tasks import (CATEGORIES, HELD_OUT, class_counts, generate_splits, make_task, new_words,
                                  save_tasks, task_stats, user_messages, words)


def comma_list(text):
    return text.split(",")


def parse_args(argv=None):
    """The flags, checked here, so that a bad one stops before any file is written."""
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--preset", default=None, choices=list(PRESETS),
                   help="sets every (preset: ...) value below (default: gpu with CUDA, else cpu, as the "
                        "other scripts)")
    g.add_argument("--seed", type=int, default=0, help="same seed -> same files, byte for byte")
    g.add_argument("--out", default="data", help="output directory")
    g.add_argument("--overwrite", action="store_true", help="replace the data of an existing --out")
    add_threads_flag(g)
    g = p.add_argument_group("tasks (default: the preset's 'data' section)")
    g.add_argument("--n-train", type=int, default=None, help="number of train tasks")
    g.add_argument("--n-val", type=int, default=None, help="number of val tasks (drawn like train)")
    g.add_argument("--n-test", type=int, default=None, help="number of test tasks (held-out entities/phrasings)")
    g.add_argument("--n-base", type=int, default=None, help="tasks for the base stage's corpus (0: no base corpus)")
    g.add_argument("--max-tasks", type=int, default=None, help="cap every split and the base corpus at this many tasks (smoke runs)")
    g.add_argument("--classes", type=comma_list, default=None,
                   help=f"comma-separated API classes, from {','.join(DOMAINS)}")
    g.add_argument("--max-turns", type=int, default=None, help="user turns per task, at most")
    g.add_argument("--categories", type=comma_list, default=None,
                   help=f"comma-separated, from {','.join(CATEGORIES)}")
    g.add_argument("--long-output-chars", type=int, default=None,
                   help="cap on the tool output of a long_context task")
    g = p.add_argument_group("PAG data (default: the preset's 'pag' section)")
    g.add_argument("--augment", type=float, default=None, help="augmented copies per train task (0.5: half get one)")
    g.add_argument("--mask-p", type=float, default=None, help="word-masking probability in augmented user text")
    g.add_argument("--no-paraphrase", action="store_true", help="augmentation without reworded user turns")
    g.add_argument("--no-perturb", action="store_true", help="augmentation without perturbed function lists")
    g.add_argument("--rename", type=int, choices=[0, 1], default=None,
                   help="augmented copies get renamed entities (fresh random values)")
    g.add_argument("--functions", choices=FUNCTION_LISTINGS, default=None,
                   help="how the system prompt lists functions")
    g.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size (special tokens included)")
    g.add_argument("--block-size", type=int, default=None, help="drop samples longer than this (the model's)")
    g = p.add_argument_group("model-aware verification (optional, needs a trained checkpoint)")
    g.add_argument("--verify-with", default=None, metavar="CKPT", help="run directory or model_<step>.safetensors")
    g.add_argument("--verify-split", default="val", choices=["train", "val"], help="which awareness samples to verify")
    g.add_argument("--verify-max", type=int, default=None, help="verify the first N samples only")
    g.add_argument("--verify-batch", type=int, default=64, help="samples decoded together")
    g.add_argument("--device", default="auto", help="device for --verify-with")
    args = parse_args_with_preset(p, argv, lambda preset, data: ("data", "pag", "tokenizer", "model"))
    # e.g. 0 val tasks: an IndexError after the train data is written
    pos, count = (1, None), (0, None)
    check_flags(p, args, n_train=pos, n_val=pos, n_test=pos, n_base=count, max_tasks=pos, max_turns=pos,
                block_size=pos, verify_max=pos, verify_batch=pos, augment=count, mask_p=(0, 1), seed=count,
                threads=pos, long_output_chars=pos, vocab_size=(256 + len(SPECIAL_TOKENS), None, "the 256 bytes "
                f"and {len(SPECIAL_TOKENS)} special tokens"), rename=(0, 1))
    unknown = set(args.classes) - set(DOMAINS) | set(args.categories) - set(CATEGORIES)
    if unknown:
        p.error(f"unknown classes/categories: {sorted(unknown)}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        p.error(f"--out {args.out} is a file, not a folder")
    if data_files(args.out) and not args.overwrite:  # as a run folder is protected (prepare_run_dir)
        p.error(f"--out {args.out} already holds data ({', '.join(data_files(args.out)[:3])}...): pass "
                f"--overwrite to replace it, or another --out")
    if args.verify_with:  # it runs last: a wrong path would otherwise surface after all the work
        try:
            resolve(args.verify_with)
        except CheckpointError as e:
            p.error(f"--verify-with: {e}")
        get_device(args.device)
    return args


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    t0 = time.time()
    cap = args.max_tasks or float("inf")  # --max-tasks caps every split and the base corpus
    # unseen (held-out words) is as large as test
    sizes = {split: min(getattr(args, f"n_{split}"), cap) for split in ("train", "val", "test")}
    sizes["unseen"] = sizes["test"]
    n_base = min(args.n_base, cap)
    settings = dict(max_turns=args.max_turns, long_output_chars=args.long_output_chars, classes=args.classes,
                    categories=args.categories)
    print(f"preset {args.preset} | seed {args.seed} | sizes {sizes} | settings {settings}")

    # ---- tasks
    try:
        splits = generate_splits(settings, args.seed, sizes)
    except RuntimeError as e:  # a category these classes cannot make, e.g. miss_param from MathAPI alone
        raise SystemExit(f"error: {e}; add --classes or drop --categories")
    # every file is written into --out/.partial first and moved into --out at the end (publish): a
    # run stopped half-way leaves the old data, or none, never a mix
    work = os.path.join(args.out, ".partial")
    shutil.rmtree(work, ignore_errors=True)  # left by a run that was stopped
    try:
        os.makedirs(work)
    except OSError as e:
        raise SystemExit(f"error: --out {args.out}: cannot create it ({e.strerror or e})")
    for split, tasks in splits.items():
        save_tasks(os.path.join(work, f"tasks_{split}.jsonl"), tasks)
    t_tasks = time.time() - t0

    print(f"{'split':6s} {'category':13s} {'tasks':>6s} {'turns/t':>8s} {'calls/t':>8s} {'read%':>6s} "
          f"{'out chars/t':>11s} {'max':>5s}")
    for split, tasks in splits.items():
        for category, row in sorted(task_stats(tasks).items()):
            n = row["tasks"]
            print(f"{split:6s} {category:13s} {n:6d} {row['turns'] / n:8.2f} {row['calls'] / n:8.2f} "
                  f"{100 * row['read_only'] / max(1, row['calls']):5.0f}% {row['out_chars'] / n:11.0f} "
                  f"{row['max_out_chars']:5d}")
    print("calls per class (train):", dict(class_counts(splits["train"]).most_common()))
    train_msgs = set().union(set(), *map(user_messages, splits["train"]))
    train_words = set(w for m in train_msgs for w in words(m))
    for split in HELD_OUT:
        msgs = set().union(set(), *map(user_messages, splits[split]))
        new = sum(bool(new_words(m, t, train_words)) for t in splits[split] for m in user_messages(t))
        print(f"user messages: train {len(train_msgs)} unique, {split} {len(msgs)} unique, "
              f"overlap {len(train_msgs & msgs)}; {split} messages with a word no train message has "
              f"(values aside) {new} of {sum(len(user_messages(t)) for t in splits[split])}")
    print(f"tasks written to {args.out} in {t_tasks:.1f}s")

    # ---- PAG / SFT data
    write_file(os.path.join(work, "format.json"), json.dumps({"functions": args.functions}))
    t1 = time.time()

    # oracle awareness for every task, then augmented copies of some train tasks
    oracle = {split: [oracle_turns(t) for t in tasks] for split, tasks in splits.items()}
    augmented = []
    for i, task in enumerate(splits["train"]):
        copies = int(args.augment) + (np.random.default_rng([args.seed, i]).random() < args.augment % 1)
        for c in range(copies):
            augmented.append(augment(task, seed=args.seed * 1000 + c, paraphrase_turns=not args.no_paraphrase,
                                     perturb_functions=not args.no_perturb, mask_p=args.mask_p,
                                     rename=bool(args.rename)))

    samples = {}  # (kind, split) -> [(task id, turn or None, messages)]
    dropped = defaultdict(Counter)  # (kind, split) -> {reason: count}
    base_tasks = [make_task(settings, "base", i, args.seed) for i in range(n_base)]
    samples[("base", "train")] = [(t["id"], None, m) for t in base_tasks for m in base_documents(t, args.functions)]
    for split in ("train", "val"):
        pag_tasks = list(zip(splits[split], oracle[split]))
        if split == "train":  # the augmented copies, for both kinds: neither row is starved of data
            pag_tasks += [(t, oracle_turns(t)) for t in augmented]
        samples[("plain", split)] = [(task["id"], None, sft_samples(task, "history", turns, args.functions)[0])
                                     for task, turns in pag_tasks]
        pag_samples = []
        for task, turns in pag_tasks:
            if check_sufficiency(task, turns):
                dropped[("pag", split)]["insufficient summary"] += 1
                continue
            for k, messages in enumerate(sft_samples(task, "awareness", turns, args.functions)):
                pag_samples.append((task["id"], k, messages))
        samples[("pag", split)] = pag_samples

    # tokenizer: trained on the train conversations of both kinds (every message's text)
    texts = (m["content"] for kind in ("plain", "pag") for _, _, msgs in samples[(kind, "train")] for m in msgs)
    tok = Tokenizer.train(texts, args.vocab_size)
    tok.save(os.path.join(work, "tokenizer.json"))

    print(f"\nSFT data | tokenizer {tok.vocab_size} tokens | augmented train copies {len(augmented)} "
          f"| block_size {args.block_size}")
    print(f"{'data':6s} {'split':6s} {'samples':>8s} {'dropped':>24s} {'tok/sample':>10s} {'p95':>6s} {'max':>6s}")
    for (kind, split), rows in samples.items():
        kept, lengths = [], []
        for task_id, turn, messages in rows:
            n = len(tok.render(messages)[0])
            if n > args.block_size:
                dropped[(kind, split)]["longer than block_size"] += 1
                continue
            kept.append({"task_id": task_id, "turn": turn, "messages": messages})
            lengths.append(n)
        name = "base_train.jsonl" if kind == "base" else f"sft_{kind}_{split}.jsonl"
        write_jsonl(os.path.join(work, name), kept)
        drops = ", ".join(f"{v} {k}" for k, v in sorted(dropped[(kind, split)].items())) or "0"
        if lengths:
            print(f"{kind:6s} {split:6s} {len(kept):8d} {drops:>24s} {np.mean(lengths):10.0f} "
                  f"{np.percentile(lengths, 95):6.0f} {max(lengths):6d}")

    # context at the start of the last turn: what the model reads before it acts
    print("\ncontext tokens at the start of the last turn (val tasks with >= 2 turns)")
    for policy in ("history", "awareness"):
        ctx = []
        for task, turns in zip(splits["val"], oracle["val"]):
            if len(turns) < 2:
                continue
            last = len(turns) - 1
            messages = sft_samples(task, policy, turns, args.functions)[0 if policy == "history" else last]
            # cut the messages right after the last user message
            idx = max(i for i, m in enumerate(messages) if m["role"] == "user")
            ctx.append(len(tok.render(messages[:idx + 1], add_generation_prompt=True)[0]))
        if not ctx:
            print(f"  {policy:9s}: no val task has 2 turns or more")
            continue
        print(f"  {policy:9s}: mean {np.mean(ctx):6.0f} | p95 {np.percentile(ctx, 95):6.0f} | max {max(ctx):6d}")
    publish(work, args.out)
    print(f"PAG + tokenizer + SFT data written to {args.out} in {time.time() - t1:.1f}s")
    if args.verify_with:
        verify(args.verify_with, args.out, args.verify_split, splits[args.verify_split], args.verify_max,
               args.verify_batch, get_device(args.device))


DATA_FILES = re.compile(r"(tasks_(train|val|test|unseen)|sft_(plain|pag)_(train|val)|sft_pag_verified_(train|val)|"
                        r"base_train)\.jsonl|tokenizer\.json|format\.json")


def data_files(folder):
    """The files of folder that data_gen.py writes, sorted ([] for no folder)."""
    return sorted(f for f in os.listdir(folder) if DATA_FILES.fullmatch(f)) if os.path.isdir(folder) else []


def publish(work, out):
    """Move the finished files of work into out, in place of out's old data files (--overwrite), with
    Ctrl-C and SIGTERM held back until all are moved, then remove work."""
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        for name in set(data_files(out)) - set(os.listdir(work)):  # e.g. a verified file of the old data
            os.remove(os.path.join(out, name))
        for name in os.listdir(work):
            os.replace(os.path.join(work, name), os.path.join(out, name))
        os.rmdir(work)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def base_documents(task, listing):
    """A base-stage task -> its documents: the whole conversation (history policy) and one
    awareness sample per turn, every message trained (render() masks only the loss of SFT; the
    base stage trains on every token anyway)."""
    turns = oracle_turns(task)
    return sft_samples(task, "history", turns, listing) + sft_samples(task, "awareness", turns, listing)


# ----------------------------------------------------------------------------
# Model-aware verification: can a model act from the oracle's awareness alone?

def verify_prompt(tok, messages):
    """An awareness SFT sample -> (prompt ids, expected first step). The prompt is the context up to
    and including this turn's user message with the generation prompt (as agent.py builds it),
    then the oracle's <summary>..</summary><plan>..</plan>, forced; the model continues from there."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    summary, plan, first_step = split_awareness(messages[last_user + 1]["content"])
    ids = tok.render(messages[:last_user + 1], add_generation_prompt=True)[0]
    return ids + tok.encode(awareness_text(summary, plan), allow_special=True), first_step


def same_first_step(generated, expected):
    """Does the generated first step reproduce the expected one? A call list is compared parsed
    (function names and literal arguments, in order; spacing and keyword order do not matter),
    anything else as exact text (surrounding whitespace aside)."""
    generated, expected = generated.strip(), expected.strip()
    if expected.startswith("["):
        try:
            return parse_calls(generated) == parse_calls(expected)
        except ParseError:
            return False
    return generated == expected


@torch.no_grad()
def verify_samples(model, tok, samples, batch_size=64):
    """samples: SFT rows ({"messages": ...}) -> (passed, generated text) per sample; greedy decoding
    of the first step, batched through the Engine (ragged prompts, one row per sample)."""
    device = next(model.parameters()).device
    results = []
    for start in range(0, len(samples), batch_size):
        part = [verify_prompt(tok, s["messages"]) for s in samples[start:start + batch_size]]
        # room for the expected step, its <|end|>, and a little more (a longer answer is wrong anyway)
        budgets = [len(tok.encode(expected, allow_special=True)) + 8 for _, expected in part]
        max_len = min(model.config.block_size, max(len(ids) + b for (ids, _), b in zip(part, budgets)))
        engine = Engine(model, len(part), max_len, device=device)
        fits = engine.append(range(len(part)), [ids for ids, _ in part])
        rows = [i for i, ok in enumerate(fits) if ok]
        outs, reasons = engine.generate(rows, [budgets[i] for i in rows], [tok.end_id], temperature=0)
        texts = {i: (tok.decode(out[:-1]), reason == "stop") for i, out, reason in zip(rows, outs, reasons)}
        for i, (_, expected) in enumerate(part):
            text, ended = texts.get(i, ("", False))
            results.append((ended and same_first_step(text, expected), text))
    return results


def verify(ckpt, out_dir, split, tasks, max_samples=None, batch_size=64, device="cpu"):
    """Verify the awareness samples of out_dir/sft_pag_{split}.jsonl with a checkpoint; print the
    pass counts per category and write the kept ones to sft_pag_verified_{split}.jsonl."""
    t0 = time.time()
    model, meta = load_checkpoint(ckpt, device=device)
    model.eval()
    tok = Tokenizer.load(meta["tokenizer"])
    if meta.get("policy") != "awareness":
        print(f"warning: {ckpt} was trained with policy {meta.get('policy')!r}, not 'awareness'")
    path = os.path.join(out_dir, f"sft_pag_{split}.jsonl")
    samples = [json.loads(line) for line in read_text(path).splitlines()][:max_samples]
    results = verify_samples(model, tok, samples, batch_size)
    category = {t["id"]: t["category"] for t in tasks}  # augmented copies: "<id>_aug<seed>"
    print(f"\nmodel-aware verification with {ckpt} ({split}, {len(samples)} samples): first step reproduced")
    counts = {}  # category -> [passed, total]
    for sample, (passed, _) in zip(samples, results):
        c = counts.setdefault(category.get(sample["task_id"].split("_aug")[0], "?"), [0, 0])
        c[0], c[1] = c[0] + passed, c[1] + 1
    for cat in [c for c in CATEGORIES if c in counts] + sorted(set(counts) - set(CATEGORIES)):
        passed, total = counts[cat]
        print(f"  {cat:13s} {passed:5d} / {total:5d}  ({100 * passed / total:5.1f}%)")
    kept = [s for s, (passed, _) in zip(samples, results) if passed]
    print(f"  {'all':13s} {len(kept):5d} / {len(samples):5d}  ({100 * len(kept) / max(1, len(samples)):5.1f}%)")
    path = os.path.join(out_dir, f"sft_pag_verified_{split}.jsonl")
    write_jsonl(path, kept)
    print(f"kept samples written to {path} in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    run_cli(main)
