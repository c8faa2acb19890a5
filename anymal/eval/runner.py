"""`anymal eval`: run a registered task on a manifest with pinned decoding and write a report.

Decoding is pinned per task (greedy, fixed max tokens, the manifest's own instructions) and recorded
with the model manifest, a hash of the data and the package versions, so a README number can be
regenerated exactly; greedy batched decoding gives the same answers at any batch size.
Writes results.json, results.md, predictions.jsonl and plots (per-group bars; a confusion matrix
for closed-label tasks).
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

from tqdm import tqdm

from .._version import __version__
from ..data.benchmarks import Files
from ..data.jsonl import SkipReport
from ..data.sources import HELD_OUT, read_source
from ..errors import DataError
from ..modalities import MODALITIES
from ..model.settings import GenerationSettings
from .baselines import run_baselines
from .tasks import Row, Task, get_task

PINNED = GenerationSettings(max_new_tokens=48, seed=0)  # greedy, as every front end by default


def split_reference(messages: list[dict]) -> tuple[list[dict], str]:
    """Prompt = everything before the last assistant turn; reference = that turn's text."""
    k = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    ref = messages[k]["content"]
    if isinstance(ref, list):
        ref = " ".join(p.get("text", "") for p in ref if isinstance(p, dict))
    return messages[:k], ref


def predict(model, prompts: list[list[dict]], settings: GenerationSettings, batch_size: int = 8,
            progress: bool = True, desc: str = "eval") -> list[str]:
    out: list[str] = []
    for i in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, unit="batch"):
        out += model.generate(prompts[i:i + batch_size], settings)
    return out


def score_rows(t: Task, samples: list, preds: list[str], refs: list[str]) -> tuple[list[dict], dict]:
    """Judge every prediction; average each numeric verdict over the rows that have it (a video
    caption has no 'object' answer) and add the corpus metrics."""
    rows = []
    for s, p, r in zip(samples, preds, refs):
        verdict = t.judge(Row(p, r, s.meta), list(refs))
        rows.append({"where": s.where, "prediction": p, "reference": r, **verdict,
                     **({"references": s.meta["references"]} if "references" in s.meta else {}),
                     "group": str(s.meta.get(t.group_by, "-")),
                     **({"label": str(s.meta.get(t.label_key))} if t.label_key else {})})
    return rows, summarize(t, rows)


def summarize(t: Task, rows: list[dict]) -> dict:
    """Each numeric verdict averaged over the rows that have it, plus the task's corpus metrics."""
    keys = dict.fromkeys(k for r in rows for k, v in r.items() if isinstance(v, (bool, int, float)))
    scores = {k: sum(float(r[k]) for r in rows if k in r) / sum(k in r for r in rows) for k in keys}
    if t.corpus and rows:
        scores.update(t.corpus(rows))
    return scores


def load_samples(model, t: Task, manifest: Path, benchmark: dict | None = None,
                 media_root: str | None = None) -> tuple[list, SkipReport, int]:
    """The task's samples this model can be scored on, the skips by reason, and how many samples the
    manifest holds for other tasks (its `select`). A sample the judge cannot read (a meta field it
    needs is missing) is a skip naming the field, found before anything is generated."""
    if t.reader:
        samples, skipped = t.reader(Files(manifest, Path(media_root) if media_root else None, **(benchmark or {})))
    else:
        samples, skipped = read_source(manifest, list(MODALITIES), media_root, on_error="skip", splits=HELD_OUT)
    chosen = [s for s in samples if t.select(s.meta)]
    usable = []
    for s in chosen:
        missing = sorted(_input_kinds(s.messages) - set(model.projectors))
        if missing:
            skipped.add(f"a {missing[0]} input, and the model has no {missing[0]} modality", s.where)
            continue
        try:
            t.judge(Row("", split_reference(s.messages)[1], s.meta), [])
        except KeyError as e:
            skipped.add(f"no meta field {e.args[0]!r} (task {t.name} reads {t.fields or 'fields the manifest lacks'})",
                        s.where)
            continue
        usable.append(s)
    return usable, skipped, len(samples) - len(chosen)


def _input_kinds(messages: list[dict]) -> set[str]:
    return {p["type"] for m in messages if isinstance(m["content"], list) for p in m["content"]
            if isinstance(p, dict) and p.get("type") != "text"}


def _nothing_to_score(t: Task, manifest: Path, skipped: SkipReport, other_tasks: int) -> DataError:
    why = [skipped.summary()] if skipped.total else []
    if other_tasks:
        why.append(f"{other_tasks} samples are for other tasks (not {t.name}'s kind)")
    return DataError(f"{manifest}: nothing to score for task {t.name}: " + ("; ".join(why) or "no samples"))


