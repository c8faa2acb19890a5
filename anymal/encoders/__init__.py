"""Frozen modality encoders, registered by name (plus a Hugging Face fallback per modality)."""
from .base import Encoder, load_encoder
from . import efficientnet, hf_vision, whisper  # noqa: F401  (registration side effects)

__all__ = ["Encoder", "load_encoder"]
