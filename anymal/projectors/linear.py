"""LLaVA v1: one linear map W per (pooled) encoder token."""
from __future__ import annotations

from torch import nn

from ..registry import PROJECTORS
from .base import Projector, pool_tokens


@PROJECTORS.register("linear")
class LinearProjector(Projector):
    def __init__(self, name: str, cfg, **facts):
        super().__init__(**facts)
        self.proj = nn.Linear(self.in_dim, self.out_dim)

    def project(self, x):
        if self.num_tokens > self.in_tokens:
            raise ValueError(f"linear projector cannot make {self.num_tokens} tokens from {self.in_tokens}")
        return self.proj(pool_tokens(x, self.num_tokens, self.grid))
