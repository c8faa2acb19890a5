"""Fit, measure and ship the sound-kind head (encoders/sound_kinds.py) on the audio set.

    anymal data build audio && anymal pretrain sounds [--ship]

Training items: every training sound (augmented copies and sounds under speech included) labelled with
its object word, and every `speech_every`-th training speech clip labelled "speech". Weight decay is
chosen on the validation split's known-kind sounds; the test split is scored once, by group (a new
recording of a known kind / a kind no training recording has), next to always naming the commonest
training kind. Features are the frozen `PooledWhisper` ones, cached like every other encoder's.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.feature_cache import FeatureCache
from ..encoders.sound_kinds import HEAD_DIR, PooledWhisper, SoundKindHead
from ..errors import DataError
from ..modalities import AUDIO
from .pretrain_encoders import manifest_records

SPEECH = "speech"


def _items(data_dir: Path, split: str, speech_every: int) -> list[tuple[str, str, str]]:
    """(audio path, label, group) of a split's sounds and every `speech_every`-th speech clip."""
    out, n_speech = [], 0
    for path, _, meta in manifest_records(data_dir, split, AUDIO.name):
        if meta.get("kind") == "sound":
            out.append((path, meta["object"], meta.get("group", "train")))
        elif meta.get("kind") == "speech" and meta.get("source") != "mix":
            n_speech += 1
            if n_speech % speech_every == 0:
                out.append((path, SPEECH, SPEECH))
    if not out:
        raise DataError(f"{data_dir / f'{split}.jsonl'}: no sound or speech clips; "
                        "build it with `anymal data build audio`")
    return out


def _features(cache: FeatureCache, items: list, desc: str, progress: bool) -> torch.Tensor:
    cache.fill([p for p, _, _ in items], progress=progress, desc=desc)
    return torch.stack([cache.get(p)[0] for p, _, _ in tqdm(items, desc=desc, disable=not progress)]).float()


def _fit(x: torch.Tensor, y: torch.Tensor, labels: list[str], weight_decay: float, steps: int) -> SoundKindHead:
    torch.manual_seed(0)
    head = SoundKindHead(labels, x.shape[1])
    head.mean.copy_(x.mean(0))
    head.std.copy_(x.std(0) + 1e-6)
    opt = torch.optim.Adam(head.linear.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(x), y).backward()
        opt.step()
    return head.eval()


def _scores(head: SoundKindHead, x: torch.Tensor, items: list) -> dict:
    """Top-1 / top-3 accuracy per group (known kind, new kind, speech) and overall."""
    with torch.no_grad():
        top = head(x).topk(3, dim=-1).indices.tolist()
    named = [[head.labels[i] for i in row] for row in top]
    out = {}
    for group in sorted({g for _, _, g in items}) + ["all"]:
        idx = [i for i, (_, _, g) in enumerate(items) if group in (g, "all")]
        out[group] = {"n": len(idx), "top1": sum(named[i][0] == items[i][1] for i in idx) / len(idx),
                      "top3": sum(items[i][1] in named[i] for i in idx) / len(idx)}
    return out


def pretrain_sounds(data_dir: str | Path, out_dir: str | Path, ship: bool = False, speech_every: int = 5,
                    steps: int = 500, progress: bool = True) -> dict:
    """Fit the head on `data_dir`'s train split, pick the weight decay on val, score test; write eval.json."""
    data_dir, out = Path(data_dir), Path(out_dir)
    cache = FeatureCache(PooledWhisper())
    splits = {s: _items(data_dir, s, speech_every) for s in ("train", "val", "test")}
    feats = {s: _features(cache, items, f"pooling {s}", progress) for s, items in splits.items()}
    labels = sorted({label for _, label, _ in splits["train"]})
    y = torch.tensor([labels.index(label) for _, label, _ in splits["train"]])
    tried = {wd: _scores(_fit(feats["train"], y, labels, wd, steps), feats["val"], splits["val"])
             for wd in (1e-4, 1e-3, 1e-2)}
    best = max(tried, key=lambda wd: (tried[wd].get("known kind", tried[wd]["all"])["top1"], -wd))
    head = _fit(feats["train"], y, labels, best, steps)
    commonest = Counter(label for _, label, g in splits["train"] if label != SPEECH).most_common(1)[0][0]
    result = {"labels": len(labels), "train_items": len(y), "weight_decay": best, "val_by_weight_decay": tried,
              "test": _scores(head, feats["test"], splits["test"]),
              "test_majority_top1": {g: sum(label == commonest for _, label, gg in splits["test"] if gg == g) /
                                     max(1, sum(gg == g for _, _, gg in splits["test"]))
                                     for g in sorted({g for _, _, g in splits["test"]})},
              "commonest_training_kind": commonest, "data": str(data_dir), "speech_every": speech_every,
              "steps": steps}
    out.mkdir(parents=True, exist_ok=True)
    head.save(out / "head")
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    if ship:
        head.save(HEAD_DIR)
        (HEAD_DIR / "eval.json").write_text(json.dumps(result, indent=1))
    return result
