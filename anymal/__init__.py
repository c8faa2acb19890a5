"""anymal: any-modality augmented language models (AnyMAL, LLaVA, ImageBind-LLM, OtterHD) in one framework."""
from ._version import __version__
from .model.anymal import AnyMAL
from .model.generation import GenerationSettings

__all__ = ["AnyMAL", "GenerationSettings", "__version__"]
