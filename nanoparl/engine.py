"""Batched generation: a fused sampler and an engine over a preallocated, ragged KV cache.

sample() turns a batch of logits into tokens in one fused step (temperature -> top-k -> top-p ->
exponential race) and returns each token's log-prob under the raw and the processed distribution.

Engine holds B rows of one KVCache. Each row is an independent, growing conversation:
- append(rows, token_lists): forced tokens (prompt, tool output, user turn), one batched forward,
  the prefix is never recomputed;
- generate(rows, ...): decode the rows together, one T=1 forward per step over the rows that go on;
- fork(src, dst_rows): copy a prefilled prompt into the other rows of a GRPO group;
- reset(rows): empty rows, e.g. when the awareness policy rebuilds a context at a user turn.

Invariant between calls: length(row) == len(tokens(row)); the cache holds every recorded token
of a row but at most one, the last token generate() sampled (nothing reads its logits until the
row goes on, and a rollout that ends there never needs them); engine.logits[row] predicts the
first recorded token that is not in the cache yet. append() and generate() feed that pending token
first, in the same forward as the new tokens: a row continues exactly as if it had been fed.

Recorded per row (Python lists, one entry per token, in order):
    tokens        token ids
    mask          1 sampled by generate(), 0 forced by append()
    logprob       log-prob under the raw model (temperature 1, full vocabulary) given the prefix;
                  0.0 for a row's very first token, which nothing predicts (its mask is 0), and for
                  forced tokens appended with logprobs=False (sample() also returns the log-prob
                  under the processed distribution; RL's ratio needs the raw one, so that is kept)
"""

import torch

from .common import autocast
from .model import KVCache

# ----------------------------------------------------------------------------
# Sampling


def sample(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """logits (B, V) -> tokens (B,) long, logprob_raw (B,), logprob_proc (B,).

    One fused step, no host sync, no torch.multinomial: scale by 1/temperature, keep the top_k
    largest logits (exactly k; ties broken by torch.topk), keep the smallest set of most likely
    tokens whose mass reaches top_p, then draw by exponential race: argmax_i (log p_i - log E_i),
    E_i ~ Exp(1), which picks i with probability p_i (the first arrival among independent Poisson
    clocks of rates p_i; the same thing as the Gumbel-max trick). With top-k or top-p the race
    runs over the sorted candidates only (k of them with top-k), which is also what makes it cheap.
    temperature 0 is greedy argmax, and logprob_proc is 0 there. top_k None or 0 and top_p None or
    1.0 mean no truncation (the usual meaning of 0 for top-k in other samplers).
    generator: a torch.Generator on logits' device, for reproducible draws.
    """
    logits = logits.float()
    logp_raw = torch.log_softmax(logits, dim=-1)  # (B, V)
    if temperature == 0:
        tokens = logits.argmax(dim=-1)
        return tokens, logp_raw.gather(-1, tokens[:, None]).squeeze(-1), torch.zeros_like(logits[:, 0])
    x = logits / temperature if temperature != 1.0 else logits  # (B, V)
    use_p = top_p is not None and top_p < 1.0
    order = None  # candidate j of a row is token order[:, j]
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 or None: off), got {top_k}")
    if top_k and top_k < x.size(-1):
        x, order = torch.topk(x, top_k, dim=-1)  # (B, k), sorted descending
    elif use_p:
        x, order = torch.sort(x, dim=-1, descending=True)
    if use_p:
        probs = torch.softmax(x, dim=-1)
        # drop a candidate when the mass strictly before it already reaches top_p (never the first)
        x = x.masked_fill(probs.cumsum(dim=-1) - probs >= top_p, float("-inf"))
    # the processed distribution over the candidates (the raw one itself at temperature 1, untruncated)
    logp = logp_raw if x is logits else torch.log_softmax(x, dim=-1)
    # E = -log(1 - U) ~ Exp(1) by inversion (Tensor.exponential_ is ~5x slower than rand on CPU);
    # clamp so that a draw of exactly 0 cannot turn -inf - (-inf) into nan
    u = torch.rand(logp.shape, generator=generator, device=logp.device)
    log_e = u.neg_().log1p_().neg_().clamp_min_(torch.finfo(logp.dtype).tiny).log_()
    choice = (logp - log_e).argmax(dim=-1, keepdim=True)  # (B, 1)
    logprob_proc = logp.gather(-1, choice).squeeze(-1)
    tokens = choice if order is None else order.gather(-1, choice)
    return tokens.squeeze(-1), logp_raw.gather(-1, tokens).squeeze(-1), logprob_proc


