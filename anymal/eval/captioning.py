"""`anymal eval`: caption a manifest's samples and score them.

Decoding is pinned (greedy, fixed max tokens, the manifest's own instruction) and recorded with the
model manifest and a hash of the data, so a number in the README can be regenerated exactly.
Writes results.json, results.md, predictions.jsonl and a per-category plot.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from ..data.jsonl import read_jsonl
from ..data.tuxpaint import names_object, object_word
from ..model.generation import GenerationSettings
from .metrics import caption_scores

PINNED = GenerationSettings(max_new_tokens=48, temperature=0.0, repetition_penalty=1.0)


def _reference(messages: list[dict]) -> tuple[list[dict], str]:
    """Prompt = everything before the last assistant turn; reference = that turn's text."""
    k = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    ref = messages[k]["content"]
    if isinstance(ref, list):
        ref = " ".join(p.get("text", "") for p in ref if isinstance(p, dict))
    return messages[:k], ref


def evaluate_captions(model, manifest: str | Path, out_dir: str | Path, limit: int | None = None,
                      batch_size: int = 8, progress: bool = True) -> dict:
    manifest = Path(manifest)
    samples, skipped = read_jsonl(manifest, list(model.projectors), on_error="skip")
    samples = samples[:limit] if limit else samples
    preds, refs, rows = [], [], []
    for i in tqdm(range(0, len(samples), batch_size), desc="eval", disable=not progress, unit="batch"):
        chunk = samples[i:i + batch_size]
        prompts, chunk_refs = zip(*[_reference(s.messages) for s in chunk])
        outs = model.generate(list(prompts), PINNED)
        for s, p, r in zip(chunk, outs, chunk_refs):
            obj = s.meta.get("object") or object_word(r)
            rows.append({"where": s.where, "prediction": p, "reference": r, "object": obj,
                         "named_object": names_object(p, obj), "category": s.meta.get("category", "-")})
            preds.append(p)
            refs.append([r])
    scores = caption_scores(preds, refs) if preds else {}
    scores["object_named"] = sum(r["named_object"] for r in rows) / max(len(rows), 1)
    by_cat = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r["named_object"])
    result = {
        "task": "captioning", "manifest": str(manifest), "n": len(rows), "skipped": skipped.total,
        "data_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "scores": scores, "object_named_by_category": {k: sum(v) / len(v) for k, v in sorted(by_cat.items())},
        "decoding": asdict(PINNED), "batch_size": batch_size, "anymal_version": __version__,
        "model": {"stage": model.stage, **model.facts()},
    }
    write_report(result, rows, Path(out_dir))
    return result


def write_report(result: dict, rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    with (out / "predictions.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    lines = [f"| metric | value (n={result['n']}) |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in result["scores"].items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    cats = result["object_named_by_category"]
    fig, ax = plt.subplots(figsize=(max(4, len(cats) * 0.7), 3.2))
    ax.bar(list(cats), list(cats.values()), color="#4c72b0")
    ax.set_ylim(0, 1)
    ax.set_ylabel("object named")
    ax.set_title(f"object named per category (n={result['n']})")
    plt.setp(ax.get_xticklabels(), rotation=40, ha="right")
    fig.tight_layout()
    fig.savefig(out / "object_named_by_category.png", dpi=110)
    plt.close(fig)
