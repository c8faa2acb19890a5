"""Token-by-token decoding over `inputs_embeds` with a KV cache, for one prompt or a left-padded batch.

Written out (rather than `model.generate`) so that streaming, stop strings and batching share one
loop; the logits processors themselves are transformers' own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from transformers import DynamicCache, LogitsProcessorList
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def processors(self) -> LogitsProcessorList:
        procs = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.temperature > 0:
            procs.append(TemperatureLogitsWarper(self.temperature))
            if self.top_p < 1.0:
                procs.append(TopPLogitsWarper(self.top_p))
        return procs


@torch.no_grad()
def decode_tokens(lm, embeds: torch.Tensor, mask: torch.Tensor, s: GenerationSettings,
                  eos_ids: list[int]) -> Iterator[torch.Tensor]:
    """Yield the next token id of every row, step by step, until all rows end or the budget is spent.

    Rows that have finished keep receiving EOS (ignored by the caller). Left padding is handled by
    position ids computed from the attention mask.
    """
    B = embeds.shape[0]
    gen = torch.Generator().manual_seed(s.seed) if s.seed is not None else None
    procs = s.processors()
    eos = torch.tensor(eos_ids or [-1])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
    history = torch.empty((B, 0), dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    last_pos = pos[:, -1:]
    for _ in range(s.max_new_tokens):
        logits = procs(history, out.logits[:, -1, :].float())
        if s.temperature > 0:
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(1)
        else:
            nxt = logits.argmax(-1)
        nxt = torch.where(done, eos[0], nxt)
        yield nxt
        done |= torch.isin(nxt, eos)
        if done.all():
            return
        history = torch.cat([history, nxt[:, None]], 1)
        mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype)], 1)
        last_pos = last_pos + 1
        out = lm(input_ids=nxt[:, None], attention_mask=mask, position_ids=last_pos, past_key_values=cache, use_cache=True)


class TextStream:
    """Incremental detokenization for one row, with stop strings.

    Text is released only when it can no longer change: never half a UTF-8 character, never the
    beginning of what might turn out to be a stop string.
    """

    def __init__(self, tokenizer, stop: list[str], eos_ids: list[int]):
        self.tok, self.stop, self.eos = tokenizer, [x for x in stop if x], set(eos_ids)
        self.ids: list[int] = []
        self.sent = 0
        self.finished = False
        self.text = ""

    def push(self, tid: int) -> str:
        if self.finished:
            return ""
        if tid in self.eos:
            return self._finish(self.text)
        self.ids.append(tid)
        self.text = self.tok.decode(self.ids, skip_special_tokens=True).lstrip()  # "Assistant: A" -> "A"
        for st in self.stop:
            k = self.text.find(st, max(0, self.sent - len(st)))
            if k >= 0:
                return self._finish(self.text[:k])
        safe = len(self.text)
        if self.text.endswith("\ufffd"):
            safe -= 1
        for st in self.stop:  # hold back a possible stop-string prefix
            for n in range(min(len(st) - 1, safe), 0, -1):
                if self.text[:safe].endswith(st[:n]):
                    safe -= n
                    break
        return self._release(max(safe, self.sent))

    def close(self) -> str:
        return self._finish(self.text)

    def _release(self, upto: int) -> str:
        piece = self.text[self.sent:upto]
        self.sent = upto
        return piece

    def _finish(self, final: str) -> str:
        self.finished = True
        self.text = final
        return self._release(len(final)) if len(final) >= self.sent else ""
