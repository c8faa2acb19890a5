"""AnyMAL: a frozen LLM + per-modality (frozen encoder, trainable projector).

Projected modality tokens are spliced into the LLM's `inputs_embeds` at the slots the processor
reserved, so a prompt can hold any number of inputs of any registered modality, anywhere.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, from_dict
from ..encoders import Encoder, load_encoder
from ..devices import check_decoder, check_dtype, resolve_device
from ..errors import InputError
from ..llm import LanguageModel, load_llm
from ..llm.kv import cache_kwargs
from ..llm.lora import apply_lora
from ..llm.tokenizer import special_ids
from ..modalities import IMAGE, MODALITIES
from ..paths import DEFAULT_CHECKPOINT
from .hub import resolve_checkpoint
from ..projectors import build_perceiving, build_projector
from ..projectors.words import Asked
from ..quiet import quiet_loading
from ..registry import PROJECTORS
from .bind_objective import bind_contrastive, caption_vectors, row_texts
from .checkpoint import check_facts, read_manifest, read_weights
from .adapters import AdapterWeights
from .inference import Inference
from .lazy import LazyModules, Pending
from .injection import BindInjector
from .messages import Conversation, MediaPart
from .processor import IGNORE, Batch, Encoded, Processor
from .questions import turn_words
from .visual_cache import VisualCache

if TYPE_CHECKING:
    from .prefix import SharedPrefix


@dataclass
class LossOutput:
    """What a labelled forward returns (a dataclass: DDP finds its tensors and passes it through)."""
    loss: torch.Tensor
    loss_sum: torch.Tensor
    num_labels: int
    logits: torch.Tensor  # (labels, vocab): only at the positions that predict a label, row by row


def _encoder(config: ModelConfig, m: str, shared: dict) -> Encoder:
    c = config.modalities[m]
    return load_encoder(c.encoder or MODALITIES[m].encoder, m, frames=c.frames, sides=c.sides,
                        perception=c.perception, shared=shared)


class AnyMAL(Inference, AdapterWeights, nn.Module):
    def __init__(self, config: ModelConfig, llm: LanguageModel, encoders: dict[str, Encoder | Pending],
                 tokens: dict[str, int] | None = None, shared: dict | None = None):
        """`encoders` may hold `Pending` modalities (built on first use, model/lazy.py), whose
        projectors' token counts `tokens` gives; `shared` holds the perception encoders the built
        ones already use (one set for every modality that reads pictures)."""
        super().__init__()
        self.config = config
        self.llm = llm
        self.encoders = LazyModules(encoders, self._build_modality)
        self.projectors = LazyModules({m: Pending() if isinstance(encoders[m], Pending) else self._projector(cfg, encoders[m], llm)
                                       for m, cfg in config.modalities.items()}, self._build_modality)
        self._shared = {} if shared is None else shared
        self._checkpoint: tuple[dict, dict, str | Path] | None = None  # (manifest, weights, path) still to apply
        # a turn's words lie between these (model/questions.py)
        self.special_ids = torch.tensor(special_ids(llm.tokenizer), dtype=torch.long)
        self.processor = Processor(llm.tokenizer, {m: (tokens or {}).get(m) or self.projectors._modules[m].num_tokens
                                                   for m in self.projectors}, config.llm.max_length)
        # ImageBind-LLM: modalities with `projector: bind` feed one shared bind network + gates
        self.bind_modalities = [m for m, c in config.modalities.items() if getattr(PROJECTORS.get(c.projector), "injects", False)]
        bc = config.bind
        self.bind = BindInjector(llm.hidden_size, llm.num_layers, bc.blocks, bc.width) if self.bind_modalities else None
        self.visual_cache: VisualCache | None = None
        self.bind_text_noise: float | None = None  # text-only bind training (TrainConfig.bind_text_noise)
        self.stage = "untrained"
        self.lineage: list[dict] = []

    # ---------------------------------------------------------------- building and checkpoints
    @staticmethod
    def _projector(cfg, enc: Encoder, llm: LanguageModel) -> nn.Module:
        if hasattr(getattr(enc, "inner", enc), "parts"):  # perception encoders beside the main one
            return build_perceiving(cfg, enc, llm.hidden_size, llm.embed_rms, llm.embed_names)
        return build_projector(cfg, enc.dim, enc.num_tokens, llm.hidden_size, llm.embed_rms, enc.grid,
                               getattr(enc, "frames", None))

    @classmethod
    def from_config(cls, config: ModelConfig, root: str | Path | None = None, tokens: dict[str, int] | None = None) -> "AnyMAL":
        """Build backbones and fresh adapters; `root` resolves a checkpoint-relative LLM id (`./llm`).
        With `tokens` (each modality's projector token count) the modalities are built on first use."""
        shared: dict = {}
        with quiet_loading(transformers=not tokens):
            llm = load_llm(config.llm.id, config.llm.dtype, root=root, lite=bool(tokens))
            if config.lora:
                apply_lora(llm, config.lora)
            encoders = {m: Pending() if tokens else _encoder(config, m, shared) for m in config.modalities}
        return cls(config, llm, encoders, tokens, shared)

    def _build_modality(self, m: str) -> None:
        """Build modality `m`'s encoder and projector where the model lives; from a checkpoint, check
        them against its manifest and load their weights."""
        with quiet_loading(transformers=False):  # an encoder that loads through transformers quiets it itself
            enc = _encoder(self.config, m, self._shared)
        proj = self._projector(self.config.modalities[m], enc, self.llm)
        self.encoders.put(m, enc.to(self.device).train(self.training))
        self.projectors.put(m, proj.to(self.device).train(self.training))
        if self._checkpoint is not None:
            manifest, state, path = self._checkpoint
            check_facts(manifest, self.facts([m]), path, only=[m])
            self._load_state({k: v for k, v in state.items() if k.startswith(f"projectors.{m}.")}, path, f"projectors.{m}.")

    def build_all(self) -> None:
        """Build every modality not built yet (see model/lazy.py)."""
        for m in self.encoders.pending():
            self._build_modality(m)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, llm: str | None = None, device: str | None = "cpu",
                        dtype: str | None = None, revision: str | None = None, decoder: str = "auto",
                        lazy: bool = False) -> "AnyMAL":
        """Load a checkpoint directory or Hugging Face Hub id (`org/name`, at `revision`; through the HF
        cache, see model/hub.py); default: the adapters shipped inside the package.

        Everything needed is in the manifest (LoRA layers, a checkpoint's own fine-tuned LLM), so the
        path is the only argument. `llm=` swaps the language model; the manifest check then tells
        whether the adapters fit it. `device` ("auto": CUDA when present) is where the whole model runs;
        `dtype` the frozen LLM's weights (default: the checkpoint's own); `decoder` how answers are
        decoded (anymal/llm/fast.py: "auto", "fast", "fast-q4", "transformers"). `lazy` builds each
        modality on first use (model/lazy.py): a text-only session never loads the encoders, and a
        modality's manifest check happens when it is built rather than here.
        """
        path = resolve_checkpoint(path, revision) if path is not None else DEFAULT_CHECKPOINT
        device = resolve_device(device)
        manifest = read_manifest(path)
        config = from_dict(ModelConfig, manifest["config"], where=f"{path}/anymal_config.json config")
        if llm:
            config.llm.id = llm
        config.llm.dtype = check_dtype(dtype) or config.llm.dtype
        tokens = {m: rec["projector"]["num_tokens"] for m, rec in manifest["modalities"].items()} if lazy else None
        model = cls.from_config(config, root=path, tokens=tokens).to(device)
        only = [] if lazy else None  # lazy: the LLM now, each modality when it is built
        check_facts(manifest, model.facts(only), path, only=only)
        model.load_adapter_state(read_weights(path), path)
        model.stage, model.lineage = manifest["stage"], manifest.get("lineage", [])
        model.llm.decoder = check_decoder(decoder)
        if model.bind is not None:
            model.visual_cache = VisualCache.load(path)
        return model.eval()  # for answering: no dropout (a LoRA layer's would be on in train mode)

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
        return [self.projectors[p.modality].count(f) for p, f in zip(media, features)]

    def encode_conversation(self, messages: list[dict] | Conversation, add_generation_prompt: bool = False,
                            features: list[torch.Tensor] | None = None) -> Encoded:
        """Tokenize a conversation, encoding its media first (their lengths set the slot counts)."""
        messages = self.processor.conversation(messages)
        media = messages.media
        feats = features if features is not None else self.encode_media(media)
        enc = self.processor.encode(messages, add_generation_prompt, self.token_counts(media, feats))
        enc.features = feats
        return enc

    def project(self, modality: str, features: list[torch.Tensor], asked: Asked | None = None) -> torch.Tensor:
        """Projected tokens of every input, concatenated in order: [sum of counts, hidden]. `asked`: the
        words each input is asked, for a projector that `reads_question`."""
        proj = self.projectors[modality]
        out: list[torch.Tensor | None] = [None] * len(features)
        for n in dict.fromkeys(f.shape[0] for f in features):  # equal lengths share one batched call
            idx = [i for i, f in enumerate(features) if f.shape[0] == n]
            x = torch.stack([features[i] for i in idx]).to(self.device).float()
            tokens = proj(x, asked.take(idx)) if asked is not None else proj(x)
            for i, t in zip(idx, tokens):
                out[i] = t[proj.token_mask(features[i]).to(t.device)] if proj.reads_content else t
        return torch.cat(out)  # type: ignore[arg-type]

    def embed(self, batch: Batch) -> torch.Tensor:
        """Token embeddings with every modality slot replaced by its projected tokens."""
        ids = batch.input_ids.to(self.device)
        embeds = self.llm.embed(ids)
        for m, slot in batch.slots.items():
            feats = batch.features[m] if batch.features else self.encode_media(batch.media[m])
            asked = None
            if getattr(self.projectors[m], "reads_question", False):
                asked = turn_words(ids, batch.attention_mask.to(self.device), batch.slots, self.special_ids, embeds, m,
                                   [self.projectors[m].count(f) for f in feats], self.llm.tokenizer.decode)
            tokens = self.project(m, feats, asked).to(embeds.dtype)
            if tokens.shape[0] != int(slot.sum()):
                raise InputError(f"{m}: {tokens.shape[0]} projected tokens for {int(slot.sum())} slots; "
                                 "were the token counts computed with another model?")
            embeds = embeds.masked_scatter(slot.to(self.device).unsqueeze(-1), tokens)
        return embeds

    def bind_items(self, batch: Batch) -> list[tuple[str, torch.Tensor, list[int]]]:
        """(modality, bind-space vectors [N, 384], row of each) for every bind input of the batch."""
        out = []
        for m in self.bind_modalities:
            if batch.media.get(m):
                feats = batch.features[m] if batch.features else self.encode_media(batch.media[m])
                out.append((m, self.projectors[m].embed(feats), batch.rows[m]))
        return out

    def bind_vectors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per row: the mean bind vector of its inputs (non-image ones blended with the visual cache
        first) and whether it has any; None when the batch has no bind input."""
        if self.bind_text_noise is not None and self.training and batch.labels is not None:
            return self._caption_bind_vectors(batch)
        items = self.bind_items(batch)
        if not items:
            return None
        B, c = batch.input_ids.shape[0], self.config.bind
        total = torch.zeros(B, self.bind.network[0].in_features, device=self.device)
        count = torch.zeros(B, device=self.device)
        for m, z, rows in items:
            if self.visual_cache is not None and m != IMAGE.name:
                z = self.visual_cache.blend(z, c.cache_k, c.cache_weight, c.cache_temperature)
            idx = torch.tensor(rows, device=self.device)
            total = total.index_add(0, idx, z)
            count = count.index_add(0, idx, torch.ones(len(rows), device=self.device))
        return F.normalize(total, dim=-1), count > 0

    def _caption_bind_vectors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Text-only training: the rows' own captions, embedded and noised, stand in for their inputs."""
        v = caption_vectors(row_texts(batch.labels, self.llm.tokenizer)).to(self.device)
        v = F.normalize(v + self.bind_text_noise * torch.randn_like(v), dim=-1)
        return v, torch.ones(len(v), dtype=torch.bool, device=self.device)

    def injecting(self, bind: tuple[torch.Tensor, torch.Tensor] | None):
        """Context in which the LLM's layers receive the rows' gated bind-network additions."""
        return nullcontext() if bind is None else self.bind.inject(self.llm.hf(), *bind)

    def count_targets(self, batch: Batch, objective: str = "lm") -> int:
        """What a batch's loss is averaged over: labelled tokens (lm) or bind inputs (bind)."""
        if objective == "bind":  # a modality with one input in the batch has no negatives: not counted
            return sum(n for m in self.bind_modalities if (n := len(batch.media.get(m, []))) > 1)
        return int((batch.labels[:, 1:] != IGNORE).sum())

    def forward(self, batch: Batch, objective: str = "lm", prefix: SharedPrefix | None = None):
        """LLM outputs; with labels, `.loss` is the mean next-token loss on labelled (assistant) tokens,
        `.loss_sum` its sum and `.num_labels` their count (the trainer weights batches by tokens).
        `objective="bind"` (stage `bind`) is instead the bind heads' InfoNCE against the captions.

        Logits are computed only at the labelled positions (gathered across rows): the 49k-way LM head
        over every prompt, modality and padding position would be most of a step's work. `prefix`
        (training with a frozen LLM, anymal/model/prefix.py): the K/V of the tokens every row starts
        with, computed once, so that only the rest of each row runs.
        """
        if objective == "bind":
            return self._bind_loss(batch)
        self.llm.hf()  # transformers' forward (a lite LLM, llm/lite.py, gets it now)
        embeds = self.embed(batch)
        mask = batch.attention_mask.to(self.device)
        bind = self.bind_vectors(batch)
        if batch.labels is None:
            with self.injecting(bind):
                return self.llm.model(inputs_embeds=embeds, attention_mask=mask)
        targets = batch.labels[:, 1:].to(self.device)
        run = {"inputs_embeds": embeds, "attention_mask": mask}
        if prefix is not None:
            if bind is not None or not prefix.covers(batch.input_ids):
                raise ValueError("a shared prefix needs rows that start with it and no bind injection")
            (B, T), P = mask.shape, len(prefix)
            run.update(inputs_embeds=embeds[:, P:], **cache_kwargs(self.llm.model, prefix.cache(B)),
                       position_ids=torch.arange(P, T, device=self.device).expand(B, -1))
            targets = targets[:, P:]  # no labels there: the prefix stops before the first one
        where = targets != IGNORE
        with self.injecting(bind):
            if self._plain_head:
                hidden = self.llm.model.get_decoder()(**run).last_hidden_state
                logits = self.llm.model.get_output_embeddings()(hidden[:, :-1][where])
            else:  # the model post-processes its logits: let it, at the positions any row needs
                keep = where.any(0).nonzero().squeeze(1)
                logits = self.llm.model(**run, logits_to_keep=keep).logits[where[:, keep]]
        loss_sum = F.cross_entropy(logits.float(), targets[where], reduction="sum")
        n = int(where.sum())
        return LossOutput(loss_sum / max(n, 1), loss_sum, n, logits)

    @property
    def _plain_head(self) -> bool:
        """Whether the LLM's logits are its output embedding applied to the last hidden state (true of
        Llama, Qwen, SmolLM...; not of models that scale or soft-cap them)."""
        c = self.llm.model.config
        return all(getattr(c, a, None) in (None, 1.0) for a in ("final_logit_softcapping", "logit_scale", "logits_scaling"))

    def _bind_loss(self, batch: Batch) -> LossOutput:
        texts = row_texts(batch.labels, self.llm.tokenizer)
        loss_sum, n, zs = torch.zeros((), device=self.device), 0, []
        for m, z, rows in self.bind_items(batch):  # each modality against its own captions
            if len(rows) > 1:
                loss = bind_contrastive(z, [texts[r] for r in rows], self.projectors[m].logit_scale)
                loss_sum, n = loss_sum + loss * len(rows), n + len(rows)
            zs.append(z)
        if not n:
            raise InputError("stage bind: the batch has fewer than two inputs of any bind modality "
                             f"({', '.join(self.bind_modalities) or 'none configured: set projector: bind'})")
        return LossOutput(loss_sum / n, loss_sum, n, torch.cat(zs))
