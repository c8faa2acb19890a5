"""LLaVA-1.5: a 2-layer GELU MLP per (pooled) encoder token."""
from __future__ import annotations

from torch import nn

from ..registry import PROJECTORS
from .base import Projector, pool_tokens


@PROJECTORS.register("mlp")
class MLPProjector(Projector):
    def __init__(self, name: str, cfg, **facts):
        super().__init__(**facts)
        self.proj = nn.Sequential(nn.Linear(self.in_dim, self.out_dim), nn.GELU(), nn.Linear(self.out_dim, self.out_dim))

    def project(self, x):
        if self.num_tokens > self.in_tokens:
            raise ValueError(f"mlp projector cannot make {self.num_tokens} tokens from {self.in_tokens}")
        return self.proj(pool_tokens(x, self.num_tokens, self.grid))
