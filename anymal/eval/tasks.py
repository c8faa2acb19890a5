"""Evaluation tasks by name: which manifest, which samples, how an answer is judged, which scores.

A task is one small record here; `anymal eval --task NAME` runs it with pinned decoding. Per-sample
judges return booleans/numbers averaged into the scores; `corpus` adds corpus-level metrics (BLEU,
WER); `group_by` names the meta field whose groups get their own bar in the plot; `labels` makes a
confusion matrix for closed-label tasks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..data.tuxpaint import names_object, object_word
from ..errors import ConfigError
from .matching import match_label
from .metrics import caption_scores


@dataclass
class Row:
    prediction: str
    reference: str
    meta: dict


@dataclass
class Task:
    name: str
    manifest: str  # default manifest, built by `build`
    build: str  # the command that builds it
    about: str
    judge: Callable[[Row, list[str]], dict]  # (row, all references of the task) -> per-sample verdicts
    select: Callable[[dict], bool] = lambda meta: True
    corpus: Callable[[list[str], list[str]], dict] | None = None
    group_by: str = "category"
    label_key: str | None = None  # meta field holding the true label (confusion matrix)
    max_new_tokens: int = 48
    primary: str = ""  # the headline score
    notes: list[str] = field(default_factory=list)


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def _object_named(row: Row, refs: list[str]) -> dict:
    obj = row.meta.get("object") or object_word(row.reference)
    return {"object_named": names_object(row.prediction, obj)}


def _captions(preds: list[str], refs: list[str]) -> dict:
    return caption_scores(preds, [[r] for r in refs])


def _label(row: Row, refs: list[str]) -> dict:
    return {"accuracy": match_label(row.prediction, sorted(set(refs))) == row.reference}


register(Task("image-caption", "data/tuxpaint/test.jsonl", "anymal data build tuxpaint",
              "Tux Paint held-out captions (split by caption)", _object_named, corpus=_captions,
              primary="object_named", notes=["CIDEr's IDF comes from the evaluated references: unstable on small sets"]))
