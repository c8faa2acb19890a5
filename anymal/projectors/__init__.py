"""Trainable projectors from encoder features into the LLM's token-embedding space."""
from .base import Projector, build_projector
from . import bind, linear, mlp, patch, resampler, tiles  # noqa: F401  (registration side effects)
from .words import NAME_TOKENS, build_perceiving

__all__ = ["NAME_TOKENS", "Projector", "build_perceiving", "build_projector"]
