"""The model: KV-cache decoding equals the full forward (GQA, ragged rows), presets build."""

import pytest
import torch

from nanoparl.common import PRESETS
from nanoparl.model import GPT, GPTConfig, KVCache


def tiny(**kw):
    cfg = dict(vocab_size=97, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=64,
               block_size=64)
    cfg.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**cfg)).eval()


@pytest.mark.parametrize("n_kv_head,qk_norm", [(1, False), (2, False), (4, False), (2, True)])  # MQA, GQA, MHA
def test_incremental_decoding_matches_full_forward(n_kv_head, qk_norm):
    model = tiny(n_kv_head=n_kv_head, qk_norm=qk_norm)
    idx = torch.randint(0, 97, (3, 24))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache(model.config, 3, 64)
        chunks = [model(idx[:, :7], cache=cache)]
        cache.lengths += 7
        for t in range(7, 24):
            chunks.append(model(idx[:, t:t + 1], cache=cache))
            cache.lengths += 1
    assert (torch.cat(chunks, 1) - full).abs().max() < 1e-4


def test_ragged_rows_match_their_own_full_forward():
    """Rows of different lengths in one cache, appended with right padding, each equal its own forward."""
    model = tiny()
    seqs = [torch.randint(0, 97, (n,)) for n in (5, 11, 2)]
    cache = KVCache(model.config, 3, 64)
    with torch.no_grad():
        # prefill: right-padded batch, lengths advanced by each row's real count
        T = max(len(s) for s in seqs)
        batch = torch.zeros(3, T, dtype=torch.long)
        for i, s in enumerate(seqs):
            batch[i, :len(s)] = s
        logits = model(batch, cache=cache)
        for i, s in enumerate(seqs):
            ref = model(s[None])
            assert (logits[i, :len(s)] - ref[0]).abs().max() < 1e-4
        cache.lengths += torch.tensor([len(s) for s in seqs])
        # then per-row appends of different sizes into a subset of rows
        extra = {0: torch.randint(0, 97, (4,)), 2: torch.randint(0, 97, (1,))}
        rows = torch.tensor([0, 2])
        batch = torch.zeros(2, 4, dtype=torch.long)
        batch[0], batch[1, :1] = extra[0], extra[2]
        logits = model(batch, cache=cache, rows=rows)
        for j, r in enumerate((0, 2)):
            full = torch.cat([seqs[r], extra[r]])
            ref = model(full[None])[0, len(seqs[r]):]
            assert (logits[j, :len(extra[r])] - ref).abs().max() < 1e-4
        # row 1 was untouched: its next token still matches
        nxt = torch.randint(0, 97, (1, 1))
        cache.lengths += torch.tensor([4, 0, 1])
        out = model(nxt, cache=cache, rows=torch.tensor([1]))
        ref = model(torch.cat([seqs[1], nxt[0]])[None])[0, -1]
        assert (out[0, -1] - ref).abs().max() < 1e-4


def test_cache_overflow_is_a_clear_error():
    model = tiny()
    cache = KVCache(model.config, 1, 8)
    cache.lengths += 6
    with pytest.raises(ValueError, match="past the cache"):
        model(torch.zeros(1, 4, dtype=torch.long), cache=cache)


def test_loss_ignores_minus_one_targets_and_tied_embeddings():
    model = tiny(tie_embeddings=True)
    assert model.lm_head.weight is model.embed_tokens.weight
    idx = torch.randint(0, 97, (2, 10))
    targets = idx.clone()
    targets[:, :5] = -1
    _, loss = model(idx, targets=targets)
    logits = model(idx)
    ref = torch.nn.functional.cross_entropy(logits[:, 5:].reshape(-1, 97), idx[:, 5:].reshape(-1))
    assert torch.allclose(loss, ref, atol=1e-6)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_build(preset):
    cfg = GPTConfig(vocab_size=PRESETS[preset]["tokenizer"]["vocab_size"], **PRESETS[preset]["model"])
    if preset == "gpu":
        return  # building 30M params on CPU is slow-ish; the config validating is enough
    model = GPT(cfg)
    assert model.num_params() > 0


