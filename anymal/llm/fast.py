"""The decoder for Llama-family LLMs (Llama, SmolLM2, Qwen2): the cost of answering on a CPU.

transformers' forward spends most of a one-token step on Python around the matmuls (mask and
position bookkeeping, cache classes, per-module dispatch and hooks): for SmolLM2-135M on 2 cores a
step took ~35 ms of which the matmuls are ~21. `FastLM` runs the same computation as one flat loop
over the model's own weight tensors (shared, not copied) with a preallocated `KVCache`, for
inference only, in two forms:

* `exact` (`--decoder fast`): the LLM's own weights, the same arithmetic as transformers up to the
  order of float sums; greedy answers equal the reference path's (tests/test_fast_decode.py). A lone
  greedy row is decoded speculatively (`speculate`): 4-bit drafts, checked by one exact pass.
* `q4` (`--decoder fast-q4`): one-token steps on 4-bit weights (llm/quick.py), llama.cpp's speed
  class, answers that agree with the exact ones on most tokens, not all. Prompts (many tokens at
  once, where the matmuls are compute-bound) run on the exact weights in both forms.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .linears import base_model, exact_linear, lora_parts, projections

WEIGHTS = ("exact", "q4")


def unsupported(model: nn.Module) -> str | None:
    """Why `FastLM` cannot run `model` (None: it can)."""
    base = base_model(model)
    c = base.config
    if c.model_type not in ("llama", "qwen2"):
        return f"model type {c.model_type!r} (fast decoding covers llama and qwen2)"
    if getattr(c, "hidden_act", "silu") != "silu" or getattr(c, "mlp_bias", False) or getattr(c, "pretraining_tp", 1) != 1:
        return "a feed-forward other than Llama's bias-free SiLU gate"
    if getattr(c, "use_sliding_window", False):
        return "sliding-window attention"
    rope = getattr(base.model.rotary_emb, "rope_type", "default")
    if rope not in ("default", "linear", "llama3", "yarn"):  # these keep one set of frequencies
        return f"rotary scaling {rope!r}"
    for m in projections(base):
        lora = lora_parts(m)
        plain = lora[0] if lora else m
        if type(plain) is not nn.Linear or (hasattr(m, "base_layer") and lora is None):
            return "quantized or replaced linear layers, or LoRA layers other than plain ones in eval mode (merged, DoRA, dropout at work)"
    return None


class KVCache:
    """Keys and values of every layer in one buffer each, [layers, B, KV heads, capacity, head dim],
    filled up to `length` (capacity doubles when a step would overflow it). One buffer, so that a
    one-token step takes every layer's slot for its position with one view."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        self.keys, self.values, self.length = keys, values, length

    @classmethod
    def empty(cls, layers: int, batch: int, heads: int, dim: int, capacity: int, like: torch.Tensor) -> "KVCache":
        return cls(*(like.new_zeros(layers, batch, heads, capacity, dim) for _ in range(2)), 0)

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def reserve(self, extra: int) -> None:
        need = self.length + extra
        if need <= self.capacity:
            return
        cap = max(need, 2 * self.capacity)

        def grown(t):
            out = t.new_zeros(*t.shape[:3], cap, t.shape[4])
            out[:, :, :, :self.length] = t[:, :, :, :self.length]
            return out
        self.keys, self.values = grown(self.keys), grown(self.values)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store a step's keys/values [B, KV, T, D] after the cached ones; return all of them."""
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def select(self, rows: torch.Tensor, start: int) -> "KVCache":
        """The cache of `rows` only, without its first `start` positions."""
        return KVCache(*(t[:, rows, :, start:].clone() for t in (self.keys, self.values)), self.length - start)

    def merged(self, other: "KVCache") -> "KVCache":
        """Both caches' rows in one: the shorter left-padded (its padding is masked by the caller)."""
        n = max(self.length, other.length)

        def pad(t, length):
            return F.pad(t[:, :, :, :length], (0, 0, n - length, 0))
        return KVCache(*(torch.cat([pad(a, self.length), pad(b, other.length)], 1)
                         for a, b in ((self.keys, other.keys), (self.values, other.values))), n)


class _Block:
    """One decoder layer's weights: the model's own tensors."""

    def __init__(self, layer: nn.Module):
        a, m = layer.self_attn, layer.mlp
        self.norm1, self.norm2 = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
        self.q, self.k, self.v, self.o = (exact_linear(p) for p in (a.q_proj, a.k_proj, a.v_proj, a.o_proj))
        self.gate, self.up, self.down = (exact_linear(p) for p in (m.gate_proj, m.up_proj, m.down_proj))


