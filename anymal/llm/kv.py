"""Running a causal LM one step at a time through transformers' own forward and `DynamicCache`.

`TransformersRunner` is the reference decode path: any model transformers loads, LoRA layers,
hooks (ImageBind-LLM's injection). `fast.FastLM` offers the same four methods for Llama-family
models at a fraction of the per-token cost.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from transformers import DynamicCache


@lru_cache(maxsize=None)
def _keyword(cls: type) -> str:
    # `cache` from transformers 5.24 on (`past_key_values` still works there, with a FutureWarning on
    # every call), `past_key_values` before
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def cache_kwargs(lm: nn.Module, cache) -> dict:
    """{keyword: cache} for `lm` (a PEFT wrapper is asked about the model it wraps)."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    return {_keyword(type(base)): cache}


class TransformersRunner:
    """prefill / step / merge / select over a Hugging Face causal LM."""

    def __init__(self, lm: nn.Module):
        from transformers import DynamicCache  # here: a fast answer never imports transformers

        self.lm, self.cache_class = lm, DynamicCache

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
        cache = self.cache_class()
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, **cache_kwargs(self.lm, cache),
                      use_cache=True, logits_to_keep=1)  # only the next token's logits are needed
        return out.logits[:, -1, :], cache

    def step(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        out = self.lm(input_ids=ids, attention_mask=mask, position_ids=pos, **cache_kwargs(self.lm, cache),
                      use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :]

    def merge(self, a: DynamicCache, b: DynamicCache) -> DynamicCache:
        """Both caches' rows in one, the shorter left-padded (its padding is masked by the caller)."""
        n = max(a.layers[0].keys.shape[2], b.layers[0].keys.shape[2])

        def left(t: torch.Tensor) -> torch.Tensor:
            return F.pad(t, (0, 0, n - t.shape[2], 0))
        return self.cache_class([(torch.cat([left(x.keys), left(y.keys)]), torch.cat([left(x.values), left(y.values)]))
                             for x, y in zip(a.layers, b.layers)])

    def select(self, cache: DynamicCache, rows: torch.Tensor, start: int) -> DynamicCache:
        """The cache of `rows` only, without its first `start` positions."""
        return self.cache_class([(x.keys[rows, :, start:], x.values[rows, :, start:]) for x in cache.layers])
