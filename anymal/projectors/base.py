"""What every projector shares: token pooling and an output norm at the LLM's embedding scale."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModalityConfig
from ..registry import PROJECTORS


def pool_tokens(x: torch.Tensor, n: int, grid: tuple[int, int] | None) -> torch.Tensor:
    """[B, N, D] -> [B, n, D] by average pooling; 2-D when the tokens are a grid and n is square."""
    if n == x.shape[1]:
        return x
    side = math.isqrt(n)
    if grid and side * side == n:
        b, _, d = x.shape
        fmap = x.transpose(1, 2).reshape(b, d, *grid)
        return F.adaptive_avg_pool2d(fmap, side).flatten(2).transpose(1, 2)
    return F.adaptive_avg_pool1d(x.transpose(1, 2), n).transpose(1, 2)


class Projector(nn.Module):
    """Maps [B, in_tokens, in_dim] encoder features to [B, num_tokens, out_dim] LLM tokens.

    Every projector ends in a LayerNorm whose gain starts at the LLM's per-token embedding RMS, so
    projected tokens enter the LLM at the scale of its own word embeddings (x25 larger for Gemma,
    whose embeddings are multiplied by sqrt(hidden)).
    """

    def __init__(self, in_dim: int, out_dim: int, in_tokens: int, num_tokens: int,
                 embed_rms: float, grid: tuple[int, int] | None = None):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.in_tokens, self.num_tokens, self.grid = in_tokens, num_tokens, grid
        self.out_norm = nn.LayerNorm(out_dim)
        with torch.no_grad():
            self.out_norm.weight.fill_(embed_rms)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_norm(self.project(x))


def build_projector(cfg: ModalityConfig, in_dim: int, in_tokens: int, out_dim: int,
                    embed_rms: float, grid: tuple[int, int] | None) -> Projector:
    n = cfg.num_tokens or in_tokens
    return PROJECTORS.build(cfg.projector, cfg=cfg, in_dim=in_dim, out_dim=out_dim, in_tokens=in_tokens,
                            num_tokens=n, embed_rms=embed_rms, grid=grid)
