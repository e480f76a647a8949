"""The fused sampler against the softmax it claims to sample (chi-square), and the engine against
plain full-sequence forwards: greedy tokens, recorded log-probs, forks, resets and a full cache."""

import math

import pytest
import torch

from nanoparl.engine import Engine, sample
from nanoparl.model import GPT, GPTConfig

V = 64


def tiny_model(seed=0, sharp=1.0, block_size=128):
    """Random-init model. sharp scales lm_head: >1 gives well-separated logits, so that greedy
    decoding cannot flip between two nearly tied tokens on float rounding."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=V, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                          intermediate_size=64, block_size=block_size))
    with torch.no_grad():
        model.lm_head.weight.mul_(sharp)
    return model.eval()


def random_prompts(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, V, (n,), generator=g).tolist() for n in lengths]


def naive_greedy(model, prompt, n):
    """The reference, GPT.generate: the whole sequence run again for every new token."""
    return model.generate(torch.tensor([prompt]), n)[0].tolist()


@torch.no_grad()
def full_logprobs(model, tokens):
    """log p(tokens[t] | tokens[:t]) for t >= 1 from one training-style forward."""
    logits = model(torch.tensor([tokens]))[0, :-1]
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(tokens[1:])[:, None])[:, 0]


# ----------------------------------------------------------------------------
# Sampler


def chi2_stat(tokens, probs):
    n = tokens.numel()
    counts = torch.bincount(tokens, minlength=probs.numel()).double()
    keep = probs > 0
    assert counts[~keep].sum() == 0, "drew a token of probability 0"
    expected = n * probs[keep].double()
    return float(((counts[keep] - expected) ** 2 / expected).sum()), int(keep.sum()) - 1


def chi2_threshold(df):
    return df + 6 * math.sqrt(2 * df)  # about p = 1e-3 .. 1e-4 for the df used here


N_DRAWS = 20000


def draw(logits_row, **kw):
    gen = torch.Generator().manual_seed(1234)
    return sample(logits_row.expand(N_DRAWS, -1), generator=gen, **kw)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_matches_softmax(temperature):
    logits = torch.randn(8, generator=torch.Generator().manual_seed(0)) * 1.5
    tokens, lp_raw, lp_proc = draw(logits, temperature=temperature)
    probs = torch.softmax(logits / temperature, -1)
    stat, df = chi2_stat(tokens, probs)
    assert stat < chi2_threshold(df), stat
    # the test has power: the wrong temperature is rejected by a wide margin
    wrong, _ = chi2_stat(tokens, torch.softmax(logits / (temperature + 0.5), -1))
    assert wrong > 10 * chi2_threshold(df)
    torch.testing.assert_close(lp_raw, torch.log_softmax(logits, -1)[tokens])
    torch.testing.assert_close(lp_proc, probs.log()[tokens])


def test_sampler_top_k_top_p_kept_set():
    probs = torch.tensor([0.05, 0.25, 0.01, 0.4, 0.1, 0.03, 0.15, 0.01])
    logits = probs.log()
    # top-k 3 keeps {3, 1, 6}
    tokens, lp_raw, lp_proc = draw(logits, top_k=3)
    kept = torch.zeros(8).index_fill_(0, torch.tensor([3, 1, 6]), 1.0) * probs
    stat, df = chi2_stat(tokens, kept / kept.sum())
    assert stat < chi2_threshold(df), stat
    torch.testing.assert_close(lp_proc, (kept / kept.sum()).log()[tokens])
    torch.testing.assert_close(lp_raw, probs.log()[tokens])
    # top-p 0.6: mass before 0.25 is 0.4 < 0.6 (kept), before 0.15 it is 0.65 (dropped) -> {3, 1}
    tokens, _, lp_proc = draw(logits, top_p=0.6)
    kept = torch.zeros(8).index_fill_(0, torch.tensor([3, 1]), 1.0) * probs
    stat, df = chi2_stat(tokens, kept / kept.sum())
    assert stat < chi2_threshold(df), stat
    torch.testing.assert_close(lp_proc, (kept / kept.sum()).log()[tokens])
    # all three together: temperature, then top-k 4 {3,1,6,4}, then top-p over those
    tokens, _, _ = draw(logits, temperature=0.5, top_k=4, top_p=0.9)
    assert set(tokens.unique().tolist()) <= {3, 1, 6, 4}


def test_sampler_greedy_and_reproducible():
    logits = torch.randn(16, 50, generator=torch.Generator().manual_seed(0))
    tokens, lp_raw, lp_proc = sample(logits, temperature=0)
    assert torch.equal(tokens, logits.argmax(-1))
    assert torch.equal(lp_proc, torch.zeros(16))
    torch.testing.assert_close(lp_raw, torch.log_softmax(logits, -1).gather(-1, tokens[:, None])[:, 0])
    a = sample(logits, generator=torch.Generator().manual_seed(7))[0]
    b = sample(logits, generator=torch.Generator().manual_seed(7))[0]
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------
# Engine


@pytest.mark.parametrize("prefill_chunk,prefill_tokens", [(512, None), (3, None), (512, 24), (5, 10)])
def test_engine_greedy_matches_naive_ragged(prefill_chunk, prefill_tokens):
    model = tiny_model(sharp=40.0)
    prompts = random_prompts([1, 5, 12, 3])
    engine = Engine(model, batch_size=4, max_len=64, prefill_chunk=prefill_chunk, prefill_tokens=prefill_tokens)
    assert engine.append(range(4), prompts) == [True] * 4
    outputs, reasons = engine.generate(range(4), 20, temperature=0)
    assert reasons == ["budget"] * 4
    for row, (prompt, out) in enumerate(zip(prompts, outputs)):
        assert out == naive_greedy(model, prompt, 20)
        assert engine.tokens(row) == prompt + out
        assert engine.mask(row) == [0] * len(prompt) + [1] * 20
        assert engine.length(row) == len(prompt) + 20
        # the last sampled token waits outside the cache until the row goes on
        assert int(engine.cache.lengths[row]) == len(prompt) + 19


def test_engine_batched_equals_one_at_a_time():
    model = tiny_model(sharp=40.0)
    prompts = random_prompts([7, 2, 15, 4, 9])
    budgets = [3, 12, 7, 1, 10]
    stop = {naive_greedy(model, prompts[1], 5)[4]}  # row 1 meets a stop token at its 5th token
    engine = Engine(model, batch_size=6, max_len=48)
    rows = [4, 0, 5, 2, 1]  # any subset, any order
    engine.append(rows, prompts)
    outputs, reasons = engine.generate(rows, budgets, stop_tokens=stop, temperature=0)
    assert reasons[1] == "stop" and outputs[1][-1] in stop
    for row, prompt, budget, out, reason in zip(rows, prompts, budgets, outputs, reasons):
        single = Engine(model, batch_size=1, max_len=48)
        single.append([0], [prompt])
        assert single.generate([0], budget, stop_tokens=stop, temperature=0) == ([out], [reason])
        assert single.tokens(0) == engine.tokens(row)
        torch.testing.assert_close(torch.tensor(single.logprobs(0)), torch.tensor(engine.logprobs(row)),
                                   atol=1e-5, rtol=0)


def test_engine_stop_token_is_recorded_and_fed():
    model = tiny_model()
    engine = Engine(model, batch_size=3, max_len=32)
    prompts = random_prompts([4, 6, 2])
    engine.append(range(3), prompts)
    outputs, reasons = engine.generate(range(3), 10, stop_tokens=range(V))  # every token stops
    assert reasons == ["stop"] * 3 and all(len(o) == 1 for o in outputs)
    for row, prompt in enumerate(prompts):
        assert engine.mask(row)[-1] == 1 and engine.length(row) == len(prompt) + 1


def test_engine_logprobs_match_training_forward_multi_turn():
    """prompt -> generate -> append tool output -> generate: every recorded raw log-prob (forced
    and sampled) equals the training forward's over the whole recorded sequence."""
    model = tiny_model(seed=3)
    prompts = random_prompts([5, 11, 1, 8], seed=2)
    tools = random_prompts([6, 1, 9, 3], seed=3)
    engine = Engine(model, batch_size=4, max_len=64)
    gen = torch.Generator().manual_seed(0)
    stops = list(range(8))  # some rows stop early, some hit the budget
    engine.append(range(4), prompts)
    out1, _ = engine.generate(range(4), 10, stop_tokens=stops, generator=gen)
    engine.append(range(4), tools)
    out2, _ = engine.generate(range(4), [4, 9, 2, 12], stop_tokens=stops, generator=gen)
    for row in range(4):
        tokens, lps = engine.tokens(row), engine.logprobs(row)
        assert tokens == prompts[row] + out1[row] + tools[row] + out2[row]
        assert engine.mask(row) == ([0] * len(prompts[row]) + [1] * len(out1[row])
                                    + [0] * len(tools[row]) + [1] * len(out2[row]))
        assert lps[0] == 0.0  # the first token of a row has no prediction
        torch.testing.assert_close(torch.tensor(lps[1:]), full_logprobs(model, tokens), atol=1e-4, rtol=0)


