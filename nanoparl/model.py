"""A Llama-architecture decoder in one file.

token embedding -> n_layer x [RMSNorm -> grouped-query attention with rotary positions -> residual,
RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> lm_head. No biases anywhere. With qk_norm, each
head's queries and keys are RMS-normalised before rotary, as in Qwen3 (export_hf then writes a
Qwen3ForCausalLM).

Module names follow Hugging Face's LlamaForCausalLM (embed_tokens, layers.i.self_attn.q_proj, ...)
so that export to the HF format (checkpoint.export_hf) is a rename-free copy, and rotary embeddings
use the same "rotate-half" convention as HF, so no weight permutation is needed either.

Forward has two modes:
- training / scoring: forward(idx, targets) over whole sequences, causal attention;
- incremental: forward(idx, cache=cache, rows=rows) appends idx to the given rows of a KVCache.
  Every row has its own length (rows are ragged), so row b's new tokens sit at positions
  cache.lengths[b] ... cache.lengths[b] + T - 1. The caller advances cache.lengths afterwards by
  the number of *real* tokens of each row; padded tail tokens are simply overwritten later and,
  being in the future of every real query, are never attended to.

Attention always goes through F.scaled_dot_product_attention, and the cached path hands it what
its fast kernels like: keys and values stored head-major, (B, Hkv, S, D), so the cache is read
through a plain slice; no mask when every row has the same length and one new token (decode);
is_causal when a prompt starts an empty cache; an explicit mask only where rows are ragged.
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 1024
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2          # grouped-query attention: n_head % n_kv_head == 0
    n_embd: int = 128
    intermediate_size: int = 384  # SwiGLU hidden width
    block_size: int = 1024      # longest sequence (and rotary table length)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    qk_norm: bool = False       # RMSNorm on each head's q and k before rotary (Qwen3 style)

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head {self.n_head} is not divisible by n_kv_head {self.n_kv_head}")

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    def to_dict(self):
        return asdict(self)


# ----------------------------------------------------------------------------
# KV cache

class KVCache:
    """Preallocated keys and values for B rows of up to max_len tokens, plus each row's length.

    Layout (n_layer, B, n_kv_head, max_len, head_dim): head-major, so that the keys of positions
    0..S-1 are a slice in the layout attention reads, not a transposed view.
    Memory, exactly: 2 (k and v) * n_layer * B * max_len * n_kv_head * head_dim * bytes(dtype),
    plus B int64 lengths. Nothing grows during decoding.
    """

    def __init__(self, config, batch_size, max_len, device="cpu", dtype=torch.float32):
        shape = (config.n_layer, batch_size, config.n_kv_head, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.max_len = max_len

    @property
    def batch_size(self):
        return self.k.shape[1]

    def nbytes(self):
        return self.k.nbytes + self.v.nbytes + self.lengths.nbytes


# ----------------------------------------------------------------------------
# Building blocks

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        if x.dtype == torch.float32 and not torch.is_grad_enabled():
            # inference: one fused kernel, the same numbers as the lines below (in training its
            # backward is slower on CPU than the plain ops', so training keeps the plain ops)
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        # normalise in float32 for stability, as Llama does
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.type_as(x)


def rotary_tables(head_dim, length, theta):
    """cos and sin tables, (length, head_dim), in the rotate-half layout (frequencies repeated)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    t = torch.arange(length, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)            # (length, head_dim/2)
    emb = torch.cat([freqs, freqs], dim=-1)     # (length, head_dim)
    return emb.cos(), emb.sin()


