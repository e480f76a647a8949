"""Speed and memory benchmarks (not tests: the numbers go into the README).

    python bench.py                        # every section, preset picked by the device
    python bench.py --preset cpu --only model

Each section prints a few `name: value` lines. Ratios (engine vs naive, ...) are measured in one
run on one device, so that a noisy shared machine affects both sides alike.
"""

import argparse
import os
import tempfile
import time

import torch

from nanoparl.chat import system_message, tool_message, user_message
from nanoparl.checkpoint import export_hf, save_checkpoint
from nanoparl.cli import ArgumentParser, check_flags
from nanoparl.common import (PRESETS, add_threads_flag, autocast, get_device, get_preset, parse_args_with_preset,
                             run_cli, seed_everything, set_threads)
from nanoparl.engine import Engine, sample
from nanoparl.memory import memory_report
from nanoparl.model import GPT, GPTConfig
from nanoparl.optim import make_optimizer
from nanoparl.pag import oracle_turns, sft_samples
from nanoparl.tokenizer import Tokenizer
from nanoparl.world.tasks import generate_splits


def timed(fn, warmup=2, iters=5, device=None):
    """Median seconds of fn() over iters runs, after warmup runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def matmul_peak(device, n=2048):
    """FLOP/s of a large square matmul in the training dtype: the MFU denominator."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec = timed(lambda: a @ b, device=device)
    return 2 * n ** 3 / sec


def build_model(preset, device, vocab_size=None):
    p = get_preset(preset)
    vocab = vocab_size or p["tokenizer"]["vocab_size"]
    return GPT(GPTConfig(vocab_size=vocab, **p["model"])).to(device)


# ----------------------------------------------------------------------------
# Section: model forward + backward

