"""One place that turns an encoder name and a modality into a frozen encoder: registered encoders,
Hugging Face fallbacks, video as frames of a picture encoder, perception parts beside the main one."""
from __future__ import annotations

from ..modalities import MODALITIES
from ..registry import ENCODERS
from .base import Encoder
from .composed import ComposedEncoder
from .video import VideoEncoder


def load_encoder(name: str, modality: str, frames: int = 4, sides: list[int] | None = None,
                 perception: list[str] | None = None) -> Encoder:
    """The frozen encoder `name` for `modality`; a video encoder is `frames` frames through an image one;
    `sides` sets an image encoder's input resolution; `perception` names encoders that read each
    picture beside it (their words reach the LLM next to the patch tokens)."""
    frames_of = MODALITIES.get(modality).frames_of if modality in MODALITIES else None
    if frames_of:  # video: each sampled frame through the picture encoder
        return VideoEncoder(load_encoder(name, frames_of, perception=perception), frames).freeze()
    enc = ENCODERS.build(name, modality=modality).freeze()
    enc = enc.set_sides(sides) if sides else enc
    if perception:
        enc = ComposedEncoder(enc, [ENCODERS.build(p, modality=modality).freeze() for p in perception]).freeze()
    return enc