def evaluate(model, task: str | Task = "image-caption", manifest: str | Path | None = None,
             out_dir: str | Path = "runs/eval", limit: int | None = None, batch_size: int = 8,
             progress: bool = True, baselines: bool = False, benchmark: dict | None = None,
             media_root: str | None = None) -> dict:
    """Run one task; `baselines` adds chance, a blind run, a linear probe and the task's reference
    system (see baselines.py) to the same report. The majority class is always reported. A standard
    benchmark (`Task.reader`) reads `manifest` (its main file) with `benchmark`'s annotations/split.
    Nothing to score is a DataError with every skip's reason."""
    t = get_task(task) if isinstance(task, str) else task
    if t.reader and manifest is None and not t.manifest:
        raise DataError(f"task {t.name} reads the benchmark's own files: {t.build}")
    hub = str(manifest or "").startswith("hf://")  # a Hub dataset, from the local cache
    manifest = str(manifest) if hub else Path(manifest or t.manifest)
    if not hub and not manifest.exists():
        raise DataError(f"{manifest}: no such " + ("file or folder" if t.reader else f"manifest; build it with `{t.build}`"))
    samples, skipped, other_tasks = load_samples(model, t, manifest, benchmark, media_root)
    if not samples:
        raise _nothing_to_score(t, manifest, skipped, other_tasks)
    samples = samples[:limit] if limit else samples
    settings = replace(PINNED, max_new_tokens=t.max_new_tokens)
    prompts, refs = zip(*[split_reference(s.messages) for s in samples]) if samples else ((), ())
    preds = predict(model, list(prompts), settings, batch_size, progress, desc=t.name)
    rows, scores = score_rows(t, samples, preds, list(refs))
    by_group = _group_scores(t, rows)
    found = {}
    if t.label_key and rows:  # always answering the most frequent label
        labels = [r["label"] for r in rows]
        found["majority class"] = {t.primary: max(map(labels.count, set(labels))) / len(labels)}
    if baselines and rows:
        more, blind_preds = run_baselines(
            model, t, samples, list(prompts), list(refs), lambda ps: score_rows(t, samples, ps, list(refs))[1],
            lambda ps: predict(model, ps, settings, batch_size, progress, desc=f"{t.name} blind"), progress)
        found.update(more)
        for r, b in zip(rows, blind_preds):
            r["blind_prediction"] = b
    result = {
        "task": t.name, "about": t.about, "manifest": str(manifest), "n": len(rows), "skipped": skipped.total,
        "skipped_by_reason": dict(skipped.reasons.most_common()), "skip_examples": skipped.examples,
        "limit": limit, "data_sha256": None if hub else data_hash(manifest), "primary": t.primary,
        "scores": scores, "baselines": found, "by_group": {k: v[t.primary] for k, v in by_group.items() if t.primary in v},
        "group_scores": by_group,
        "group_by": t.group_by, "notes": t.notes, "decoding": asdict(settings), "batch_size": batch_size,
        "versions": _versions(), "model": {"stage": model.stage, **model.facts()},
    }
    write_report(result, rows, Path(out_dir))
    return result


def data_hash(path: Path) -> str:
    """sha256 of a manifest file; of a benchmark folder, its file names and sizes (pictures unread)."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    listing = sorted(f"{p.relative_to(path)}:{p.stat().st_size}" for p in path.rglob("*") if p.is_file())
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()


def _group_scores(t: Task, rows: list[dict]) -> dict:
    """{group: every score (corpus metrics included) of that group's already judged rows, and its n}."""
    groups = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    return {g: {**summarize(t, mine), "n": len(mine)} for g, mine in sorted(groups.items())}


def _versions() -> dict:
    import torch
    import transformers

    return {"anymal": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def write_report(result: dict, rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    with (out / "predictions.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    lines = [f"| {result['task']} | value (n={result['n']}) |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in result["scores"].items()]
    for name, scores in result.get("baselines", {}).items():
        lines += [f"| baseline: {name} — {k} | {v:.3f} |" for k, v in scores.items() if isinstance(v, (int, float))]
    for group, scores in result.get("group_scores", {}).items():
        lines += [f"| {result['group_by']} = {group} (n={scores['n']}) — {k} | {v:.3f} |"
                  for k, v in scores.items() if k != "n" and isinstance(v, (int, float))]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    groups = result["by_group"]
    if groups:
        fig, ax = plt.subplots(figsize=(max(4, len(groups) * 0.7), 3.2))
        ax.bar(list(groups), list(groups.values()), color="#4c72b0")
        ax.set_ylim(0, 1)
        ax.set_ylabel(result["primary"])
        ax.set_title(f"{result['task']}: {result['primary']} per {result['group_by']} (n={result['n']})")
        plt.setp(ax.get_xticklabels(), rotation=40, ha="right")
        fig.tight_layout()
        fig.savefig(out / "by_group.png", dpi=110)
        plt.close(fig)
    if rows and "label" in rows[0]:
        confusion_plot(rows, out / "confusion.png", result["task"])
    primary = result["primary"]
    compared = {k: v[primary] for k, v in result.get("baselines", {}).items() if isinstance(v.get(primary), (int, float))}
    if compared and primary in result["scores"]:
        names = ["anymal"] + list(compared)
        values = [result["scores"][primary]] + list(compared.values())
        fig, ax = plt.subplots(figsize=(6, 0.6 + 0.45 * len(names)))
        ax.barh(names[::-1], values[::-1], color=["#bbbbbb"] * len(compared) + ["#4c72b0"])
        ax.set_xlim(0, max(1.0, *values))
        ax.set_xlabel(primary)
        ax.set_title(f"{result['task']}: anymal vs baselines (n={result['n']})", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "baselines.png", dpi=110)
        plt.close(fig)


def confusion_plot(rows: list[dict], path: Path, title: str) -> None:
    """True label (meta) vs the label the judge read from the answer ('no match' when none)."""
    import matplotlib.pyplot as plt
    import numpy as np

    labels = sorted({r["label"] for r in rows})
    cols = labels + ["no match"]
    m = np.zeros((len(labels), len(cols)), int)
    for r in rows:
        hit = r.get("predicted")
        m[labels.index(r["label"]), cols.index(hit) if hit in labels else -1] += 1
    fig, ax = plt.subplots(figsize=(1.5 + 0.5 * len(cols), 1.2 + 0.45 * len(labels)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
    ax.set_xlabel("answer read as")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: confusion (n={len(rows)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