def apply_rotary(x, cos, sin):
    # x: (B, T, H, D); cos/sin: (B, T, 1, D). rotate_half([a, b]) = [-b, a]
    d = x.shape[-1] // 2
    rotated = torch.cat([-x[..., d:], x[..., :d]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.q_proj = nn.Linear(config.n_embd, config.n_head * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_dim, config.n_embd, bias=False)
        self.qk_norm = config.qk_norm
        if config.qk_norm:
            # bounded attention logits: the copy circuits of a tiny model trained from scratch form
            # sooner with it (README, "Teaching a tiny model to copy")
            self.q_norm = RMSNorm(config.head_dim, config.norm_eps)
            self.k_norm = RMSNorm(config.head_dim, config.norm_eps)

    def forward(self, x, cos, sin, layer_cache=None, mask="causal", q_at=None):
        """mask: "causal" (the keys are exactly these T tokens), None (every key is visible) or a
        boolean (B|1, 1, T, S) tensor, True = visible. layer_cache(k, v) stores the new keys and
        values and returns all keys and values of the rows, (B, Hkv, S, D).
        q_at: LongTensor (B,), optional: one query per row, at position q_at[b] (keys and values
        still come from all T positions); mask is then that query's, (B, 1, 1, S)."""
        B, T, _ = x.shape
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim)
        k_cos, k_sin = cos, sin
        if q_at is not None:
            b = torch.arange(B, device=x.device)
            x = x[b, q_at][:, None]  # (B, 1, C)
            cos, sin = cos.expand(B, T, -1, -1)[b, q_at][:, None], sin.expand(B, T, -1, -1)[b, q_at][:, None]
            T = 1
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, k_cos, k_sin)
        if layer_cache is not None:
            k, v = layer_cache(k, v)  # (B, Hkv, S, D)
        else:
            k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, Hkv, T, D)
        if T == 1:
            # one query per row: the G query heads that share a key head become G query rows,
            # (B, Hkv, G, D), so each key head is read once and never expanded
            G = self.n_head // self.n_kv_head
            q = q.view(B, self.n_kv_head, G, self.head_dim)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if isinstance(mask, str) else mask)
        elif isinstance(mask, str):
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, is_causal=True, enable_gqa=True)
        else:
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=mask, enable_gqa=True)
        # (B, H, T, D) -> (B, T, H * D); for T == 1, (B, Hkv, G, D) is the same memory as (B, H, 1, D)
        y = y.reshape(B, self.n_head, T, self.head_dim).transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, layer_cache=None, mask="causal", q_at=None):
        h = self.self_attn(self.input_layernorm(x), cos, sin, layer_cache, mask, q_at)
        if q_at is not None:  # only these positions go on: (B, 1, C)
            x = x[torch.arange(x.shape[0], device=x.device), q_at][:, None]
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x))


# ----------------------------------------------------------------------------
# The model

