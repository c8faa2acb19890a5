"""What each input is asked: the words of the conversation turn it is attached to, as the LLM embeds them.

A perceiving projector compares the names its perception gives with these words (projectors/words.py,
`WordsProjector.asked`), so that "Is there a dog?" on a picture whose detector says "cat" is visible to
the adapter, not left for a small frozen LLM to work out from two embeddings far apart in its prompt.
A turn is the span between two special tokens (`<|im_start|>`, `<|im_end|>`, padding); the input's own
slots and every other input's are not words. In a multi-turn conversation each input is asked only
what its own turn says. The turn's text, as stemmed phrases, also goes along: WordNet kinship
(anymal/kinship.py) is read from words, not embeddings.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

from ..kinship import phrases
from ..projectors.words import Asked


def turn_words(input_ids: torch.Tensor, attention_mask: torch.Tensor, slots: dict[str, torch.Tensor],
               special_ids: torch.Tensor, embeds: torch.Tensor, modality: str, counts: list[int],
               decode: Callable[[list[int]], str] | None = None) -> Asked:
    """Per input of `modality` (row-major slot order, `counts` slots each): the embeddings of its turn's
    words [N, T, hidden], which of the T positions are its words [N, T] (float 0/1; T is cut to the
    columns some input reads) and, given the tokenizer's `decode`, the turn's phrases."""
    rows, mask = turn_masks(input_ids, attention_mask, slots, special_ids, modality, counts)
    said = tuple(phrases(_without_role(decode(input_ids[r][m].tolist()))) for r, m in zip(rows, mask)) if decode else ()
    used = mask.any(0).nonzero()
    if used.numel() == 0:
        return Asked(embeds.new_zeros(len(rows), 1, embeds.shape[-1]).float(), mask.new_zeros(len(rows), 1).float(), said)
    lo, hi = int(used.min()), int(used.max()) + 1
    return Asked(embeds[rows, lo:hi].float(), mask[:, lo:hi].float(), said)


def _without_role(turn: str) -> str:
    """A turn's text opens with its role's name ("user"): not a word asked (a "user" is a kind of person)."""
    return re.sub(r"^\s*(user|assistant|system)\b", "", turn)


def turn_masks(input_ids: torch.Tensor, attention_mask: torch.Tensor, slots: dict[str, torch.Tensor],
               special_ids: torch.Tensor, modality: str, counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input of `modality`: its batch row [N] and which positions of that row are its turn's words [N, T]."""
    any_slot = torch.zeros_like(input_ids, dtype=torch.bool)
    for s in slots.values():
        any_slot |= s.to(any_slot.device)
    boundary = (torch.isin(input_ids, special_ids.to(input_ids.device)) & ~any_slot) | (attention_mask == 0)
    segment = boundary.long().cumsum(1)  # [B, T]: the turn each position is in
    words = ~boundary & ~any_slot
    first = torch.tensor([0, *counts[:-1]], dtype=torch.long).cumsum(0)  # each input's first slot
    pos = slots[modality].to(input_ids.device).nonzero()[first.to(input_ids.device)]  # [N, 2]: (row, column)
    rows = pos[:, 0]
    return rows, (segment[rows] == segment[rows, pos[:, 1]].unsqueeze(1)) & words[rows]
