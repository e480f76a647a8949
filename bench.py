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


SECTIONS = {
    "model": bench_model,
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
