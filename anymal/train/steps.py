"""What every training loop here shares: seeding, and steps under a progress bar with an ETA, logged
to a run log (metrics.jsonl, TensorBoard, curves), validated every `eval_every` steps and at the last.

The adapter `Trainer` (loop.py) and the encoders' `ContrastiveTrainer` (contrastive.py) subclass
`StepLoop`: each says what one step, one validation and the work after a step are.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from tqdm import tqdm

from .runlog import RunLog


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class StepLoop:
    log_every: int = 1  # a metrics row every N steps (and at the first and last)
    eval_every: int = 0  # validate every N steps; 0: at the last step only

    def step(self, step: int) -> dict | None:
        """Run optimiser step `step` (1-based): its metrics row, or None when it was skipped."""
        raise NotImplementedError

    def validate(self, step: int) -> dict | None:
        """Validation metrics after `step`, or None when the run has no validation data."""
        return None

    def after_step(self, step: int) -> None:
        """Work after a step was taken and logged (e.g. saving a resumable state)."""

    def postfix(self, row: dict) -> dict:
        """What the progress bar shows of a step's row."""
        return {"loss": f"{row['loss']:.3f}"}

    def loop(self, start: int, total: int, runlog: RunLog, desc: str, progress: bool = True) -> None:
        """Steps `start + 1 .. total`."""
        bar = tqdm(range(start + 1, total + 1), initial=start, total=total, desc=desc, disable=not progress,
                   unit="step")
        for step in bar:
            row = self.step(step)
            if row is None:
                continue
            bar.set_postfix(self.postfix(row))
            if step % self.log_every == 0 or step == 1 or step == total:
                runlog.write({"step": step, **row})
            if (self.eval_every and step % self.eval_every == 0) or step == total:
                val = self.validate(step)
                if val is not None:
                    runlog.write({"step": step, **val})
            runlog.plot(step)
            self.after_step(step)
        bar.close()
