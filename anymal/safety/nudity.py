"""An optional nudity check on input images (issue 32): NudeNet's detector (`nudenet==3.4.2`, a YOLOv8n
fine-tune at 320 px, 18 body-part classes) run from its ONNX file on onnxruntime. An image is flagged when
the detector finds an exposed genital, breast, buttocks or anus region with at least `threshold`
confidence; faces, feet, armpits, bellies and covered parts never flag.

Off by default: the package is MIT, but the detector was trained with Ultralytics' code, for whose models
Ultralytics claims AGPL-3.0 (docs/licences.md). Install it with
`pip install --no-deps nudenet==3.4.2 onnxruntime` (its own dependencies pull the GUI OpenCV build)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from ..encoders.media import load_image
from ..errors import ConfigError
from .text import Verdict

# NudeNet's class order (nudenet.py's `__labels`), and the classes that flag
CLASSES = ("FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
           "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
           "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
           "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED")
EXPLICIT = frozenset({"BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "ANUS_EXPOSED",
                      "MALE_GENITALIA_EXPOSED"})
SIZE = 320  # the detector's input side


def detector_file() -> Path:
    spec = importlib.util.find_spec("nudenet")
    path = Path(spec.submodule_search_locations[0]) / "320n.onnx" if spec else None
    if path is None or not path.is_file():
        raise ConfigError("the nudity check needs NudeNet's detector: pip install --no-deps nudenet==3.4.2 onnxruntime")
    return path


def square_input(item) -> np.ndarray:
    """The picture as the detector reads it: RGB in [0, 1], padded at the right and bottom to a square
    (as NudeNet pads) and resized to SIZE; [1, 3, SIZE, SIZE] float32."""
    img = load_image(item).convert("RGB")
    side = max(img.size)
    square = np.zeros((side, side, 3), np.uint8)
    square[:img.height, :img.width] = np.asarray(img)
    small = np.asarray(Image.fromarray(square).resize((SIZE, SIZE), Image.BILINEAR), np.float32) / 255.0
    return small.transpose(2, 0, 1)[None].copy()


def explicit_score(output: np.ndarray) -> float:
    """The highest class score of an explicit class over the detector's candidate boxes ([1, 4 + 18,
    boxes] YOLOv8 output: box centre and size, then one score per class); 0 when there is none."""
    scores = output[0, 4:, :]  # [classes, boxes]
    best = scores.argmax(0)
    explicit = np.array([CLASSES[c] in EXPLICIT for c in best])
    top = scores.max(0)
    return float(top[explicit].max()) if explicit.any() else 0.0


class NudityCheck:
    """Verdicts on input images: unsafe (category "sexual") when `explicit_score` >= `threshold`."""

    def __init__(self, threshold: float = 0.5, model_path: Path | None = None):
        path = model_path or detector_file()
        try:
            import onnxruntime
        except ImportError as e:
            raise ConfigError(f"the nudity check runs {path.name} on onnxruntime: pip install onnxruntime") from e
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # a check beside the model's own compute: keep to one core
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.threshold = threshold

    def scores(self, images: list) -> list[float]:
        return [explicit_score(self.session.run(None, {self.input_name: square_input(im)})[0]) for im in images]

    def check(self, images: list) -> list[Verdict]:
        return [Verdict(s >= self.threshold, s, "sexual") for s in self.scores(images)]
