"""One image read by several frozen encoders at once (AnyMAL composes encoders per modality).

The main encoder gives patch features; each perception encoder gives rows that name things (see
perception.py). Inputs and outputs stay single tensors, so the feature cache, batching and the video
wrapper work unchanged: `preprocess` packs every part's input into one flat vector, `forward` unpacks
it and returns the parts' tokens one after the other, each zero-padded to the widest part.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import Encoder


class ComposedEncoder(Encoder):
    def __init__(self, main: Encoder, percepts: list[Encoder]):
        super().__init__()
        if not main.fixed_input:
            raise ConfigError(f"{main.id} makes features per input at its own size: perception encoders cannot be "
                              "composed with it; use efficientnet-lite0 or the tiled encoder as the main one")
        for p in percepts:  # a part that reads the main part's frames must be built for that encoder
            if getattr(p, "reads_main", None) not in (None, main.id):
                raise ConfigError(f"perception {p.id!r} reads {p.reads_main!r} frames, but the main encoder is "
                                  f"{main.id!r}; use {p.reads_main!r} as the {main.modality} encoder")
        self.main, self.percepts = main, nn.ModuleList(percepts)
        self.parts: list[Encoder] = [main, *percepts]
        self.modality, self.id = main.modality, "+".join(p.id for p in self.parts)
        self.dim = max(p.dim for p in self.parts)
        self.num_tokens = sum(p.num_tokens for p in self.parts)
        self.percept_tokens = self.num_tokens - main.num_tokens  # fixed, whatever the input's length
        self.grid = None  # only the main part is a grid: the projector hands it its own `grid`
        self.varies = main.varies
        self._shapes: list[tuple[int, ...]] | None = None

    @property
    def preprocess_id(self) -> str:  # read each time: the main part's input resolution may change
        return " + ".join(p.preprocess_id for p in self.parts)

    def load(self, item: Any) -> tuple[torch.Tensor, int]:
        """Every part's input in one vector; valid tokens: the main part's (a clip's length) + every percept's."""
        main, valid = self.main.load(item)
        xs = [main, *(p.preprocess(item) for p in self.percepts)]
        self._shapes = [tuple(x.shape) for x in xs]
        return torch.cat([x.float().flatten() for x in xs]), valid + self.percept_tokens

    def preprocess(self, item: Any) -> torch.Tensor:
        return self.load(item)[0]

    def trim(self, feats: torch.Tensor, valid: int) -> torch.Tensor:
        """The main part's valid tokens, then every perception token (they never depend on length)."""
        return torch.cat([feats[:valid - self.percept_tokens], feats[self.main.num_tokens:]])

    def forward(self, x: torch.Tensor, clip_frames: int = 1) -> torch.Tensor:
        """`clip_frames`: how many consecutive inputs are the frames of one clip (a video wrapper says so)."""
        lead, out, at, frames = x.shape[:-1], [], 0, None
        for part, shape in zip(self.parts, self._shapes or self._probe_shapes()):
            n = math.prod(shape)
            inputs = x[..., at:at + n].reshape(-1, *shape)
            # a part that reads the main part's frames gets them instead of encoding the input again
            if getattr(part, "reads_main", None):
                y = part(inputs, frames)
            else:  # a part that follows a clip (frame-motion) reads its frames together
                y = part(inputs, clip_frames) if getattr(part, "reads_clip", False) else part(inputs)
            frames = y if frames is None else frames
            out.append(F.pad(y, (0, self.dim - y.shape[-1])))
            at += n
        return torch.cat(out, dim=1).reshape(*lead, self.num_tokens, self.dim)

    def _probe_shapes(self) -> list[tuple[int, ...]]:
        from PIL import Image

        self.preprocess(Image.new("RGB", (8, 8), "white"))
        return self._shapes

    def facts(self) -> dict:
        return {**super().facts(), "parts": [p.facts() for p in self.parts]}
