"""Zero-shot cross-modal retrieval in the bind space, on held-out (test-split) items, both ways.

    image<->text   Tux Paint test stamps vs their captions
    sound<->text   Tux Paint stamp sounds (audio val + test splits: only 13 are held out) vs their captions
    sound<->image  the held-out stamps that have both a sound and a picture (same object), no text involved
    imu<->text     HAPT windows of held-out users vs one caption per activity
    points<->text  Sweet Home 3D test models vs one phrase per category

A query is a hit at k when one of its k most similar gallery items is relevant (same caption,
object, activity or category). `chance` is the expected R@1 of a random ranking.
`anymal eval --task bind-retrieval --model CKPT` writes results.json, results.md and retrieval.png.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..data.builders import manifest
from ..data.jsonl import read_jsonl
from ..errors import ConfigError, DataError
from ..modalities import AUDIO, IMAGE, IMU, POINTS
from ..registry import Registry
from .metrics import recall_at_k
from ..text_embed import embed_texts


@dataclass
class Side:
    modality: str  # or "text"
    manifest: str | tuple[str, ...] = ""
    select: Callable[[dict], bool] = lambda meta: True
    group: Callable[[dict], str] = lambda meta: meta["caption"]


def _activity_texts() -> dict[str, str]:
    from .tasks import _activities, _activity_caption

    return {a: _activity_caption(a) for a in _activities()}


def _category_texts() -> dict[str, str]:
    from .tasks import _categories, _category_text

    return {c: _category_text(c) for c in _categories()}


_HELD_OUT_SOUNDS = (manifest("audio", "val"), manifest("audio", "test"))
_SOUND = Side(AUDIO.name, _HELD_OUT_SOUNDS, lambda m: m.get("kind") == "sound")
# name -> (query side, gallery side, {group: text} for a text gallery of one text per group)
PAIRS: Registry[tuple[Side, Side, Callable[[], dict[str, str]] | None]] = Registry("retrieval pair")
PAIRS.add("image-text", (Side(IMAGE.name, manifest("tuxpaint", "test")), Side("text"), None))
PAIRS.add("sound-text", (_SOUND, Side("text"), None))
PAIRS.add("sound-image", (Side(AUDIO.name, _HELD_OUT_SOUNDS, _SOUND.select, lambda m: m["object"]),
                          Side(IMAGE.name, (manifest("tuxpaint", "val"), manifest("tuxpaint", "test")), group=lambda m: m["object"]),
                          None))
PAIRS.add("imu-text", (Side(IMU.name, manifest("hapt", "test"), group=lambda m: m["activity"]), Side("text"), _activity_texts))
PAIRS.add("points-text", (Side(POINTS.name, manifest("furniture", "test"), group=lambda m: m["category"]), Side("text"),
                          _category_texts))


def _media_side(model, side: Side, limit: int | None) -> tuple[torch.Tensor, list[str]]:
    samples = []
    for path in [side.manifest] if isinstance(side.manifest, str) else side.manifest:
        samples += read_jsonl(path, [side.modality], on_error="skip")[0]
    samples = [s for s in samples if side.select(s.meta)][:limit]
    if not samples:
        raise DataError(f"{side.manifest}: no {side.modality} items to retrieve (build it with `anymal data build`)")
    parts = [model.processor.media(s.messages)[0] for s in samples]
    feats = []
    for i in range(0, len(parts), 32):
        feats += model.encode_media(parts[i:i + 32])
    with torch.no_grad():
        return model.projectors[side.modality].embed(feats).cpu(), [side.group(s.meta) for s in samples]


def evaluate_pair(model, name: str, limit: int | None = None) -> list[dict]:
    query, gallery, texts_of = PAIRS[name]
    for side in (query, gallery):
        if side.modality != "text" and side.modality not in model.bind_modalities:
            raise ConfigError(f"bind-retrieval {name}: the model has no bind head for {side.modality!r} "
                              f"(its bind modalities: {', '.join(model.bind_modalities) or 'none'})")
    q, qg = _media_side(model, query, limit)
    if gallery.modality == "text":
        groups = sorted(set(qg))
        known = texts_of() if texts_of else None
        texts = [known[g] for g in groups] if known else groups  # captions are their own text
        g, gg = embed_texts(texts), groups
    else:
        g, gg = _media_side(model, gallery, None)
        keep = [i for i, x in enumerate(qg) if x in set(gg)]  # only objects that exist on both sides
        q, qg = q[keep], [qg[i] for i in keep]
        keep = [i for i, x in enumerate(gg) if x in set(qg)]
        g, gg = g[keep], [gg[i] for i in keep]
    sim = q @ g.T
    rel = torch.tensor([[a == b for b in gg] for a in qg])
    a, b = name.split("-")
    rows = []
    for direction, s, r in ((f"{a}->{b}", sim, rel), (f"{b}->{a}", sim.T, rel.T)):
        rows.append({"pair": name, "direction": direction, "queries": s.shape[0], "gallery": s.shape[1],
                     **recall_at_k(s, r), "chance_R@1": float(r.float().mean(1).mean())})
    return rows


def bind_retrieval(model, out: str | Path, limit: int | None = None, pairs: list[str] | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in pairs or list(PAIRS):
        if all(side.modality == "text" or side.modality in model.bind_modalities for side in PAIRS[name][:2]):
            rows += evaluate_pair(model, name, limit)
    if not rows:
        raise ConfigError("bind-retrieval: the model has no bind heads (train one with anymal/recipes/bind-space.yaml)")
    table = ["| direction | queries | gallery | R@1 | R@5 | chance R@1 |", "|---|---|---|---|---|---|"]
    table += [f"| {r['direction']} | {r['queries']} | {r['gallery']} | {r['R@1']:.3f} | {r['R@5']:.3f} | "
              f"{r['chance_R@1']:.3f} |" for r in rows]
    (out / "results.json").write_text(json.dumps({"task": "bind-retrieval", "rows": rows}, indent=1))
    (out / "results.md").write_text("\n".join(table) + "\n")
    _plot(rows, out / "retrieval.png")
    return {"rows": rows, "table": "\n".join(table) + "\n"}


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.9), 3.6))
    x = range(len(rows))
    for off, key in ((-0.27, "R@1"), (0, "R@5"), (0.27, "chance_R@1")):
        ax.bar([i + off for i in x], [r[key] for r in rows], 0.27, label=key.replace("_", " "))
    ax.set_xticks(list(x), [r["direction"] for r in rows], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title("zero-shot retrieval in the bind space (held-out items)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
