"""Text in a picture, read: RapidOCR (PP-OCRv4 detection + recognition ONNX models inside the
`rapidocr-onnxruntime` wheel, Apache-2.0, on onnxruntime) as a perception part that writes.

Whisper's transcript design (transcript.py), for pictures: `kind = "text"`, rows are characters (index
+ 1 into `labels`), so the text projector hands the LLM its own embeddings of the lines read, top to
bottom and left to right, one line of the picture per line of text. Each character's row also carries
its line's confidence and box (x1, y1, x2, y2 as shares of the picture), for parts that place text.
The OCR runs when the picture is prepared (its input size varies); the rows are what gets cached.
"""
from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..modalities import IMAGE
from ..registry import ENCODERS
from .media import load_image
from .perception import ROW, PerceptionEncoder

LONGEST_SIDE = 1280  # larger pictures are read at this size (RapidOCR's time grows with the pixels)
# a lone character read below this confidence is mostly texture ("F" at 0.63 in a goat's fur), not text
LONE_CHARACTER_SCORE = 0.9
CHARACTERS = [chr(c) for c in range(32, 127)] + ["\n"] + [chr(c) for c in range(161, 256)]


class RapidOcrText(PerceptionEncoder):
    kind, entries, labels = "text", 256, CHARACTERS

    def __init__(self, name: str, modality: str):
        if modality != IMAGE.name:
            raise ConfigError(f"encoder {name!r} reads text in pictures, not {modality!r}")
        if importlib.util.find_spec("rapidocr_onnxruntime") is None:
            raise ConfigError("reading text needs `pip install --no-deps rapidocr-onnxruntime==1.4.4` with pyclipper, "
                              "shapely and onnxruntime (scripts/install.sh installs them)")
        from rapidocr_onnxruntime import RapidOCR

        super().__init__(name, modality)
        self.engine = RapidOCR(intra_op_num_threads=2)
        self.index = {c: i for i, c in enumerate(self.labels)}
        self.preprocess_id = f"longest{LONGEST_SIDE}|rapidocr-onnxruntime-1.4.4|PP-OCRv4|first{self.entries}-chars"

    def lines(self, item: Any) -> list[tuple[str, float, tuple[float, float, float, float]]]:
        """(text, confidence, box as shares of the picture) of each line read, in reading order."""
        img = load_image(item).convert("RGB")
        img.thumbnail((LONGEST_SIDE, LONGEST_SIDE))
        w, h = img.size
        with self.lock:
            found, _ = self.engine(np.asarray(img)[:, :, ::-1])  # RapidOCR reads BGR, as OpenCV does
        lines = []
        for box, text, score in found or []:
            if len(text.strip()) < 2 and score < LONE_CHARACTER_SCORE:
                continue
            xs, ys = [p[0] for p in box], [p[1] for p in box]
            lines.append((text, float(score), (min(xs) / w, min(ys) / h, max(xs) / w, max(ys) / h)))
        return sorted(lines, key=lambda line: (round(line[2][1] * 20), line[2][0]))  # rows of ~5% height

    def preprocess(self, item: Any) -> torch.Tensor:
        rows = np.zeros((self.entries, ROW), np.float32)
        n = 0
        for text, score, (x1, y1, x2, y2) in self.lines(item):
            for ch in [c for c in text if c in self.index] + ["\n"]:
                if n == self.entries:
                    break
                rows[n] = [self.index[ch] + 1, score, 1, x1, y1, x2, y2, (x2 - x1) * (y2 - y1)]
                n += 1
        return torch.from_numpy(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # read when prepared: the rows themselves


ENCODERS.register("rapidocr-text")(RapidOcrText)
