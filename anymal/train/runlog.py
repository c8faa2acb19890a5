"""What a run writes as it goes: metrics.jsonl, TensorBoard event files, and the curves PNG (redrawn
every `plot_every` steps, so a killed run still has its picture).

Only rank 0 writes. On resume, rows past the resumed step (logged after the last saved state) are
dropped so the log reads as one uninterrupted run. A new run never lands on an earlier one's files
unnoticed: `claim_run_dir` refuses a directory holding a run unless told to resume or overwrite.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import TrainingError
from .plots import plot_curves
from .trackers import open_trackers

# what a training run writes into its directory (config.yaml and plan.txt are rewritten by every start)
RUN_FILES = ("metrics.jsonl", "tensorboard", "wandb", "mlruns", "checkpoint", "resume.pt", "curves.png", "plan.txt",
             "config.yaml")
EVIDENCE = ("metrics.jsonl", "checkpoint", "resume.pt")  # a run happened here
LOCK_FILE = ".lock"  # held by the run writing here
# what `anymal pretrain` writes (contrastive encoders: train/contrastive.py, pretrain_encoders.py; the
# sound-kind head: pretrain_sounds.py), and what shows one ran
PRETRAIN_FILES = ("metrics.jsonl", "tensorboard", "loss.png", "weights.safetensors", "facts.json", "config.json",
                  "encoder", "eval.json", "head")
PRETRAIN_EVIDENCE = ("eval.json", "weights.safetensors", "head")


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool, main: bool = True, files: tuple = RUN_FILES,
                  evidence: tuple = EVIDENCE):
    """Make `run_dir` this run's: locked against any other run while the returned lock is held (keep
    it for the run's life; the main process takes it, the others share it), then fine when empty or
    resuming; with `overwrite` the earlier run's `files` (only those, never others) are removed first;
    else a TrainingError says what to do. (`files`/`evidence`: what a pretraining run writes, for
    `anymal pretrain`, which cannot resume.)"""
    lock = _lock(run_dir) if main else None
    found = [n for n in evidence if (run_dir / n).exists()]
    if resume or not found:
        return lock
    if not overwrite:
        resumable = "pass --resume to continue it, " if files == RUN_FILES else ""
        raise TrainingError(f"{run_dir} holds an earlier run ({', '.join(found)}): {resumable}"
                            "pass --overwrite to replace it, or choose a new folder")
    if main:
        for name in files:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return lock


def _lock(run_dir: Path):
    """An exclusive lock on `run_dir/.lock` (released when the process ends, however it ends): two
    trainings on one directory left it mixed, the config of one and the weights of the other."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise TrainingError(f"{run_dir} is in use by another run ({holder}); wait for it, or choose a new "
                            "folder") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}")
    f.flush()
    return f


class RunLog:
    """metrics.jsonl, the curves, and the trackers of `report_to` (trackers.py)."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None = None, curves: str = "curves.png",
                 plot_every: int = 50, report_to: tuple[str, ...] = ("tensorboard",), config: dict | None = None):
        self.file, self.curves, self.plot_every = run_dir / "metrics.jsonl", run_dir / curves, plot_every
        self.enabled = enabled
        self.trackers = []
        if not enabled:
            return
        if resume_step is not None and self.file.is_file():
            rows = [l for l in self.file.read_text().splitlines() if l.strip()]
            kept = [l for l in rows if json.loads(l)["step"] <= resume_step]
            self.file.write_text("".join(l + "\n" for l in kept))
        elif self.file.exists():
            self.file.unlink()
        self.trackers = open_trackers(list(report_to), run_dir, config or {}, resume_step)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        metrics = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        for tracker in self.trackers:
            tracker.log(metrics, row["step"])

    def plot(self, step: int) -> None:
        """Redraw the curves every `plot_every` steps."""
        if self.enabled and self.plot_every and step % self.plot_every == 0:
            plot_curves(self.file, self.curves)

    def close(self) -> None:
        if self.enabled:
            for tracker in self.trackers:
                tracker.close()
            plot_curves(self.file, self.curves)
