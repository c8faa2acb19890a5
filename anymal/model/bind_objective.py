"""Stage `bind`: each input's bind-head vector is pulled towards the MiniLM embedding of its own
caption (the sample's assistant text) and away from the batch's other captions — symmetric,
multi-positive InfoNCE (identical captions are positives of each other, not negatives).

MiniLM stays frozen: the shared space *is* its sentence space (ImageBind anchors on images, we
anchor on text, the one modality every dataset here has), so every modality lands in one space.
"""
from __future__ import annotations

import torch

from .processor import IGNORE
from ..text_embed import embed_texts
from ..objectives import group_ids, info_nce

_VECTORS: dict[str, torch.Tensor] = {}  # caption -> MiniLM vector (captions repeat across epochs)


def caption_vectors(texts: list[str]) -> torch.Tensor:
    new = sorted({t for t in texts if t not in _VECTORS})
    if new:
        _VECTORS.update(zip(new, embed_texts(new)))
    return torch.stack([_VECTORS[t] for t in texts])


def row_texts(labels: torch.Tensor, tokenizer) -> list[str]:
    """The supervised (assistant) text of each row of a labelled batch."""
    return [tokenizer.decode([t for t in row.tolist() if t != IGNORE], skip_special_tokens=True).strip()
            for row in labels]


def bind_contrastive(z: torch.Tensor, texts: list[str], logit_scale: torch.Tensor) -> torch.Tensor:
    t = caption_vectors(texts).to(z)
    return info_nce(z, t, group_ids(texts).to(z.device), logit_scale.clamp(max=4.6052).exp())
