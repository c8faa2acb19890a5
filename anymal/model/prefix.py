"""The prompt prefix every training sample shares, run through the frozen LLM once per run.

With a chat template, each sample starts with the same tokens (SmolLM2's default system prompt and
the user turn's header: 24 tokens, about a third of a typical alignment sample). While no LLM weight
trains and nothing is injected into its layers, those tokens get the same keys and values in every
sample of every step, and nothing trainable lies before them, so their forward and backward are
wasted work: each step starts from their cached K/V instead (positions and the attention mask stay
those of the whole sequence, so the result is the same computation).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from ..llm.kv import cache_kwargs
from .processor import IGNORE, Encoded

MIN_TOKENS = 4  # shorter common prefixes are not worth a second code path


@dataclass
class SharedPrefix:
    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [1, heads, P, dim]

    def __len__(self) -> int:
        return len(self.ids)

    def cache(self, batch_size: int) -> DynamicCache:
        """A fresh cache holding the prefix for every row (expanded views: no copies)."""
        return DynamicCache([(k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1))
                             for k, v in self.layers])

    def covers(self, input_ids: torch.Tensor) -> bool:
        return input_ids.shape[1] > len(self) and bool(
            (input_ids[:, :len(self)] == torch.tensor(self.ids, device=input_ids.device)).all())


def shared_length(samples: list[Encoded]) -> int:
    """How many leading tokens every sample has in common, stopping before the first modality slot
    and before the last position whose output predicts a label."""
    first = samples[0].input_ids
    n = min(len(s.input_ids) for s in samples)
    for s in samples:
        slot = next((i for i, x in enumerate(s.slots) if x is not None), len(s.slots))
        label = next((i for i, x in enumerate(s.labels) if x != IGNORE), len(s.labels))
        n = min(n, slot, label - 1)
        n = next((i for i in range(n) if s.input_ids[i] != first[i]), n)
    return max(n, 0)


@torch.no_grad()
def find_shared_prefix(lm, samples: list[Encoded]) -> SharedPrefix | None:
    """The shared prefix of `samples` with its keys and values under `lm`; None if too short."""
    n = shared_length(samples)
    if n < MIN_TOKENS:
        return None
    ids = samples[0].input_ids[:n]
    cache = DynamicCache()
    device = lm.get_input_embeddings().weight.device
    lm(input_ids=torch.tensor([ids], device=device), **cache_kwargs(lm, cache), use_cache=True)
    return SharedPrefix(ids, [(layer.keys, layer.values) for layer in cache.layers])
