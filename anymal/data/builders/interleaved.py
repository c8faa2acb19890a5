"""Interleaved multi-input instructions built from the real single-modality sets.

Two kinds, each needing *both* inputs to answer, with the inputs in random order in the prompt:

- image + IMU: "Given what I see and how I'm moving, what am I doing?" -> "You are walking upstairs
  while looking at a red apple." (the object from the Tux Paint caption, the activity from HAPT);
- image + sound: "Does this sound come from what is in the picture?" -> "Yes: ..." / "No: the
  picture shows a duck, but the sound is of a cow." (Tux Paint stamps with a sound effect).

Pairs are drawn within one split of every source (train with train, test with test), so the held-out
images, sounds and IMU users of each source stay held out here. Run after `anymal data build
tuxpaint`, `audio` and `hapt`.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from ...errors import DataError
from ...modalities import AUDIO, IMAGE, IMU
from . import dataset_dir
from .stamp_video import subject

ACTIVITY = {1: "walking", 2: "walking upstairs", 3: "walking downstairs", 4: "sitting still", 5: "standing still",
            6: "lying down", 7: "sitting down", 8: "standing up", 9: "lying down from sitting", 10: "sitting up",
            11: "lying down from standing", 12: "getting up from lying down"}
IMAGE_IMU_QUESTIONS = ["Given what I see and how I'm moving, what am I doing?",
                       "Here is what I'm looking at and my motion data. What am I doing?",
                       "What am I doing, judging by my view and my movement?"]
SOUND_QUESTIONS = ["Does this sound come from what is in the picture?", "Does the sound match the picture?"]


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: missing; build the source set first (see `anymal data build --help`)")
    recs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: invalid JSON ({e})") from None
    return recs


def _media(rec: dict, key: str, src: Path, out: Path) -> str:
    return os.path.relpath(src.parent / rec[key][0], out)


_DETERMINERS = {"a", "an", "the", "our", "some", "two", "three", "this", "my", "your"}


def _lower(np_: str) -> str:
    """'A red apple' -> 'a red apple', 'Our moon' -> 'our moon'; names ('Mars') keep their capital."""
    return np_[0].lower() + np_[1:] if np_.split()[0].lower() in _DETERMINERS else np_


def _pair(rng: random.Random, parts: list[str]) -> str:
    rng.shuffle(parts)
    return "".join(parts)


def build_interleaved(out: str | Path, tuxpaint: str | Path = dataset_dir("tuxpaint"),
                      audio: str | Path = dataset_dir("audio"), hapt: str | Path = dataset_dir("hapt"), pairs: dict | None = None, seed: int = 0,
                      progress: bool = True) -> dict:
    """Write `{train,val,test}.jsonl` under `out` (media referenced from the source sets); return counts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = pairs or {"train": 1200, "val": 100, "test": 150}  # image+IMU pairs per split
    counts: dict = {}
    for split, n_pairs in pairs.items():
        rng = random.Random(f"{seed}:{split}")
        tux_file, hapt_file, audio_file = (Path(d) / f"{split}.jsonl" for d in (tuxpaint, hapt, audio))
        images = [r for r in _read(tux_file) if subject(r["meta"]["caption"]) and r[IMAGE.list_key][0].endswith("-0.png")]
        imus = _read(hapt_file)
        sounds = [r for r in _read(audio_file)  # stamps with a picture: Tux Paint's own recordings, not copies
                  if r["meta"].get("kind") == "sound" and r["meta"].get("source", "tuxpaint") == "tuxpaint"
                  and not r["meta"].get("augmented") and subject(r["meta"]["caption"])]
        if not images or not imus:
            raise DataError(f"{split}: no usable images in {tux_file} or IMU windows in {hapt_file}")
        recs = []
        for _ in range(n_pairs):
            img, imu = rng.choice(images), rng.choice(imus)
            thing = _lower(subject(img["meta"]["caption"]))
            doing = ACTIVITY[imu["meta"]["label"]]
            q = IMAGE_IMU_QUESTIONS[0] if split != "train" else rng.choice(IMAGE_IMU_QUESTIONS)
            recs.append({"messages": [{"role": "user", "content": _pair(rng, ["<image>", "<imu>"]) + q},
                                      {"role": "assistant", "content": f"You are {doing} while looking at {thing}."}],
                         IMAGE.list_key: [_media(img, IMAGE.list_key, tux_file, out)], IMU.list_key: [_media(imu, IMU.list_key, hapt_file, out)],
                         "meta": {"kind": "image+imu", "object": img["meta"]["object"], "activity": doing,
                                  "label": imu["meta"]["label"], "category": img["meta"]["category"]}})
        by_object = {}
        for r in images:
            by_object.setdefault(subject(r["meta"]["caption"]).lower(), r)
        for snd in sounds:  # one matching and one mismatching picture per sound
            heard = subject(snd["meta"]["caption"])
            same = by_object.get(heard.lower())
            other = rng.choice([r for r in images if subject(r["meta"]["caption"]).lower() != heard.lower()])
            for img, match in ((same, True), (other, False)):
                if img is None:
                    continue
                seen = _lower(subject(img["meta"]["caption"]))
                answer = (f"Yes: it is the sound of {_lower(heard)}, and the picture shows {seen}." if match else
                          f"No: the picture shows {seen}, but the sound is of {_lower(heard)}.")
                q = SOUND_QUESTIONS[0] if split != "train" else rng.choice(SOUND_QUESTIONS)
                recs.append({"messages": [{"role": "user", "content": _pair(rng, ["<image>", "<audio>"]) + q},
                                          {"role": "assistant", "content": answer}],
                             IMAGE.list_key: [_media(img, IMAGE.list_key, tux_file, out)],
                             AUDIO.list_key: [_media(snd, AUDIO.list_key, audio_file, out)],
                             "meta": {"kind": "image+sound", "match": match, "object": img["meta"]["object"],
                                      "sound_object": snd["meta"]["object"], "category": "match" if match else "mismatch"}})
        with (out / f"{split}.jsonl").open("w") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        counts[split] = {k: sum(r["meta"]["kind"] == k for r in recs) for k in ("image+imu", "image+sound")}
    (out / "README.md").write_text("Built by `anymal data build interleaved` from data/tuxpaint (GPL-2), data/audio "
                                   "(Tux Paint sounds, GPL-2) and data/hapt (UCI HAPT, CC BY 4.0); each split pairs "
                                   "items of the same split of every source.\n")
    (out / "stats.json").write_text(json.dumps(counts, indent=1))
    return counts
