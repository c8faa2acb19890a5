"""Frozen language models: the default embedded SmolLM2, Gemma 3, or any Hugging Face causal LM."""
from .backbone import LanguageModel, load_llm

__all__ = ["LanguageModel", "load_llm"]
