"""anymal: any-modality augmented language models (AnyMAL, LLaVA, ImageBind-LLM, OtterHD) in one framework."""
__version__ = "0.1.0"

from .model.anymal import AnyMAL  # noqa: E402
from .model.generation import GenerationSettings  # noqa: E402

__all__ = ["AnyMAL", "GenerationSettings", "__version__"]
