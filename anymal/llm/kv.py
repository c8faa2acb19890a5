"""The keyword a causal LM's forward takes its KV cache by: `cache` from transformers 5.24 on
(`past_key_values` still works there, with a FutureWarning on every call), `past_key_values` before."""
from __future__ import annotations

import inspect
from functools import lru_cache

from torch import nn


@lru_cache(maxsize=None)
def _keyword(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def cache_kwargs(lm: nn.Module, cache) -> dict:
    """{keyword: cache} for `lm` (a PEFT wrapper is asked about the model it wraps)."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    return {_keyword(type(base)): cache}