# ----------------------------------------------------------------------------
# Engine


class Engine:
    """B rows x max_len tokens of preallocated KV cache, ragged per-row lengths, recorded tokens.

    Cache memory, exactly, allocated once and never grown:
        2 (k, v) * n_layer * B * max_len * n_kv_head * head_dim * bytes_per_element  + B int64 lengths
    plus the pending logits, B * vocab_size * 4 bytes. bytes_per_element is 2 on CUDA (bf16 cache,
    the forward runs under bf16 autocast) and 4 elsewhere (float32), unless cache_dtype is given.

    Rows are addressed by index 0..B-1. A row never grows past max_len (<= the model's block_size):
    append() refuses token lists that do not fit (returns False for that row, other rows proceed)
    and generate() stops a row that is full with reason 'cache_full'. Neither raises mid-batch.

    compile=True wraps the T=1 decode forward in torch.compile (CUDA; off by default).
    prefill_chunk bounds the tokens per row in one append forward (the (rows, T, V) logits).
    prefill_tokens bounds rows x T in one append forward: default 4096 on CPU, where a group of
    rows whose activations stay in the L3 cache beats one big batch (32 prompts of 448 tokens:
    25% faster in groups of 8 rows on the 2-core machine of the README), unbounded on CUDA.
    """

    def __init__(self, model, batch_size, max_len, device=None, cache_dtype=None, compile=False,
                 prefill_chunk=512, prefill_tokens=None):
        if max_len > model.config.block_size:
            raise ValueError(f"max_len {max_len} exceeds the model's block_size {model.config.block_size}")
        self.model = model
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if cache_dtype is None:
            cache_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.cache = KVCache(model.config, batch_size, max_len, device=self.device, dtype=cache_dtype)
        self.batch_size, self.max_len, self.prefill_chunk = batch_size, max_len, prefill_chunk
        if prefill_tokens is None:
            prefill_tokens = 4096 if self.device.type == "cpu" else 1 << 62
        self.prefill_tokens = prefill_tokens
        self.logits = torch.zeros(batch_size, model.config.vocab_size, device=self.device)  # (B, V)
        self._len = [0] * batch_size  # recorded tokens per row
        self._cached = [0] * batch_size  # tokens in the cache: host copy of cache.lengths (no sync)
        self._tokens = [[] for _ in range(batch_size)]
        self._mask = [[] for _ in range(batch_size)]
        self._logprob = [[] for _ in range(batch_size)]
        self._all_rows = list(range(batch_size))
        self._decode = torch.compile(self._forward, dynamic=True) if compile else self._forward

    # ---- accessors: copies of the records, safe to keep

    def length(self, row):
        return self._len[row]

    def free(self, row):
        """Tokens that still fit in the row."""
        return self.max_len - self._len[row]

    def tokens(self, row):
        return list(self._tokens[row])

    def mask(self, row):
        return list(self._mask[row])

    def logprobs(self, row):
        """Per token: its log-prob under the model at temperature 1 (0 for forced tokens when
        append() ran with logprobs=False, and for a row's first token)."""
        return list(self._logprob[row])

    def nbytes(self):
        return self.cache.nbytes() + self.logits.nbytes

    # ---- cache operations

    def _forward(self, idx, rows, last=None):
        # rows=None lets the model read the cache through slices (no gather) when all rows take part;
        # last is passed only when given, so a model subclass without it still decodes
        with autocast(self.device):
            if last is None:
                return self.model(idx, cache=self.cache, rows=rows)
            return self.model(idx, cache=self.cache, rows=rows, last=last)

    def _check_rows(self, rows):
        rows = [int(r) for r in rows]
        if len(set(rows)) != len(rows) or any(not 0 <= r < self.batch_size for r in rows):
            raise ValueError(f"rows must be distinct indices in [0, {self.batch_size}): {rows}")
        return rows

    def _feed(self, rows, logprobs):
        """Run each row's recorded tokens that are not in the cache yet (its pending sampled token,
        then forced ones) through the model, in right-padded batched forwards; engine.logits then
        holds each row's next-token logits. logprobs: also fill in the raw log-prob of every forced
        token fed (this needs the logits at every position; without it, the last position only)."""
        todo = [(r, self._cached[r]) for r in rows if self._cached[r] < self._len[r]]
        while todo:
            # one forward over the first rows of todo, as many as keep rows x T <= prefill_tokens
            T = min(self.prefill_chunk, max(self._len[r] - c for r, c in todo))
            group, rest = todo[:max(1, self.prefill_tokens // T)], todo[max(1, self.prefill_tokens // T):]
            todo = group
            # padded positions must stay inside the cache too: T <= the cache room of every row
            T = min(self.prefill_chunk, max(self._len[r] - c for r, c in todo),
                    min(self.max_len - c for r, c in todo))
            n_real = [min(self._len[r] - c, T) for r, c in todo]
            idx = torch.tensor([self._tokens[r][c:c + k] + [0] * (T - k) for (r, c), k in zip(todo, n_real)],
                               dtype=torch.long, device=self.device)  # (N, T)
            rows_now = [r for r, _ in todo]
            rows_dev = torch.tensor(rows_now, device=self.device)
            k_dev = torch.tensor(n_real, device=self.device)
            rows_arg = None if rows_now == self._all_rows else rows_dev
            if logprobs:
                logits = self._forward(idx, rows_arg)  # (N, T, V)
                # raw log-prob of token t: position 0 from the pending logits, t from t-1
                lp = torch.empty(idx.shape, device=self.device)
                prev = self.logits[rows_dev]  # (N, V)
                lp[:, 0] = prev.gather(-1, idx[:, :1]).squeeze(-1) - prev.logsumexp(-1)
                if T > 1:
                    lp[:, 1:] = (logits[:, :-1].gather(-1, idx[:, 1:, None]).squeeze(-1)
                                 - logits[:, :-1].logsumexp(-1))
                self.logits[rows_dev] = logits[torch.arange(len(todo), device=self.device), k_dev - 1]
                lp = lp.cpu().tolist()
                for (r, c), k, lps in zip(todo, n_real, lp):
                    for t in range(max(c, 1), c + k):  # a row's first token has no prediction: 0.0
                        if self._mask[r][t] == 0:  # sampled tokens keep the log-prob they were drawn with
                            self._logprob[r][t] = lps[t - c]
            else:
                self.logits[rows_dev] = self._forward(idx, rows_arg, last=k_dev - 1 if T > 1 else None)[:, 0]
            self.cache.lengths[rows_dev] += k_dev
            for (r, c), k in zip(todo, n_real):
                self._cached[r] = c + k
            todo = [(r, c + k) for (r, c), k in zip(todo, n_real) if c + k < self._len[r]] + rest

    @torch.no_grad()
    def append(self, rows, token_lists, logprobs=True):
        """Append forced tokens (mask 0) to rows; returns one bool per row: False = did not fit.

        A row whose tokens do not fit in its free space is left untouched. The others are run in
        one right-padded batched forward (more only if prefill_chunk or a nearly full row demand
        it), the prefix is never recomputed, and engine.logits then holds each row's next-token
        logits. logprobs=False records 0.0 instead of the forced tokens' log-probs and computes
        the logits at each row's last token only (cheaper: what a plain prompt-then-generate needs).
        """
        rows = self._check_rows(rows)
        if len(rows) != len(token_lists):
            raise ValueError("need one token list per row")
        fits = [len(t) <= self.free(r) for r, t in zip(rows, token_lists)]
        fed = []
        for r, t, ok in zip(rows, token_lists, fits):
            if ok and len(t):
                t = [int(x) for x in t]
                self._tokens[r] += t
                self._mask[r] += [0] * len(t)
                self._logprob[r] += [0.0] * len(t)  # filled in by _feed
                self._len[r] += len(t)
                fed.append(r)
        self._feed(fed, logprobs)
        return fits

    @torch.no_grad()
    def generate(self, rows, max_new_tokens, stop_tokens=(), temperature=1.0, top_k=None, top_p=None,
                 generator=None):
        """Decode rows together until each emits a stop token or runs out of budget or cache.

        max_new_tokens: int, or one int per row. The stop token is part of the output (mask 1).
        Returns (outputs, reasons): per row the list of new tokens and 'stop' | 'budget' |
        'cache_full'. Every row must already hold at least one token (a prompt).
        A row's last new token is recorded but not run through the model (nothing reads its
        logits yet): it is fed with the next append() or generate() of that row.
        """
        rows = self._check_rows(rows)
        n = len(rows)
        per_row = hasattr(max_new_tokens, "__len__")
        budgets = [int(b) for b in max_new_tokens] if per_row else [int(max_new_tokens)] * n
        if len(budgets) != n:
            raise ValueError("need one max_new_tokens per row")
        if any(self._len[r] == 0 for r in rows):
            raise ValueError("generate() on an empty row: append a prompt first")
        # a row can sample while it has room to store the token; it ends at min(budget, free space)
        limits = [min(b, self.free(r)) for b, r in zip(budgets, rows)]
        live = [j for j in range(n) if limits[j] > 0]  # positions into rows
        self._feed([rows[j] for j in live], logprobs=False)  # tokens left pending by a previous call
        steps = max(limits, default=0)
        dev = self.device
        out_tok = torch.zeros(n, steps, dtype=torch.long, device=dev)  # (n, steps)
        out_lp = torch.zeros(n, steps, device=dev)
        rows_all = torch.tensor(rows, dtype=torch.long, device=dev)
        limit_all = torch.tensor(limits, device=dev)
        stops = torch.tensor(sorted(set(stop_tokens)), dtype=torch.long, device=dev)
        counts, ends = [0] * n, [""] * n  # ends: 'stop' or 'limit' until resolved below
        live_dev = torch.tensor(live, dtype=torch.long, device=dev)
        r_dev = rows_all[live_dev]
        all_live = rows == self._all_rows and len(live) == n
        for s in range(steps):
            if not live:
                break
            tok, lp, _ = sample(self.logits[r_dev], temperature, top_k, top_p, generator)
            out_tok[live_dev, s], out_lp[live_dev, s] = tok, lp
            # 1 = stop token, 2 = reached its limit
            code = torch.isin(tok, stops).to(torch.uint8) | ((limit_all[live_dev] <= s + 1).to(torch.uint8) << 1)
            code = code.cpu()  # the one host sync of the step: who is done
            if code.any():
                for j, c in zip(live, code.tolist()):
                    if c:
                        counts[j], ends[j] = s + 1, "stop" if c & 1 else "limit"
                keep = code == 0
                live = [j for j, k in zip(live, keep.tolist()) if k]
                keep = keep.to(dev)
                live_dev, tok = live_dev[keep], tok[keep]
                r_dev = rows_all[live_dev]
                all_live = False
                if not live:
                    break  # the tokens that ended rows are never fed now: no forward for them
            logits = self._decode(tok[:, None], None if all_live else r_dev)  # (N, 1, V)
            self.logits[r_dev] = logits[:, 0]
            self.cache.lengths[r_dev] += 1
        # one transfer for the whole call, then the records
        toks, lps = out_tok.cpu().tolist(), out_lp.cpu().tolist()
        outputs, reasons = [], []
        for j, r in enumerate(rows):
            c = counts[j]
            new = toks[j][:c]
            self._tokens[r] += new
            self._mask[r] += [1] * c
            self._logprob[r] += lps[j][:c]
            self._len[r] += c
            self._cached[r] += max(c - 1, 0)  # all but the last new token went through the model
            outputs.append(new)
            reasons.append("stop" if ends[j] == "stop" else "budget" if c >= budgets[j] else "cache_full")
        return outputs, reasons

    @torch.no_grad()
    def fork(self, src_row, dst_rows):
        """Copy src_row's cache prefix, length, pending logits and records into dst_rows."""
        dst = [r for r in self._check_rows(dst_rows) if r != src_row]
        if not dst:
            return
        L, d = self._cached[src_row], torch.tensor(dst, device=self.device)
        for buf in (self.cache.k, self.cache.v):  # (n_layer, B, Hkv, max_len, D)
            buf[:, d, :, :L] = buf[:, src_row:src_row + 1, :, :L].clone()
        self.cache.lengths[d] = L
        self.logits[d] = self.logits[src_row].clone()
        for r in dst:
            self._len[r], self._cached[r] = self._len[src_row], L
            self._tokens[r] = list(self._tokens[src_row])
            self._mask[r] = list(self._mask[src_row])
            self._logprob[r] = list(self._logprob[src_row])

    def reset(self, rows):
        """Empty rows: length 0, records cleared. Their stale cache entries are overwritten later."""
        rows = self._check_rows(rows)
        if not rows:
            return
        d = torch.tensor(rows, device=self.device)
        self.cache.lengths[d] = 0
        self.logits[d] = 0.0
        for r in rows:
            self._len[r] = self._cached[r] = 0
            self._tokens[r], self._mask[r], self._logprob[r] = [], [], []
