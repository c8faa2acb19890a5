"""Contrastive pretraining of a small encoder against frozen sentence embeddings (IMU2CLIP / Point-Bind style).

The encoder exposes `pooled(x) -> [B, feat_dim]`; a trainable linear head maps that to the 384-d
MiniLM space, and a symmetric InfoNCE loss pulls each input towards its caption embedding. Many
inputs share a meaning (every walking window has the same caption), so positives are defined by a
`groups` id, not by the diagonal: a row's loss is -log of the softmax mass on *all* columns of its
group (multi-positive InfoNCE). Without that, identical captions in a batch would be pushed apart.

Writes into the run dir: metrics.jsonl (and TensorBoard events), loss.png, weights.safetensors (encoder.*, head.*,
logit_scale and caller-supplied extra tensors) and facts.json (config, facts, best epoch).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ..objectives import info_nce
from .runlog import RunLog
from .steps import StepLoop, seed_everything


@dataclass
class ContrastiveConfig:
    epochs: int = 40
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 30
    temperature: float = 0.07  # initial value when learned, else fixed (CLIP's init)
    learn_temperature: bool = True
    seed: int = 0
    threads: int | None = 2  # the target machine has 2 cores
    progress: bool = True


@dataclass
class ContrastiveSet:
    """N examples. `batch(idx, rng, train)` builds the encoder input for rows `idx` (augmenting when
    `train`); `text` holds each row's caption embedding [N, D], or V alternative captions [N, V, D]
    (one drawn per row and step; variant `val_variant` is used for validation); equal `groups` ids
    ([N] or [N, V]) mean the same meaning."""

    batch: Callable[[np.ndarray, np.random.Generator, bool], torch.Tensor]
    text: torch.Tensor
    groups: torch.Tensor
    val_variant: int = 0

    def __post_init__(self):
        if self.text.ndim == 2:
            self.text = self.text[:, None]
        if self.groups.ndim == 1:
            self.groups = self.groups[:, None].expand(-1, self.text.shape[1])
        if self.text.shape[:2] != self.groups.shape:
            raise ValueError(f"text {list(self.text.shape)} and groups {list(self.groups.shape)} disagree")

    def __len__(self) -> int:
        return len(self.groups)

    def targets(self, idx: np.ndarray, rng: np.random.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(text [B, D], groups [B]) of rows idx: a random variant each when `rng`, else `val_variant`."""
        v = torch.from_numpy(rng.integers(0, self.text.shape[1], len(idx))) if rng is not None else self.val_variant
        rows = torch.from_numpy(np.asarray(idx))
        return self.text[rows, v], self.groups[rows, v]


class ContrastiveModel(nn.Module):
    def __init__(self, encoder: nn.Module, feat_dim: int, embed_dim: int, cfg: ContrastiveConfig):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feat_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)),
                                        requires_grad=cfg.learn_temperature)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.encoder.pooled(x)), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()  # CLIP's cap on 1/temperature


@torch.no_grad()
def evaluate_set(model: ContrastiveModel, data: ContrastiveSet, batch_size: int = 256) -> dict:
    """Mean loss over fixed batches, and accuracy of picking the right group among the set's distinct texts."""
    was = model.training
    model.eval()
    rng = np.random.default_rng(0)
    idx = np.arange(len(data))
    z = torch.cat([model.embed(data.batch(idx[i:i + batch_size], rng, False)) for i in range(0, len(idx), batch_size)])
    text, groups = data.targets(idx, None)
    losses = [info_nce(z[i:i + batch_size], text[i:i + batch_size], groups[i:i + batch_size],
                       model.scale()).item() for i in range(0, len(idx), batch_size)]
    first = {int(g): i for i, g in reversed(list(enumerate(groups)))}  # one text row per group
    rows = torch.tensor(sorted(first.values()))
    pred = groups[rows][(z @ text[rows].T).argmax(1)]
    model.train(was)
    return {"val_loss": float(np.mean(losses)), "val_acc": float((pred == groups).float().mean())}


