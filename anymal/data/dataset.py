"""Prepared training samples: tokenized once, media validated (and encoded, with the cache) once.

Preparation is where bad samples are found: undecodable media, over-long samples. They are skipped
and counted (or raised, with `on_error="fail"`) before the first optimisation step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..errors import AnymalError
from ..model.processor import Batch, Encoded
from .feature_cache import FeatureCache
from .jsonl import Sample, SkipReport


@dataclass
class Prepared:
    encoded: Encoded
    features: dict[str, list[torch.Tensor]]  # per modality, in order of appearance (empty without cache)
    where: str


def prepare(samples: list[Sample], model, caches: dict[str, FeatureCache] | None, on_error: str,
            skipped: SkipReport, desc: str = "preparing", progress: bool = True) -> list[Prepared]:
    out = []
    for s in tqdm(samples, desc=desc, disable=not progress, unit="sample"):
        try:
            enc = model.processor.encode(s.messages)
            feats: dict[str, list[torch.Tensor]] = {}
            for item in enc.media:
                if caches is not None:
                    feats.setdefault(item.modality, []).append(caches[item.modality].get(item.source))
                else:  # still decode once, so a bad file is found now and not mid-training
                    model.encoders[item.modality].preprocess(item.source)
            out.append(Prepared(enc, feats, s.where))
        except AnymalError as e:
            if on_error == "fail":
                raise type(e)(f"{s.where}: {e}") from None
            skipped.add_error(s.where, e)
    return out


def collate(model, items: list[Prepared]) -> tuple[Batch, dict[str, torch.Tensor] | None]:
    batch = model.processor.collate([p.encoded for p in items], padding_side="right")
    if not any(p.features for p in items):
        return batch, None
    feats = {m: torch.stack([f for p in items for f in p.features.get(m, [])]) for m in batch.slots}
    return batch, feats
