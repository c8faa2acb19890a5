"""Image safety check: a logistic head on the image encoder's pooled features, for violent imagery
(weapons: guns, swords, bombs, missiles...).

No labelled unsafe-image set exists offline, so the labels come from the pictures' own words: in
the Open Clip Art drawings (title + keywords + topic folder), the Noto emoji (CLDR names) and the
Tux Paint stamps (captions), a picture whose words name a weapon (WEAPON_WORDS) is a positive, and
one whose words are ambiguous (AMBIGUOUS_WORDS: a kitchen knife, a bow, a tank...) is left out of
training and measurement alike. A deterministic split by the words' hash holds 30% out (the same
concept never lands on both sides); `anymal safety eval` prints precision/recall there. The head
(1280 weights on the standardised mean-pooled EfficientNet-Lite0 features) ships as
`data/image_head.safetensors`; `anymal safety train` rebuilds it from the built sets. Gore and
nudity are not covered: there is nothing offline to learn or measure them on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..data.builders import manifest
from ..errors import ConfigError
from ..modalities import IMAGE
from ..objectives import fit_linear_head
from .text import DATA, Verdict, split_of

HEAD = DATA / "image_head.safetensors"
IMAGE_SETS = [manifest("openclipart", "train"), manifest("emoji", "train"),
              *(manifest("tuxpaint", s) for s in ("train", "val", "test"))]
WEAPON_WORDS = {"gun", "guns", "handgun", "pistol", "pistols", "revolver", "rifle", "rifles", "shotgun", "musket",
                "firearm", "firearms", "weapon", "weapons", "cannon", "bomb", "bombs", "grenade", "missile",
                "missiles", "rocket launcher", "bazooka", "sword", "swords", "longsword", "sabre", "saber",
                "dagger", "machine gun", "submachine", "ak47", "uzi", "colt", "sniper", "ammunition", "dynamite",
                "explosive", "crossed swords", "nuclear bomb", "atomic bomb"}
AMBIGUOUS_WORDS = {"knife", "knives", "axe", "bow", "arrow", "arrows", "tank", "tanks", "bullet", "bullets",
                   "shield", "armor", "armour", "soldier", "soldiers", "war", "military", "army", "blade",
                   "hunter", "hunting", "target", "police", "knight", "pirate", "spear", "cartridge",
                   "water gun", "water pistol", "squirt", "toy", "nerf", "glue gun", "staple", "stapler", "spray gun", "paintball"}


def _phrases(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}


def weapon_label(text: str) -> bool | None:
    """True when the words name a weapon, None when they are ambiguous, else False."""
    p = _phrases(text)
    if p & AMBIGUOUS_WORDS:
        return None
    return bool(p & WEAPON_WORDS)


@dataclass
class LabelledImage:
    path: str
    words: str  # what the label was read from
    weapon: bool

    @property
    def split(self) -> str:
        return split_of(self.words)


def labelled_images(manifests: list[str]) -> tuple[list[LabelledImage], int]:
    """Each distinct picture of the captioned manifests with its label; and how many were left out
    as ambiguous."""
    from ..data.jsonl import read_jsonl

    items, seen, ambiguous = [], set(), 0
    for m in manifests:
        samples, _ = read_jsonl(m, [IMAGE.name], on_error="skip")
        for s in samples:
            path = next(p["path"] for msg in s.messages if isinstance(msg["content"], list)
                        for p in msg["content"] if p.get("type") == IMAGE.name)
            if path in seen:
                continue
            seen.add(path)
            meta = s.meta or {}
            words = " ".join([meta.get("title") or meta.get("caption", ""), *meta.get("keywords", []),
                              meta.get("folder", "")]).strip()
            label = weapon_label(words)
            if label is None:
                ambiguous += 1
                continue
            items.append(LabelledImage(str(path), words, label))
    return items, ambiguous


def pooled_features(encoder, images: list, batch: int = 32, progress: bool = False) -> torch.Tensor:
    """[N, dim] mean-pooled encoder features."""
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch), desc="image features", disable=not progress, unit="batch"):
            x = torch.stack([encoder.preprocess(im) for im in images[i:i + batch]])
            out.append(encoder(x).mean(1).float())
    return torch.cat(out) if out else torch.zeros(0, encoder.dim)


def _encoder(encoder):
    if encoder is None or getattr(encoder, "id", None) != "efficientnet-lite0":
        from ..encoders import load_encoder

        encoder = load_encoder("efficientnet-lite0", IMAGE.name)
    return encoder.eval()


# EfficientNet-Lite3's ImageNet classes that are weapons (0-based, efficientnet_labels.txt order):
# assault rifle, cannon, holster, missile, projectile, revolver, rifle, scabbard. Not the ambiguous ones
# (hatchet, cleaver, tank, bow, letter opener, bulletproof vest), as for the word labels.
WEAPON_CLASSES = [413, 471, 597, 657, 744, 763, 764, 777]


class _WeaponCheck:
    """A check's verdicts from its P(weapon) `scores` and `threshold`."""

    threshold: float

    def scores(self, images: list) -> list[float]:
        raise NotImplementedError

    def check(self, images: list) -> list[Verdict]:
        return [Verdict(s >= self.threshold, s, "violence") for s in (self.scores(images) if images else [])]