class FastLM:
    """A causal LM's inference forward: embeddings in, next-token logits out, over a `KVCache`."""

    def __init__(self, model: nn.Module, weights: str = "exact", speculate: int = 0, stops: list[int] = ()):
        reason = unsupported(model)
        if reason:
            raise ConfigError(f"fast decoding cannot run this LLM: {reason}")
        if weights not in WEIGHTS:
            raise ConfigError(f"fast decoding weights: {weights!r}; expected one of {', '.join(WEIGHTS)}")
        self.model, self.weights = base_model(model), weights
        c, base = self.model.config, self.model.model
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.eps = c.rms_norm_eps
        self.blocks = [_Block(layer) for layer in base.layers]
        self.norm, self.head = base.norm.weight, exact_linear(self.model.lm_head)
        self.inv_freq = base.rotary_emb.inv_freq.float()
        self.rope_scale = float(getattr(base.rotary_emb, "attention_scaling", 1.0))
        self.quick = self.draft = None
        self.speculation = speculate if weights == "exact" else 0  # q4 answers are its own: nothing to check
        self.stops = set(stops)  # tokens that end an answer: drafting stops at one
        if weights == "q4":
            self.quick = self._q4_step()

    def _q4_step(self):
        from .quick import Q4Step  # imported here: it is the only user of the int4 kernels

        return Q4Step(self, self.model)

    @property
    def dtype(self) -> torch.dtype:
        return self.norm.dtype

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        like = torch.empty(0, dtype=torch.float32 if self.quick else self.dtype, device=self.norm.device)
        return KVCache.empty(len(self.blocks), batch, self.kv_heads, self.head_dim, capacity, like)

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(weight.dtype)

    def rope(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [B, T, head dim] at positions `pos` [B, T]."""
        angles = pos[..., None].float() * self.inv_freq
        angles = torch.cat([angles, angles], -1)
        return angles.cos() * self.rope_scale, angles.sin() * self.rope_scale

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    @staticmethod
    def attention_mask(mask: torch.Tensor, T: int) -> torch.Tensor | None:
        """Bool [B, 1, T, S] for T new positions after S - T cached ones: causal, padding masked; a
        padding query sees itself (no empty rows, no NaN in its cached keys). None where nothing is
        masked: one new position, or a whole fresh prompt (`is_causal` then; its mask is top-left)."""
        S = mask.shape[1]
        if (T == 1 or T == S) and bool(mask.all()):
            return None
        query_at = torch.arange(S - T, S, device=mask.device)[:, None]
        keys = torch.arange(S, device=mask.device)[None, :]
        allowed = (keys <= query_at) & (mask[:, None, :].bool() | (keys == query_at))
        return allowed[:, None]

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: KVCache,
                every: bool = False) -> torch.Tensor:
        """embeds [B, T, E] after the cached positions, mask [B, cached + T] (1 = real token), pos
        [B, T] rotary positions; returns the last position's logits [B, V] (`every`: all positions'
        [B, T, V]) and extends `cache`."""
        cache.reserve(embeds.shape[1])
        if self.quick is not None and embeds.shape[1] == 1:  # one token a row: 4-bit weights pay
            return self.quick(embeds, mask, pos, cache)
        B, T, _ = embeds.shape
        attn_mask = self.attention_mask(mask, T)
        cos, sin = (t[:, None] for t in self.rope(pos))  # broadcast over heads
        x = embeds.to(self.dtype)
        for i, b in enumerate(self.blocks):
            h = self._rms(x, b.norm1)
            q = self._rotate(b.q(h).view(B, T, self.heads, self.head_dim).transpose(1, 2), cos, sin)
            k = self._rotate(b.k(h).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
            v = b.v(h).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
            keys, values = cache.write(i, k, v)
            o = F.scaled_dot_product_attention(q.to(keys.dtype), keys, values, attn_mask=attn_mask,
                                               is_causal=attn_mask is None and T > 1, enable_gqa=True)
            x = x + b.o(o.transpose(1, 2).reshape(B, T, -1).to(x.dtype))
            h = self._rms(x, b.norm2)
            x = x + b.down(F.silu(b.gate(h)) * b.up(h))
        cache.length += T
        return self.head(self._rms(x if every else x[:, -1], self.norm)).float()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    # the runner interface DecodeBatch drives (see llm/kv.py for transformers' own); inference mode:
    # ~15% less dispatch per operation than no_grad
    @torch.inference_mode()
    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        cache = self.new_cache(embeds.shape[0], embeds.shape[1] + 256)
        return self.forward(embeds, mask, pos, cache), cache

    @torch.inference_mode()
    def step(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
        return self.forward(self.embed(ids), mask, pos, cache)

    @torch.inference_mode()
    def speculate(self, token: int, position: int, cache: KVCache,
                  limit: int | None = None) -> list[tuple[int, torch.Tensor]]:
        """The next greedy tokens of a lone row after `token` (fed at rotary `position`), each with its
        logits [V]: the 4-bit step drafts up to `speculation` tokens (fewer at a stop token, and at most
        `limit` - 1 when the answer may only take `limit` more), one exact forward over them all checks
        them, and the drafts up to the first the exact weights would not pick are kept, plus the exact
        pick after them. The tokens are the exact path's own greedy ones, 1 to speculation + 1 of them
        for one pass over the fp32 weights (which is what a step costs: they stream from memory)."""
        if self.draft is None:
            self.draft = self._q4_step()
        start = cache.length
        k = self.speculation if limit is None else max(0, min(self.speculation, limit - 1))
        cache.reserve(k + 1)
        drafts = [token]
        for i in range(k):
            ids = torch.tensor([[drafts[-1]]], device=self.norm.device)
            logits = self.draft(self.embed(ids), torch.ones(1, start + i + 1), torch.tensor([[position + i]]), cache)
            drafts.append(int(logits.argmax()))
            if drafts[-1] in self.stops:  # what follows it is never read
                break
        k = len(drafts) - 1
        cache.length = start  # the exact pass writes its own keys and values over the drafts'
        fed = torch.tensor([drafts], device=self.norm.device)
        logits = self.forward(self.embed(fed), torch.ones(1, start + k + 1), torch.arange(position, position + k + 1)[None],
                              cache, every=True)[0]
        best = logits.argmax(-1).tolist()
        kept = 0
        while kept < k and drafts[kept + 1] == best[kept]:
            kept += 1
        cache.length = start + 1 + kept  # `token` and the kept drafts; the pick after them is fed next
        return [(best[i], logits[i]) for i in range(kept + 1)]

    @staticmethod
    def merge(a: KVCache, b: KVCache) -> KVCache:
        return a.merged(b)

    @staticmethod
    def select(cache: KVCache, rows: torch.Tensor, start: int) -> KVCache:
        return cache.select(rows, start)
