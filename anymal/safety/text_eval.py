"""The text check measured on the corpus' held-out splits: false refusals on everyday text from sources no
training split uses, recall on harmful text from unseen sources per category and per source, and the
in-distribution precision/recall beside them (`anymal safety eval`)."""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from ..errors import ConfigError
from .text import REQUEST_HEAD, EitherHead, TextClassifier, load_rows, precision_recall, role_of, train_text_head

SPLITS = ("train", "val", "test-same-sources", "test-everyday", "test-harmful")
INPUT_CHECK = "input check (shipped): the request head or the MiniLM head"
OUTPUT_CHECK = "output check (shipped): MLP on MiniLM"


def corpus(root: str | Path) -> dict[str, list[dict]]:
    root = Path(root)
    missing = [s for s in SPLITS if not (root / f"{s}.jsonl").is_file()]
    if missing:
        raise ConfigError(f"{root}: no {', '.join(missing)} split; build the corpus with `anymal safety data`")
    return {s: load_rows(root / f"{s}.jsonl", categories=s != "test-harmful") for s in SPLITS}


def train_on(splits: dict[str, list[dict]], kind: str, false_refusals: float = 0.005, out=None) -> TextClassifier:
    return train_text_head(splits["train"], splits["val"], kind, false_refusals, out=out)


def _rate(flags: list[bool]) -> float:
    return sum(flags) / max(len(flags), 1)


def _by(rows: list[dict], flags: list[bool], key: str) -> dict[str, dict]:
    groups = defaultdict(list)
    for r, f in zip(rows, flags):
        groups[r[key]].append(f)
    return {k: {"n": len(v), "flagged": sum(v), "rate": _rate(v)} for k, v in sorted(groups.items())}


def measure(clf: TextClassifier, splits: dict[str, list[dict]]) -> dict:
    """The held-out numbers at the head's threshold, and its threshold sweep: each text embedded once."""
    margins = {s: clf.margins([(role_of(r), r["text"]) for r in splits[s]])
               for s in ("test-everyday", "test-harmful", "test-same-sources")}
    flags = {s: [bool(u >= 0) for u in v] for s, v in margins.items()}
    scores = {s: m + clf.threshold for s, m in margins.items()}  # P(not safe) for one head
    everyday, harmful, same = (splits[s] for s in ("test-everyday", "test-harmful", "test-same-sources"))
    benign_same = [f for r, f in zip(same, flags["test-same-sources"]) if r["label"] == "safe"]
    return {
        "kind": getattr(clf, "kind", "either"), "threshold": clf.threshold,
        "everyday false refusals": _rate(flags["test-everyday"]), "everyday n": len(everyday),
        "everyday by source": _by(everyday, flags["test-everyday"], "source"),
        "everyday by kind": _by(everyday, flags["test-everyday"], "kind"),
        "everyday refused": [r["text"] for r, f in zip(everyday, flags["test-everyday"]) if f][:20],
        "harmful recall": _rate(flags["test-harmful"]), "harmful n": len(harmful),
        "harmful by source": _by(harmful, flags["test-harmful"], "source"),
        "harmful by category": _by(harmful, flags["test-harmful"], "label"),
        "harmful missed": [r["text"] for r, f in zip(harmful, flags["test-harmful"]) if not f][:12],
        "same sources": precision_recall(flags["test-same-sources"], [r["label"] != "safe" for r in same]),
        "same sources false refusals": _rate(benign_same),
        # (threshold, everyday false-refusal rate, harmful recall) over thresholds 0.05 ... 0.95
        "sweep": [(t, float((scores["test-everyday"] >= t).float().mean()),
                   float((scores["test-harmful"] >= t).float().mean())) for t in [x / 20 for x in range(1, 20)]],
    }


def table(results: dict[str, dict]) -> list[str]:
    """One column per head: the held-out rows side by side."""
    names = list(results)
    lines = ["| text check | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def add(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(results[n]) for n in names) + " |")

    add("threshold (calibrated on validation)", lambda r: f"{r['threshold']:.3f}")
    add("everyday text, unseen sources: false refusals", lambda r: f"**{r['everyday false refusals']:.3f}** "
        f"({sum(g['flagged'] for g in r['everyday by source'].values())} of {r['everyday n']})")
    for src in results[names[0]]["everyday by source"]:
        add(f"&nbsp;&nbsp;{src}", lambda r, s=src: f"{r['everyday by source'][s]['flagged']} of {r['everyday by source'][s]['n']}")
    add("&nbsp;&nbsp;system prompts", lambda r: f"{r['everyday by kind'].get('system', {}).get('flagged', 0)} of "
        f"{r['everyday by kind'].get('system', {}).get('n', 0)}")
    add("harmful text, unseen sources: recall", lambda r: f"**{r['harmful recall']:.3f}** (n={r['harmful n']})")
    for src in results[names[0]]["harmful by source"]:
        add(f"&nbsp;&nbsp;{src}", lambda r, s=src: f"{r['harmful by source'][s]['rate']:.3f} (n={r['harmful by source'][s]['n']})")
    for cat in results[names[0]]["harmful by category"]:
        add(f"&nbsp;&nbsp;category: {cat}", lambda r, c=cat: f"{r['harmful by category'][c]['rate']:.3f} "
            f"(n={r['harmful by category'][c]['n']})")
    add("same sources, held out by hash: precision / recall", lambda r: f"{r['same sources']['precision']:.3f} / "
        f"{r['same sources']['recall']:.3f} (n={r['same sources']['n']})")
    add("same sources: false refusals", lambda r: f"{r['same sources false refusals']:.3f}")
    return lines


def evaluate(root: str | Path, threshold: float | None, compare: bool) -> tuple[dict[str, dict], list[str], list]:
    """({head: measurements}, the markdown table, the shipped head's threshold sweep)."""
    splits = corpus(root)
    minilm, request = TextClassifier.load(threshold=threshold), TextClassifier.load(REQUEST_HEAD)
    heads = {INPUT_CHECK: EitherHead(request, minilm), "the request head alone": request, OUTPUT_CHECK: minilm}
    if compare:
        for kind in ("linear", "mlp"):
            print(f"training the {kind} MiniLM head for the comparison", file=sys.stderr)
            heads[f"{kind} on MiniLM (trained now)"] = train_on(splits, kind)
    results = {name: measure(clf, splits) for name, clf in heads.items()}
    return results, table(results), results[OUTPUT_CHECK]["sweep"]