def bench_model(args, device):
    """Training-step throughput (forward + backward + the preset's SFT optimizer: Muon on the block
    matrices + AdamW elsewhere) and MFU against the measured peak (Newton-Schulz FLOPs not counted)."""
    model = build_model(args.preset, device)
    B, T = args.batch_size, args.seq_len
    sft = get_preset(args.preset)["sft"]
    opt = make_optimizer(model, sft["lr"], 0.1, muon_lr=sft.get("muon_lr"))
    idx = torch.randint(0, model.config.vocab_size, (B, T), device=device)

    def step():
        with autocast(device):
            _, loss = model(idx, targets=idx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    sec = timed(step, device=device)
    peak = matmul_peak(device)
    tok_s = B * T / sec
    achieved = tok_s * model.flops_per_token(T)
    print(f"model[{args.preset}]: {model.num_params(False) / 1e6:.2f}M params "
          f"({model.num_params() / 1e6:.2f}M non-embedding), batch {B} x {T}")
    print(f"  fwd+bwd+{'muon' if sft.get('muon_lr') else 'adamw'}: {tok_s:,.0f} tok/s ({sec * 1000:.0f} ms/step)")
    print(f"  matmul peak (measured): {peak / 1e9:,.1f} GFLOP/s")
    print(f"  model FLOP/s: {achieved / 1e9:,.1f} GFLOP/s -> MFU {100 * achieved / peak:.1f}% of measured peak")


# ----------------------------------------------------------------------------
# Section: engine decode vs naive generation

def bench_decode(args, device):
    """Greedy decode, batch 32: prompts of 448 tokens + 64 generated (512 tokens of context).

    Engine: prefill once, then one T=1 forward per token over the KV cache (prefill not in the
    decode number). Naive: the whole (32, T) sequence re-run for every new token; timed over its
    first 4 tokens only (context 448..451), which slightly flatters naive.
    """
    model = build_model(args.preset, device).eval()
    B, prompt_len, new, naive_steps = 32, 448, 64, 4
    V = model.config.vocab_size
    prompts = torch.randint(0, V, (B, prompt_len)).tolist()
    engine = Engine(model, batch_size=B, max_len=prompt_len + new, device=device)

    def prefill():
        engine.reset(range(B))
        engine.append(range(B), prompts)

    def decode():
        out, _ = engine.generate(range(B), new, temperature=0)
        assert all(len(o) == new for o in out)

    prefill_sec = timed(prefill, warmup=1, iters=3, device=device)
    decode_times = []
    for _ in range(3):
        prefill()  # untimed: decode always starts from a fresh 448-token prompt
        decode_times.append(timed(decode, warmup=0, iters=1, device=device))
    decode_sec = sorted(decode_times)[1]

    def naive():  # GPT.generate: no cache, everything recomputed for every new token
        with autocast(device):
            model.generate(torch.tensor(prompts, device=device), naive_steps)

    naive_sec = timed(naive, warmup=1, iters=3, device=device)
    engine_tok_s, naive_tok_s = B * new / decode_sec, B * naive_steps / naive_sec
    print(f"decode[{args.preset}]: batch {B}, prompt {prompt_len} + {new} new tokens, greedy")
    print(f"  engine prefill: {B * prompt_len / prefill_sec:,.0f} tok/s ({prefill_sec * 1000:.0f} ms)")
    print(f"  engine decode: {engine_tok_s:,.0f} tok/s ({decode_sec * 1000 / new:.1f} ms/step)")
    print(f"  naive decode: {naive_tok_s:,.0f} tok/s ({naive_sec * 1000 / naive_steps:.0f} ms/step)")
    print(f"  engine / naive: {engine_tok_s / naive_tok_s:.1f}x")
    print(f"  kv cache: {engine.cache.nbytes() / 2**20:.1f} MiB")


# ----------------------------------------------------------------------------
# Section: the engine vs transformers' generate on the same weights (optional extra)

def bench_transformers(args, device):
    """The engine beside Hugging Face transformers' `generate` in one process: the same random-init
    weights (exported with checkpoint.export_hf: Qwen3ForCausalLM when the preset uses qk_norm,
    else LlamaForCausalLM), the same 32 prompts of 448 tokens, 64 new tokens, greedy, no stop
    token (both produce all 64), KV cache on both sides (transformers' default cache), fp32 on CPU
    (bf16 on CUDA: the engine's autocast, transformers' weights), the same threads.

    end to end = prefill + 64 new tokens; prefill = the same with 1 new token (no decode step on
    either side); decode = (end to end - prefill) / 63, the same arithmetic for both. The engine
    appends the prompts with logprobs=False, the same work as `generate` (logits at the last
    prompt position only); the line after shows it with every prompt token's log-prob recorded,
    which is what the RL rollouts do. Runs alternate between the two sides (median of 3 each after
    a warm-up of each), so that a noisy shared machine slows both alike.
    """
    try:
        import transformers
    except ImportError:
        print("transformers: skipped; it is an optional extra: pip install transformers, then "
              "python bench.py --only transformers")
        return
    model = build_model(args.preset, device).eval()
    B, prompt_len, new = 32, 448, 64
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(tmp, 0, model)
        hf_dir = export_hf(os.path.join(tmp, "model_0.safetensors"), os.path.join(tmp, "hf"))
        hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=dtype).to(device).eval()
    prompts = torch.randint(0, model.config.vocab_size, (B, prompt_len), device=device)
    prompt_lists = prompts.tolist()
    engine = Engine(model, batch_size=B, max_len=prompt_len + new, device=device)

    def run_engine(n, logprobs=False):
        engine.reset(range(B))
        engine.append(range(B), prompt_lists, logprobs=logprobs)
        out, _ = engine.generate(range(B), n, temperature=0)
        return out

    @torch.no_grad()
    def run_hf(n):
        out = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=n, min_new_tokens=n,
                          do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)
        return out[:, prompt_len:].tolist()

    def seconds(fn, *a):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn(*a)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    runs = {key: [] for key in ("engine", "hf", "engine1", "hf1", "engine_lp")}
    outs = {}
    for i in range(4):  # the first round is the warm-up
        for key, fn, n in (("engine", run_engine, new), ("hf", run_hf, new), ("engine1", run_engine, 1),
                           ("hf1", run_hf, 1)):
            sec, outs[key] = seconds(fn, n)
            runs[key].append(sec)
        runs["engine_lp"].append(seconds(run_engine, new, True)[0])
    assert all(len(o) == new for o in outs["engine"] + outs["hf"])
    same = sum(a == b for ra, rb in zip(outs["engine"], outs["hf"]) for a, b in zip(ra, rb)) / (B * new)
    med = {key: sorted(times[1:])[1] for key, times in runs.items()}
    dec = {side: (med[side] - med[side + "1"]) / (new - 1) for side in ("engine", "hf")}
    print(f"transformers[{args.preset}]: {type(hf).__name__} {transformers.__version__} "
          f"(attn {hf.config._attn_implementation}), batch {B}, prompt {prompt_len} + {new} new tokens, "
          f"greedy, {str(dtype).replace('torch.', '')}; greedy tokens agree on {100 * same:.1f}%")
    for side, name in (("engine", "engine"), ("hf", "transformers generate")):
        print(f"  {name}: end to end {B * new / med[side]:,.0f} new tok/s ({med[side]:.2f} s), prefill "
              f"{med[side + '1']:.2f} s, decode {B / dec[side]:,.0f} tok/s ({dec[side] * 1000:.1f} ms/step)")
    print(f"  engine / transformers: end to end {med['hf'] / med['engine']:.2f}x, decode "
          f"{dec['hf'] / dec['engine']:.2f}x, prefill {med['hf1'] / med['engine1']:.2f}x")
    print(f"  engine recording every prompt token's log-prob (as RL does): end to end {med['engine_lp']:.2f} s "
          f"-> {med['hf'] / med['engine_lp']:.2f}x transformers")


