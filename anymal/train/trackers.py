"""Where a run's metrics go besides metrics.jsonl (`report_to:` in a recipe): TensorBoard event files
(the default), Weights & Biases and MLflow. Both of the latter run offline unless told otherwise
(`WANDB_MODE=online`; `MLFLOW_TRACKING_URI`): W&B writes its run under the run directory (`wandb sync`
uploads it later), MLflow a file store in `<run>/mlruns` (`mlflow ui --backend-store-uri <run>/mlruns`).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Protocol

from ..errors import ConfigError
from ..registry import Registry


class Tracker(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


TRACKERS: Registry = Registry("tracker")
PACKAGES = {"wandb": "wandb", "mlflow": "mlflow"}  # tracker -> the package it needs (pip install ...)


def check_trackers(names: list[str]) -> None:
    """Each named tracker is known and its package installed: checked before the model loads."""
    for name in names:
        TRACKERS.check(name, "report_to")
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(f"report_to: {name} needs the {package} package (pip install {package})")


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run_dir: Path, config: dict, resume_step: int | None):
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "anymal"), name=run_dir.name, dir=str(run_dir),
                              config=config, mode=os.environ.get("WANDB_MODE", "offline"),
                              resume="allow" if resume_step is not None else None)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, run_dir: Path, config: dict, resume_step: int | None):
        import mlflow

        self.mlflow = mlflow
        if "MLFLOW_TRACKING_URI" not in os.environ:
            mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
        mlflow.start_run(run_name=run_dir.name)
        mlflow.log_params({k: str(v)[:500] for k, v in _flat(config).items()})  # MLflow caps a value's length

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


TRACKERS.add("tensorboard", _TensorBoard, "TensorBoard event files in <run>/tensorboard")
TRACKERS.add("wandb", _WandB, "Weights & Biases (offline unless WANDB_MODE=online)")
TRACKERS.add("mlflow", _MLflow, "MLflow (a file store in <run>/mlruns unless MLFLOW_TRACKING_URI)")


def open_trackers(names: list[str], run_dir: Path, config: dict, resume_step: int | None) -> list[Tracker]:
    return [TRACKERS.get(n)(run_dir, config, resume_step) for n in names]
