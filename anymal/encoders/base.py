"""The encoder interface: a frozen module plus the facts projectors are built from."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Encoder(nn.Module):
    """A frozen modality encoder.

    Subclasses set `modality`, `id`, `dim` (feature width), `num_tokens` (features per input) and
    optionally `grid` (rows, cols) when the tokens form a 2-D map, and implement:
      - `preprocess(item) -> Tensor`: one raw input (path, PIL image, array) to a model-ready tensor;
      - `forward(x) -> Tensor[B, num_tokens, dim]`;
      - `load(item)` too when inputs vary in length (see there), and set `varies`.
    `preprocess_id` names everything that changes the features for the same file: it keys the
    feature cache.
    """

    modality: str = ""
    id: str = ""
    dim: int = 0
    num_tokens: int = 0
    grid: tuple[int, int] | None = None
    preprocess_id: str = ""
    varies: bool = False  # inputs may give fewer than `num_tokens` valid tokens (`load` says how many)
    # inputs of one fixed shape, batched into one tensor through `forward`; False: features made per
    # input in `encode` (raw pixel patches), which no wrapper or composition can batch
    fixed_input: bool = True

    def freeze(self) -> "Encoder":
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # frozen encoders never leave eval mode (BatchNorm stats!)

    def preprocess(self, item: Any) -> torch.Tensor:
        raise NotImplementedError

    def load(self, item: Any) -> tuple[torch.Tensor, int]:
        """(model-ready input of a fixed shape, number of output tokens that carry signal).

        Encoders whose inputs vary in length (audio, IMU) pad to a fixed window and override this to
        report how many of the `num_tokens` outputs cover real signal, so projectors can keep the
        token count proportional to the real length.
        """
        return self.preprocess(item), self.num_tokens

    @torch.no_grad()
    def encode(self, items: list[Any]) -> list[torch.Tensor]:
        """Features of each input, trimmed to its valid tokens: a list of [n_i, dim] tensors."""
        loaded = [self.load(it) for it in items]
        device = next(self.parameters(), torch.empty(0)).device  # CPU for encoders without weights
        feats = self(torch.stack([x for x, _ in loaded]).to(device))
        return [self.trim(f, n) for f, (_, n) in zip(feats, loaded)]

    def trim(self, feats: torch.Tensor, valid: int) -> torch.Tensor:
        """One input's features [num_tokens, dim] cut to the `valid` tokens `load` reported."""
        return feats[:valid]

    def facts(self) -> dict:
        return {"id": self.id, "dim": self.dim, "num_tokens": self.num_tokens,
                "grid": list(self.grid) if self.grid else None, "preprocess": self.preprocess_id}
