"""What a run writes as it goes: metrics.jsonl, TensorBoard event files, and curve PNGs at the end.

Only rank 0 writes. On resume, rows past the resumed step (logged after the last saved state) are
dropped so the log reads as one uninterrupted run.
"""
from __future__ import annotations

import json
from pathlib import Path

from .plots import plot_curves


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None = None):
        self.file = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.file.is_file():
            rows = [l for l in self.file.read_text().splitlines() if l.strip()]
            kept = [l for l in rows if json.loads(l)["step"] <= resume_step]
            self.file.write_text("".join(l + "\n" for l in kept))
        elif self.file.exists():
            self.file.unlink()
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)):
                self.tb.add_scalar(k, v, row["step"])

    def close(self, curves_png: Path) -> None:
        if self.enabled:
            self.tb.close()
            plot_curves(self.file, curves_png)
