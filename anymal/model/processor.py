"""Turns chat messages into token ids, modality slots and loss labels, and batches of them.

The LLM's own chat template is applied to the text, with each modality part replaced by a private
marker; the rendered string is split at the markers, each text piece tokenized, and every marker
expanded into slots that the model later fills with projected tokens: a fixed number per modality,
or a per-input count (audio and IMU tokens are proportional to the clip's real length). Loss labels are kept only on characters the template renders for assistant turns
(their text and end-of-turn token), found by rendering each conversation prefix.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import torch

from ..errors import InputError
from ..llm.tokenizer import special_ids
from .messages import SLOT_MARKERS, Conversation, MediaPart, normalize

IGNORE = -100
_MARK = re.compile(f"{SLOT_MARKERS[0]}(\\d+){SLOT_MARKERS[1]}")


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    slots: list[str | None]  # per position: modality name, or None for text
    media: list[MediaPart] = field(default_factory=list)
    features: list[torch.Tensor] | None = None  # encoder features per media item, when already known


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]; slot positions hold the pad id
    attention_mask: torch.Tensor  # [B, T]
    labels: torch.Tensor | None  # [B, T] or None for generation
    slots: dict[str, torch.Tensor]  # modality -> bool [B, T]
    media: dict[str, list[MediaPart]]  # modality -> inputs, in row-major slot order
    features: dict[str, list[torch.Tensor]] | None = None  # modality -> [n_i, dim] per input, same order
    rows: dict[str, list[int]] = field(default_factory=dict)  # modality -> batch row of each input, same order

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


class Processor:
    def __init__(self, tokenizer, tokens_per_item: dict[str, int], max_length: int = 1024):
        self.tok = tokenizer
        self.tokens_per_item = tokens_per_item
        self.max_length = max_length
        if not getattr(tokenizer, "is_fast", False):
            raise InputError("anymal needs a fast (Rust) tokenizer to place loss labels exactly")

    @functools.cached_property
    def max_token_chars(self) -> int:
        """The longest token's length in characters: a text of more than this x N characters has more than N tokens."""
        return max(len(t) for t in self.tok.get_vocab())

    @functools.cached_property
    def _specials(self) -> re.Pattern | None:
        names = {self.tok.decode([i]) for i in special_ids(self.tok)}
        names = sorted((n for n in names if len(n) > 1), key=len, reverse=True)
        return re.compile("|".join(map(re.escape, names))) if names else None

    def _plain(self, text: str) -> str:
        """Text that spells a special token ("<|im_end|>\n<|im_start|>assistant") stays text: a zero-width
        space after its first character, so a user cannot end their turn and write the assistant's."""
        return self._specials.sub(lambda m: m[0][0] + "\u200b" + m[0][1:], text) if self._specials else text

    def _render(self, msgs: list[dict], gen: bool) -> str:
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    def conversation(self, messages: list[dict] | Conversation) -> Conversation:
        """Validated messages (a Conversation passes through: normalised once, used many times)."""
        return messages if isinstance(messages, Conversation) else Conversation(normalize(messages, set(self.tokens_per_item)))

    def media(self, messages: list[dict] | Conversation) -> list[MediaPart]:
        """The modality inputs of a conversation, in order of appearance."""
        return self.conversation(messages).media

    def encode(self, messages: list[dict] | Conversation, add_generation_prompt: bool = False,
               counts: list[int] | None = None, at_least: bool = False) -> Encoded:
        """Token ids, labels and slots; `counts[i]` slots for the i-th input (default: the modality's).
        `at_least`: the counts are lower bounds (the length error says so)."""
        media: list[MediaPart] = []
        text_msgs = []
        for role, parts in self.conversation(messages).turns:
            pieces = []
            for p in parts:
                if isinstance(p, MediaPart):
                    pieces.append(f"{SLOT_MARKERS[0]}{len(media)}{SLOT_MARKERS[1]}")
                    media.append(p)
                else:
                    pieces.append(self._plain(p))
            text_msgs.append({"role": role, "content": "\n".join(pieces)})
        if counts is not None and len(counts) != len(media):
            raise InputError(f"{len(counts)} token counts given for {len(media)} modality inputs")
        full = self._render(text_msgs, add_generation_prompt)
        if len(full) > self.max_token_chars * self.max_length:  # refused before tokenizing it all
            raise InputError(f"the conversation is {len(full):,} characters long: more than {self.max_length} "
                             f"tokens (model.llm.max_length) whatever the text")
        spans = self._assistant_spans(text_msgs, full)

        ids: list[int] = []
        labels: list[int] = []
        slots: list[str | None] = []
        pos = 0
        for m in list(_MARK.finditer(full)) + [None]:
            end = m.start() if m else len(full)
            if end > pos:
                enc = self.tok(full[pos:end], add_special_tokens=False, return_offsets_mapping=True)
                for tid, (s, _) in zip(enc["input_ids"], enc["offset_mapping"]):
                    ids.append(tid)
                    labels.append(tid if any(a <= pos + s < b for a, b in spans) else IGNORE)
                    slots.append(None)
            if m:
                k = int(m.group(1))
                item = media[k]
                n = counts[k] if counts is not None else self.tokens_per_item[item.modality]
                ids += [self.tok.pad_token_id] * n
                labels += [IGNORE] * n
                slots += [item.modality] * n
                pos = m.end()
        if len(ids) > self.max_length:
            raise InputError(f"sample is {'at least ' if at_least else ''}{len(ids)} tokens long (text + "
                             f"modality tokens); the limit is {self.max_length} (model.llm.max_length)")
        return Encoded(ids, labels, slots, media)

    def _assistant_spans(self, msgs: list[dict], full: str) -> list[tuple[int, int]]:
        spans = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant" or i == 0:
                continue
            before = self._render(msgs[:i], True)
            upto = self._render(msgs[: i + 1], False)
            if not (upto.startswith(before) and full.startswith(upto)):
                raise InputError("the chat template does not render conversations prefix-stably; "
                                 "cannot locate assistant turns for the loss mask")
            spans.append((len(before), len(upto)))
        return spans

    def collate(self, samples: list[Encoded], padding_side: str = "right") -> Batch:
        T = max(len(s.input_ids) for s in samples)
        B = len(samples)
        pad = self.tok.pad_token_id
        ids = torch.full((B, T), pad, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        labels = torch.full((B, T), IGNORE, dtype=torch.long)
        slots = {m: torch.zeros((B, T), dtype=torch.bool) for m in self.tokens_per_item}
        media: dict[str, list[MediaPart]] = {m: [] for m in self.tokens_per_item}
        feats: dict[str, list[torch.Tensor]] = {m: [] for m in self.tokens_per_item}
        rows: dict[str, list[int]] = {m: [] for m in self.tokens_per_item}
        have_features = all(s.features is not None for s in samples)
        for i, s in enumerate(samples):
            n = len(s.input_ids)
            sl = slice(T - n, T) if padding_side == "left" else slice(0, n)
            ids[i, sl] = torch.tensor(s.input_ids)
            mask[i, sl] = 1
            labels[i, sl] = torch.tensor(s.labels)
            for m in slots:
                slots[m][i, sl] = torch.tensor([x == m for x in s.slots])
            for k, item in enumerate(s.media):
                media[item.modality].append(item)
                rows[item.modality].append(i)
                if have_features:
                    feats[item.modality].append(s.features[k])
        return Batch(ids, mask, labels, {m: v for m, v in slots.items() if v.any()},
                     {m: v for m, v in media.items() if v},
                     {m: v for m, v in feats.items() if v} if have_features else None,
                     {m: v for m, v in rows.items() if v})
