"""AnyMAL: a frozen LLM + per-modality (frozen encoder, trainable projector).

Projected modality tokens are spliced into the LLM's `inputs_embeds` at the slots the processor
reserved, so a prompt can hold any number of inputs of any registered modality, anywhere.
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..config import ModelConfig, from_dict, to_dict
from ..encoders import Encoder, load_encoder
from ..errors import CheckpointError, InputError
from ..llm import LOCAL_LLM, LanguageModel, load_llm, save_llm_dir
from ..llm.lora import LORA_MARK, apply_lora, has_lora
from ..paths import DEFAULT_CHECKPOINT
from ..projectors import build_projector
from .checkpoint import check_facts, read_manifest, read_weights, write_checkpoint
from .generation import GenerationSettings, TextStream, decode_tokens
from .messages import MediaPart, from_prompt
from .processor import IGNORE, Batch, Encoded, Processor


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a possibly sharded (FSDP2 DTensor) one."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


@dataclass
class LossOutput:
    """What a labelled forward returns (a dataclass: DDP finds its tensors and passes it through)."""
    loss: torch.Tensor
    loss_sum: torch.Tensor
    num_labels: int
    logits: torch.Tensor  # only at the positions that predict a label


class AnyMAL(nn.Module):
    def __init__(self, config: ModelConfig, llm: LanguageModel, encoders: dict[str, Encoder]):
        super().__init__()
        self.config = config
        self.llm = llm
        self.encoders = nn.ModuleDict(encoders)
        self.projectors = nn.ModuleDict({
            m: build_projector(cfg, enc.dim, enc.num_tokens, llm.hidden_size, llm.embed_rms, enc.grid,
                               getattr(enc, "frames", None))
            for m, cfg in config.modalities.items() for enc in [encoders[m]]
        })
        self.processor = Processor(llm.tokenizer, {m: p.num_tokens for m, p in self.projectors.items()},
                                   config.llm.max_length)
        self.stage = "untrained"
        self.lineage: list[dict] = []

    # ---------------------------------------------------------------- building and checkpoints
    @classmethod
    def from_config(cls, config: ModelConfig, root: str | Path | None = None) -> "AnyMAL":
        """Build backbones and fresh adapters; `root` resolves a checkpoint-relative LLM id (`./llm`)."""
        llm = load_llm(config.llm.id, config.llm.dtype, root=root)
        if config.lora:
            apply_lora(llm, config.lora)
        encoders = {m: load_encoder(c.encoder, m, frames=c.frames) for m, c in config.modalities.items()}
        return cls(config, llm, encoders)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, llm: str | None = None) -> "AnyMAL":
        """Load a checkpoint directory (default: the adapters shipped inside the package).

        Everything needed is in the manifest (LoRA layers, a checkpoint's own fine-tuned LLM), so the
        path is the only argument. `llm=` swaps the language model; the manifest check then tells
        whether the adapters fit it.
        """
        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        manifest = read_manifest(path)
        config = from_dict(ModelConfig, manifest["config"], where=f"{path}/anymal_config.json config")
        if llm:
            config.llm.id = llm
        model = cls.from_config(config, root=path)
        check_facts(manifest, model.facts(), path)
        model.load_adapter_state(read_weights(path), path)
        model.stage, model.lineage = manifest["stage"], manifest.get("lineage", [])
        return model

    def init_adapters_from(self, path: str | Path, only: list[str] | None = None) -> list[str]:
        """Start the projectors of the modalities this model shares with checkpoint `path` from its weights.

        Used to add modalities to a trained model (e.g. keep the image adapter, train audio): shared
        modalities are fact-checked like a full load; the others keep their fresh initialisation.
        `only` restricts it to the named modalities (each must be in both).
        """
        manifest = read_manifest(path)
        shared = [m for m in manifest["modalities"] if m in self.projectors]
        if only is not None:
            missing = sorted(set(only) - set(shared))
            if missing:
                raise CheckpointError(f"{path}: init_modalities {missing} not shared by the checkpoint "
                                      f"and the model being built (shared: {', '.join(shared) or 'none'})")
            shared = [m for m in shared if m in only]
        check_facts({**manifest, "modalities": {m: manifest["modalities"][m] for m in shared}}, self.facts(), path)
        state = read_weights(path)
        for m in shared:
            prefix = f"projectors.{m}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                self.projectors[m].load_state_dict(sub, strict=True)
            except RuntimeError as e:
                raise CheckpointError(f"{path}: the {m} adapter does not fit the model being built: {e}") from None
        lora = {k: v for k, v in state.items() if LORA_MARK in k}
        if lora and has_lora(self.llm):  # stage chaining instruct -> instruct keeps the LoRA layers
            want = {k for k in self.state_dict() if LORA_MARK in k}
            if want != set(lora):
                raise CheckpointError(f"{path}: its LoRA layers differ from model.lora (rank or target modules)")
            self.load_state_dict(lora, strict=False)
            shared.append("llm.lora")
        self.lineage = manifest.get("lineage", [])
        return shared

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The trained part a checkpoint stores: every projector, plus the LoRA layers if any.
        (Sharded FSDP2 parameters are gathered: every rank must call this.)"""
        return {k: full_tensor(v) for k, v in self.state_dict().items() if k.startswith("projectors.") or LORA_MARK in k}

    def load_adapter_state(self, state: dict[str, torch.Tensor], path: str | Path) -> None:
        want = set(self.adapter_state())
        missing, unexpected = sorted(want - set(state)), sorted(set(state) - want)
        if missing or unexpected:
            raise CheckpointError(f"{path}: adapter weights do not fit the model built from its manifest: "
                                  f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                                  f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        try:
            self.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: adapter weights do not fit the model built from its manifest: {e}") from None

    def facts(self) -> dict:
        return {
            "llm": self.llm.facts(),
            "modalities": {
                m: {"encoder": self.encoders[m].facts(),
                    "projector": {"kind": self.config.modalities[m].projector,
                                  "num_tokens": p.num_tokens,
                                  "params": sum(x.numel() for x in p.parameters())}}
                for m, p in self.projectors.items()
            },
        }

    def save_pretrained(self, path: str | Path, stage: str | None = None, extra: dict | None = None,
                        with_llm: bool = False, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write manifest + adapter weights; `with_llm` also writes the LLM itself to `<path>/llm`
        (after full fine-tuning, or a LoRA merge) and points the manifest at it (`./llm`)."""
        stage = stage or self.stage
        config, facts = to_dict(self.config), self.facts()
        if with_llm:
            save_llm_dir(self.llm, Path(path) / LOCAL_LLM[2:])
            config["llm"]["id"] = facts["llm"]["id"] = LOCAL_LLM
        manifest = {"anymal_version": __version__, "stage": stage, "lineage": self.lineage,
                    "config": config, **facts, **(extra or {})}
        return write_checkpoint(path, manifest, self.adapter_state() if state is None else state)

    # ---------------------------------------------------------------- forward
    @property
    def device(self) -> torch.device:
        return self.llm.model.get_input_embeddings().weight.device

    def encode_media(self, items: list[MediaPart]) -> list[torch.Tensor]:
        """Frozen-encoder features of each input ([n_i, dim], trimmed to real signal), one batch per modality."""
        out: list[torch.Tensor | None] = [None] * len(items)
        for m in dict.fromkeys(it.modality for it in items):
            idx = [i for i, it in enumerate(items) if it.modality == m]
            for i, f in zip(idx, self.encoders[m].encode([items[i].source for i in idx])):
                out[i] = f
        return out  # type: ignore[return-value]

    def token_counts(self, media: list[MediaPart], features: list[torch.Tensor]) -> list[int]:
        return [self.projectors[p.modality].tokens_for(f.shape[0]) for p, f in zip(media, features)]

    def encode_conversation(self, messages: list[dict], add_generation_prompt: bool = False,
                            features: list[torch.Tensor] | None = None) -> Encoded:
        """Tokenize a conversation, encoding its media first (their lengths set the slot counts)."""
        media = self.processor.media(messages)
        feats = features if features is not None else self.encode_media(media)
        enc = self.processor.encode(messages, add_generation_prompt, self.token_counts(media, feats))
        enc.features = feats
        return enc

    def project(self, modality: str, features: list[torch.Tensor]) -> torch.Tensor:
        """Projected tokens of every input, concatenated in order: [sum of counts, hidden]."""
        proj = self.projectors[modality]
        out: list[torch.Tensor | None] = [None] * len(features)
        for n in dict.fromkeys(f.shape[0] for f in features):  # equal lengths share one batched call
            idx = [i for i, f in enumerate(features) if f.shape[0] == n]
            tokens = proj(torch.stack([features[i] for i in idx]).to(self.device).float())
            for i, t in zip(idx, tokens):
                out[i] = t
        return torch.cat(out)  # type: ignore[arg-type]

    def embed(self, batch: Batch) -> torch.Tensor:
        """Token embeddings with every modality slot replaced by its projected tokens."""
        embeds = self.llm.embed(batch.input_ids.to(self.device))
        for m, slot in batch.slots.items():
            feats = batch.features[m] if batch.features else self.encode_media(batch.media[m])
            tokens = self.project(m, feats).to(embeds.dtype)
            if tokens.shape[0] != int(slot.sum()):
                raise InputError(f"{m}: {tokens.shape[0]} projected tokens for {int(slot.sum())} slots; "
                                 "were the token counts computed with another model?")
            embeds = embeds.masked_scatter(slot.to(self.device).unsqueeze(-1), tokens)
        return embeds

    def forward(self, batch: Batch):
        """LLM outputs; with labels, `.loss` is the mean next-token loss on labelled (assistant) tokens,
        `.loss_sum` its sum and `.num_labels` their count (the trainer weights batches by tokens).

        Logits are computed only at positions that predict a label: the 49k-way LM head over every
        prompt and modality position would be wasted work.
        """
        embeds = self.embed(batch)
        mask = batch.attention_mask.to(self.device)
        if batch.labels is None:
            return self.llm.model(inputs_embeds=embeds, attention_mask=mask)
        targets = batch.labels[:, 1:].to(self.device)
        keep = (targets != IGNORE).any(0).nonzero().squeeze(1)
        out = self.llm.model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep)
        loss_sum = F.cross_entropy(out.logits.float().flatten(0, 1), targets[:, keep].flatten(),
                                   ignore_index=IGNORE, reduction="sum")
        n = int((targets != IGNORE).sum())
        return LossOutput(loss_sum / max(n, 1), loss_sum, n, out.logits)

    # ---------------------------------------------------------------- generation
    def conversation_features(self, conversations: list[list[dict]]) -> list[list[torch.Tensor]]:
        """Encoder features of every input, per conversation: one batched call per modality for all."""
        media = [self.processor.media(c) for c in conversations]
        flat = self.encode_media([p for ms in media for p in ms])
        out = []
        for ms in media:
            out.append(flat[:len(ms)])
            flat = flat[len(ms):]
        return out

    def prepare(self, conversations: list[list[dict]], features: list[list[torch.Tensor]] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, int]]]:
        """Left-padded input embeddings and mask for generation, and each row's token counts
        ({"text": n, <modality>: n}). `features` (per conversation, per input) skips the encoders."""
        if features is None:
            features = self.conversation_features(conversations)
        encoded = [self.encode_conversation(c, True, f) for c, f in zip(conversations, features)]
        counts = [dict(Counter("text" if s is None else s for s in e.slots)) for e in encoded]
        batch = self.processor.collate(encoded, padding_side="left")
        with torch.no_grad():
            return self.embed(batch), batch.attention_mask.to(self.device), counts

    def generate(self, conversations: list[list[dict]], settings: GenerationSettings | None = None) -> list[str]:
        """Batched generation (left padding); greedy output equals one-by-one generation."""
        s = settings or GenerationSettings()
        embeds, mask, _ = self.prepare(conversations)
        eos = self.llm.eos_token_ids
        streams = [TextStream(self.llm.tokenizer, s.stop + self.llm.default_stop, eos) for _ in conversations]
        for step in decode_tokens(self.llm.model, embeds, mask, s, eos):
            for st, t in zip(streams, step.tolist()):
                st.push(t)
            if all(st.finished for st in streams):
                break
        for st in streams:
            st.close()
        return [st.text for st in streams]

    def stream(self, messages: list[dict], settings: GenerationSettings | None = None) -> Iterator[str]:
        s = settings or GenerationSettings()
        embeds, mask, _ = self.prepare([messages])
        eos = self.llm.eos_token_ids
        st = TextStream(self.llm.tokenizer, s.stop + self.llm.default_stop, eos)
        for step in decode_tokens(self.llm.model, embeds, mask, s, eos):
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

        Keyword inputs are modality names (`image=`), each a path/array or a list of them; they are
        placed before the text. Generation options (`max_new_tokens=`, `temperature=`, ...) may be
        given as keywords too.
        """
        s = copy.deepcopy(settings) if settings else GenerationSettings()
        for k in list(inputs):
            if hasattr(s, k):
                setattr(s, k, inputs.pop(k))
        if isinstance(prompt, list):
            if inputs:
                raise TypeError("pass modality inputs inside the messages when giving full messages")
            messages = prompt
        else:
            media = []
            for modality, value in inputs.items():
                if modality not in self.projectors:
                    raise TypeError(f"unknown input {modality!r}; this model takes: {', '.join(self.projectors)}")
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    media.append(MediaPart(modality, v))
            messages = from_prompt(prompt or "", media)
        if stream:
            return self.stream(messages, s)
        return self.generate([messages], s)[0]
