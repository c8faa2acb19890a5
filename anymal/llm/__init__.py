"""Frozen language models: the default embedded SmolLM2, Gemma 3, or any Hugging Face causal LM."""
from .backbone import LOCAL_LLM, LanguageModel, load_llm, save_llm_dir

__all__ = ["LOCAL_LLM", "LanguageModel", "load_llm", "save_llm_dir"]
