"""What every projector shares: token pooling and an output norm at the LLM's embedding scale."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModalityConfig
from ..errors import ConfigError
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
                 embed_rms: float, grid: tuple[int, int] | None = None, frames: int | None = None):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.in_tokens, self.num_tokens, self.grid, self.frames = in_tokens, num_tokens, grid, frames
        self.out_norm = nn.LayerNorm(out_dim)
        with torch.no_grad():
            self.out_norm.weight.fill_(embed_rms)

    def tokens_for(self, n_in: int) -> int:
        """Output tokens for an input with `n_in` valid encoder tokens: proportional to its real length.

        Fixed-size inputs (images) always have `in_tokens`, so they get exactly `num_tokens`; a 3 s
        clip in Whisper's 30 s window gets a tenth of the tokens of a full one (at least one).
        """
        if n_in > self.in_tokens:
            raise ValueError(f"projector built for at most {self.in_tokens} input tokens, got {n_in}")
        return max(1, math.ceil(self.num_tokens * n_in / self.in_tokens))

    # an input's token count follows from its length alone (see PerceivingProjector for one that reads content)
    reads_content = False

    def count(self, feats: torch.Tensor) -> int:
        """LLM tokens for one input's features [n_in, dim]."""
        return self.tokens_for(feats.shape[0])

    def project(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n_in, in_dim] (one length per call) -> [B, tokens_for(n_in), out_dim]."""
        return self.out_norm(self.project(x, self.tokens_for(x.shape[1])))


class TokenwiseProjector(Projector):
    """Pool the encoder tokens to the output count, then map each one (LLaVA's linear and MLP)."""

    proj: nn.Module

    def __init__(self, **facts):
        super().__init__(**facts)
        if self.num_tokens > self.in_tokens:
            raise ConfigError(f"num_tokens={self.num_tokens} is more than the encoder's {self.in_tokens} tokens; "
                              f"a pooling projector can make at most {self.in_tokens} (or null to keep them all)")
        if self.frames and self.num_tokens % self.frames:
            raise ConfigError(f"num_tokens={self.num_tokens} must be a multiple of the {self.frames} video "
                              f"frames for a token-wise projector (e.g. {self.frames * max(1, self.num_tokens // self.frames)})")

    def project(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        if self.frames:  # video: pool each frame's grid separately, keep frames in order
            b, n, d = x.shape
            per = pool_tokens(x.reshape(b * self.frames, n // self.frames, d), n_out // self.frames, self.grid)
            return self.proj(per.reshape(b, n_out, d))
        grid = self.grid if x.shape[1] == self.in_tokens else None  # a partial input is no full grid
        return self.proj(pool_tokens(x, n_out, grid))


def build_projector(cfg: ModalityConfig, in_dim: int, in_tokens: int, out_dim: int,
                    embed_rms: float, grid: tuple[int, int] | None, frames: int | None = None) -> Projector:
    n = cfg.num_tokens or in_tokens
    return PROJECTORS.build(cfg.projector, cfg=cfg, in_dim=in_dim, out_dim=out_dim, in_tokens=in_tokens,
                            num_tokens=n, embed_rms=embed_rms, grid=grid, frames=frames)
