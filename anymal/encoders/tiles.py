"""High resolution through a low-resolution pretrained encoder: tiles plus a global thumbnail
(the LLaVA-NeXT / Monkey recipe; the practical alternative to OtterHD's encoder-free patches).

The image is cut into a grid of at most `max_grid` x `max_grid` regions of at most 224 px, each
letterboxed and encoded by EfficientNet-Lite0 separately, after a thumbnail of the whole image.
Every feature row carries two extra channels, the tile's (row, column) from 1 (0, 0 for the
thumbnail), so the projector can mark positions. An image larger than the grid allows is scaled
down to fit it (the thumbnail still sees all of it).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..registry import ENCODERS
from .efficientnet import EfficientNetLite0
from .media import letterbox, load_image
from .sized import SizedImageEncoder


class TiledEfficientNet(SizedImageEncoder):
    max_grid = 4
    varies = True

    def __init__(self, name: str, modality: str):
        super().__init__()
        self.base = EfficientNetLite0("efficientnet-lite0", modality)
        self.base_id = self.base.id
        self.modality, self.id = modality, name
        self.dim = self.base.dim + 2
        self.grid = self.base.grid  # per tile
        self.per_tile = self.base.num_tokens
        self.num_tokens = (self.max_grid ** 2 + 1) * self.per_tile
        self.preprocess_id = f"tiles{self.max_grid}x{self.base.size}+thumb-{self.base.preprocess_id}"

    def layout(self, width: int, height: int) -> tuple[int, int, float]:
        """(rows, cols, scale): tiles of at most `size` px after scaling the image by `scale` (<= 1)."""
        size = self.base.size
        scale = min(1.0, self.max_grid * size / max(width, height))
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        return math.ceil(h / size), math.ceil(w / size), scale

    def tiles(self, item: Any) -> tuple[torch.Tensor, int, int]:
        img = self.fit_side(load_image(item))
        rows, cols, scale = self.layout(*img.size)
        if scale < 1:
            img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))))
        w, h = img.size
        boxes = [(round(c * w / cols), round(r * h / rows), round((c + 1) * w / cols), round((r + 1) * h / rows))
                 for r in range(rows) for c in range(cols)]
        views = [letterbox(img, self.base.size)] + [img.crop(b) for b in boxes]
        x = torch.stack([self.base.preprocess(v) for v in views])  # the thumbnail first
        return x, rows, cols

    def load(self, item: Any) -> tuple[torch.Tensor, int]:
        x, _, _ = self.tiles(item)
        return x, len(x) * self.per_tile

    def preprocess(self, item: Any) -> torch.Tensor:
        return self.load(item)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    @torch.no_grad()
    def encode(self, items: list[Any]) -> list[torch.Tensor]:
        out = []
        for it in items:
            x, rows, cols = self.tiles(it)
            feats = self.base(x)  # [tiles + 1, 49, 1280]
            pos = torch.tensor([(0, 0)] + [(r + 1, c + 1) for r in range(rows) for c in range(cols)], dtype=feats.dtype)
            feats = torch.cat([feats, pos[:, None, :].expand(-1, feats.shape[1], -1)], -1)
            out.append(feats.reshape(-1, self.dim))
        return out


ENCODERS.register("efficientnet-lite0-tiles")(TiledEfficientNet)
