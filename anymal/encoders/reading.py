"""Text in a picture, read, as a perception part that writes: RapidOCR (`rapidocr-text`: PP-OCRv4
detection + recognition ONNX models inside the `rapidocr-onnxruntime` wheel, Apache-2.0, on onnxruntime)
for photos and signs, Tesseract 5 (`tesseract-text`: Debian's `tesseract-ocr`, Apache-2.0) for
screenshots and pages.

Whisper's transcript design (transcript.py), for pictures: `kind = "text"`, rows are characters (index
+ 1 into `labels`), so the text projector hands the LLM its own embeddings of the lines read, top to
bottom and left to right, one line of the picture per line of text. Each character's row also carries
its line's confidence and box (x1, y1, x2, y2 as shares of the picture), for parts that place text.
The OCR runs when the picture is prepared (its input size varies); the rows are what gets cached.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import os
import shutil
import subprocess
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from ..modalities import IMAGE
from ..registry import ENCODERS
from .media import load_image
from .perception import ROW, PerceptionEncoder

LONGEST_SIDE = 1280  # larger pictures are read at this size (RapidOCR's time grows with the pixels)
# a lone character read below this confidence is mostly texture ("F" at 0.63 in a goat's fur), not text
LONE_CHARACTER_SCORE = 0.9
CHARACTERS = [chr(c) for c in range(32, 127)] + ["\n"] + [chr(c) for c in range(161, 256)]


Line = tuple[str, float, tuple[float, float, float, float]]  # text, confidence, box as shares of the picture


class TextReader(PerceptionEncoder):
    """A perception part that reads the text in a picture; subclasses say how (`read`)."""

    kind, entries, labels = "text", 256, CHARACTERS

    def __init__(self, name: str, modality: str):
        if modality != IMAGE.name:
            raise ConfigError(f"encoder {name!r} reads text in pictures, not {modality!r}")
        super().__init__(name, modality)
        self.index = {c: i for i, c in enumerate(self.labels)}

    def read(self, img: Image.Image) -> list[Line]:
        raise NotImplementedError

    def lines(self, item: Any) -> list[Line]:
        """Each line read, in reading order (rows of ~5% of the picture's height, then left to right)."""
        img = load_image(item).convert("RGB")
        img.thumbnail((LONGEST_SIDE, LONGEST_SIDE))
        kept = [line for line in self.read(img) if len(line[0].strip()) >= 2 or line[1] >= LONE_CHARACTER_SCORE]
        return sorted(kept, key=lambda line: (round(line[2][1] * 20), line[2][0]))

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


class RapidOcrText(TextReader):
    """RapidOCR: photos, signs, labels (it often runs the words of a screenshot together)."""

    def __init__(self, name: str, modality: str):
        if importlib.util.find_spec("rapidocr_onnxruntime") is None:
            raise ConfigError("reading text needs `pip install --no-deps rapidocr-onnxruntime==1.4.4` with pyclipper, "
                              "shapely and onnxruntime (scripts/install.sh installs them)")
        from rapidocr_onnxruntime import RapidOCR

        super().__init__(name, modality)
        self.engine = RapidOCR(intra_op_num_threads=2)
        self.preprocess_id = f"longest{LONGEST_SIDE}|rapidocr-onnxruntime-1.4.4|PP-OCRv4|first{self.entries}-chars"

    def read(self, img: Image.Image) -> list[Line]:
        w, h = img.size
        with self.lock:
            found, _ = self.engine(np.asarray(img)[:, :, ::-1])  # RapidOCR reads BGR, as OpenCV does
        return [(text, float(score), _box([p[0] for p in box], [p[1] for p in box], w, h))
                for box, text, score in found or []]


class TesseractText(TextReader):
    """Tesseract 5 (Debian `tesseract-ocr`, LSTM English): screenshots and pages, exact where RapidOCR runs
    words together; weak on street signs. Its words are grouped into its own lines."""

    def __init__(self, name: str, modality: str):
        if shutil.which("tesseract") is None:
            raise ConfigError("reading documents needs Tesseract: apt-get install tesseract-ocr tesseract-ocr-eng "
                              "(scripts/install.sh installs it)")
        super().__init__(name, modality)
        version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        self.preprocess_id = f"longest{LONGEST_SIDE}|{version.strip()}|eng|psm11|first{self.entries}-chars"

    def read(self, img: Image.Image) -> list[Line]:
        w, h = img.size
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out = subprocess.run(["tesseract", "stdin", "stdout", "-l", "eng", "--psm", "11", "tsv"], input=buf.getvalue(),
                             capture_output=True, env={**os.environ, "OMP_THREAD_LIMIT": "2"}, timeout=120)
        lines: dict[tuple, list] = {}
        for row in csv.DictReader(io.StringIO(out.stdout.decode("utf-8", "replace")), delimiter="\t",
                                  quoting=csv.QUOTE_NONE):
            if row.get("level") == "5" and (row.get("text") or "").strip() and float(row["conf"]) >= 0:
                lines.setdefault((row["block_num"], row["par_num"], row["line_num"]), []).append(row)
        found = []
        for words in lines.values():
            x1, y1 = min(int(r["left"]) for r in words), min(int(r["top"]) for r in words)
            x2 = max(int(r["left"]) + int(r["width"]) for r in words)
            y2 = max(int(r["top"]) + int(r["height"]) for r in words)
            found.append((" ".join(r["text"] for r in words), sum(float(r["conf"]) for r in words) / len(words) / 100,
                          _box([x1, x2], [y1, y2], w, h)))
        return found


def _box(xs: list[float], ys: list[float], w: int, h: int) -> tuple[float, float, float, float]:
    return min(xs) / w, min(ys) / h, max(xs) / w, max(ys) / h


ENCODERS.register("rapidocr-text")(RapidOcrText)
ENCODERS.register("tesseract-text")(TesseractText)
