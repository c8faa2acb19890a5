"""Fit, measure and ship the sound-kind head (encoders/sound_kinds.py) on the audio set.

    anymal data build audio && anymal pretrain sounds [--ship]

Training items: every training sound (augmented copies and sounds under speech included) labelled with
its kind (`kind_label`: the object word, synonyms merged), and every `speech_every`-th training speech
clip labelled "speech". The head's shape and weight decay (`CANDIDATES`) are chosen on the validation
split's known-kind sounds together with held-out training recordings (`held_out_folds`: 11 validation
recordings alone cannot tell candidates apart); the test split is scored once, by group (a new
recording of a known kind / a kind no training recording has), next to always naming the commonest
training kind. A recording counts as named when the predicted label names its object word
(`names_object`, as the `sound-name` evaluation judges answers). Features are the frozen
`PooledWhisper` ones, cached like every other encoder's.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.builders.tuxpaint import names_object
from ..data.feature_cache import FeatureCache
from ..encoders.sound_kinds import HEAD_DIR, PooledWhisper, SoundKindHead
from ..errors import DataError
from ..modalities import AUDIO
from .pretrain_encoders import manifest_records

SPEECH = "speech"

# One sound under several names (a sex, a young one, another word for it): recordings of any of them
# train one label, so one rooster and one hen no longer split a single kind's few recordings between
# two labels that the head cannot tell apart. The label lists every name ("chicken (rooster, hen)"), so
# it still names whichever one a recording is of (`names_object`). A kind is merged with its own
# names only, never with a wider class (a blackbird stays apart from "bird"). Object words that
# training recordings use, first the one a merged label starts with.
SYNONYMS = (("chicken", "rooster", "hen"), ("duck", "drake"), ("deer", "doe"), ("camel", "dromedary"),
            ("sheep", "lamb", "ram"), ("applause", "clap"), ("drum", "kit"))  # kit: "A drum kit."
_MERGED = {word: f"{names[0]} ({', '.join(names[1:])})" for names in SYNONYMS for word in names}


@dataclass(frozen=True)
class Candidate:
    """A head to try: `hidden` 0 is one linear layer."""

    weight_decay: float
    hidden: int = 0
    dropout: float = 0.0


# Linear heads only: on the audio set an MLP (512 or 1,024 hidden, dropout 0.5-0.7) named no more
# known-kind recordings of val and the held-out folds (docs/perception.md, "Sound kinds") and costs
# ~5x the fitting time; `Candidate(1e-4, 512, 0.5)` puts one back in the choice.
CANDIDATES = (Candidate(1e-4), Candidate(1e-3), Candidate(1e-2))


@dataclass(frozen=True)
class Item:
    path: str
    object: str  # the word the evaluation judges by
    group: str  # train, known kind, new kind, speech, speech over a sound
    recording: str | None  # the source recording (shared by its augmented copies and mixes)
    original: bool  # not an augmented copy, not a mix

    @property
    def label(self) -> str:
        return kind_label(self.object)


def kind_label(word: str) -> str:
    """The head's label for an object word: the word, or its merged synonyms' label."""
    return _MERGED.get(word, word)


def _items(data_dir: Path, split: str, speech_every: int) -> list[Item]:
    """A split's sounds and every `speech_every`-th speech clip."""
    out, n_speech = [], 0
    for path, _, meta in manifest_records(data_dir, split, AUDIO.name):
        mixed = meta.get("source") == "mix"
        if meta.get("kind") == "sound":
            recording = (meta["sound"] if mixed else meta).get("recording")
            out.append(Item(path, meta["object"], meta.get("group", "train"), recording,
                            not mixed and not meta.get("augmented")))
        elif meta.get("kind") == "speech" and not mixed:
            n_speech += 1
            if n_speech % speech_every == 0:
                out.append(Item(path, SPEECH, SPEECH, None, True))
    if not out:
        raise DataError(f"{data_dir / f'{split}.jsonl'}: no sound or speech clips; "
                        "build it with `anymal data build audio`")
    return out


def held_out_folds(train: list[Item], folds: int = 3) -> list[set[str]]:
    """Sets of training recordings to hold out, each leaving every kind at least one recording.

    Fold j holds out the j-th recording (in a fixed hashed order) of every kind with two or more: the
    held-out recording is then a new recording of a known kind, the case the head is for."""
    by_kind: dict[str, list[str]] = {}
    for item in train:
        if item.original and item.recording:
            by_kind.setdefault(item.label, []).append(item.recording)
    ordered = [sorted(recs, key=lambda r: hashlib.sha256(r.encode()).hexdigest())
               for recs in by_kind.values() if len(recs) >= 2]
    return [held for j in range(folds) if (held := {recs[j] for recs in ordered if len(recs) > j})]


def _features(cache: FeatureCache, items: list[Item], desc: str, progress: bool) -> torch.Tensor:
    cache.fill([i.path for i in items], progress=progress, desc=desc)
    return torch.stack([cache.get(i.path)[0] for i in tqdm(items, desc=desc, disable=not progress)]).float()


def _fit(x: torch.Tensor, items: list[Item], labels: list[str], candidate: Candidate, steps: int) -> SoundKindHead:
    torch.manual_seed(0)
    head = SoundKindHead(labels, x.shape[1], candidate.hidden, candidate.dropout)
    head.mean.copy_(x.mean(0))
    head.std.copy_(x.std(0) + 1e-6)
    y = torch.tensor([labels.index(i.label) for i in items])
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3 if candidate.hidden else 1e-2, weight_decay=candidate.weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(x), y).backward()
        opt.step()
    return head.eval()


