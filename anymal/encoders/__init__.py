"""Frozen modality encoders, registered by name (plus a Hugging Face fallback per modality)."""
from ..errors import ConfigError
from ..modalities import AUDIO, IMAGE
from ..registry import ENCODERS
from .audio import HFAudioEncoder
from .base import Encoder
from .hf_vision import HFVisionEncoder
from .loading import load_encoder
# registration side effects: every encoder and wrapper module registers itself on import
from . import (efficientnet, imu, patches, perception, points, sound_kinds, tiles, transcript,  # noqa: F401
               video, whisper)

# names that are not registered are Hugging Face ids or local directories, loaded per modality
HF_FALLBACKS = {IMAGE.name: HFVisionEncoder, AUDIO.name: HFAudioEncoder}


@ENCODERS.register_fallback
def _hugging_face(name: str, modality: str) -> Encoder:
    if modality not in HF_FALLBACKS:
        raise ConfigError(f"unknown {modality} encoder {name!r}; registered: {', '.join(ENCODERS.names())}")
    return HF_FALLBACKS[modality](name, modality)


__all__ = ["Encoder", "load_encoder"]
