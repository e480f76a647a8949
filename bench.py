"""Speed and memory benchmarks (not tests: the numbers go into the README).

    python bench.py                        # every section, preset picked by the device
    python bench.py --preset cpu --only model

Each section prints a few `name: value` lines. Ratios (engine vs naive, ...) are measured in one
run on one device, so that a noisy shared machine affects both sides alike.
"""

import argparse
import time

import torch

from nanoparl.common import autocast, default_preset, get_device, get_preset, seed_everything
from nanoparl.engine import Engine, sample
from nanoparl.model import GPT, GPTConfig


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
    """Training-step throughput (forward + backward + AdamW) and MFU against the measured peak."""
    model = build_model(args.preset, device)
    B, T = args.batch_size, args.seq_len
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
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
    print(f"  fwd+bwd+adamw: {tok_s:,.0f} tok/s ({sec * 1000:.0f} ms/step)")
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

    @torch.no_grad()
    def naive():
        seq = torch.tensor(prompts, device=device)
        for _ in range(naive_steps):
            with autocast(device):
                logits = model(seq)  # (B, T, V): everything recomputed
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)

    naive_sec = timed(naive, warmup=1, iters=3, device=device)
    engine_tok_s, naive_tok_s = B * new / decode_sec, B * naive_steps / naive_sec
    print(f"decode[{args.preset}]: batch {B}, prompt {prompt_len} + {new} new tokens, greedy")
    print(f"  engine prefill: {B * prompt_len / prefill_sec:,.0f} tok/s ({prefill_sec * 1000:.0f} ms)")
    print(f"  engine decode: {engine_tok_s:,.0f} tok/s ({decode_sec * 1000 / new:.1f} ms/step)")
    print(f"  naive decode: {naive_tok_s:,.0f} tok/s ({naive_sec * 1000 / naive_steps:.0f} ms/step)")
    print(f"  engine / naive: {engine_tok_s / naive_tok_s:.1f}x")
    print(f"  kv cache: {engine.cache.nbytes() / 2**20:.1f} MiB")


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


SECTIONS = {
    "model": bench_model,
    "decode": bench_decode,
    "sampler": bench_sampler,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, help="micro|cpu|gpu (default: gpu with CUDA, else cpu)")
    parser.add_argument("--only", default=None, help=f"comma-separated sections of {list(SECTIONS)}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    args.preset = args.preset or default_preset()
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(0)
    device = get_device(args.device)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    names = args.only.split(",") if args.only else list(SECTIONS)
    for name in names:
        SECTIONS[name](args, device)


if __name__ == "__main__":
    main()
