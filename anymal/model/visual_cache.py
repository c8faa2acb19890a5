"""The training-free visual cache (ImageBind-LLM §3.3): image bind-space vectors of the training set,
searched with FAISS; a non-image query is blended with its top-k image neighbours before the bind
network, which was trained on image vectors only, so it sees inputs closer to what it knows.

    blended = normalize((1 - w) * q + w * sum_j softmax(s_j / tau) * image_j)   over the top-k j

Stored as `visual_cache.safetensors` (vectors) + `visual_cache.json` (captions, sources) in a
checkpoint directory; `k`, `w`, `tau` are model config (`bind.cache_k`, `bind.cache_weight`,
`bind.cache_temperature`).
"""
from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

FILES = ("visual_cache.safetensors", "visual_cache.json")


class VisualCache:
    def __init__(self, vectors: torch.Tensor, captions: list[str], sources: list[str] | None = None):
        if vectors.ndim != 2 or len(vectors) != len(captions):
            raise ValueError(f"cache: {list(vectors.shape)} vectors for {len(captions)} captions")
        self.vectors = F.normalize(vectors.float(), dim=-1)
        self.captions, self.sources = captions, sources or [""] * len(captions)
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])  # exact inner product = cosine on unit vectors
        self.index.add(np.ascontiguousarray(self.vectors.numpy()))

    def __len__(self) -> int:
        return len(self.captions)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarities [N, k], indices [N, k]) of each unit query's k nearest cached images, best first."""
        q = np.ascontiguousarray(F.normalize(queries.detach().float().cpu(), dim=-1).numpy())
        sims, idx = self.index.search(q, min(k, len(self)))
        return torch.from_numpy(sims), torch.from_numpy(idx).long()

    def blend(self, queries: torch.Tensor, k: int, weight: float, temperature: float) -> torch.Tensor:
        if weight == 0 or len(self) == 0:
            return queries
        sims, idx = self.search(queries, k)
        mix = torch.einsum("nk,nkd->nd", torch.softmax(sims / temperature, -1), self.vectors[idx])
        return F.normalize((1 - weight) * queries + weight * mix.to(queries), dim=-1)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        save_file({"vectors": self.vectors.contiguous()}, str(path / FILES[0]))
        (path / FILES[1]).write_text(json.dumps({"captions": self.captions, "sources": self.sources}))

    @classmethod
    def load(cls, path: str | Path) -> "VisualCache | None":
        path = Path(path)
        if not (path / FILES[0]).is_file():
            return None
        try:
            meta = json.loads((path / FILES[1]).read_text())
            return cls(load_file(str(path / FILES[0]))["vectors"], meta["captions"], meta.get("sources"))
        except (OSError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable visual cache ({e}); rebuild it with `anymal bind-cache`") from None