def test_engine_fork_shares_prefix_and_diverges():
    model = tiny_model()  # random init: nearly uniform over 64 tokens, high entropy
    prompt = random_prompts([10])[0]
    engine = Engine(model, batch_size=8, max_len=32)
    engine.append([0], [prompt])
    engine.fork(0, range(1, 8))
    for row in range(8):
        assert engine.tokens(row) == prompt and engine.length(row) == 10
        assert torch.equal(engine.cache.k[:, row, :, :10], engine.cache.k[:, 0, :, :10])
    outputs, _ = engine.generate(range(8), 6, generator=torch.Generator().manual_seed(0))
    assert len({o[0] for o in outputs}) >= 4  # 8 draws over ~64 tokens: P(< 4 distinct) ~ 1e-6
    for row in range(8):
        assert engine.tokens(row)[:10] == prompt
        assert engine.mask(row) == [0] * 10 + [1] * 6
    # a fork continues exactly like its source
    sharp = tiny_model(sharp=40.0)
    engine = Engine(sharp, batch_size=3, max_len=32)
    engine.append([1], [prompt])
    engine.fork(1, [0, 2])
    outputs, _ = engine.generate([0, 1, 2], 8, temperature=0)
    assert outputs == [naive_greedy(sharp, prompt, 8)] * 3


