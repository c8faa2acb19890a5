"""The optional nudity check (anymal/safety/nudity.py): NudeNet's real detector on real pictures, the
reading of its output, and the guard that refuses on it only when it is switched on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anymal.errors import ConfigError
from anymal.safety.guard import Guard, SafetyConfig
from anymal.safety.nudity import CLASSES, EXPLICIT, NudityCheck, explicit_score, square_input
from anymal.safety.text import Verdict

EXAMPLES = Path(__file__).parents[1] / "anymal" / "assets" / "examples"


def _output(boxes: list[dict[str, float]]) -> np.ndarray:
    """A YOLOv8 output [1, 4 + classes, boxes] with the given class scores per box."""
    out = np.zeros((1, 4 + len(CLASSES), len(boxes)), np.float32)
    for i, scores in enumerate(boxes):
        for name, s in scores.items():
            out[0, 4 + CLASSES.index(name), i] = s
    return out


def test_only_a_box_whose_best_class_is_explicit_counts():
    assert explicit_score(_output([{"FACE_FEMALE": 0.9}, {"FEET_EXPOSED": 0.8, "BELLY_EXPOSED": 0.7}])) == 0.0
    assert explicit_score(_output([{"FACE_FEMALE": 0.9}, {"BUTTOCKS_EXPOSED": 0.6, "BUTTOCKS_COVERED": 0.3}])) \
        == pytest.approx(0.6)
    # an explicit class that is only a box's runner-up is not what the detector saw there
    assert explicit_score(_output([{"FEMALE_BREAST_COVERED": 0.7, "FEMALE_BREAST_EXPOSED": 0.4}])) == 0.0
    assert EXPLICIT < set(CLASSES) and not any(c.startswith(("FACE", "FEET", "ARMPITS")) for c in EXPLICIT)


def test_pictures_are_padded_square_like_nudenet_reads_them():
    x = square_input(EXAMPLES / "cup.jpg")
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0


def test_the_real_detector_passes_everyday_photos_and_reads_as_nudenet_does():
    """NudeNet's own 320n.onnx on the bundled real photos: none flagged, and our reading of a picture
    gives NudeNet's own detections' scores (its `NudeDetector.detect`, the package's reference path)."""
    from nudenet import NudeDetector

    photos = [EXAMPLES / f for f in ("sheep.jpg", "cup.jpg", "scissors.jpg", "hedgehog.jpg", "umbrella.png")]
    verdicts = NudityCheck().check(photos)
    assert not any(v.unsafe for v in verdicts) and all(v.category == "sexual" for v in verdicts)
    reference = NudeDetector()
    for photo, v in zip(photos, verdicts):
        theirs = max([d["score"] for d in reference.detect(str(photo)) if d["class"] in EXPLICIT], default=0.0)
        assert v.score == pytest.approx(theirs, abs=0.05) or max(v.score, theirs) < 0.2  # NudeNet drops < 0.2


class _Flags:
    """A stand-in nudity check that flags every picture."""

    def __init__(self):
        self.seen = 0

    def check(self, images):
        self.seen += len(images)
        return [Verdict(True, 0.9, "sexual") for _ in images]


def _messages(image):
    return [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image", "image": image}]}]


def test_the_guard_refuses_on_it_only_when_switched_on():
    assert SafetyConfig().nudity is False  # off by default (the detector's licence is unclear)
    off = _Flags()
    guard = Guard(SafetyConfig(input_text=False, output_text=False, pair=False), nudity=off)
    assert guard.check_input(_messages(str(EXAMPLES / "cup.jpg")))[0] is None and off.seen == 0
    guard = Guard(SafetyConfig(input_text=False, output_text=False, pair=False, nudity=True), nudity=_Flags())
    flag, _ = guard.check_input(_messages(str(EXAMPLES / "cup.jpg")))
    assert flag.check == "input_nudity" and "input nudity check: sexual" in flag.refusal(SafetyConfig.refusal)


def test_a_missing_detector_says_how_to_install_it(monkeypatch):
    import anymal.safety.nudity as nudity

    monkeypatch.setattr(nudity.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps nudenet==3.4.2"):
        NudityCheck()
