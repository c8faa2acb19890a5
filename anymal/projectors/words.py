"""Perception as words: rows that name things become the LLM's own embeddings of those names.

A frozen LLM already knows what " giraffe" means; an adapter that must invent a vector for it from
patch features (and ~1,000 training pictures) mostly does not find it. So each perception entry
(label, confidence, count, box) becomes `NAME_TOKENS` tokens that *are* the frozen embeddings of the
label's name (scaled by a learned gate on the confidence and box, plus a learned shift from the
geometry, both zero-initialised: at first the name is said exactly as the LLM says it), followed by
one learned token saying how sure, how many, where and how big, and whether the question names it. An
empty entry (nothing detected) gives zero name tokens and the learned token of "nothing".

"Whether the question names it" (`WordsProjector.asked`): how close the label's words come to a word of
the turn the input is attached to (model/questions.py), in the LLM's own embedding space, and whether the
turn names the label's kind, a broader or a narrower one (WordNet, anymal/kinship.py: "Is there a dog?"
and an entry "beagle"). Asked "Is there a dog?", an entry "cat" and an entry "dog" differ there, so the
adapter can say so in the entry's token rather than leave a 135M frozen LLM to compare two embeddings far
apart in its prompt (issue 31).

`PerceivingProjector` puts it together for a `ComposedEncoder`: the main part's patch features go
through the modality's own projector kind, each perception part through a `WordsProjector`; video
frames keep their order (frame by frame: patches, then words).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..kinship import RELATIONS, Kin, relate
from .base import Projector

NAME_TOKENS = 3  # tokens kept of each label's name (longer names are cut: "German shepherd" fits)
GEOMETRY = 7  # score, count, x1, y1, x2, y2, area (the row minus its label index)
# how near the question's words come to the label's (its nearest token, its whole name), and whether the
# question names the label's kind the same, broader or narrower (kinship.RELATIONS)
MATCH = 2 + len(RELATIONS)


class Asked(NamedTuple):
    """The words each of N inputs is asked (model/questions.py); None where no question is known."""

    words: torch.Tensor  # [N, T, hidden] the LLM's embeddings of the turn's tokens
    present: torch.Tensor  # [N, T] which of them are words of the turn (0/1)
    said: tuple[frozenset[str], ...] = ()  # each turn's stemmed phrases (kinship.phrases); () if unknown

    def take(self, idx: list[int]) -> "Asked":
        return Asked(self.words[idx], self.present[idx], tuple(self.said[i] for i in idx) if self.said else ())

    def per_frame(self, frames: int) -> "Asked":
        """Every frame of a clip is asked what the clip is."""
        return Asked(self.words.repeat_interleave(frames, 0), self.present.repeat_interleave(frames, 0),
                     tuple(s for s in self.said for _ in range(frames)))

# (texts, k) -> (first k token embeddings [N, k, hidden], mask [N, k]) of " text" from the frozen LLM
WordEmbedder = Callable[[list[str], int], tuple[torch.Tensor, torch.Tensor]]


def geometry(rows: torch.Tensor) -> torch.Tensor:
    """[..., 8] rows -> [..., 7] features; the count is squashed (1 -> 0.5, 3 -> 0.75, 9 -> 0.9)."""
    count = rows[..., 2:3]
    return torch.cat([rows[..., 1:2], count / (count + 1.0), rows[..., 3:8]], dim=-1)


class WordsProjector(nn.Module):
    # keys a checkpoint may lack because their initial value changes nothing: checkpoints from before the
    # confidence gate load as they were trained (a zero gate says every name as loudly as given)
    optional_keys = ("gate.weight", "gate.bias", "ask.0.weight", "ask.0.bias", "ask.2.weight", "ask.2.bias")

    def __init__(self, labels: list[str], entries: int, out_dim: int, embed_rms: float, embed_words: WordEmbedder,
                 kin: tuple[Kin | None, ...] | None = None):
        """`kin`: each label's kinds (kinship.kin_of), where the perception part knows them."""
        super().__init__()
        self.entries, self.tokens_per_entry, self.kin = entries, NAME_TOKENS + 1, kin
        self.num_tokens = entries * self.tokens_per_entry
        names, mask = embed_words(labels, NAME_TOKENS)
        # index 0 = "nothing": zero name tokens; buffers are rebuilt from the LLM, never saved
        self.register_buffer("names", torch.cat([names.new_zeros(1, *names.shape[1:]), names]).float(), persistent=False)
        self.register_buffer("mask", torch.cat([mask.new_zeros(1, mask.shape[1]), mask]).float(), persistent=False)
        self.shift = nn.Linear(GEOMETRY, out_dim)
        nn.init.zeros_(self.shift.weight)
        nn.init.zeros_(self.shift.bias)
        # how loudly a name is said, from its confidence and box: 1 + tanh(.), zero-initialised (= 1), so an
        # unsure label can be damped toward "nothing" rather than heard as loudly as a sure one
        self.gate = nn.Linear(GEOMETRY, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.info = nn.Sequential(nn.Linear(GEOMETRY, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        self.info_norm = nn.LayerNorm(out_dim)
        with torch.no_grad():
            self.info_norm.weight.fill_(embed_rms)
        # what the info token adds when the question names the entry (and how sure/where it is): its last
        # layer zero-initialised, so checkpoints trained before it say exactly what they said
        self.ask = nn.Sequential(nn.Linear(GEOMETRY + MATCH, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        nn.init.zeros_(self.ask[2].weight)
        nn.init.zeros_(self.ask[2].bias)

    def forward(self, rows: torch.Tensor, asked: Asked | None = None) -> torch.Tensor:
        """[B, entries, 8] -> [B, entries * (NAME_TOKENS + 1), out_dim]."""
        idx = rows[..., 0].round().long().clamp(0, self.names.shape[0] - 1)
        g = geometry(rows)
        mask = self.mask[idx].unsqueeze(-1)  # [B, E, K, 1]
        loud = 1.0 + torch.tanh(self.gate(g)).unsqueeze(2)  # [B, E, 1, 1]
        name = (self.names[idx] * loud + self.shift(g).unsqueeze(2)) * mask
        info = self.info_norm(self.info(g)) + self.ask(torch.cat([g, self.asked(idx, asked)], dim=-1))
        b = rows.shape[0]
        return torch.cat([name, info.unsqueeze(2)], dim=2).reshape(b, self.num_tokens, -1)

    def asked(self, idx: torch.Tensor, asked: Asked | None) -> torch.Tensor:
        """[B, E] label indices -> [B, E, MATCH]: the best cosine between a question word and one of the
        label's tokens, and between a question word and the label's mean token; whether the question
        names its kind, a broader or a narrower one (0 for no question/entry)."""
        if asked is None:
            return self.names.new_zeros(*idx.shape, MATCH)
        words, present = asked.words.to(self.names.dtype), asked.present.to(self.names.dtype)  # [B, T, H], [B, T]
        words = F.normalize(words, dim=-1)
        names, mask = self.names[idx], self.mask[idx]  # [B, E, K, H], [B, E, K]
        whole = F.normalize((names * mask.unsqueeze(-1)).sum(2), dim=-1)  # [B, E, H]
        by_token = torch.einsum("bekh,bth->bekt", F.normalize(names, dim=-1), words)
        valid = mask.unsqueeze(-1) * present[:, None, None, :]
        by_token = by_token.masked_fill(valid == 0, -1.0).flatten(2).amax(-1)
        by_name = torch.einsum("beh,bth->bet", whole, words).masked_fill(present[:, None, :] == 0, -1.0).amax(-1)
        found = (idx > 0).to(self.names.dtype).unsqueeze(-1)
        near = torch.stack([by_token, by_name], dim=-1).clamp(min=0.0) * found
        return torch.cat([near, self.kinds_named(idx, asked.said).to(near)], dim=-1)

    def kinds_named(self, idx: torch.Tensor, said: tuple[frozenset[str], ...]) -> torch.Tensor:
        """[B, E] label indices -> [B, E, len(RELATIONS)]: 1 where the question names the label's kind so."""
        if not said or self.kin is None:
            return torch.zeros(*idx.shape, len(RELATIONS))
        return torch.tensor([[relate(self.kin[i - 1] if i > 0 else None, phrases) for i in row]
                             for row, phrases in zip(idx.tolist(), said)])


class TextProjector(nn.Module):
    """A perception model that *writes text* (a speech recogniser's transcript): rows are its token ids
    into `labels` (each token's text); the text they spell becomes the LLM's own embeddings of it, up to
    `entries` tokens, plus one learned shift (zero-initialised: at first the LLM reads the text itself)."""

    optional_keys: tuple[str, ...] = ()

    def __init__(self, labels: list[str], entries: int, out_dim: int, embed_words: WordEmbedder):
        super().__init__()
        self.labels, self.num_tokens, self.embed_words = labels, entries, embed_words
        self.shift = nn.Parameter(torch.zeros(out_dim))

    def texts(self, rows: torch.Tensor) -> list[str]:
        ids = rows[..., 0].round().long().tolist()
        return ["".join(self.labels[i - 1] for i in row if 0 < i <= len(self.labels)).strip() for row in ids]

    def forward(self, rows: torch.Tensor, asked: Asked | None = None) -> torch.Tensor:
        """[B, entries, 8] -> [B, entries, out_dim]; the rows past the text's own tokens are zero (and
        `PerceivingProjector.token_mask` leaves them out of the LLM's input). `asked` is not read: a
        transcript is what was said, not a name to compare with the question."""
        emb, mask = self.embed_words(self.texts(rows), self.num_tokens)
        mask = mask.to(rows.device, self.shift.dtype).unsqueeze(-1)
        return (emb.to(rows.device, self.shift.dtype) + self.shift) * mask

    def lengths(self, rows: torch.Tensor) -> list[int]:
        """[B, entries, 8] -> how many LLM tokens each text takes (at most `entries`)."""
        return self.embed_words(self.texts(rows), self.num_tokens)[1].sum(-1).long().tolist()


class PerceivingProjector(nn.Module):
    """Patch projector for the main encoder + a words projector per perception encoder.

    `main=None` (a modality's `num_tokens: 0`) hands the LLM the perception tokens only: the patch part
    is still encoded (the feature layout stays one tensor) but never read, the ablation of what the
    words alone carry."""

    reads_question = True  # `forward` takes the words each input is asked

    def __init__(self, main: Projector | None, parts: list[tuple[int, list[str] | None, int]], out_dim: int,
                 embed_rms: float, embed_words: WordEmbedder, frames: int | None, patch_dropout: float = 0.0):
        """`parts`: per encoder part (tokens per frame, labels or None for the main part, feature width, kind,
        the labels' kinship or None)."""
        super().__init__()
        self.main, self.frames, self.patch_dropout = main, frames or 1, patch_dropout
        self.part_tokens = [p[0] for p in parts]
        self.part_dims = [p[2] for p in parts]
        self.words = nn.ModuleList([TextProjector(labels, n, out_dim, embed_words) if kind == "text"
                                    else WordsProjector(labels, n, out_dim, embed_rms, embed_words, kin)
                                    for n, labels, _, kind, kin in parts[1:]])
        self.in_tokens = self.frames * sum(self.part_tokens)
        self.optional_keys = tuple(f"words.{i}.{k}" for i, w in enumerate(self.words) for k in w.optional_keys)
        self.num_tokens = (main.num_tokens if main else 0) + self.frames * sum(w.num_tokens for w in self.words)

    @property
    def reads_content(self) -> bool:
        """True when an input's token count depends on what it holds, not only its length: a transcript
        takes as many tokens as its text (`count`, `token_mask`), so a short clip is not padded."""
        return any(isinstance(w, TextProjector) for w in self.words)

    def token_mask(self, feats: torch.Tensor) -> torch.Tensor:
        """[n_in, dim] one input's features -> which of `forward`'s tokens the LLM gets (a text part's
        tokens past its own length are dropped; every other token is kept)."""
        sizes = [feats.shape[0] - sum(self.part_tokens[1:]), *self.part_tokens[1:]]
        chunks = feats.split(sizes)
        keep = [torch.ones(self.tokens_for(feats.shape[0]) - sum(w.num_tokens for w in self.words), dtype=torch.bool)]
        for words, rows, dim in zip(self.words, chunks[1:], self.part_dims[1:]):
            keep.append(torch.arange(words.num_tokens) < words.lengths(rows[None, :, :dim])[0]
                        if isinstance(words, TextProjector) else torch.ones(words.num_tokens, dtype=torch.bool))
        return torch.cat(keep)

    def count(self, feats: torch.Tensor) -> int:
        """LLM tokens for one input's features [n_in, dim]."""
        return int(self.token_mask(feats).sum()) if self.reads_content else self.tokens_for(feats.shape[0])

    def tokens_for(self, n_in: int) -> int:
        """Fixed for pictures and frames; a main part of varying length (audio) keeps its own proportion."""
        if self.frames == 1 and n_in != self.in_tokens:
            percepts = sum(self.part_tokens[1:])
            if not percepts < n_in <= self.in_tokens:
                raise ValueError(f"perceiving projector built for at most {self.in_tokens} input tokens, got {n_in}")
            main = self.main.tokens_for(n_in - percepts) if self.main is not None else 0
            return main + sum(w.num_tokens for w in self.words)
        if n_in != self.in_tokens:
            raise ValueError(f"perceiving projector built for {self.in_tokens} input tokens, got {n_in}")
        return self.num_tokens

    def forward(self, x: torch.Tensor, asked: Asked | None = None) -> torch.Tensor:
        """`asked`: the words each input is asked (model/questions.py); every frame of a video is asked them."""
        b, f = x.shape[0], self.frames
        if asked is not None and f > 1:
            asked = asked.per_frame(f)
        sizes = [x.shape[1] // f - sum(self.part_tokens[1:]), *self.part_tokens[1:]]  # the main part may be shorter
        per_frame = x.reshape(b, f, sum(sizes), x.shape[-1])
        chunks = per_frame.split(sizes, dim=2)
        out = []
        if self.main is not None:
            main_in = chunks[0][..., : self.part_dims[0]].reshape(b, f * sizes[0], self.part_dims[0])
            out.append(self.silenced(self.main(main_in).reshape(b, f, -1, self.main.out_dim)))
        for words, rows, dim in zip(self.words, chunks[1:], self.part_dims[1:]):
            out.append(words(rows[..., :dim].reshape(b * f, -1, dim), asked).reshape(b, f, words.num_tokens, -1))
        return torch.cat(out, dim=2).reshape(b, -1, out[0].shape[-1])

    def silenced(self, patches: torch.Tensor) -> torch.Tensor:
        """Training only: zero every patch token of a `patch_dropout` share of the pictures [B, ...]."""
        if not (self.training and self.patch_dropout):
            return patches
        keep = torch.rand(patches.shape[0], device=patches.device) >= self.patch_dropout
        return patches * keep.to(patches.dtype).view(-1, *[1] * (patches.dim() - 1))


def build_perceiving(cfg, enc, out_dim: int, embed_rms: float, embed_words: WordEmbedder) -> PerceivingProjector:
    """The projector for a composed encoder `enc` (or frames of one: a video encoder's `inner`)."""
    from .base import build_projector

    image, frames = getattr(enc, "inner", enc), getattr(enc, "frames", None)
    main = image.parts[0]
    inner = None if cfg.num_tokens == 0 else build_projector(cfg, main.dim, (frames or 1) * main.num_tokens,
                                                             out_dim, embed_rms, main.grid, frames)
    parts = [(p.num_tokens, getattr(p, "labels", None), p.dim, getattr(p, "kind", None), getattr(p, "kin", None))
             for p in image.parts]
    return PerceivingProjector(inner, parts, out_dim, embed_rms, embed_words, frames, cfg.patch_dropout)