class PerceptionCheck(_WeaponCheck):
    """P(weapon) as the probability EfficientNet-Lite3 (the image encoders' frozen ImageNet classifier,
    encoders/perception.py) puts on its weapon classes. Nothing is trained, so every labelled picture
    measures it, not only a held-out split."""

    def __init__(self, threshold: float = 0.5, classifier=None):
        if classifier is None:
            from ..encoders import load_encoder

            classifier = load_encoder("efficientnet-lite3-labels", IMAGE.name)
        self.classifier, self.threshold = classifier, threshold

    def scores(self, images: list) -> list[float]:
        c = self.classifier
        return [float(c.probabilities(c.as_uint8(c.preprocess(im)))[WEAPON_CLASSES].sum()) for im in images]


class ImageCheck(_WeaponCheck):
    def __init__(self, encoder=None, threshold: float = 0.5, head: Path | dict = HEAD):
        if isinstance(head, Path):
            if not head.is_file():
                raise ConfigError(f"{head}: no trained image safety head; build it with `anymal safety train`")
            head = load_file(str(head))
        self.encoder, self.threshold = _encoder(encoder), threshold
        self.weight, self.bias, self.mean, self.std = head["weight"], head["bias"], head["mean"], head["std"]

    def scores(self, images: list) -> list[float]:
        """P(weapon) per image."""
        f = (pooled_features(self.encoder, images) - self.mean) / self.std
        return torch.softmax(f @ self.weight + self.bias, -1)[:, 1].tolist()


def train_image_head(items: list[LabelledImage], encoder=None, l2: float = 1e-2, out: Path | None = HEAD,
                     progress: bool = True) -> dict:
    """Fit the head on `items` (give it the train split); returns the head's tensors."""
    encoder = _encoder(encoder)
    if not any(i.weapon for i in items) or all(i.weapon for i in items):
        raise ConfigError("the image safety head needs pictures with and without weapons; "
                          "build the sets first (anymal data build openclipart|emoji|tuxpaint)")
    f = pooled_features(encoder, [i.path for i in items], progress=progress)
    mean, std = f.mean(0), f.std(0).clamp(min=1e-4)
    y = torch.tensor([int(i.weapon) for i in items])
    weight, bias = fit_linear_head((f - mean) / std, y, 2, l2, balanced=True)
    head = {"weight": weight, "bias": bias, "mean": mean.contiguous(), "std": std.contiguous()}
    if out is not None:
        save_file(head, str(out), metadata={"encoder": "efficientnet-lite0", "classes": "safe,weapon",
                                            "train_images": str(len(items)), "weapons": str(int(y.sum()))})
    return head


def build_image_check(method: str, threshold: float, encoder=None) -> "PerceptionCheck | ImageCheck":
    """The image check `method` names ("perception" or "head"), reusing a model's image encoder (or the
    parts of a composed one) where it holds the network the check reads."""
    parts = {getattr(p, "id", None): p for p in getattr(encoder, "parts", [encoder])}
    if method == "perception":
        return PerceptionCheck(threshold, parts.get("efficientnet-lite3-labels"))
    if method == "head":
        return ImageCheck(parts.get("efficientnet-lite0"), threshold)
    raise ConfigError(f"image check method {method!r}: expected 'perception' or 'head'")
