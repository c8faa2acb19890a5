"""Score vs input resolution (OtterHD's MagnifierBench figure): one task run per image side.

    anymal eval --task magnifier --sides 224,448,896 --model CKPT --label tiles

Each run presents every image at the given longest side (the image encoder's `sides`), records the
task's scores, the image tokens per input and the seconds per item, and writes `<out>/<label>/sweep.json`.
The table (`results.md`) and plot (`resolution.png`) in `<out>` are rebuilt from every label's sweep
found there, so models swept by separate commands end up in one figure.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import ConfigError
from ..encoders.sized import sized
from ..modalities import IMAGE
from .runner import evaluate
from .tasks import get_task


def image_tokens(model, image) -> int:
    part = model.processor.media([{"role": "user", "content": [{"type": IMAGE.name, IMAGE.name: str(image)}]}])
    return model.token_counts(part, model.encode_media(part))[0]


def resolution_sweep(model, task: str, sides: list[int], out: str | Path, label: str, limit: int | None = None,
                     batch_size: int = 8, progress: bool = True, manifest: str | Path | None = None) -> dict:
    if IMAGE.name not in model.encoders:
        raise ConfigError("--sides sweeps the image input resolution: the model has no image encoder")
    t = get_task(task)
    out = Path(out)
    enc = sized(model.encoders[IMAGE.name])  # with perception parts: the main one
    saved = enc.sides
    rows = []
    try:
        for side in sides:
            enc.set_sides([side])
            t0 = time.time()
            res = evaluate(model, t, manifest, out / label / f"side-{side}", limit=limit, batch_size=batch_size,
                           progress=progress)
            first = json.loads(Path(res["manifest"]).read_text().splitlines()[0])
            tokens = image_tokens(model, Path(res["manifest"]).parent / first[IMAGE.list_key][0])
            rows.append({"label": label, "side": side, "n": res["n"], "image_tokens": tokens,
                         "s_per_item": (time.time() - t0) / max(res["n"], 1), **res["scores"]})
            # written after every side: an interrupted sweep keeps what it measured
            (out / label / "sweep.json").write_text(json.dumps({"task": task, "label": label, "rows": rows}, indent=1))
    finally:
        enc.set_sides(saved)
    return summarize(out, t)


def summarize(out: Path, t) -> dict:
    sweeps = [json.loads(p.read_text()) for p in sorted(out.glob("*/sweep.json"))]
    rows = [r for s in sweeps for r in s["rows"]]
    keys = [k for k in (*t.report, t.primary) if any(k in r for r in rows)]
    keys = list(dict.fromkeys(keys))
    head = "| model | side (px) | image tokens | " + " | ".join(keys) + " | s / item |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['label']} | {r['side']} | {r['image_tokens']} | "
                     + " | ".join(f"{r[k]:.3f}" if k in r else "—" for k in keys) + f" | {r['s_per_item']:.2f} |")
    table = "\n".join(lines) + "\n"
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"task": t.name, "rows": rows}, indent=1))
    _plot(rows, keys, t, out / "resolution.png")
    return {"rows": rows, "table": table}


def _plot(rows: list[dict], keys: list[str], t, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        for label in dict.fromkeys(r["label"] for r in rows):
            pts = sorted((r["side"], r[k]) for r in rows if r["label"] == label and k in r)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        if k in t.chance:
            ax.axhline(t.chance[k], color="grey", ls="--", lw=1, label="chance")
        ax.set_xscale("log", base=2)
        sides = sorted({r["side"] for r in rows})
        ax.set_xticks(sides, [str(x) for x in sides])
        ax.minorticks_off()
        ax.set_xlabel("input longest side (px)")
        ax.set_title(f"{t.name}: {k}")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
