"""Prepared training samples: tokenized once, media validated (and encoded, with the cache) once.

Preparation is where bad samples are found: undecodable media, over-long samples. They are skipped
and counted (or raised, with `on_error="fail"`) before the first optimisation step.
"""
from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from ..errors import AnymalError
from ..model.processor import Batch, Encoded
from .feature_cache import FeatureCache
from .jsonl import Sample, SkipReport


@dataclass
class Prepared:
    encoded: Encoded  # with `.features` when the feature cache is on
    where: str


def prepare(samples: list[Sample], model, caches: dict[str, FeatureCache] | None, on_error: str,
            skipped: SkipReport, desc: str = "preparing", progress: bool = True) -> list[Prepared]:
    out = []
    if caches is not None:  # encode the uncached inputs in batches first
        media = [p for s in samples for p in media_or_none(model, s)]
        for m, cache in caches.items():
            cache.fill([p.source for p in media if p.modality == m], progress=progress, desc=f"{desc}: encoding {m}")
    for s in tqdm(samples, desc=desc, disable=not progress, unit="sample"):
        try:
            media = model.processor.media(s.messages)
            if caches is not None:
                feats = [caches[p.modality].get(p.source) for p in media]
                enc = model.encode_conversation(s.messages, features=feats)
            elif any(model.projectors[p.modality].reads_content for p in media):  # counts need the features
                enc = model.encode_conversation(s.messages)
                enc.features = None
            else:  # still decode once, so a bad file is found now and not mid-training
                counts = [model.projectors[p.modality].tokens_for(model.encoders[p.modality].load(p.source)[1])
                          for p in media]
                enc = model.processor.encode(s.messages, counts=counts)
            out.append(Prepared(enc, s.where))
        except AnymalError as e:
            if on_error == "fail":
                raise type(e)(f"{s.where}: {e}") from None
            skipped.add_error(s.where, e)
    return out


def media_or_none(model, sample: Sample) -> list:
    """The sample's inputs, or none where they cannot be read (reported when the sample itself is prepared)."""
    try:
        return model.processor.media(sample.messages)
    except AnymalError:  # reported (or raised) with its line when the sample itself is prepared
        return []


def collate(model, items: list[Prepared]) -> Batch:
    return model.processor.collate([p.encoded for p in items], padding_side="right")
