"""LLaVA v1: one linear map W per (pooled) encoder token."""
from __future__ import annotations

from torch import nn

from ..registry import PROJECTORS
from .base import TokenwiseProjector


@PROJECTORS.register("linear")
class LinearProjector(TokenwiseProjector):
    def __init__(self, name: str, cfg, **facts):
        super().__init__(**facts)
        self.proj = nn.Linear(self.in_dim, self.out_dim)
