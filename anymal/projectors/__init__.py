"""Trainable projectors from encoder features into the LLM's token-embedding space."""
from .base import Projector, build_projector
from . import linear, mlp, patch, resampler, tiles  # noqa: F401  (registration side effects)

__all__ = ["Projector", "build_projector"]
