"""Projector for tiled images: the LLaVA-1.5 MLP on each tile's pooled tokens, plus learned tile
row / column embeddings (0 = the thumbnail) that mark where each tile sits.

Its weights are a superset of the `mlp` projector's, and the position embeddings start at zero, so
an image adapter trained on single 224 px images (e.g. the shipped one) can be adopted as is
(`init_from`): with the thumbnail alone it answers exactly as before, and tiles add detail.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import PROJECTORS
from .base import Projector, pool_tokens


@PROJECTORS.register("tiles")
class TilesProjector(Projector):
    adopts = ("mlp",)  # projector kinds whose weights this one can start from
    extra_keys = ("row_pos.weight", "col_pos.weight")

    def __init__(self, name: str, cfg, **facts):
        super().__init__(**facts)
        if not self.grid:
            raise ConfigError("projector tiles needs a tiled encoder (e.g. efficientnet-lite0-tiles)")
        self.per_tile_in = self.grid[0] * self.grid[1]
        self.per_tile = cfg.num_tokens or self.per_tile_in
        self.max_tiles = self.in_tokens // self.per_tile_in
        feat = self.in_dim - 2  # the last two channels are the tile's (row, column)
        self.proj = nn.Sequential(nn.Linear(feat, self.out_dim), nn.GELU(), nn.Linear(self.out_dim, self.out_dim))
        side = int(self.max_tiles ** 0.5) + 1
        self.row_pos = nn.Embedding(side, self.out_dim)
        self.col_pos = nn.Embedding(side, self.out_dim)
        for e in (self.row_pos, self.col_pos):
            nn.init.zeros_(e.weight)

    def tokens_for(self, n_in: int) -> int:
        if n_in % self.per_tile_in or n_in > self.in_tokens:
            raise ValueError(f"tiles projector: {n_in} input tokens is not a whole number of tiles "
                             f"of {self.per_tile_in} (at most {self.max_tiles})")
        return n_in // self.per_tile_in * self.per_tile

    def project(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        b, n, d = x.shape
        t = x.reshape(b * (n // self.per_tile_in), self.per_tile_in, d)
        pos = t[:, 0, -2:].long()
        tokens = self.proj(pool_tokens(t[..., :-2], self.per_tile, self.grid))
        tokens = tokens + (self.row_pos(pos[:, 0]) + self.col_pos(pos[:, 1]))[:, None]
        return tokens.reshape(b, n_out, self.out_dim)
