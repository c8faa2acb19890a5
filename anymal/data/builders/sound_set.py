"""The audio set's sound part: every named recording, split by *recording*, with augmented training copies.

A user's usual question is about a new recording of a known kind (their dog, a doorbell), so the test
split must hold recordings, not only kinds, out. Rules, in order:

1. A Tux Paint stamp's sound keeps the split of its caption (`caption_split`, as the image and video
   sets): a held-out stamp stays held out in every modality.
2. The other recordings (`sound_effects`) are grouped by the object word they name. A kind with two or
   more recordings (all sources counted) that has none in test yet gives its first recording (by a
   hash of the recording id) to test, and, with four or more, one to val; the rest train. A kind
   recorded once follows `caption_split` of its object word (mostly train: a few never-heard kinds).
3. Every val/test sound gets `meta.group`: "known kind" when its object is named by some training
   recording, else "new kind" (the zero-shot case), so both numbers come from one evaluation.

Training recordings get `copies - 1` augmented copies (a random crop of 60-100 % of the clip, a gain
of -10..0 dB, white noise at 10-30 dB SNR): one recording per kind is too little to learn a kind
from. `mixes` speech clips per split get a sound under them (speech 6-12 dB louder), asked both ways
("Transcribe..." -> the words; "What is the sound behind the voice?" -> the sound): the question,
not the input, decides what is answered. Test mixes go to `test-mixed.jsonl`, apart from the main test.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ...encoders.media import load_audio
from ...errors import AnymalError
from ...modalities import AUDIO
from ..jsonl import SkipReport
from .sound_effects import sound_clips
from .speech import (LICENCES, MAX_SECONDS, SAMPLE_RATE, SOUND_INSTRUCTIONS, audio_record, key_order,
                     sound_answer, unusable)
from .tuxpaint import STAMPS_DIR, caption_split, find_stamps, object_word

BACKGROUND_INSTRUCTIONS = ["What is the sound behind the voice?", "Apart from the speech, what do you hear?",
                           "What makes the background noise?", "Ignore the words: what else makes a sound here?"]


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_recordings(items: list[tuple[str, str, str | None]], val: float, test: float) -> dict[str, str]:
    """{recording id: split} for (id, object word, fixed split or None) items, by the module's rules."""
    split = {rid: fixed for rid, _, fixed in items if fixed}
    by_object: dict[str, list[str]] = {}
    for rid, obj, _ in items:
        by_object.setdefault(obj, []).append(rid)
    for obj, rids in by_object.items():
        free = sorted((r for r in rids if r not in split), key=_hash)
        if len(rids) == 1:
            split.update({r: caption_split(obj, val, test) for r in free})
            continue
        for target, needs in (("test", 2), ("val", 4)):
            if free and len(rids) >= needs and target not in {split.get(r) for r in rids}:
                split[free.pop(0)] = target
        split.update({r: "train" for r in free})
    return split


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2))) or 1e-4  # a silent clip still scales without dividing by zero


def augment(wave: np.ndarray, rng: random.Random) -> np.ndarray:
    """A random crop (60-100 %, at least 1 s when the clip is longer), gain and white noise."""
    keep = max(min(len(wave), SAMPLE_RATE), int(len(wave) * rng.uniform(0.6, 1.0)))
    start = rng.randrange(len(wave) - keep + 1)
    out = wave[start:start + keep] * 10 ** (rng.uniform(-10, 0) / 20)
    noise = np.random.default_rng(rng.randrange(2 ** 32)).standard_normal(len(out)).astype(np.float32)
    return (out + noise * _rms(out) * 10 ** (-rng.uniform(10, 30) / 20)).astype(np.float32)


def _tuxpaint_sounds(skipped: SkipReport) -> list[tuple[str, str, str, dict, object]]:
    """(recording id, object, answer, meta, audio source) of each Tux Paint stamp with a plain-noun sound."""
    by_ogg = {}  # the image set's stamps (not symbols/: those sounds are spoken letters and digits)
    for s in find_stamps()[0]:
        if s.path.with_suffix(".ogg").is_file():
            by_ogg.setdefault(str(s.path.with_suffix(".ogg").relative_to(STAMPS_DIR)), s)
    out = []
    for rel_ogg, s in sorted(by_ogg.items()):
        answer = sound_answer(s.caption)
        if answer is None:
            skipped.add("sound: caption is not a short plain noun phrase", f"{rel_ogg}: {s.caption!r}")
            continue
        meta = {"kind": "sound", "source": "tuxpaint", "file": rel_ogg, "voice": None, "caption": s.caption,
                "object": object_word(s.caption), "category": s.category, "licence": LICENCES["tuxpaint"]}
        out.append((f"tuxpaint:{rel_ogg[:-4]}", meta["object"], answer, meta, STAMPS_DIR / rel_ogg))
    return out


