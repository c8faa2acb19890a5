"""Which way the thing in a clip moves, as words: a perception part that reads every frame of a clip at once.

Why: the per-frame parts (classifier, detector) say *what* each frame shows, and the patch tokens say where,
but an adapter on a frozen LLM then has to compare positions across frames to answer "which way does it
move?" — and every adapter that also learned content questions lost that (docs/evaluation.md, "Video that
answers about its content"). This part says it in the words the answers use: each frame's entry is one of
`DIRECTIONS` ("left to right", ..., "not moving"), how the foreground moved from the frame before (the first
frame: to the next one), with that frame's foreground box.

How: frames are stretched to `SIDE`² pixels. The static background is, per pixel, the mean of the two frames
that agree most (a thing at most half a frame wide covers a pixel in at most two of four frames, and two
background samples agree where two samples of a moving thing rarely do); a frame's foreground is what
differs from it by more than `FOREGROUND_DISTANCE`. A clip with a moving camera has no static background:
then most pixels differ and the part says nothing for that frame (an honest gap, not a guess).
A single picture has no motion: its rows are empty.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import torch

from ..registry import ENCODERS
from .perception import ROW, PerceptionEncoder

DIRECTIONS = ["left to right", "right to left", "top to bottom", "bottom to top", "not moving"]
SIDE = 64
FOREGROUND_DISTANCE = 40.0  # RGB distance from the background (0-255 scale): above it, a pixel is foreground
MIN_SHARE, MAX_SHARE = 0.005, 0.6  # a frame's foreground share outside these: nothing to follow, or no background
MIN_STEP = 0.04  # a centre moving less than this (share of the frame side) is "not moving"
FULL_STEP = 0.15  # a step this long or longer is said with confidence 1


def static_background(frames: np.ndarray) -> np.ndarray:
    """[F, H, W, 3] uint8 -> [H, W, 3] float: per pixel, the mean of the two frames that agree most."""
    x = frames.astype(np.float32)
    if len(x) < 3:
        return np.median(x, 0)
    pairs = list(combinations(range(len(x)), 2))
    dist = np.stack([np.linalg.norm(x[i] - x[j], axis=-1) for i, j in pairs])  # [P, H, W]
    best = dist.argmin(0)
    first = np.array([i for i, _ in pairs])[best]
    second = np.array([j for _, j in pairs])[best]
    rows, cols = np.indices(best.shape)
    return (x[first, rows, cols] + x[second, rows, cols]) / 2


def foreground_boxes(frames: np.ndarray) -> list[tuple[float, float, float, float] | None]:
    """Each frame's foreground box (x1, y1, x2, y2 in 0-1), None where there is nothing to follow."""
    bg = static_background(frames)
    out = []
    for f in frames:
        mask = np.linalg.norm(f.astype(np.float32) - bg, axis=-1) > FOREGROUND_DISTANCE
        if not MIN_SHARE <= mask.mean() <= MAX_SHARE:
            out.append(None)
            continue
        ys, xs = np.nonzero(mask)
        h, w = mask.shape
        out.append((xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h))
    return out


def direction(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[int, float]:
    """(index into DIRECTIONS, confidence) of a box moving from `a` to `b`, by the larger axis of its centre's step."""
    dx = (b[0] + b[2] - a[0] - a[2]) / 2
    dy = (b[1] + b[3] - a[1] - a[3]) / 2
    step = max(abs(dx), abs(dy))
    if step < MIN_STEP:
        return DIRECTIONS.index("not moving"), 1.0 - step / MIN_STEP
    if abs(dx) >= abs(dy):
        k = "left to right" if dx > 0 else "right to left"
    else:
        k = "top to bottom" if dy > 0 else "bottom to top"
    return DIRECTIONS.index(k), min(1.0, step / FULL_STEP)


class FrameMotion(PerceptionEncoder):
    """One entry per frame: the foreground's direction since the frame before, with its box."""

    size, entries, labels = (SIDE, SIDE), 1, DIRECTIONS
    reads_clip = True  # `forward` is told how many consecutive inputs make one clip

    def __init__(self, name: str, modality: str):
        super().__init__(name, modality)
        self.preprocess_id = (f"stretch{SIDE}-bilinear-on-white|pair-background|fg{FOREGROUND_DISTANCE:g}"
                              f"|step{MIN_STEP:g}-{FULL_STEP:g}")

    def rows(self, batch: np.ndarray, clip_frames: int = 1) -> np.ndarray:
        """[B * clip_frames, H, W, 3] uint8, clip by clip -> [B * clip_frames, 1, ROW]."""
        out = np.zeros((len(batch), self.entries, ROW), np.float32)
        if clip_frames < 2:
            return out  # a picture does not move
        for c in range(0, len(batch), clip_frames):
            boxes = foreground_boxes(batch[c:c + clip_frames])
            for f, box in enumerate(boxes):
                other = boxes[f - 1] if f else (boxes[1] if len(boxes) > 1 else None)
                if box is None or other is None:
                    continue
                k, score = direction(other, box) if f else direction(box, other)
                x1, y1, x2, y2 = box
                out[c + f, 0] = [k + 1, score, 1.0, x1, y1, x2, y2, (x2 - x1) * (y2 - y1)]
        return out

    def forward(self, x: torch.Tensor, clip_frames: int = 1) -> torch.Tensor:
        return torch.from_numpy(self.rows(self.as_uint8(x), clip_frames)).to(x.device, torch.float32)


ENCODERS.register("frame-motion")(FrameMotion)
