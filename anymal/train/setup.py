"""Everything a training run sets up before its first step: the stage plan, the model (dtype,
quantization, attention, what is frozen), the data (feature cache, skips counted), the shared prefix."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import DataSource, LoRAConfig, TrainConfig
from ..data.dataset import Prepared, collate, media_or_none, prepare
from ..data.feature_cache import FeatureCache
from ..data.jsonl import SkipReport
from ..data.sources import HELD_OUT, TRAIN, as_source, check_source, read_source
from ..errors import ConfigError, DataError
from ..llm import attention
from ..llm.backbone import native_bf16
from ..llm.linears import base_model
from ..llm.lora import lora_parameters
from ..llm.quantize import quantize_llm
from ..model.anymal import AnyMAL
from ..model.prefix import SharedPrefix, find_shared_prefix
from . import distributed as dist
from .sampling import random_padding
from .stages import Stage, apply_stage, get_stage
from .trackers import check_trackers


def check_plan(cfg: TrainConfig, log) -> Stage:
    """Stage-level consistency, before anything heavy is built."""
    st = get_stage(cfg.stage)
    if st.needs_lora and cfg.model.lora is None:
        cfg.model.lora = LoRAConfig()
        log(f"stage {cfg.stage!r} trains LoRA layers: model.lora not set, using {cfg.model.lora}")
    if st.saves_llm and cfg.model.lora is not None:
        raise ConfigError(f"stage {cfg.stage!r} trains every LLM weight; LoRA layers on top are redundant: "
                          "remove model.lora from the recipe")
    if cfg.llm_quantize and st.saves_llm:
        raise ConfigError(f"stage {cfg.stage!r} trains the LLM's own weights, which cannot be quantized; "
                          "use llm_quantize with align, instruct-proj or instruct (LoRA)")
    if st.objective == "bind" and not any(m.projector == "bind" for m in cfg.model.modalities.values()):
        raise ConfigError(f"stage {cfg.stage!r} trains bind heads, but no modality has `projector: bind`")
    if cfg.bind_text_noise is not None and cfg.stage != "bind-inject":
        raise ConfigError(f"bind_text_noise (text-only bind training) applies to stage bind-inject, not {cfg.stage!r}")
    if cfg.gradient_checkpointing and not (st.needs_lora or st.saves_llm):
        raise ConfigError(f"gradient_checkpointing applies where LLM weights train (LoRA or full stages), not stage "
                          f"{cfg.stage!r}, whose frozen LLM keeps no weight gradients")
    if cfg.data.feature_cache and any(c.startswith("encoders") for c in cfg.train):
        raise ConfigError("train: an encoder cannot learn while its features come from the feature cache; "
                          "set data.feature_cache: false")
    check_trackers(cfg.report_to)
    _check_manifests(cfg)
    return st


def _check_manifests(cfg: TrainConfig) -> None:
    """Every data source the recipe names exists, checked before the model loads (a missing second one was
    found only after it had), with the command that builds a project dataset."""
    sources = [as_source(s) for s in _listed(cfg.data.train) + ([cfg.data.val] if cfg.data.val else [])]
    for s in sources:
        if s.path.startswith("hf://"):
            check_source(s)
    missing = [Path(s.path) for s in sources if not s.path.startswith("hf://") and not Path(s.path).exists()]
    if missing:
        builds = sorted({f"anymal data build {m.parent.name}" for m in missing if m.parent.parent.name == "data"})
        raise DataError(f"{', '.join(map(str, missing))}: manifest not found"
                        + (f"; build it with `{' && '.join(builds)}`" if builds else ""))


def _listed(sources) -> list:
    return [sources] if isinstance(sources, (str, DataSource)) else list(sources)


def load_items(cfg: TrainConfig, model: AnyMAL, sources, caches: dict[str, FeatureCache] | None,
               skipped: SkipReport, progress: bool, desc: str, splits: tuple[str, ...] = TRAIN) -> list[Prepared]:
    samples = []
    for source in _listed(sources):
        got, bad = read_source(source, list(model.projectors), cfg.data.media_root, cfg.data.on_error, splits)
        samples += got
        skipped.merge(bad)
    if splits == TRAIN:
        samples = drop_untrainable(model, samples, skipped)
    return prepare(samples, model, caches, cfg.data.on_error, skipped, desc=desc, progress=progress)


def drop_untrainable(model: AnyMAL, samples: list, skipped: SkipReport) -> list:
    """With the LLM frozen, a sample whose every input goes through a frozen adapter gives no gradient (an
    image-only question while only the video adapter trains): it is counted as a skip, not encoded and run."""
    if model.bind is not None or any(p.requires_grad for p in model.llm.parameters()):
        return samples
    trainable = {m for m, proj in model.projectors.items() if any(p.requires_grad for p in proj.parameters())}
    keep = []
    for s in samples:
        inputs = {p.modality for p in media_or_none(model, s)}
        if inputs and not inputs & trainable:
            skipped.add(f"reads only frozen adapters ({', '.join(sorted(inputs))}): no gradient", s.where)
        else:
            keep.append(s)
    return keep


@torch.no_grad()
def evaluate_loss(model: AnyMAL, items: list[Prepared], batch_size: int, objective: str = "lm") -> float:
    total, count = 0.0, 0
    was = model.training
    model.eval()  # e.g. text-only bind training feeds captions only while training
    for i in range(0, len(items), batch_size):
        out = model(collate(model, items[i:i + batch_size]), objective)
        total += float(out.loss_sum)
        count += out.num_labels
    model.train(was)
    return total / max(count, 1)


def build_model(cfg: TrainConfig, d: dist.Dist, log) -> AnyMAL:
    model = AnyMAL.from_config(cfg.model)
    if cfg.init_from:
        loaded = model.init_adapters_from(cfg.init_from, cfg.init_modalities)
        log(f"{', '.join(loaded) or '(nothing)'} start from {cfg.init_from}")
    train_dtype = resolve_train_dtype(cfg.llm_train_dtype, d.device, log)
    if train_dtype:
        model.llm.model.to(getattr(torch, train_dtype))
        for p in lora_parameters(model.llm).values():  # the frozen weights go low-precision, LoRA stays fp32
            p.data = p.data.float()
    if cfg.llm_quantize:
        quantize_llm(model.llm, cfg.llm_quantize)
    model.to(d.device)
    model.llm.model.set_attn_implementation(train_attention(cfg, model))
    apply_stage(model, cfg.stage, cfg.freeze, cfg.train)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model.llm.model)
    model.bind_text_noise = cfg.bind_text_noise
    return model


def enable_checkpointing(llm: torch.nn.Module) -> None:
    """transformers' gradient checkpointing on the causal LM (inside a peft wrapper too), non-reentrant:
    the inputs are embeddings with projector gradients, not token ids."""
    base = base_model(llm)
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.2's name for it
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False


def resolve_train_dtype(choice: str | None, device: torch.device, log) -> str | None:
    if choice not in ("auto", "bfloat16"):
        return choice
    native = native_bf16(device)
    if choice == "auto":
        choice = "bfloat16" if native else "float32"
        log(f"frozen LLM trains in {choice} (llm_train_dtype auto: {'' if native else 'no '}native bf16 on {device.type})")
    elif choice == "bfloat16" and not native:
        log(f"note: llm_train_dtype bfloat16 on a {device.type} without native bf16 matmuls runs far slower "
            "than float32; llm_train_dtype: auto picks float32 here")
    return choice


def shared_prefix(cfg: TrainConfig, model: AnyMAL, items: list[Prepared], st: Stage, log) -> SharedPrefix | None:
    """The shared prompt prefix's K/V, when they are constants of the run: the LLM frozen (no LoRA,
    not `full`) and nothing injected into its layers (no bind network)."""
    frozen = not any(p.requires_grad for p in model.llm.parameters())
    if not (cfg.reuse_prefix and st.objective == "lm" and frozen and not model.bind_modalities):
        return None
    prefix = find_shared_prefix(model.llm.model, [p.encoded for p in items])
    if prefix is not None:
        log(f"shared prompt prefix: {len(prefix)} tokens run once per run, not every step "
            f"({model.llm.tokenizer.decode(prefix.ids)!r})")
    return prefix


def length_grouping(cfg: TrainConfig, lengths: list[int], log) -> bool:
    """`data.group_by_length`, with `auto` decided by how much random batches of this data would pad."""
    if cfg.data.group_by_length != "auto":
        return cfg.data.group_by_length
    pad = random_padding(lengths, cfg.optim.batch_size, cfg.seed)
    on = pad > cfg.data.group_min_padding
    log(f"length grouping {'on' if on else 'off'}: random batches would hold {pad:.2f} batch positions per "
        f"real token ({'above' if on else 'not above'} data.group_min_padding {cfg.data.group_min_padding})")
    return on


def train_attention(cfg: TrainConfig, model: AnyMAL) -> str:
    choice = cfg.llm_train_attention
    if choice == "auto":
        bf16_cpu = model.device.type == "cpu" and model.llm.model.dtype == torch.bfloat16
        choice = "grouped" if bf16_cpu else "sdpa"
    return attention.NAME if choice == "grouped" else choice


def load_data(cfg: TrainConfig, model: AnyMAL, d: dist.Dist, progress: bool, log):
    skipped = SkipReport()
    caches = {m: FeatureCache(e) for m, e in model.encoders.items()} if cfg.data.feature_cache else None
    train_items: list[Prepared] = []
    val_items: list[Prepared] = []
    for turn in (0, 1):  # rank 0 fills the feature cache first; the other ranks then read it
        if (turn == 0) == d.main:
            train_items = load_items(cfg, model, cfg.data.train, caches, skipped, progress and d.main, "preparing train")
            val_items = load_items(cfg, model, cfg.data.val, caches, skipped, progress and d.main,
                                   "preparing val", HELD_OUT) if cfg.data.val else []
        dist.barrier(d)
    log(skipped.summary())
    if caches:
        log("feature cache: " + ", ".join(f"{m} {c.hits} reused / {c.misses} encoded" for m, c in caches.items()))
    if not train_items:
        raise DataError(f"{cfg.data.train}: no usable training samples ({skipped.summary()})")
    return train_items, val_items, skipped