class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # scale the projections that write into the residual stream (GPT-2 style)
        for name, p in self.named_parameters():
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding=True):
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.embed_tokens.weight.numel()
        return n

    def flops_per_token(self, seq_len):
        """Forward+backward FLOPs per token: 6 * params in matmuls + attention (PaLM appendix B)."""
        c = self.config
        matmul_params = self.num_params(non_embedding=True) - sum(
            p.numel() for n, p in self.named_parameters() if "norm" in n)
        attn = 12 * c.n_layer * c.n_head * c.head_dim * seq_len / 2  # causal: half the scores
        return 6 * matmul_params + attn

    def forward(self, idx, targets=None, cache=None, rows=None, last=None):
        """idx (B, T) -> logits (B, T, V) [and mean loss over targets != -1 if targets given].

        With cache: idx is appended to cache rows `rows` (LongTensor (B,), default: all rows)
        at positions cache.lengths[rows] + 0..T-1. cache.lengths is NOT advanced here.
        last: LongTensor (B,), optional: compute the logits at position last[b] of each row only,
        -> (B, 1, V) (a prompt needs the next-token logits of its last token, not of every token).
        """
        B, T = idx.shape
        x = self.embed_tokens(idx)  # (B, T, C)
        if cache is None:
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens exceeds block_size {self.config.block_size}")
            cos = self.rope_cos[:T][None, :, None, :]  # (1, T, 1, D)
            sin = self.rope_sin[:T][None, :, None, :]
            for layer in self.layers:
                x = layer(x, cos, sin)
        else:
            x = self._forward_cached(x, cache, rows, last)
            last = None  # the last layer already kept those positions only
        if last is not None:
            x = x[torch.arange(B, device=x.device), last][:, None]  # (B, 1, C)
        logits = self.lm_head(self.norm(x)).float()
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens):
        """The reference decoder: greedy, no KV cache, the whole sequence run again for every new
        token. idx (B, T) -> the new tokens (B, max_new_tokens). The engine (engine.py) must give
        exactly these tokens, hundreds of times faster (tests/test_engine.py; bench.py times both)."""
        start = idx.shape[1]
        for _ in range(max_new_tokens):
            logits = self(idx)[:, -1]  # (B, V): all T positions recomputed, the last one read
            idx = torch.cat([idx, logits.argmax(dim=-1, keepdim=True)], dim=1)
        return idx[:, start:]

    def _forward_cached(self, x, cache, rows, last=None):
        B, T, _ = x.shape
        dev = x.device
        if rows is None:
            rows, sel = torch.arange(cache.batch_size, device=dev), slice(None)
        else:  # a block of consecutive rows is a slice of the cache (a view); other sets are gathered
            # (the check reads the row ids on the host: on a GPU that would sync every decode step)
            r = rows.tolist() if rows.device.type == "cpu" else []
            sel = slice(r[0], r[0] + len(r)) if r and r == list(range(r[0], r[0] + len(r))) else rows
        start = cache.lengths[rows]  # (B,)
        starts = start.tolist()  # host copy (the forward's one sync): it picks the attention path
        s0, S = starts[0], max(starts) + T  # S: keys needed, up to the furthest new position
        if S > min(cache.max_len, self.config.block_size):
            raise ValueError(f"position {S - 1} is past the cache ({cache.max_len}) "
                             f"or block_size ({self.config.block_size})")
        if min(starts) == max(starts):
            # all rows start at s0: rotary, cache writes and the mask are shared by every row
            pos = None
            cos = self.rope_cos[s0:S][None, :, None, :]  # (1, T, 1, D)
            sin = self.rope_sin[s0:S][None, :, None, :]
            if s0 == 0:
                mask = "causal"
            elif T == 1:
                mask = None  # the one new token sees every key
            else:  # query t sits at position s0 + t and sees keys 0..s0 + t
                mask = torch.arange(S, device=dev)[None, :] <= s0 + torch.arange(T, device=dev)[:, None]
                mask = mask[None, None]  # (1, 1, T, S)
        else:
            pos = start[:, None] + torch.arange(T, device=dev)[None, :]  # (B, T)
            cos = self.rope_cos[pos][:, :, None, :]  # (B, T, 1, D)
            sin = self.rope_sin[pos][:, :, None, :]
            # query at position p sees keys 0..p of its own row
            mask = (torch.arange(S, device=dev)[None, None, :] <= pos[:, :, None])[:, None]  # (B, 1, T, S)
        if last is not None:
            # the last layer needs queries, attention and MLP at position last[b] only (its keys and
            # values still go to the cache for all T): a prompt's last layer costs one token's work
            q_pos = start + last  # (B,)
            q_mask = (torch.arange(S, device=dev)[None, :] <= q_pos[:, None])[:, None, None]  # (B, 1, 1, S)
        for i, layer in enumerate(self.layers):
            kc, vc = cache.k[i], cache.v[i]  # (Bc, Hkv, L, D)

            def layer_cache(k, v, kc=kc, vc=vc):
                # k, v: (B, T, Hkv, D), stored at [row, head, position]
                if pos is None:  # the same positions in every row
                    kc[sel, :, s0:S] = k.transpose(1, 2).to(kc.dtype)
                    vc[sel, :, s0:S] = v.transpose(1, 2).to(vc.dtype)
                else:
                    kc[rows[:, None], :, pos] = k.to(kc.dtype)
                    vc[rows[:, None], :, pos] = v.to(vc.dtype)
                return kc[sel, :, :S].to(k.dtype), vc[sel, :, :S].to(v.dtype)

            if last is not None and i == len(self.layers) - 1:
                x = layer(x, cos, sin, layer_cache, q_mask, q_at=last)  # (B, 1, C)
            else:
                x = layer(x, cos, sin, layer_cache, mask)
        return x
