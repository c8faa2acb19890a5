"""Real human voices reading single English words: a test-only set of speakers no training set has.

Every speech clip the adapter trains on is Allison Smith (Asterisk) or a TTS voice; this set measures
transcription of voices it never heard, next to Whisper tiny.en's own decoder on the same clips.

## Sources (Debian packages, **GPL-2+**, KDE Edu)
* **KTuberling** (`ktuberling-data`): 71 English words read by one speaker, `sounds/en/*.ogg`, named in
  `en.soundtheme` as `<theme>_<word>` ("egypt_camel"). The word is the name without its theme prefix;
  four names are not the spoken spelling and are mapped ("palmtree" -> "palm tree", "brocolli" -> "broccoli").
* **KLettres** (`klettres-data`): short words read by a US (`en`) and a British (`en_GB`) speaker,
  `<lang>/syllab/*.ogg`, listed in `<lang>/sounds.xml`. Entries without a vowel are sounds, not words
  ("CH", "TH"), and are left out, as are the spelled letters (a letter's name has no one spelling).
"""
from __future__ import annotations

import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from tqdm import tqdm

from ...encoders.media import load_audio
from ...errors import AnymalError, DataError
from ..jsonl import SkipReport
from .speech import MAX_SECONDS, SAMPLE_RATE, SPEECH_INSTRUCTIONS, audio_record

KTUBERLING = Path("/usr/share/ktuberling/sounds")
KLETTRES = Path("/usr/share/klettres")
LICENCE = "GPL-2+ (KDE Edu: {})"
SPOKEN = {"palmtree": "palm tree", "sphynx": "sphinx", "fallingstar": "falling star", "brocolli": "broccoli"}


def _sounds(xml: Path, section: str | None = None) -> list[tuple[str, str]]:
    """(name, file) of every <sound> in `xml` (or in its `section` element)."""
    root = ET.fromstring(xml.read_text(encoding="utf-8"))
    scope = root.find(f".//{section}") if section else root
    return [(s.get("name", ""), s.get("file", "")) for s in (scope.iter("sound") if scope is not None else [])]


def human_words() -> list[tuple[str, Path, str, str]]:
    """(word, clip, voice, package) for every usable recording."""
    theme = KTUBERLING / "en.soundtheme"
    if not theme.is_file() or not (KLETTRES / "en").is_dir():
        raise DataError(f"{theme} or {KLETTRES}/en not found; apt-get install ktuberling-data klettres-data")
    out = [(SPOKEN.get(w := name.split("_", 1)[-1], w), KTUBERLING / f, "ktuberling:en", "ktuberling-data")
           for name, f in _sounds(theme)]
    for lang in ("en", "en_GB"):
        out += [(name.lower(), KLETTRES / f, f"klettres:{lang}", "klettres-data")
                for name, f in _sounds(KLETTRES / lang / "sounds.xml", "syllables") if re.search(r"[aeiouy]", name.lower())]
    return out


def build_human_speech(out: str | Path, seed: int = 0, progress: bool = True) -> dict:
    """Write `{out}/test.jsonl` and `audio/test/<voice>/`; return the counts and what was skipped."""
    out, skipped, records = Path(out), SkipReport(), []
    for word, clip, voice, package in tqdm(human_words(), desc="human speech", disable=not progress):
        try:
            wave = load_audio(clip, SAMPLE_RATE, MAX_SECONDS)
        except AnymalError as e:
            skipped.add("unreadable recording", f"{clip}: {e}")
            continue
        meta = {"kind": "speech", "source": voice.split(":")[0], "group": voice, "voice": voice,
                "file": str(clip), "transcript": word, "licence": LICENCE.format(package)}
        q = random.Random(f"{seed}:{voice}:{word}").choice(SPEECH_INSTRUCTIONS)
        records.append(audio_record(out, "test", voice.replace(":", "-"), word, wave, q, word, meta)[1])
    (out / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    voices = sorted({r["meta"]["voice"] for r in records})
    stats = {"test": len(records), "voices": {v: sum(r["meta"]["voice"] == v for r in records) for v in voices},
             "skipped": dict(skipped.reasons)}
    if skipped.total:
        print(skipped.summary())
    return stats
