"""Encoder-free image input (Fuyu / OtterHD): raw pixel patches at the image's own resolution.

No network: an image of any width and height is padded (white) to whole patches of `patch` px and
cut row by row into flattened RGB patches; after each row comes one row-break token. A feature row
is the patch's pixels scaled to [-1, 1] plus one flag channel, 1 for a row break, so the projector
knows the 2-D layout (row = breaks before, column = patches since the last break) without any
side channel. Token count = rows * (cols + 1); more than `max_tokens` is refused with the numbers
needed to fix it (a smaller `sides`, or a larger `num_tokens` on a longer-context LLM).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..registry import ENCODERS
from .media import describe, load_image
from .sized import SizedImageEncoder


class PixelPatches(SizedImageEncoder):
    patch = 30  # OtterHD / Fuyu
    max_tokens = 2048
    varies = True
    fixed_input = False  # each picture keeps its own patch grid

    def __init__(self, name: str, modality: str):
        super().__init__()
        self.modality, self.id = modality, name
        self.dim = 3 * self.patch * self.patch + 1
        self.num_tokens = self.max_tokens
        self.preprocess_id = f"patch{self.patch}-white-pad-pm1"

    def geometry(self, width: int, height: int) -> tuple[int, int]:
        return math.ceil(height / self.patch), math.ceil(width / self.patch)

    def load(self, item: Any) -> tuple[torch.Tensor, int]:
        img = self.fit_side(load_image(item))
        rows, cols = self.geometry(*img.size)
        n = rows * (cols + 1)
        if n > self.max_tokens:
            w, h = img.size
            side = int(max(w, h) * math.sqrt(self.max_tokens / n) * 0.97)
            raise InputError(f"{describe(item)}: a {w}x{h} image is {rows}x{cols} patches of {self.patch} px = {n} "
                             f"tokens with row breaks; the limit is {self.max_tokens}. Downscale it (longest side "
                             f"<= ~{side} px, e.g. model sides: [{side}]) or use the tiled encoder")
        p = self.patch
        canvas = np.full((rows * p, cols * p, 3), 255, dtype=np.uint8)
        canvas[:img.size[1], :img.size[0]] = np.asarray(img)
        x = torch.from_numpy(canvas).float().div(127.5).sub(1.0)
        x = x.reshape(rows, p, cols, p, 3).permute(0, 2, 1, 3, 4).reshape(rows, cols, 3 * p * p)
        out = torch.zeros(rows, cols + 1, self.dim)
        out[:, :cols, :-1] = x
        out[:, cols, -1] = 1.0  # the row break
        return out.reshape(n, self.dim), n

    def preprocess(self, item: Any) -> torch.Tensor:
        return self.load(item)[0]

    @torch.no_grad()
    def encode(self, items: list[Any]) -> list[torch.Tensor]:
        return [self.load(it)[0] for it in items]  # the features are the pixels


ENCODERS.register("pixel-patches")(PixelPatches)