def test_engine_reset_equals_fresh():
    model = tiny_model(sharp=40.0)
    a, b, c = random_prompts([9, 4, 6])
    engine = Engine(model, batch_size=2, max_len=40)
    engine.append([0, 1], [a, c])
    engine.generate([0, 1], 8, generator=torch.Generator().manual_seed(0))
    row1 = engine.tokens(1)
    engine.reset([0])
    assert engine.length(0) == 0 and engine.tokens(0) == [] and engine.logprobs(0) == []
    engine.append([0], [b])
    out, _ = engine.generate([0], 10, temperature=0)
    fresh = Engine(model, batch_size=1, max_len=40)
    fresh.append([0], [b])
    assert fresh.generate([0], 10, temperature=0)[0] == out
    assert fresh.tokens(0) == engine.tokens(0) and fresh.mask(0) == engine.mask(0)
    torch.testing.assert_close(torch.tensor(fresh.logprobs(0)), torch.tensor(engine.logprobs(0)))
    assert engine.tokens(1) == row1  # the other row is untouched


def test_engine_cache_full_stops_row_without_touching_others():
    model = tiny_model(sharp=40.0)
    long, short = random_prompts([20, 4])
    engine = Engine(model, batch_size=2, max_len=24)
    engine.append([0, 1], [long, short])
    outputs, reasons = engine.generate([0, 1], 10, temperature=0)
    assert reasons == ["cache_full", "budget"]
    assert len(outputs[0]) == 4 and engine.length(0) == 24 and engine.free(0) == 0
    assert outputs[0] == naive_greedy(model, long, 4)
    assert outputs[1] == naive_greedy(model, short, 10)
    # a full row: generate returns nothing, append refuses, neither raises; the other row proceeds
    assert engine.generate([0, 1], 3, temperature=0)[1] == ["cache_full", "budget"]
    assert engine.generate([0, 1], [0, 0]) == ([[], []], ["budget", "budget"])
    assert engine.append([0, 1], [[1, 2], [3]]) == [False, True]
    assert engine.length(0) == 24 and engine.length(1) == 4 + 10 + 3 + 1
    # a nearly full row next to a long append: right padding must not run past the cache
    engine.reset([0])
    engine.append([0], [long])  # free: 4
    assert engine.append([0, 1], [[5, 6, 7], []]) == [True, True]
    engine.reset([1])
    assert engine.append([0, 1], [[9], short + long[:16]]) == [True, True]
    assert engine.generate([1], 4, temperature=0)[0][0] == naive_greedy(model, short + long[:16], 4)


