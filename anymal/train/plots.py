"""Loss / learning-rate curves from a run's metrics.jsonl."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(metrics_file: str | Path, out_png: str | Path) -> Path:
    rows = [json.loads(l) for l in Path(metrics_file).read_text().splitlines() if l.strip()]
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_loss" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    if val:
        a.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val")
    a.set_xlabel("step"); a.set_ylabel("loss"); a.set_yscale("log"); a.legend(); a.grid(alpha=0.3)
    b.plot([r["step"] for r in train], [r["lr"] for r in train])
    b.set_xlabel("step"); b.set_ylabel("learning rate"); b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
