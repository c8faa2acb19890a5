"""anymal: any-modality augmented language models (AnyMAL, LLaVA, ImageBind-LLM, OtterHD) in one framework."""
from ._version import __version__

__all__ = ["AnyMAL", "GenerationSettings", "__version__"]


def __getattr__(name: str):
    """`anymal.AnyMAL` and `anymal.GenerationSettings`, imported on first use: `import anymal` (and so
    every `anymal` command, `--help` included) does not pay for torch and transformers until a model
    is needed."""
    if name == "AnyMAL":
        from .model.anymal import AnyMAL

        return AnyMAL
    if name == "GenerationSettings":
        from .model.settings import GenerationSettings

        return GenerationSettings
    raise AttributeError(f"module 'anymal' has no attribute {name!r}")
