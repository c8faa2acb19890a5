"""Fuyu / OtterHD's encoder-free projector: one linear map from raw pixel patches to LLM tokens.

Input rows come from the `pixel-patches` encoder: flattened patches plus a row-break flag. Each
patch becomes Linear(pixels); a row break becomes one learned token; every token gets learned row
and column embeddings (2-D position on top of the LLM's own 1-D positions). One token per input
row, so any width and height works; the model is as long as the image is large.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..registry import PROJECTORS
from .base import Projector

MAX_SIDE_PATCHES = 128  # rows / columns with a position embedding (3,840 px at 30 px patches)


def patch_positions(is_break: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of every token from the row-break flags [B, n] (a break ends its row)."""
    brk = is_break.long()
    idx = torch.arange(brk.shape[-1], device=brk.device).expand_as(brk)
    row = brk.cumsum(-1) - brk
    after_break = torch.cummax(torch.where(brk.bool(), idx + 1, 0), -1).values
    start = F.pad(after_break[..., :-1], (1, 0))  # first index of the token's row
    return row, idx - start


@PROJECTORS.register("patch")
class PatchProjector(Projector):
    def __init__(self, name: str, cfg, **facts):
        super().__init__(**facts)
        if self.num_tokens != self.in_tokens:
            raise ConfigError("projector patch keeps one token per patch: set num_tokens: null "
                              "(the encoder's max tokens is the limit)")
        self.proj = nn.Linear(self.in_dim - 1, self.out_dim)
        self.row_break = nn.Parameter(torch.zeros(self.out_dim))
        self.row_pos = nn.Embedding(MAX_SIDE_PATCHES, self.out_dim)
        self.col_pos = nn.Embedding(MAX_SIDE_PATCHES, self.out_dim)
        for e in (self.row_pos, self.col_pos):
            nn.init.normal_(e.weight, std=0.02)

    def project(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        is_break = x[..., -1] > 0.5
        row, col = patch_positions(is_break)
        if int(row.max()) >= MAX_SIDE_PATCHES or int(col.max()) >= MAX_SIDE_PATCHES:
            raise InputError(f"an image over {MAX_SIDE_PATCHES} patches high or wide has no position embedding")
        tokens = torch.where(is_break[..., None], self.row_break, self.proj(x[..., :-1]))
        return tokens + self.row_pos(row) + self.col_pos(col)
