"""LLaVA-1.5: a 2-layer GELU MLP per (pooled) encoder token."""
from __future__ import annotations

from torch import nn

from ..registry import PROJECTORS
from .base import TokenwiseProjector


@PROJECTORS.register("mlp")
class MLPProjector(TokenwiseProjector):
    def __init__(self, name: str, cfg, **facts):
        super().__init__(**facts)
        self.proj = nn.Sequential(nn.Linear(self.in_dim, self.out_dim), nn.GELU(), nn.Linear(self.out_dim, self.out_dim))
