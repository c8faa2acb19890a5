"""Image encoders whose input resolution can be set (OtterHD-style `sides`): only pictures have one,
so this lives here and not in the base `Encoder`."""
from __future__ import annotations

import zlib

from PIL import Image

from ..errors import ConfigError
from .base import Encoder


class SizedImageEncoder(Encoder):
    """An image encoder that presents every picture at a chosen longest side before its own
    preprocessing; subclasses call `fit_side` first thing in `preprocess`."""

    sides: tuple[int, ...] = ()  # longest side(s) inputs are resized to; () = as the encoder's own preprocessing

    def set_sides(self, sides: list[int] | tuple[int, ...]) -> "SizedImageEncoder":
        """Present images at a fixed longest side (one value), or at one of several per input, drawn
        by a hash of its pixels (OtterHD-style dynamic resolution): a picture keeps its size across
        epochs, copies, paths and in-memory images, as the content-keyed feature cache assumes. Part
        of `preprocess_id`, so the feature cache and manifests see it; `()` goes back to none."""
        if any(int(x) < 8 for x in sides):
            raise ConfigError(f"sides={list(sides)}: expected one or more image sides of at least 8 px")
        base = self.preprocess_id.split("|sides=")[0]
        self.sides = tuple(int(x) for x in sides)
        drawn = "/by-pixels" if len(self.sides) > 1 else ""  # caches of the older by-path draw do not match
        self.preprocess_id = f"{base}|sides={','.join(map(str, self.sides))}{drawn}" if self.sides else base
        return self

    def fit_side(self, img: Image.Image) -> Image.Image:
        if not self.sides:
            return img
        # one side needs no draw (hashing the pixels of a large picture is not free)
        side = self.sides[0] if len(self.sides) == 1 else \
            self.sides[zlib.crc32(f"{img.mode}{img.size}".encode() + img.tobytes()) % len(self.sides)]
        w, h = img.size
        scale = side / max(w, h)
        return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)


def sized(enc: Encoder) -> SizedImageEncoder:
    """The encoder whose input resolution `sides` sets: `enc` itself, or the main part of a composed
    one (its perception parts keep their own fixed input sizes)."""
    main = getattr(enc, "main", enc)
    if not isinstance(main, SizedImageEncoder):
        raise ConfigError(f"{enc.id}: `sides` (input resolution) applies to resizable image encoders only "
                          "(pixel-patches, efficientnet-lite0, efficientnet-lite0-tiles)")
    return main
