"""The inference side of AnyMAL: conversations in, text out (batched, streamed, or through `chat`).

A mixin so that the model class keeps construction, checkpoints and the training forward, and this
module everything from encoding a conversation's inputs to decoding its answer.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..errors import InputError
from ..llm.kv import TransformersRunner
from ..modalities import MODALITIES
from .generation import DecodeBatch, GenerationSettings, TextStream, decode_tokens
from .messages import Conversation, MediaPart, from_prompt, is_rate_pair
from .settings import with_options


@dataclass
class Prompt:
    """A batch ready to decode: left-padded embeddings, mask, each row's token counts
    ({"text": n, <modality>: n}) and the rows' bind-space vectors (None without bind inputs)."""
    embeds: torch.Tensor
    mask: torch.Tensor
    counts: list[dict[str, int]]
    bind: tuple[torch.Tensor, torch.Tensor] | None = None


class Inference:
    """Needs from the model: processor, llm, projectors, bind_modalities, encode_media,
    encode_conversation, embed, bind_vectors, injecting, device."""

    def least_tokens(self, modality: str) -> int:
        """The fewest LLM tokens one input of `modality` can take, known before it is encoded."""
        varies = self.encoders[modality].varies or getattr(self.projectors[modality], "reads_content", False)
        return 1 if varies else self.processor.tokens_per_item[modality]

    def check_fits(self, conversation: Conversation) -> None:
        """Refuse a conversation that cannot fit the LLM's context (text tokens + each input's fewest
        tokens) before any of its inputs is decoded."""
        counts = [self.least_tokens(p.modality) for p in conversation.media]
        self.processor.encode(conversation, True, counts, at_least=True)

    def conversations(self, conversations: list[list[dict] | Conversation]) -> list[Conversation]:
        """Each conversation validated (once) and checked to fit."""
        out = self._validated(conversations)
        for c in out:
            self.check_fits(c)
        return out

    def _validated(self, conversations: list[list[dict] | Conversation]) -> list[Conversation]:
        if not isinstance(conversations, list) or not conversations:
            raise InputError("expected a non-empty list of conversations (each a list of messages)")
        return [self.processor.conversation(c) for c in conversations]

    def conversation_features(self, conversations: list[list[dict] | Conversation]) -> list[list[torch.Tensor]]:
        """Encoder features of every input, per conversation: one batched call per modality for all."""
        return self.features_of(self.conversations(conversations))

    def features_of(self, conversations: list[Conversation]) -> list[list[torch.Tensor]]:
        """`conversation_features` of conversations already checked by `conversations`."""
        media = [c.media for c in conversations]
        flat = self.encode_media([p for ms in media for p in ms])
        out = []
        for ms in media:
            out.append(flat[:len(ms)])
            flat = flat[len(ms):]
        return out

    def prepare(self, conversations: list[list[dict] | Conversation], features: list[list[torch.Tensor]] | None = None) -> Prompt:
        """Left-padded inputs for generation. `features` (per conversation, per input, from
        `conversation_features`/`features_of`, which checked the conversations) skips the encoders."""
        if features is None:
            conversations = self.conversations(conversations)
            features = self.features_of(conversations)
        else:
            conversations = self._validated(conversations)
        encoded = [self.encode_conversation(c, True, f) for c, f in zip(conversations, features)]
        counts = [dict(Counter("text" if s is None else s for s in e.slots)) for e in encoded]
        for e, c in zip(encoded, counts):  # bind inputs take no slots: count them as inputs
            for m in self.bind_modalities:
                if any(p.modality == m for p in e.media):
                    c[m] = 0
        batch = self.processor.collate(encoded, padding_side="left")
        with torch.no_grad():
            return Prompt(self.embed(batch), batch.attention_mask.to(self.device), counts, self.bind_vectors(batch))

    def text_stream(self, stop: list[str]) -> TextStream:
        """One answer's text as tokens arrive: the caller's stop strings plus the LLM's own, its EOS ids."""
        return TextStream(self.llm.tokenizer, stop + self.llm.default_stop, self.llm.eos_token_ids)

    def decoder(self) -> DecodeBatch:
        """An empty running batch over this model's LLM (with the bind injection, if any: that hooks
        transformers' layers, so it decodes through them)."""
        if self.bind_modalities:
            return DecodeBatch(TransformersRunner(self.llm.hf()), lambda vectors, present: self.injecting((vectors, present)))
        return DecodeBatch(self.llm.runner())

    def decode(self, prompt: Prompt, settings: GenerationSettings) -> Iterator[torch.Tensor]:
        """Every row's next token, step by step (see decode_tokens), with the same settings for all."""
        batch = self.decoder()
        batch.join(prompt.embeds, prompt.mask, [settings] * len(prompt.counts), prompt.bind)
        yield from decode_tokens(batch, settings.max_new_tokens, self.llm.eos_token_ids)

    def generate(self, conversations: list[list[dict]], settings: GenerationSettings | None = None,
                 **options: Any) -> list[str]:
        """Batched generation (left padding); greedy output equals one-by-one generation. `options`:
        generation settings by keyword, in anymal's or transformers' names (`max_new_tokens=`, `do_sample=`)."""
        s = with_options(settings, options) if options else settings or GenerationSettings()
        prompt = self.prepare(conversations)
        streams = [self.text_stream(s.stop) for _ in conversations]
        for step in self.decode(prompt, s):
            for st, t in zip(streams, step.tolist()):
                st.push(t)
            if all(st.finished for st in streams):
                break
        for st in streams:
            st.close()
        return [st.text for st in streams]

    def stream(self, messages: list[dict], settings: GenerationSettings | None = None) -> Iterator[str]:
        s = settings or GenerationSettings()
        prompt = self.prepare([messages])
        st = self.text_stream(s.stop)
        for step in self.decode(prompt, s):
            piece = st.push(int(step[0]))
            if piece:
                yield piece
            if st.finished:
                return
        tail = st.close()
        if tail:
            yield tail

    def chat(self, prompt: str | list[dict] | None = None, *, stream: bool = False,
             settings: GenerationSettings | None = None, **inputs: Any) -> str | Iterator[str]:
        """`model.chat("What is this?", image="duck.png")` or `model.chat(messages)`.

        Keyword inputs are modality names (`image=`), each a path/array, an `(input, rate_hz)` pair
        (`imu=("walk.npy", 50.0)`, `audio=(wave, 16000)`) or a list of them; they are placed before
        the text. Generation options (`max_new_tokens=`, `temperature=`, and transformers' names such
        as `do_sample=`, `top_k=`) may be given as keywords too.
        """
        s = with_options(settings, {k: inputs.pop(k) for k in list(inputs) if k not in MODALITIES})
        if isinstance(prompt, list):
            if inputs:
                raise TypeError("pass modality inputs inside the messages when giving full messages")
            messages = prompt
        else:
            media = []
            for modality, value in inputs.items():
                if modality not in self.projectors:
                    raise TypeError(f"unknown input {modality!r}; this model takes: {', '.join(self.projectors)}")
                many = isinstance(value, list) or (isinstance(value, tuple) and not is_rate_pair(value))
                for v in value if many else [value]:
                    media.append(MediaPart(modality, v))
            messages = from_prompt(prompt or "", media)
        if stream:
            return self.stream(messages, s)
        return self.generate([messages], s)[0]
