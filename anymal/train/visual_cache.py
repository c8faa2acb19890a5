"""`anymal bind-cache`: fill a model's visual cache (anymal/model/visual_cache.py) from a training manifest."""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from ..data.jsonl import read_jsonl
from ..errors import CheckpointError
from ..modalities import IMAGE
from ..model.processor import IGNORE
from ..model.visual_cache import VisualCache


def build_visual_cache(model, manifest: str | Path, progress: bool = True) -> VisualCache:
    """Image bind-space vectors + captions of every image sample of `manifest` (the training set)."""
    if IMAGE.name not in model.bind_modalities:
        raise CheckpointError("the visual cache holds image bind vectors: the model has no `image` bind head")
    samples, skipped = read_jsonl(manifest, [IMAGE.name], on_error="skip")
    samples = [s for s in samples if any(p.modality == IMAGE.name for p in model.processor.media(s.messages))]
    if not samples:
        raise CheckpointError(f"{manifest}: no image samples for the visual cache ({skipped.summary()})")
    vectors, captions, sources = [], [], []
    for i in tqdm(range(0, len(samples), 32), desc="visual cache", disable=not progress, unit="batch"):
        chunk = samples[i:i + 32]
        parts = [next(p for p in model.processor.media(s.messages) if p.modality == IMAGE.name) for s in chunk]
        with torch.no_grad():
            vectors.append(model.projectors[IMAGE.name].embed(model.encode_media(parts)).cpu())
        for s, p in zip(chunk, parts):
            enc = model.processor.encode(s.messages, counts=[0] * len(model.processor.media(s.messages)))
            captions.append(model.llm.tokenizer.decode([t for t in enc.labels if t != IGNORE],
                                                       skip_special_tokens=True).strip())
            sources.append(str(p.source))
    return VisualCache(torch.cat(vectors), captions, sources)