def test_engine_cache_memory_formula():
    model = tiny_model()
    c = model.config
    engine = Engine(model, batch_size=5, max_len=40)
    assert engine.cache.nbytes() == 2 * c.n_layer * 5 * 40 * c.n_kv_head * c.head_dim * 4 + 5 * 8
    with pytest.raises(ValueError):
        Engine(model, batch_size=1, max_len=c.block_size + 1)


def test_sampler_top_k_zero_means_off():
    logits = torch.randn(16, 50, generator=torch.Generator().manual_seed(0))
    off = sample(logits, top_k=None, generator=torch.Generator().manual_seed(3))
    zero = sample(logits, top_k=0, generator=torch.Generator().manual_seed(3))
    for a, b in zip(off, zero):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="top_k"):
        sample(logits, top_k=-1)


def count_forwards(model):
    """Wrap model.forward to count calls; returns the list that collects each call's idx shape."""
    calls, forward = [], model.forward

    def counted(idx, *args, **kwargs):
        calls.append(tuple(idx.shape))
        return forward(idx, *args, **kwargs)

    model.forward = counted
    return calls


def test_engine_never_runs_a_token_nobody_reads():
    """n new tokens cost n - 1 decode forwards: the last one is fed only when the row goes on,
    together with the next append (or first, by the next generate), and the row continues
    exactly as if it had been fed at once."""
    model = tiny_model(sharp=40.0)
    prompts = random_prompts([6, 9, 3])
    engine = Engine(model, batch_size=3, max_len=64)
    calls = count_forwards(model)
    engine.append(range(3), prompts)
    outputs, _ = engine.generate(range(3), 8, temperature=0)
    assert len(calls) == 1 + 7 and calls[1:] == [(3, 1)] * 7
    more, _ = engine.generate(range(3), 5, temperature=0)  # feeds the pending token first
    assert len(calls) == 1 + 7 + 1 + 4 and calls[8] == (3, 1)
    for prompt, a, b in zip(prompts, outputs, more):
        assert a + b == naive_greedy(model, prompt, 13)
    # a stop token ends its row without a forward; the next append feeds it with the new tokens
    others = set(outputs[0]) | set(outputs[2])
    i = next(i for i, t in enumerate(outputs[1]) if t not in others and t not in outputs[1][:i])
    engine.reset(range(3))
    engine.append(range(3), prompts)
    del calls[:]
    outs, reasons = engine.generate(range(3), 8, stop_tokens={outputs[1][i]}, temperature=0)
    assert reasons == ["budget", "stop", "budget"] and len(outs[1]) == i + 1
    assert [c[0] for c in calls] == [3] * i + [2] * (7 - i)  # row 1 leaves at its stop token
    tool = random_prompts([4], seed=5)[0]
    engine.append([1], [tool])
    assert calls[-1] == (1, 5)  # the pending stop token + the 4 forced tokens
    tokens = engine.tokens(1)
    assert tokens == prompts[1] + outs[1] + tool
    torch.testing.assert_close(torch.tensor(engine.logprobs(1)[1:]), full_logprobs(model, tokens),
                               atol=1e-4, rtol=0)
    assert engine.generate([1], 3, temperature=0)[0][0] == naive_greedy(model, tokens, 3)


def test_engine_append_without_logprobs():
    """logprobs=False: only each row's last position gets logits; the same continuation, and the
    forced tokens' log-probs are recorded as 0.0."""
    model = tiny_model(sharp=40.0)
    prompts = random_prompts([5, 12, 1, 7])
    a, b = Engine(model, batch_size=4, max_len=48), Engine(model, batch_size=4, max_len=48)
    a.append(range(4), prompts)
    b.append(range(4), prompts, logprobs=False)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    assert all(b.logprobs(r) == [0.0] * len(p) for r, p in enumerate(prompts))
    assert a.generate(range(4), 6, temperature=0)[0] == b.generate(range(4), 6, temperature=0)[0]
