"""Colour names from pixels: a fixed 11-word vocabulary, and a perception part that says them.

Why: the patch encoder carries colour only implicitly, and neither the detector nor the classifier names
one, so "What colour is the box?" had nothing to be answered from. `colour_names` maps each pixel to one
of `COLOURS` by hue, saturation and value (the thresholds are the usual HSV cut-offs, written once here);
`PixelColours` (registered `pixel-colours`) gives a picture's foreground colours as perception rows the
words projector reads like any other label. The foreground is every pixel that differs from the
picture's border colour (a cut-out on a plain background, a photo's subject against its sky) — the whole
picture when too few do.
"""
from __future__ import annotations

import numpy as np

from ..registry import ENCODERS
from .perception import ROW, PerceptionEncoder

COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray"]
# hue upper bounds (degrees) of the chromatic names, in order round the wheel; red wraps past 345
_HUES = [(15, "red"), (40, "orange"), (70, "yellow"), (170, "green"), (260, "blue"), (290, "purple"),
         (345, "pink"), (360, "red")]
BORDER_DISTANCE = 60.0  # RGB distance from the border's median colour above which a pixel is foreground
MIN_FOREGROUND = 0.05  # share of the picture below which the whole picture is read instead


def colour_index(rgb: np.ndarray) -> np.ndarray:
    """The index into COLOURS of each pixel of uint8 [..., 3]."""
    x = rgb.astype(np.float32) / 255.0
    mx, mn = x.max(-1), x.min(-1)
    v, c = mx, mx - mn
    s = np.where(mx > 0, c / np.maximum(mx, 1e-6), 0.0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    safe = np.maximum(c, 1e-6)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    hue_name = np.full(h.shape, COLOURS.index("red"))
    for bound, name in reversed(_HUES):
        hue_name = np.where(h < bound, COLOURS.index(name), hue_name)
    out = hue_name
    dark_warm = (v < 0.6) & (h >= 10) & (h < 45)  # dark orange is what people call brown
    out = np.where(dark_warm, COLOURS.index("brown"), out)
    pale_red = ((h < 15) | (h >= 330)) & (s < 0.5) & (v > 0.7)
    out = np.where(pale_red, COLOURS.index("pink"), out)
    grey = np.where(v > 0.85, COLOURS.index("white"), COLOURS.index("gray"))
    out = np.where(s < 0.18, grey, out)
    return np.where(v < 0.2, COLOURS.index("black"), out)


def colour_shares(rgb: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Share of each of COLOURS among the (masked) pixels of uint8 [H, W, 3]; zeros when none."""
    idx = colour_index(rgb)
    if mask is not None:
        idx = idx[mask]
    counts = np.bincount(idx.reshape(-1), minlength=len(COLOURS)).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def dominant_colour(shares: np.ndarray, at_least: float = 0.4, margin: float = 1.5) -> str | None:
    """The clear main colour: its share at least `at_least` and `margin` times the runner-up's; else None."""
    order = np.argsort(-shares, kind="stable")
    first, second = shares[order[0]], shares[order[1]]
    return COLOURS[order[0]] if first >= at_least and first >= margin * second else None


def foreground(rgb: np.ndarray) -> np.ndarray:
    """Boolean [H, W]: pixels far from the median colour of the picture's one-pixel border."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    dist = np.linalg.norm(rgb.astype(np.float32) - np.median(border, 0), axis=-1)
    mask = dist > BORDER_DISTANCE
    return mask if mask.mean() >= MIN_FOREGROUND else np.ones(mask.shape, bool)


class PixelColours(PerceptionEncoder):
    """The 3 commonest colour names of a picture's foreground, each with its share as the confidence and
    the foreground's bounding box; a colour under 5% of the foreground is not said."""

    size, entries, min_share = (96, 96), 3, 0.05
    labels = COLOURS

    def __init__(self, name: str, modality: str):
        super().__init__(name, modality)
        self.preprocess_id = f"stretch96-bilinear-on-white|hsv11|border{BORDER_DISTANCE:g}|top{self.entries}"

    def rows(self, batch: np.ndarray) -> np.ndarray:
        out = np.zeros((len(batch), self.entries, ROW), np.float32)
        for b, img in enumerate(batch):
            mask = foreground(img)
            ys, xs = np.nonzero(mask)
            h, w = mask.shape
            x1, y1, x2, y2 = xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h
            shares = colour_shares(img, mask)
            for e, k in enumerate(np.argsort(-shares, kind="stable")[: self.entries]):
                if shares[k] >= self.min_share:
                    out[b, e] = [k + 1, shares[k], 1.0, x1, y1, x2, y2, (x2 - x1) * (y2 - y1)]
        return out


ENCODERS.register("pixel-colours")(PixelColours)
