"""One place that turns an encoder name and a modality into a frozen encoder: registered encoders,
Hugging Face fallbacks, wrappers around another modality's encoder (video: frames of a picture
encoder), perception parts beside the main one."""
from __future__ import annotations

from ..modalities import MODALITIES
from ..registry import ENCODERS, WRAPPERS
from .base import Encoder
from .composed import ComposedEncoder
from .sized import sized


def load_encoder(name: str, modality: str, frames: int = 4, sides: list[int] | None = None,
                 perception: list[str] | None = None, shared: dict | None = None) -> Encoder:
    """The frozen encoder `name` for `modality`. A modality whose record `wraps` another reads through
    that one's encoder (video: `frames` frames through an image encoder); `sides` sets an image
    encoder's input resolution; `perception` names encoders that read each picture beside it (their
    words reach the LLM next to the patch tokens). Perception encoders hold no per-model state, so
    calls given the same `shared` dict build each (name, modality) once (image and video share them)."""
    record = MODALITIES.get(modality, None)
    if record and record.wraps:
        wrapper, inner = record.wraps
        enc = load_encoder(name, inner, sides=sides, perception=perception, shared=shared)
        return WRAPPERS.build(wrapper, enc, modality, frames=frames).freeze()
    enc = ENCODERS.build(name, modality=modality).freeze()
    if perception:
        shared = {} if shared is None else shared
        for p in perception:
            if (p, modality) not in shared:
                shared[p, modality] = ENCODERS.build(p, modality=modality).freeze()
        enc = ComposedEncoder(enc, [shared[p, modality] for p in perception]).freeze()
    if sides:
        sized(enc).set_sides(sides)
    return enc
