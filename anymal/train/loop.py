"""The training loop (plain PyTorch): AdamW, warm-up + cosine, clipping, accumulation, seeded."""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..config import LoRAConfig, TrainConfig, dump_yaml
from ..data.dataset import Prepared, collate, prepare
from ..data.feature_cache import FeatureCache
from ..data.jsonl import SkipReport, read_jsonl
from ..errors import ConfigError, DataError
from ..model.anymal import AnyMAL
from ..model.processor import IGNORE
from .plots import plot_curves
from .stages import Stage, apply_stage, get_stage, plan_table


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load(cfg: TrainConfig, model: AnyMAL, paths: str | list[str], caches: dict[str, FeatureCache] | None,
          skipped: SkipReport, progress: bool, desc: str) -> list[Prepared]:
    samples = []
    for path in [paths] if isinstance(paths, str) else paths:
        got, bad = read_jsonl(path, list(model.projectors), cfg.data.media_root, cfg.data.on_error)
        samples += got
        skipped.merge(bad)
    return prepare(samples, model, caches, cfg.data.on_error, skipped, desc=desc, progress=progress)


@torch.no_grad()
def evaluate_loss(model: AnyMAL, items: list[Prepared], batch_size: int) -> float:
    total, count = 0.0, 0
    for i in range(0, len(items), batch_size):
        batch = collate(model, items[i:i + batch_size])
        n = int((batch.labels[:, 1:] != IGNORE).sum())
        total += float(model(batch).loss) * n
        count += n
    return total / max(count, 1)


def check_plan(cfg: TrainConfig, log) -> Stage:
    """Stage-level consistency, before anything heavy is built."""
    st = get_stage(cfg.stage)
    if st.needs_lora and cfg.model.lora is None:
        cfg.model.lora = LoRAConfig()
        log(f"stage {cfg.stage!r} trains LoRA layers: model.lora not set, using {cfg.model.lora}")
    if st.saves_llm and cfg.model.lora is not None:
        raise ConfigError(f"stage {cfg.stage!r} trains every LLM weight; LoRA layers on top are redundant: "
                          "remove model.lora from the recipe")
    if cfg.data.feature_cache and any(c.startswith("encoders") for c in cfg.train):
        raise ConfigError("train: an encoder cannot learn while its features come from the feature cache; "
                          "set data.feature_cache: false")
    return st


def train(cfg: TrainConfig, progress: bool = True, log=print) -> RunResult:
    seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    st = check_plan(cfg, log)
    dump_yaml(cfg, out / "config.yaml")
    model = AnyMAL.from_config(cfg.model)
    if cfg.init_from:
        loaded = model.init_adapters_from(cfg.init_from, cfg.init_modalities)
        log(f"projectors {', '.join(loaded) or '(none)'} start from {cfg.init_from}")
    if cfg.llm_train_dtype:
        model.llm.model.to(getattr(torch, cfg.llm_train_dtype))
    params = apply_stage(model, cfg.stage, cfg.freeze, cfg.train)
    table = plan_table(model)
    (out / "plan.txt").write_text(table + "\n")
    log(f"stage {cfg.stage!r}:\n{table}")

    skipped = SkipReport()
    caches = {m: FeatureCache(e) for m, e in model.encoders.items()} if cfg.data.feature_cache else None
    train_items = _load(cfg, model, cfg.data.train, caches, skipped, progress, "preparing train")
    val_items = _load(cfg, model, cfg.data.val, caches, skipped, progress, "preparing val") if cfg.data.val else []
    log(skipped.summary())
    if caches:
        log("feature cache: " + ", ".join(f"{m} {c.hits} reused / {c.misses} encoded" for m, c in caches.items()))
    if not train_items:
        raise DataError(f"{cfg.data.train}: no usable training samples ({skipped.summary()})")

    o = cfg.optim
    opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
    sched = get_cosine_schedule_with_warmup(opt, o.warmup_steps, o.max_steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    metrics = (out / "metrics.jsonl").open("w")
    first = last = math.nan
    val_loss = None
    initial_val = evaluate_loss(model, val_items, o.batch_size) if val_items else None
    if initial_val is not None:
        metrics.write(json.dumps({"step": 0, "val_loss": initial_val}) + "\n")
    t0, seen, tokens = time.time(), 0, 0
    bar = tqdm(range(1, o.max_steps + 1), desc=f"train {cfg.stage}", disable=not progress, unit="step")
    for step in bar:
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(o.grad_accum):
            idx = []
            while len(idx) < min(o.batch_size, len(train_items)):
                if not order:
                    order = torch.randperm(len(train_items), generator=gen).tolist()
                idx.append(order.pop())
            batch = collate(model, [train_items[i] for i in idx])
            loss = model(batch).loss / o.grad_accum
            loss.backward()
            step_loss += float(loss.detach())
            seen += len(idx)
            tokens += batch.num_tokens
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, o.max_grad_norm))
        opt.step()
        sched.step()
        first = step_loss if step == 1 else first
        last = step_loss
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{sched.get_last_lr()[0]:.1e}")
        if step % cfg.log_every == 0 or step == 1 or step == o.max_steps:
            dt = time.time() - t0
            metrics.write(json.dumps({"step": step, "loss": step_loss, "lr": sched.get_last_lr()[0],
                                      "grad_norm": gnorm, "samples_per_s": seen / dt, "tokens_per_s": tokens / dt}) + "\n")
            metrics.flush()
        if val_items and ((cfg.eval_every and step % cfg.eval_every == 0) or step == o.max_steps):
            val_loss = evaluate_loss(model, val_items, o.batch_size)
            metrics.write(json.dumps({"step": step, "val_loss": val_loss}) + "\n")
            metrics.flush()
        if cfg.save_every and step % cfg.save_every == 0 and step < o.max_steps:  # a run cut short keeps its progress
            model.save_pretrained(out / "checkpoint", stage=cfg.stage, with_llm=st.saves_llm,
                                  extra={"training": {"partial_step": step}})
    metrics.close()
    plot_curves(out / "metrics.jsonl", out / "curves.png")
    model.stage = cfg.stage
    model.lineage = model.lineage + [{"stage": cfg.stage, "init_from": cfg.init_from, "data": cfg.data.train,
                                      "steps": o.max_steps, "seed": cfg.seed}]
    ckpt = model.save_pretrained(out / "checkpoint", stage=cfg.stage, with_llm=st.saves_llm, extra={"training": {
        "first_loss": first, "final_loss": last, "initial_val_loss": initial_val, "val_loss": val_loss, "skipped_samples": skipped.total,
        "train_samples": len(train_items), "seconds": round(time.time() - t0, 1)}})
    log(f"done: loss {first:.3f} -> {last:.3f}" + (f", val loss {val_loss:.3f}" if val_loss is not None else "")
        + f"; checkpoint {ckpt}")
    return RunResult(out, ckpt, first, last, initial_val, val_loss, skipped.total, o.max_steps)
