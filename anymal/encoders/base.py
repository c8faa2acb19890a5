"""The encoder interface: a frozen module plus the facts projectors are built from."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..registry import ENCODERS


class Encoder(nn.Module):
    """A frozen modality encoder.

    Subclasses set `modality`, `id`, `dim` (feature width), `num_tokens` (features per input) and
    optionally `grid` (rows, cols) when the tokens form a 2-D map, and implement:
      - `preprocess(item) -> Tensor`: one raw input (path, PIL image, array) to a model-ready tensor;
      - `forward(x) -> Tensor[B, num_tokens, dim]`.
    `preprocess_id` names everything that changes the features for the same file: it keys the
    feature cache.
    """

    modality: str = ""
    id: str = ""
    dim: int = 0
    num_tokens: int = 0
    grid: tuple[int, int] | None = None
    preprocess_id: str = ""

    def freeze(self) -> "Encoder":
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # frozen encoders never leave eval mode (BatchNorm stats!)

    def preprocess(self, item: Any) -> torch.Tensor:
        raise NotImplementedError

    def facts(self) -> dict:
        return {"id": self.id, "dim": self.dim, "num_tokens": self.num_tokens,
                "grid": list(self.grid) if self.grid else None, "preprocess": self.preprocess_id}


def load_encoder(name: str, modality: str) -> Encoder:
    return ENCODERS.build(name, modality=modality).freeze()
