"""Frozen modality encoders, registered by name (plus a Hugging Face fallback per modality)."""
from ..errors import ConfigError
from ..modalities import MODALITIES
from ..registry import ENCODERS, import_target
from .base import Encoder
from .loading import load_encoder
# registration side effects: every encoder and wrapper module registers itself on import
from . import (colours, efficientnet, frame_motion, imu, patches, perception, points, sound_kinds,  # noqa: F401
               tiles, reading, transcript, video, voice, whisper)


@ENCODERS.register_fallback
def _hugging_face(name: str, modality: str) -> Encoder:
    """An unregistered name is a Hugging Face id or directory, read by the modality record's `hf_encoder`."""
    record = MODALITIES.get(modality, None)
    if record is None or not record.hf_encoder:
        raise ConfigError(f"unknown {modality} encoder {name!r}; registered: {', '.join(ENCODERS.names())}")
    return import_target(record.hf_encoder)(name, modality)


__all__ = ["Encoder", "load_encoder"]