def _lr_factor(step: int, total: int, cfg: ContrastiveConfig) -> float:
    """Linear warm-up from 1/warmup of `lr` at the first step, then cosine to 0 at `total`."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


class ContrastiveTrainer(StepLoop):
    """Epochs of shuffled full batches (the ragged last one dropped: tiny batches make InfoNCE noisy),
    validated after each epoch; the epoch with the lowest validation loss is the one kept."""

    def __init__(self, model: ContrastiveModel, train: ContrastiveSet, val: ContrastiveSet | None,
                 cfg: ContrastiveConfig):
        self.model, self.train_set, self.val, self.cfg = model, train, val, cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.steps_per_epoch = self.eval_every = max(1, len(train) // cfg.batch_size)
        self.total = self.steps_per_epoch * cfg.epochs
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda k: _lr_factor(k, self.total, cfg))
        self.best: dict = {"val_loss": float("inf")}
        self.best_state: dict[str, torch.Tensor] = {}
        self.order = np.arange(0)

    def epoch(self, step: int) -> int:
        return (step - 1) // self.steps_per_epoch + 1

    def step(self, step: int) -> dict:
        b = (step - 1) % self.steps_per_epoch
        if b == 0:  # a new epoch: a new order
            self.model.train()
            self.order = self.rng.permutation(len(self.train_set))
        idx = np.sort(self.order[b * self.cfg.batch_size:(b + 1) * self.cfg.batch_size])
        text, groups = self.train_set.targets(idx, self.rng)
        loss = info_nce(self.model.embed(self.train_set.batch(idx, self.rng, True)), text, groups, self.model.scale())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        lr = self.opt.param_groups[0]["lr"]
        self.opt.step()
        self.sched.step()
        return {"epoch": self.epoch(step), "loss": round(loss.item(), 5), "lr": lr,
                "temperature": round(1.0 / self.model.scale().item(), 5)}

    def validate(self, step: int) -> dict | None:
        if self.val is None:
            return None
        metrics = evaluate_set(self.model, self.val)
        if metrics["val_loss"] < self.best["val_loss"]:  # the loss is far less noisy than accuracy on small sets
            self.best = {"epoch": self.epoch(step), **metrics}
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return {"epoch": self.epoch(step), **metrics}

    def keep_best(self) -> dict:
        """Load the best epoch's weights (the last epoch's without validation); what was kept."""
        if not self.best_state:
            return {"epoch": self.cfg.epochs}
        self.model.load_state_dict(self.best_state)
        return self.best


def train_contrastive(encoder: nn.Module, feat_dim: int, train: ContrastiveSet, val: ContrastiveSet | None,
                      cfg: ContrastiveConfig, out_dir: str | Path, extra_tensors: dict[str, torch.Tensor] | None = None,
                      facts: dict | None = None) -> dict:
    """Train `encoder` (+ head) and write the run dir; keeps the epoch with the lowest val loss."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:  # the thread count is the whole process's: given back after this run (a caller's later work kept 1)
        seed_everything(cfg.seed)
        model = ContrastiveModel(encoder, feat_dim, train.text.shape[-1], cfg)
        trainer = ContrastiveTrainer(model, train, val, cfg)
        t0 = time.time()
        runlog = RunLog(out, enabled=True, curves="loss.png", plot_every=trainer.steps_per_epoch * 10)
        trainer.loop(0, trainer.total, runlog, "contrastive", cfg.progress)
        runlog.close()
        best = trainer.keep_best()
        seconds = time.time() - t0
    finally:
        torch.set_num_threads(threads)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors.update({k: v.detach().float().contiguous() for k, v in (extra_tensors or {}).items()})
    save_file(tensors, str(out / "weights.safetensors"))
    summary = {"config": asdict(cfg), "facts": facts or {}, "best": best, "train_examples": len(train),
               "val_examples": len(val) if val is not None else 0, "steps": trainer.total, "seconds": round(seconds, 1),
               "params": sum(p.numel() for p in encoder.parameters()),
               "final_temperature": round(1.0 / model.scale().item(), 5)}
    (out / "facts.json").write_text(json.dumps(summary, indent=1))
    return {"model": model, **summary}
