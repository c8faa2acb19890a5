"""Token-by-token decoding over `inputs_embeds` with a KV cache, for one prompt or a left-padded
batch that requests join and leave while it runs.

Written out (rather than `model.generate`) so that streaming, stop strings, batching and continuous
batching share one loop; the logits processors themselves are transformers' own.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F

from .settings import GenerationSettings


def row_generator(seed: int | None, index: int) -> torch.Generator | None:
    """A row's own sampling stream: seeded outputs do not depend on which rows share the batch."""
    return None if seed is None else torch.Generator().manual_seed(hash((seed, index)) & 0xFFFF_FFFF_FFFF)


@dataclass
class _Row:
    settings: GenerationSettings
    procs: list  # transformers' LogitsProcessorList (GenerationSettings.processors)
    gen: torch.Generator | None
    bind: torch.Tensor | None  # this row's bind-space vector (None: no bind input, nothing injected)
    history: list[int] = field(default_factory=list)


class DecodeBatch:
    """Rows decoding together over one KV cache, which rows join and leave between steps
    (continuous batching).

    `join` prefills new rows on their own, then merges their cache into the running one: both are
    left-padded to the longer length (masked, so padding never changes a row's result) and stacked.
    `sample` picks every row's next token with the row's own settings and generator; `advance` drops
    the rows that are done, trims padding no row needs any more, and runs one step for the rest.
    `runner` runs the LLM (llm/kv.py: transformers' forward; llm/fast.py: the lean one);
    `inject(vectors, present)` is the context that applies ImageBind-LLM's per-row injection.
    """

    def __init__(self, runner, inject=None):
        self.runner, self.inject = runner, inject
        self.rows: list[_Row] = []
        self.cache = None
        self.mask = self.pos = self.logits = None  # [B, T] attention mask, [B] last positions, [B, V]
        self.ahead: list[tuple[int, torch.Tensor]] = []  # a lone greedy row's checked next tokens (+ logits)

    def __len__(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def join(self, embeds: torch.Tensor, mask: torch.Tensor, settings: list[GenerationSettings],
             bind: tuple[torch.Tensor, torch.Tensor] | None = None, indices: list[int] | None = None) -> None:
        """Prefill left-padded prompts and add their rows (`indices`: each row's sampling stream)."""
        indices = indices if indices is not None else list(range(len(settings)))
        rows = [_Row(s, s.processors(), row_generator(s.seed, i), bind[0][r] if bind is not None and bind[1][r] else None)
                for r, (s, i) in enumerate(zip(settings, indices))]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with self._injecting(rows):
            logits, cache = self.runner.prefill(embeds, mask, pos)
        logits = logits.float().cpu()  # sampling runs on CPU, with each row's generator
        self._settle()
        if not self.rows:
            self.rows, self.cache, self.mask, self.pos, self.logits = rows, cache, mask, pos[:, -1], logits
            return
        T = max(mask.shape[1], self.mask.shape[1])
        self.cache = self.runner.merge(self.cache, cache)
        self.mask = torch.cat([F.pad(self.mask, (T - self.mask.shape[1], 0)), F.pad(mask, (T - mask.shape[1], 0))])
        self.pos, self.logits = torch.cat([self.pos, pos[:, -1]]), torch.cat([self.logits, logits])
        self.rows += rows

    def sample(self) -> list[int | Exception]:
        """Every row's next token (appended to its history; `advance` feeds it to the model), or the
        exception that row's own sampling raised (drop that row: `advance` with its keep False)."""
        if self.ahead:
            t, logits = self.ahead.pop(0)
            self.logits = logits[None].float().cpu()
            self.rows[0].history.append(t)
            return [t]
        out: list[int | Exception] = []
        for r, row in enumerate(self.rows):
            try:
                t = self._pick(row, self.logits[r:r + 1])
            except Exception as e:  # this row's own failure: the caller drops it, the others go on
                out.append(e)
                continue
            row.history.append(t)
            out.append(t)
        return out

    @staticmethod
    def _pick(row: _Row, logits: torch.Tensor) -> int:
        scores = row.procs(torch.tensor([row.history], dtype=torch.long), logits) if row.procs else logits
        if row.settings.temperature == 0:
            return int(scores.argmax(-1))
        probs = torch.softmax(scores, -1)
        if not torch.isfinite(probs).all():
            raise ValueError(f"sampling settings {row.settings} turned the logits into non-finite probabilities")
        return int(torch.multinomial(probs, 1, generator=row.gen))

    @torch.no_grad()
    def advance(self, keep: list[bool]) -> None:
        """Drop the rows not kept, then run one step for the others with their sampled tokens."""
        if not all(keep):
            idx = [i for i, k in enumerate(keep) if k]
            self.rows = [self.rows[i] for i in idx]
            if not self.rows:
                self.cache = self.mask = self.pos = self.logits = None
                self.ahead = []
                return
            sel = torch.tensor(idx, device=self.mask.device)
            start = int(self.mask[sel].any(0).nonzero()[0])  # padding no remaining row attends to
            self.cache = self.runner.select(self.cache, sel, start)
            self.mask, self.pos = self.mask[sel, start:], self.pos[sel]
        nxt = torch.tensor([[row.history[-1]] for row in self.rows], device=self.mask.device)
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], 1)
        self.pos = self.pos + 1
        if self.ahead:  # the token just fed was checked in the last speculative pass: its keys are cached
            return
        if self._speculates():
            row = self.rows[0]  # it may take max_new_tokens - len(history) more tokens: no drafts past them
            self.ahead = self.runner.speculate(row.history[-1], int(self.pos[0]), self.cache,
                                               row.settings.max_new_tokens - len(row.history))
            return
        with self._injecting(self.rows):
            logits = self.runner.step(nxt, self.mask, self.pos[:, None], self.cache)
        self.logits = logits.float().cpu()

    def _speculates(self) -> bool:
        """Speculative decoding (llm/fast.py: FastLM.speculate) serves one greedy row at a time."""
        row = self.rows[0]
        return len(self.rows) == 1 and getattr(self.runner, "speculation", 0) > 0 and not row.procs \
            and row.settings.temperature == 0

    def _settle(self) -> None:
        """Before rows join: drop the checked tokens not fed yet (their keys leave the cache; the next
        one's logits are where `sample` reads them), so the batch steps one token at a time again."""
        if self.ahead:
            self.cache.length = self.mask.shape[1]
            self.logits = self.ahead[0][1][None].float().cpu()
            self.ahead = []

    def _injecting(self, rows: list[_Row]):
        like = next((r.bind for r in rows if r.bind is not None), None)
        if self.inject is None or like is None:
            return nullcontext()
        vectors = torch.stack([torch.zeros_like(like) if r.bind is None else r.bind for r in rows])
        return self.inject(vectors, torch.tensor([r.bind is not None for r in rows], device=like.device))


def decode_tokens(batch: DecodeBatch, max_new_tokens: int, eos_ids: list[int]) -> Iterator[torch.Tensor]:
    """Yield the next token id of every row of a freshly joined batch, step by step, until all rows
    end or the budget is spent. Rows that have finished leave the batch and are reported as EOS."""
    eos = set(eos_ids or [-1])
    alive = list(range(len(batch)))
    nxt = torch.full((len(batch),), min(eos))
    for step in range(max_new_tokens):
        toks = batch.sample()
        failed = next((t for t in toks if isinstance(t, Exception)), None)
        if failed is not None:  # one caller's rows: its own settings failed, say so
            raise failed
        nxt[alive] = torch.tensor(toks)
        yield nxt.clone()
        keep = [t not in eos for t in toks]
        alive = [a for a, k in zip(alive, keep) if k]
        if not alive or step == max_new_tokens - 1:
            return
        nxt[:] = min(eos)
        batch.advance(keep)


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
