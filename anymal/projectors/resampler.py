"""AnyMAL's vision adapter: a Perceiver Resampler (Flamingo).

A fixed set of learned latent queries cross-attends to the encoder's tokens (keys/values are the
tokens *and* the latents, as in Flamingo), followed by a feed-forward block, `depth` times. The
output token count is the number of latents, whatever the number of input tokens.

Input positions are learned. For video (frames x patches) they are factorised, as in Flamingo's
temporal embeddings: a per-patch position shared by all frames plus a per-frame position, so the
resampler knows which frame a patch came from (and hence the direction of motion).
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import PROJECTORS
from .base import Projector, pool_tokens


class ResamplerBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_x = nn.LayerNorm(width)
        self.norm_q = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ff = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, latents: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(latents)
        kv = torch.cat([self.norm_x(x), q], dim=1)
        latents = latents + self.attn(q, kv, kv, need_weights=False)[0]
        return latents + self.ff(latents)


@PROJECTORS.register("resampler")
class PerceiverResampler(Projector):
    def __init__(self, name: str, cfg, **facts):
        super().__init__(**facts)
        w = cfg.width
        self.inp = nn.Linear(self.in_dim, w)
        per_frame = self.in_tokens // (self.frames or 1)
        self.pos = nn.Parameter(torch.randn(per_frame, w) * 0.02)  # where each token sits (in its frame)
        self.frame_pos = nn.Parameter(torch.randn(self.frames, 1, w) * 0.02) if self.frames else None
        self.latents = nn.Parameter(torch.randn(self.num_tokens, w) * 0.02)
        self.blocks = nn.ModuleList(ResamplerBlock(w, cfg.heads) for _ in range(cfg.depth))
        self.out = nn.Linear(w, self.out_dim)

    def positions(self, n: int) -> torch.Tensor:
        if self.frame_pos is None:
            return self.pos[:n]  # variable-length inputs (audio) use the leading positions
        return (self.frame_pos + self.pos).flatten(0, 1)[:n]

    def project(self, x, n_out):
        x = self.inp(x) + self.positions(x.shape[1])
        lat = self.latents.expand(x.shape[0], -1, -1)
        for blk in self.blocks:
            lat = blk(lat, x)
        return self.out(pool_tokens(lat, n_out, None))