def _top3(head: SoundKindHead, x: torch.Tensor, items: list[Item]) -> tuple[list[list[bool]], list[float]]:
    """Per item: whether each of the top 3 labels names its object, and the top label's probability."""
    with torch.no_grad():
        top = head(x).softmax(-1).topk(3, dim=-1)
    hits = [[names_object(head.labels[k], item.object) for k in row] for row, item in zip(top.indices.tolist(), items)]
    return hits, top.values[:, 0].tolist()


def _scores(head: SoundKindHead, x: torch.Tensor, items: list[Item]) -> dict:
    """Top-1 / top-3 named per group (known kind, new kind, speech, ...) and overall."""
    hits, _ = _top3(head, x, items)
    out = {}
    for group in sorted({i.group for i in items}) + ["all"]:
        idx = [k for k, i in enumerate(items) if group in (i.group, "all")]
        out[group] = {"n": len(idx), "top1": sum(hits[k][0] for k in idx) / len(idx),
                      "top3": sum(any(hits[k]) for k in idx) / len(idx)}
    return out


def calibration(head: SoundKindHead, x: torch.Tensor, items: list[Item], cuts=(0.3, 0.5, 0.7)) -> dict:
    """How often the top label is right when its probability is under / at least each cut: what an
    "I am not sure" threshold would keep and lose. New kinds count as wrong (the head cannot name them)."""
    hits, probs = _top3(head, x, items)
    right = [h[0] for h in hits]
    out = {}
    for cut in cuts:
        for side, keep in (("below", lambda p: p < cut), ("above", lambda p: p >= cut)):
            idx = [k for k, p in enumerate(probs) if keep(p)]
            out[f"{side} {cut}"] = {"n": len(idx), "top1": sum(right[k] for k in idx) / len(idx) if idx else None}
    return out


def _held_out_score(feats: torch.Tensor, train: list[Item], candidate: Candidate, steps: int) -> dict:
    """Top-1 / top-3 named of training recordings held out by `held_out_folds`, fitted without them."""
    hits = []
    for held in held_out_folds(train):
        keep = [k for k, i in enumerate(train) if i.recording not in held]
        ask = [k for k, i in enumerate(train) if i.recording in held and i.original]
        labels = sorted({train[k].label for k in keep})
        head = _fit(feats[keep], [train[k] for k in keep], labels, candidate, steps)
        hits += _top3(head, feats[ask], [train[k] for k in ask])[0]
    n = max(1, len(hits))  # a small set may have no kind recorded twice: no folds
    return {"n": len(hits), "top1": sum(h[0] for h in hits) / n, "top3": sum(any(h) for h in hits) / n}


def _choose(feats: dict, splits: dict, labels: list[str], candidates: tuple[Candidate, ...], steps: int
            ) -> tuple[Candidate, dict]:
    """The candidate naming most known-kind recordings of val and of the held-out training folds together."""
    tried = {}
    for cand in candidates:
        val = _scores(_fit(feats["train"], splits["train"], labels, cand, steps), feats["val"], splits["val"])
        tried[cand] = {"val": val, "held_out_train": _held_out_score(feats["train"], splits["train"], cand, steps)}

    def named(cand: Candidate) -> float:
        val = tried[cand]["val"].get("known kind", tried[cand]["val"]["all"])
        return val["top1"] * val["n"] + tried[cand]["held_out_train"]["top1"] * tried[cand]["held_out_train"]["n"]
    best = max(candidates, key=lambda c: (named(c), -c.hidden, -c.weight_decay))  # ties: the simpler head
    return best, {json.dumps(asdict(c)): tried[c] for c in candidates}


def _majority(train: list[Item], test: list[Item]) -> tuple[str, dict]:
    commonest = Counter(i.label for i in train if i.label != SPEECH).most_common(1)[0][0]
    groups = sorted({i.group for i in test})
    return commonest, {g: sum(names_object(commonest, i.object) for i in test if i.group == g) /
                       max(1, sum(i.group == g for i in test)) for g in groups}


def pretrain_sounds(data_dir: str | Path, out_dir: str | Path, ship: bool = False, speech_every: int = 5,
                    steps: int = 500, progress: bool = True, candidates: tuple[Candidate, ...] = CANDIDATES) -> dict:
    """Fit the head on `data_dir`'s train split, choose it on val and held-out training recordings, score
    test; write eval.json."""
    data_dir, out = Path(data_dir), Path(out_dir)
    cache = FeatureCache(PooledWhisper())
    splits = {s: _items(data_dir, s, speech_every) for s in ("train", "val", "test")}
    feats = {s: _features(cache, items, f"pooling {s}", progress) for s, items in splits.items()}
    labels = sorted({i.label for i in splits["train"]})
    best, tried = _choose(feats, splits, labels, candidates, steps)
    head = _fit(feats["train"], splits["train"], labels, best, steps)
    commonest, majority = _majority(splits["train"], splits["test"])
    result = {"labels": len(labels), "merged": [kind_label(n[0]) for n in SYNONYMS],
              "train_items": len(splits["train"]), "chosen": asdict(best), "tried": tried,
              "val_calibration": calibration(head, feats["val"], [i for i in splits["val"] if i.group != SPEECH]),
              "test": _scores(head, feats["test"], splits["test"]), "test_majority_top1": majority,
              "commonest_training_kind": commonest, "data": str(data_dir), "speech_every": speech_every,
              "steps": steps}
    out.mkdir(parents=True, exist_ok=True)
    head.save(out / "head")
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    if ship:
        head.save(HEAD_DIR)
        (HEAD_DIR / "eval.json").write_text(json.dumps(result, indent=1))
    return result