def _effect_sounds(sources: tuple[str, ...]) -> list[tuple[str, str, str, dict, object]]:
    return [(f"{c.source}:{c.clip}", c.object, f"The sound of {c.phrase}.",
             {"kind": "sound", "source": c.source, "file": c.clip, "voice": None, "caption": c.phrase,
              "object": c.object, "licence": c.licence}, c.data) for c in sound_clips(sources)]


def sound_records(out: Path, val: float, test: float, seed: int, limit: int | None, copies: int,
                  sources: tuple[str, ...], skipped: SkipReport, progress: bool) -> list[tuple[str, dict]]:
    """Write every usable sound (and its training copies) under `out`; (split, record) pairs."""
    items = (_tuxpaint_sounds(skipped) if "tuxpaint" in sources else []) + \
        _effect_sounds(tuple(s for s in sources if s != "tuxpaint"))
    keep = set(key_order([i[0] for i in items], limit))
    items = [i for i in items if i[0] in keep]
    fixed = {i[0]: caption_split(i[3]["caption"], val, test) for i in items if i[3]["source"] == "tuxpaint"}
    split = split_recordings([(rid, obj, fixed.get(rid)) for rid, obj, *_ in items], val, test)
    trained = {obj for rid, obj, *_ in items if split[rid] == "train"}
    recs = []
    for rid, obj, answer, meta, data in tqdm(items, desc="sounds", disable=not progress):
        try:
            wave = load_audio(data, SAMPLE_RATE, MAX_SECONDS)
        except AnymalError as e:
            unusable(skipped, rid, e)
            continue
        rng = random.Random(f"{seed}:sounds:{rid}")
        meta = {**meta, "recording": rid}
        if split[rid] != "train":
            meta["group"] = "known kind" if obj in trained else "new kind"
        folder = meta["source"] if meta["source"] != "tuxpaint" else "sounds"  # Tux Paint: the old paths
        name = rid.split(":", 1)[1]
        recs.append(audio_record(out, split[rid], folder, name, wave, rng.choice(SOUND_INSTRUCTIONS), answer, meta))
        for k in range(1, copies if split[rid] == "train" else 1):
            recs.append(audio_record(out, "train", folder, f"{name}-aug{k}", augment(wave, rng),
                                     rng.choice(SOUND_INSTRUCTIONS), answer, {**meta, "augmented": k}))
    return recs


def mixed_records(out: Path, recs: list[tuple[str, dict]], per_split: dict[str, int], seed: int
                  ) -> list[tuple[str, dict]]:
    """Speech clips with a sound of the same split under them, each asked for the words and for the sound.

    Test mixes use "known kind" sounds only and are returned under the split name "test-mixed".
    """
    out_recs = []
    for split, n in per_split.items():
        rng = random.Random(f"{seed}:mixes:{split}")
        speech = [r for s, r in recs if s == split and r["meta"]["kind"] == "speech"]
        sounds = [r for s, r in recs if s == split and r["meta"]["kind"] == "sound"
                  and not r["meta"].get("augmented") and r["meta"].get("group", "known kind") == "known kind"]
        for talk in rng.sample(speech, min(n, len(speech))) if sounds else []:
            snd = rng.choice(sounds)
            mix = _mix(*(sf.read(out / r[AUDIO.list_key][0], dtype="float32")[0] for r in (talk, snd)), rng)
            name = f"{Path(talk[AUDIO.list_key][0]).stem}+{Path(snd[AUDIO.list_key][0]).stem}"
            meta = {"speech": talk["meta"], "sound": snd["meta"], "source": "mix", "voice": talk["meta"]["voice"],
                    "group": "speech over a sound"}
            where = "test-mixed" if split == "test" else split
            _, asked = audio_record(out, split, "mixes", name, mix, talk["messages"][0]["content"][len("<audio>"):],
                                    talk["messages"][1]["content"],
                                    {**meta, "kind": "speech", "transcript": talk["meta"]["transcript"]})
            about_sound = {**asked, "meta": {**asked["meta"], "kind": "sound", "object": snd["meta"]["object"]},
                           "messages": [{"role": "user", "content": "<audio>" + rng.choice(BACKGROUND_INSTRUCTIONS)},
                                        snd["messages"][1]]}
            out_recs += [(where, asked), (where, about_sound)]
    return out_recs


def _mix(speech: np.ndarray, sound: np.ndarray, rng: random.Random) -> np.ndarray:
    """The sound (looped or cut to the speech's length) 6-12 dB under the speech."""
    sound = np.resize(sound, len(speech))
    mix = speech + sound * _rms(speech) / _rms(sound) * 10 ** (-rng.uniform(6, 12) / 20)
    return (mix / max(1.0, float(np.abs(mix).max()))).astype(np.float32)