# ----------------------------------------------------------------------------
# Section: fused sampler vs softmax + multinomial

def bench_sampler(args, device):
    """Per-call time of one sampling step, B=32 rows over the preset's vocabulary."""
    B, V, calls = 32, get_preset(args.preset)["tokenizer"]["vocab_size"], 200
    logits = torch.randn(B, V, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def per_call(fn):
        return timed(lambda: [fn() for _ in range(calls)], warmup=1, iters=5, device=device) / calls * 1e6

    fused = per_call(lambda: sample(logits, generator=gen))
    fused_tp = per_call(lambda: sample(logits, temperature=0.7, top_k=50, top_p=0.9, generator=gen))
    multi = per_call(lambda: torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
    print(f"sampler[{args.preset}]: B={B}, V={V}")
    print(f"  fused sample (t=1, + both log-probs): {fused:.1f} us/call")
    print(f"  fused sample (t=0.7, top-k 50, top-p 0.9): {fused_tp:.1f} us/call")
    print(f"  softmax + torch.multinomial (token only): {multi:.1f} us/call")


# ----------------------------------------------------------------------------
# Section: multi-turn rollouts, append-to-cache vs re-prefill

def rollout_scripts(tok, tasks):
    """History-policy rollouts as agent.py runs them -> per task (first prompt, steps), each step
    (n generated tokens, forced tokens after it). A step generates as many tokens as the oracle's
    text (+ <|end|>); the forced tokens are the tool results or the next user turn, + <|assistant|>."""
    assistant = [tok.role_ids["assistant"]]
    scripts = []
    for task in tasks:
        turns = oracle_turns(task)
        prompt = tok.render([system_message(task), user_message(task, 0)], add_generation_prompt=True)[0]
        steps = []
        for k, turn in enumerate(turns):
            for text, results in turn["steps"]:
                if results is not None:
                    forced = tok.render_message(tool_message(results))[0] + assistant
                elif k + 1 < len(turns):
                    forced = tok.render_message(user_message(task, k + 1))[0] + assistant
                else:
                    forced = []
                steps.append((len(tok.encode(text, allow_special=True)) + 1, forced))
        scripts.append((prompt, steps))
    return scripts


def bench_rollout(args, device):
    """4-turn history-policy rollouts, batch 16, greedy, the preset's model at random init.

    engine:     what agent.py does: prefill the first prompt once, then per step decode the step's
                tokens over the KV cache and append the forced tokens (tool output, next user
                turn) to it; the prefix is never recomputed.
    re-prefill: no state kept between steps: every step starts with a full forward over the whole
                context so far, then decodes its tokens cache-less, a full forward per token
                (timed on the first `--rollout-naive-steps` steps of every rollout, where contexts
                are shortest: this flatters re-prefill).
    re-prefill + cached decode: the middle ground (a stateless server with a KV cache): every
                step prefills the whole context into a fresh cache, then decodes over that cache.
    All produce the same token sequences (re-prefill is teacher-forced with the engine's tokens,
    and its greedy choices are checked against them); tok/s counts generated tokens.
    """
    p = get_preset(args.preset)
    settings = dict(p["data"], max_turns=4)
    block = p["model"]["block_size"]
    pool = generate_splits(settings, seed=0, sizes={"train": 400})["train"]
    tok = Tokenizer.train((m["content"] for t in pool[:300] for m in sft_samples(t, "history")[0]),
                          p["tokenizer"]["vocab_size"])
    model = build_model(args.preset, device, tok.vocab_size).eval()
    candidates = rollout_scripts(tok, [t for t in pool[300:] if len(t["question"]) == 4])
    B = 16
    scripts = [s for s in candidates if len(s[0]) + sum(n + len(f) for n, f in s[1]) <= block][:B]
    lengths = [len(prompt) + sum(n + len(f) for n, f in steps) for prompt, steps in scripts]
    n_steps = max(len(steps) for _, steps in scripts)
    n_gen = sum(n for _, steps in scripts for n, _ in steps)
    engine = Engine(model, batch_size=B, max_len=max(lengths), device=device)

    def run_engine():
        engine.reset(range(B))
        engine.append(range(B), [prompt for prompt, _ in scripts])
        for s in range(n_steps):
            live = [i for i, (_, steps) in enumerate(scripts) if s < len(steps)]
            engine.generate(live, [scripts[i][1][s][0] for i in live], temperature=0)  # no stop token
            forced = [(i, scripts[i][1][s][1]) for i in live if scripts[i][1][s][1]]
            engine.append([i for i, _ in forced], [f for _, f in forced])

    run_engine()  # warm-up, and the token sequences the re-prefill path replays
    sequences = [engine.tokens(i) for i in range(B)]
    engine_sec = timed(run_engine, warmup=0, iters=1, device=device)

    @torch.no_grad()
    def run_reprefill(max_steps):
        agree = total = 0
        pos = [len(prompt) for prompt, _ in scripts]  # where each row's current step starts
        for s in range(min(n_steps, max_steps)):
            live = [i for i, (_, steps) in enumerate(scripts) if s < len(steps)]
            for j in range(max(scripts[i][1][s][0] for i in live)):
                rows = [i for i in live if j < scripts[i][1][s][0]]
                ctx = [sequences[i][:pos[i] + j] for i in rows]
                T = max(map(len, ctx))
                idx = torch.tensor([c + [0] * (T - len(c)) for c in ctx], device=device)  # right-padded
                with autocast(device):
                    logits = model(idx)  # (N, T, V): the whole context, every time
                last = torch.tensor([len(c) - 1 for c in ctx], device=device)
                choice = logits[torch.arange(len(rows), device=device), last].argmax(-1).tolist()
                agree += sum(c == sequences[i][pos[i] + j] for c, i in zip(choice, rows))
                total += len(rows)
            for i in live:
                pos[i] += scripts[i][1][s][0] + len(scripts[i][1][s][1])
        return agree, total

    fresh = Engine(model, batch_size=B, max_len=max(lengths), device=device)

    def run_reprefill_cached():
        pos = [len(prompt) for prompt, _ in scripts]
        for s in range(n_steps):
            live = [i for i, (_, steps) in enumerate(scripts) if s < len(steps)]
            fresh.reset(live)
            fresh.append(live, [sequences[i][:pos[i]] for i in live])  # the whole context, again
            fresh.generate(live, [scripts[i][1][s][0] for i in live], temperature=0)
            for i in live:
                pos[i] += scripts[i][1][s][0] + len(scripts[i][1][s][1])

    cached_sec = timed(run_reprefill_cached, warmup=0, iters=1, device=device)
    naive_steps = args.rollout_naive_steps
    t0 = time.perf_counter()
    agree, naive_tokens = run_reprefill(naive_steps)
    naive_sec = time.perf_counter() - t0
    engine_tok_s, naive_tok_s = n_gen / engine_sec, naive_tokens / naive_sec
    print(f"rollout[{args.preset}]: batch {B} x 4-turn history rollouts, {n_steps} steps at most, "
          f"{n_gen} generated + {sum(lengths) - n_gen} forced tokens, context up to {max(lengths)} tokens")
    print(f"  engine (append to cache): {engine_tok_s:,.0f} generated tok/s ({engine_sec:.2f} s for the batch)")
    print(f"  re-prefill every step, cache-less decode: {naive_tok_s:,.0f} generated tok/s "
          f"(first {naive_steps} steps: {naive_tokens} tokens in {naive_sec:.1f} s; greedy agrees "
          f"with the engine on {100 * agree / naive_tokens:.1f}%)")
    print(f"  engine / re-prefill: {engine_tok_s / naive_tok_s:.1f}x")
    print(f"  re-prefill every step + cached decode: {n_gen / cached_sec:,.0f} generated tok/s "
          f"({cached_sec:.2f} s) -> engine / this: {cached_sec / engine_sec:.1f}x")
    print(f"  engine memory (Engine.nbytes, KV cache + pending logits): {engine.nbytes() / 2**20:.1f} MiB "
          f"for {B} rows x {engine.max_len} tokens")


# ----------------------------------------------------------------------------
# Section: memory estimate for a GPU run (weights, optimizer, activations, KV cache; nanoparl/memory.py)

def bench_memory(args, device):
    """memory.memory_report at block_size and at --seq-len."""
    print("\n".join(memory_report(args.preset, seq_lens=(None, args.seq_len))))


SECTIONS = {
    "model": bench_model,
    "decode": bench_decode,
    "transformers": bench_transformers,
    "sampler": bench_sampler,
    "rollout": bench_rollout,
    "memory": bench_memory,
}


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS), help="default: gpu with CUDA, else cpu")
    parser.add_argument("--only", default=list(SECTIONS), type=lambda s: s.split(","), help="comma-separated sections")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32, help="model: rows per step (memory: the preset's)")
    parser.add_argument("--seq-len", type=int, default=256)
    add_threads_flag(parser)
    parser.add_argument("--rollout-naive-steps", type=int, default=2,
                        help="rollout: steps per rollout timed on the slow re-prefill path")
    args = parse_args_with_preset(parser, None, lambda preset, data: ())
    check_flags(parser, args, batch_size=(1, None), seq_len=(1, None), threads=(1, None), rollout_naive_steps=(1, None))
    if set(args.only) - set(SECTIONS):
        parser.error(f"--only {','.join(args.only)}: the sections are {','.join(SECTIONS)}")
    set_threads(args.threads)
    seed_everything(0)
    device = get_device(args.device)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.only:
        SECTIONS[name](args, device)


if __name__ == "__main__":
    run_cli(main)
