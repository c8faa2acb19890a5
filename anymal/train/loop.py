"""The training loop (plain PyTorch): AdamW, warm-up + cosine, clipping, accumulation, seeded,
data-parallel under torchrun, resumable from its last saved state.

Each step's loss is the mean over *every* labelled token of the global step (all micro-batches, all
ranks), so the result does not depend on how a step is split across processes or accumulation.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..config import LoRAConfig, TrainConfig, dump_yaml, to_dict
from ..data.dataset import Prepared, collate, prepare
from ..data.feature_cache import FeatureCache
from ..data.jsonl import SkipReport, read_jsonl
from ..errors import ConfigError, DataError, TrainingError
from ..model.anymal import AnyMAL
from ..llm import attention
from ..llm.backbone import native_bf16
from ..llm.lora import lora_parameters
from ..llm.quantize import quantize_llm
from . import distributed as dist
from .runlog import RunLog
from .host import keep_freed_memory
from ..model.prefix import SharedPrefix, find_shared_prefix
from .sampling import StepSampler, random_padding
from .stages import Stage, apply_stage, get_stage, plan_table
from .state import (load_state, optimizer_state, restore_trainable, rng_state, save_state, set_rng_state,
                    trainable_state)


@dataclass
class RunResult:
    output_dir: Path
    checkpoint: Path
    first_loss: float
    final_loss: float
    initial_val_loss: float | None
    val_loss: float | None
    skipped: int
    steps: int
    nan_steps: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    if cfg.data.feature_cache and any(c.startswith("encoders") for c in cfg.train):
        raise ConfigError("train: an encoder cannot learn while its features come from the feature cache; "
                          "set data.feature_cache: false")
    return st


def _load(cfg: TrainConfig, model: AnyMAL, paths: str | list[str], caches: dict[str, FeatureCache] | None,
          skipped: SkipReport, progress: bool, desc: str) -> list[Prepared]:
    samples = []
    for path in [paths] if isinstance(paths, str) else paths:
        got, bad = read_jsonl(path, list(model.projectors), cfg.data.media_root, cfg.data.on_error)
        samples += got
        skipped.merge(bad)
    return prepare(samples, model, caches, cfg.data.on_error, skipped, desc=desc, progress=progress)


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


def _build(cfg: TrainConfig, d: dist.Dist, log) -> AnyMAL:
    model = AnyMAL.from_config(cfg.model)
    if cfg.init_from:
        loaded = model.init_adapters_from(cfg.init_from, cfg.init_modalities)
        log(f"{', '.join(loaded) or '(nothing)'} start from {cfg.init_from}")
    train_dtype = _train_dtype(cfg.llm_train_dtype, d.device, log)
    if train_dtype:
        model.llm.model.to(getattr(torch, train_dtype))
        for p in lora_parameters(model.llm).values():  # the frozen weights go low-precision, LoRA stays fp32
            p.data = p.data.float()
    if cfg.llm_quantize:
        quantize_llm(model.llm, cfg.llm_quantize)
    model.to(d.device)
    model.llm.model.set_attn_implementation(train_attention(cfg, model))
    apply_stage(model, cfg.stage, cfg.freeze, cfg.train)
    model.bind_text_noise = cfg.bind_text_noise
    return model


def _train_dtype(choice: str | None, device: torch.device, log) -> str | None:
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


def _shared_prefix(cfg: TrainConfig, model: AnyMAL, items: list[Prepared], st: Stage, log) -> SharedPrefix | None:
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


def _data(cfg: TrainConfig, model: AnyMAL, d: dist.Dist, progress: bool, log):
    skipped = SkipReport()
    caches = {m: FeatureCache(e) for m, e in model.encoders.items()} if cfg.data.feature_cache else None
    train_items: list[Prepared] = []
    val_items: list[Prepared] = []
    for turn in (0, 1):  # rank 0 fills the feature cache first; the other ranks then read it
        if (turn == 0) == d.main:
            train_items = _load(cfg, model, cfg.data.train, caches, skipped, progress and d.main, "preparing train")
            val_items = _load(cfg, model, cfg.data.val, caches, skipped, progress and d.main,
                              "preparing val") if cfg.data.val else []
        dist.barrier(d)
    log(skipped.summary())
    if caches:
        log("feature cache: " + ", ".join(f"{m} {c.hits} reused / {c.misses} encoded" for m, c in caches.items()))
    if not train_items:
        raise DataError(f"{cfg.data.train}: no usable training samples ({skipped.summary()})")
    return train_items, val_items, skipped


def train(cfg: TrainConfig, progress: bool = True, log=print, resume: bool = False) -> RunResult:
    d = dist.setup()
    log = log if d.main else (lambda *_: None)
    seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    st = check_plan(cfg, log)
    if d.main:
        dump_yaml(cfg, out / "config.yaml")
    model = _build(cfg, d, log)
    if cfg.keep_freed_memory and model.device.type == "cpu":
        keep_freed_memory()
    table = plan_table(model)
    if d.main:
        (out / "plan.txt").write_text(table + "\n")
    log(f"stage {cfg.stage!r} ({st.about}), {d.world} process(es):\n{table}")
    train_items, val_items, skipped = _data(cfg, model, d, progress, log)

    prefix = _shared_prefix(cfg, model, train_items, st, log)
    wrapped = dist.wrap(model, d, cfg.strategy)
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP2 replaced them with sharded ones
    o = cfg.optim
    opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
    sched = get_cosine_schedule_with_warmup(opt, o.warmup_steps, o.max_steps)
    lengths = [len(p.encoded.input_ids) for p in train_items]
    sampler = StepSampler(lengths, o.batch_size, o.grad_accum, d.world, d.rank, cfg.seed,
                          length_grouping(cfg, lengths, log), cfg.data.length_window)
    c = {"first_loss": math.nan, "last_loss": math.nan, "initial_val": None, "val_loss": None,
         "seen": 0, "tokens": 0, "padded_tokens": 0, "seconds": 0.0, "nan_steps": 0}
    start = 0
    sharded = d.world > 1 and cfg.strategy == "fsdp"
    if resume:
        s = load_state(out, to_dict(cfg))
        restore_trainable(model, opt, s, sharded)
        sched.load_state_dict(s["scheduler"])
        sampler.load_state_dict(s["sampler"])
        set_rng_state(s["rng"])
        start, c = s["step"], {**c, **s["counters"]}  # a counter added since the save starts at 0
        log(f"resumed at step {start} of {o.max_steps}")
    runlog = RunLog(out, d.main, start if resume else None)
    if not resume and val_items:
        c["initial_val"] = evaluate_loss(model, val_items, o.batch_size, st.objective)
        runlog.write({"step": 0, "val_loss": c["initial_val"]})


    run_entry = {"stage": cfg.stage, "init_from": cfg.init_from, "data": cfg.data.train, "seed": cfg.seed,
                 **({"recipe": cfg.recipe} if cfg.recipe else {})}

    def checkpoint(step: int, final: bool):
        weights = trainable_state(model)  # every rank takes part (sharded parameters gather here)
        adapters = model.adapter_state()
        optim_state = None if final else optimizer_state(model, opt, sharded)  # gathers too
        if not d.main:
            return None
        if not final:
            save_state(out, {"step": step, "weights": weights, "optimizer": optim_state,
                             "scheduler": sched.state_dict(), "sampler": sampler.state_dict(), "rng": rng_state(),
                             "counters": dict(c), "config": to_dict(cfg)})
        if not final:  # a partial save records this run in its lineage too (it may be the one shipped)
            model.lineage.append({**run_entry, "steps": step, "partial_of": o.max_steps})
        training = ({"partial_step": step} if not final else {
            "first_loss": c["first_loss"], "final_loss": c["last_loss"], "initial_val_loss": c["initial_val"],
            "val_loss": c["val_loss"], "skipped_samples": skipped.total, "nan_steps": c["nan_steps"],
            "train_samples": len(train_items), "processes": d.world, "seconds": round(c["seconds"], 1)})
        try:
            return model.save_pretrained(out / "checkpoint", stage=cfg.stage, with_llm=st.saves_llm,
                                         extra={"training": training}, state=adapters)
        finally:
            if not final:
                model.lineage.pop()

    bar = tqdm(range(start + 1, o.max_steps + 1), initial=start, total=o.max_steps, desc=f"train {cfg.stage}",
               disable=not (progress and d.main), unit="step")
    t0 = time.time() - c["seconds"]
    for step in bar:
        micro = sampler.next_step()
        batches = [collate(model, [train_items[i] for i in idx]) for idx in micro]
        n_global, step_tokens, step_padded, step_samples = dist.all_sum(
            [sum(model.count_targets(b, st.objective) for b in batches), sum(b.num_tokens for b in batches),
             sum(b.attention_mask.numel() for b in batches), sum(len(i) for i in micro)], d)
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for j, batch in enumerate(batches):
            with dist.no_sync(wrapped, j == len(batches) - 1):
                o_ = wrapped(batch, st.objective, prefix)
                # DDP averages gradients over ranks, hence x world: the sum over all ranks / all tokens
                (o_.loss_sum * (d.world / n_global)).backward()
            loss_sum += float(o_.loss_sum.detach())
        c["tokens"] += step_tokens
        c["padded_tokens"] += step_padded
        c["seen"] += step_samples
        step_loss = dist.all_sum([loss_sum], d)[0] / n_global
        if not math.isfinite(step_loss):
            where = ", ".join(train_items[i].where for idx in micro for i in idx)
            msg = f"step {step}: non-finite loss ({step_loss}); samples{' on rank %d' % d.rank if d.world > 1 else ''}: {where}"
            if cfg.on_nan == "stop":
                raise TrainingError(msg + " (on_nan: skip would skip such steps)")
            log(msg + "; step skipped")
            c["nan_steps"] += 1
            opt.zero_grad(set_to_none=True)
            sched.step()
            continue
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, o.max_grad_norm))
        opt.step()
        sched.step()
        c["first_loss"] = step_loss if math.isnan(c["first_loss"]) else c["first_loss"]
        c["last_loss"] = step_loss
        c["seconds"] = time.time() - t0
        rate = {"samples_per_s": c["seen"] / c["seconds"], "tokens_per_s": c["tokens"] / c["seconds"],
                "padding": c["padded_tokens"] / c["tokens"]}  # batch positions per real token, so far
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{sched.get_last_lr()[0]:.1e}",
                        samples_s=f"{rate['samples_per_s']:.1f}", tok_s=f"{rate['tokens_per_s']:.0f}")
        if step % cfg.log_every == 0 or step == 1 or step == o.max_steps:
            runlog.write({"step": step, "loss": step_loss, "lr": sched.get_last_lr()[0], "grad_norm": gnorm, **rate})
        if val_items and ((cfg.eval_every and step % cfg.eval_every == 0) or step == o.max_steps):
            c["val_loss"] = evaluate_loss(model, val_items, o.batch_size, st.objective)
            runlog.write({"step": step, "val_loss": c["val_loss"]})
        if cfg.save_every and step % cfg.save_every == 0 and step < o.max_steps:  # a killed run resumes here
            checkpoint(step, final=False)
    runlog.close(out / "curves.png")
    model.stage = cfg.stage
    model.lineage = model.lineage + [{**run_entry, "steps": o.max_steps}]
    ckpt = checkpoint(o.max_steps, final=True) or out / "checkpoint"
    dist.barrier(d)
    dist.teardown(d)
    log(f"done: loss {c['first_loss']:.3f} -> {c['last_loss']:.3f}"
        + (f", val loss {c['val_loss']:.3f}" if c["val_loss"] is not None else "") + f"; checkpoint {ckpt}")
    return RunResult(out, ckpt, c["first_loss"], c["last_loss"], c["initial_val"], c["val_loss"], skipped.total,
                     o.max_steps, c["nan_steps"])
