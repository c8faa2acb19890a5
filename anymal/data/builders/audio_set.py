"""The audio set (`anymal data build audio`): real and synthetic speech, and named real sounds.

Clips are 16 kHz mono 16-bit FLAC (lossless, half the size of WAV) under `audio/<split>/<source>/`;
`train/val/test.jsonl` (and `test-mixed.jsonl`) use the messages format (user: `<audio>` + instruction;
assistant: answer) and each `meta` has `kind` (speech | sound), `source`, `voice`, `transcript` or
`caption` (+ `object`), `licence`, and on val/test `group` (what the evaluation reports apart).

## Sources and licences
* **Asterisk core sounds** (Debian `asterisk-core-sounds-en(-wav)`; voice of Allison Smith, (c) Digium;
  **CC-BY-SA-3.0**): 8 kHz telephone prompts. Answer = the transcript of `core-sounds-en.txt.gz`,
  spaces collapsed, symbol glosses cut ("dash [-]" -> "dash"). Non-speech clips (tones, silence)
  and clips over 30 s (the adapter's audio limit) are left out.
* **espeak-ng** (**GPL-3**) and **flite** (**BSD-like**, CMU) TTS: several voices and speaking rates
  reading the Asterisk transcripts and the Tux Paint captions. Sentences with symbols (*, #, ...)
  are left out: a voice reads them differently from the written answer.
* **Festival** with the `ked` diphone voice (Debian `festival festvox-kdlpc16k`, CSTR Edinburgh,
  MIT-style licence): a voice no training clip uses; it reads the test sentences only (group
  "held-out voice").
* **Single words** (`spoken_words`): the training TTS voices saying one object word of a Tux Paint
  caption (not the words of the real-voice test set, `anymal data build human-speech`), two voices a
  word; answer = the word. Without them a short spoken word was answered as a sound.
* **Tux Paint stamp sound effects** (Debian `tuxpaint-stamps-default`; (c) the Tux Paint authors,
  https://tuxpaint.org; **GPL-2**): `<stamp>.ogg` next to stamp images outside `symbols/` (not the
  spoken `*_desc*.ogg`, not localized speech). Answer = "The sound of " + the caption with its first
  letter lower-cased ("A duck." -> "The sound of a duck."), only for captions that are one short
  noun phrase (at most 6 words; no quotes, dashes, '!', '?').
* **OpenSFX** (CC-BY-3.0 / CC0 / CC-BY-SA-3.0 per clip), **Scratch 1.4 media** (CC-BY-SA-3.0) and
  **GCompris** (GPL-3) sounds, named by hand (`sound_effects.NAMES`): "The sound of a cow."

## Splits
Speech: `caption_split` of the transcript (a hash of its lower-cased, punctuation-free text), the
function and fractions of the Tux Paint image set: no sentence or single word is in two splits
whatever the voice.
Sounds: by recording (`sound_set`): a new recording of a known kind is the usual test case ("known
kind"), a kind no training recording names the zero-shot one ("new kind"); a held-out Tux Paint stamp
is held out as an image, a video and a sound. The seed varies instructions, voices, speaking rates,
augmentations and mixes, never the split.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ...errors import DataError
from ...modalities import AUDIO
from ..jsonl import SkipReport
from .sound_effects import SOURCES as EFFECT_SOURCES
from .sound_set import mixed_records, sound_records
from .speech import asterisk_records, tts_records
from .spoken_words import word_records

SOUND_SOURCES = ("tuxpaint", *EFFECT_SOURCES)
SOURCES = ("asterisk", "tts", *SOUND_SOURCES, "words")
SPLITS = ("train", "val", "test", "test-mixed")


def _counts(recs: list[dict]) -> dict:
    c = {"total": len(recs)}
    for r in recs:
        for k in (r["meta"]["kind"], f"{r['meta']['kind']}/{r['meta']['source']}",
                  *([f"{r['meta']['kind']}/group:{r['meta']['group']}"] if "group" in r["meta"] else [])):
            c[k] = c.get(k, 0) + 1
    c["hours"] = round(sum(r["meta"]["seconds"] for r in recs) / 3600, 3)
    c["unique_answers"] = len({r["messages"][1]["content"] for r in recs})
    return c


def build_audio(out: str | Path, seed: int = 0, val: float = 0.1, test: float = 0.1, tts_per_sentence: int = 1,
                sources: tuple[str, ...] | str = SOURCES, limit: int | dict[str, int] | None = None,
                sound_copies: int = 4, mixes: dict[str, int] | None = None, voices_per_word: int = 2,
                progress: bool = True) -> dict:
    """Write `{out}/{train,val,test,test-mixed}.jsonl`, `audio/`, `stats.json`, `README.md`; return the stats.

    `limit` caps the clips (Asterisk, sounds) or sentences (TTS) per source, as an int for every
    source or a dict {source: n}; the subset is a deterministic hash sample, so it spans the splits.
    `sound_copies` counts each training sound with its augmented copies; `mixes` is the number of
    speech-over-sound clips per split (each asked two ways); `voices_per_word` speak each single word.
    """
    sources = tuple(x.strip() for x in sources.split(",")) if isinstance(sources, str) else tuple(sources)
    lim = limit if isinstance(limit, dict) else {s: limit for s in SOURCES}
    if set(sources) - set(SOURCES) or set(lim) - set(SOURCES):
        raise DataError(f"unknown audio sources {sorted((set(sources) | set(lim)) - set(SOURCES))}, "
                        f"expected some of {SOURCES} (in `sources` and `limit`)")
    mixes = {"train": 300, "val": 20, "test": 60} if mixes is None else mixes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, skipped, recs = time.time(), SkipReport(), []
    if "asterisk" in sources:
        recs += asterisk_records(out, val, test, seed, lim.get("asterisk"), skipped, progress)
    if "tts" in sources:
        recs += tts_records(out, val, test, seed, lim.get("tts"), tts_per_sentence, skipped, progress)
    sound_sources = tuple(s for s in SOUND_SOURCES if s in sources)
    if sound_sources:
        sound_limit = min((lim[s] for s in sound_sources if lim.get(s) is not None), default=None)
        recs += sound_records(out, val, test, seed, sound_limit, sound_copies, sound_sources, skipped, progress)
    recs += mixed_records(out, recs, mixes, seed)
    if "words" in sources:  # after the mixes, which put sounds under sentences
        recs += word_records(out, val, test, seed, lim.get("words"), voices_per_word, skipped, progress)
    by_split = {split: [r for s, r in recs if s == split] for split in SPLITS}
    for split, mine in by_split.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in mine),
                                            encoding="utf-8")
    counts = {split: _counts(mine) for split, mine in by_split.items()}
    stats = {"counts": counts, "skipped": dict(skipped.reasons), "seconds_to_build": round(time.time() - start, 1),
             "bytes": sum((out / r[AUDIO.list_key][0]).stat().st_size for _, r in recs),
             "sources": list(sources), "seed": seed, "val": val, "test": test, "tts_per_sentence": tts_per_sentence,
             "sound_copies": sound_copies, "mixes": mixes, "voices_per_word": voices_per_word}
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "README.md").write_text("# Audio set (built by `anymal data build audio`)\n\n"
                                   f"Counts: `{json.dumps(counts)}`\n\n" + (__doc__ or "").split("\n", 1)[1])
    if skipped.total:
        print(skipped.summary())
    return stats