def test_cached_attention_paths_match_full_forward():
    """Each way the cached forward attends: a prompt into an empty cache (is_causal), a chunk after
    an equal-length prefix (one shared mask), one new token per row (no mask), a subset of rows,
    ragged rows (per-row masks); and last= returns those positions' logits only."""
    model = tiny(qk_norm=True)
    idx = torch.randint(0, 97, (3, 20))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache(model.config, 3, 64)
        out = model(idx[:, :6], cache=cache)  # empty cache
        assert (out - full[:, :6]).abs().max() < 1e-4
        cache.lengths += 6
        out = model(idx[:, 6:11], cache=cache)  # equal-length prefix, T > 1
        assert (out - full[:, 6:11]).abs().max() < 1e-4
        cache.lengths += 5
        out = model(idx[:, 11:12], cache=cache)  # decode, every row
        assert (out - full[:, 11:12]).abs().max() < 1e-4
        cache.lengths += 1
        rows = torch.tensor([2, 0])
        out = model(idx[[2, 0], 12:13], cache=cache, rows=rows)  # decode, a subset of rows
        assert (out - full[[2, 0], 12:13]).abs().max() < 1e-4
        cache.lengths[rows] += 1
        out = model(idx[[1], 12:16], cache=cache, rows=torch.tensor([1]))  # row 1 catches up
        assert (out - full[[1], 12:16]).abs().max() < 1e-4
        cache.lengths[1] += 4  # lengths now 13, 16, 13: ragged
        step = torch.stack([idx[0, 13:15], idx[1, 16:18], idx[2, 13:15]])
        out = model(step, cache=cache, last=torch.tensor([1, 0, 1]))
        assert out.shape == (3, 1, 97)
        want = torch.stack([full[0, 14], full[1, 16], full[2, 14]])
        assert (out[:, 0] - want).abs().max() < 1e-4


def test_last_positions_only_equal_the_full_forward():
    """forward(..., last=) skips the last layer's work at every other position: same logits, same
    cache contents as a full forward (for an empty cache, equal starts and ragged starts)."""
    model = tiny(qk_norm=True)
    idx = torch.randint(0, 97, (3, 12))
    last = torch.tensor([11, 4, 7])
    with torch.no_grad():
        full_cache, cache = KVCache(model.config, 3, 32), KVCache(model.config, 3, 32)
        full = model(idx, cache=full_cache)
        out = model(idx, cache=cache, last=last)
        assert out.shape == (3, 1, 97)
        assert (out[:, 0] - full[torch.arange(3), last]).abs().max() < 1e-4
        assert torch.equal(cache.k, full_cache.k) and torch.equal(cache.v, full_cache.v)
        for c in (cache, full_cache):
            c.lengths += torch.tensor([12, 5, 8])  # ragged from here on
        full = model(idx[:, :6], cache=full_cache)
        out = model(idx[:, :6], cache=cache, last=torch.tensor([5, 0, 2]))
        assert (out[:, 0] - full[torch.arange(3), torch.tensor([5, 0, 2])]).abs().max() < 1e-4
        assert (cache.k - full_cache.k).abs().max() < 1e-5


def test_rmsnorm_fused_path_equals_the_formula():
    from nanoparl.model import RMSNorm
    norm = RMSNorm(32, 1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(4, 7, 32) * 3
    want = norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))
    with torch.no_grad():
        torch.testing.assert_close(norm(x), want, atol=1e-6, rtol=1e-6)  # the fused path
    torch.testing.assert_close(norm(x), want, atol=1e-6, rtol=1e-6)  # with autograd: the plain ops
    torch.testing.assert_close(norm(x.double()), want.double(), atol=1e-6, rtol=1e-6)
