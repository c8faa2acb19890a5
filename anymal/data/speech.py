"""Real audio sets for the audio adapter: human speech, synthetic speech and sound effects.

Clips are 16 kHz mono 16-bit FLAC (lossless, half the size of WAV) under `audio/<split>/<source>/`;
`train/val/test.jsonl` use the messages format (user: `<audio>` + instruction; assistant: answer) and
each `meta` has `kind` (speech | sound), `source`, `voice`, `transcript` or `caption` (+ `object`), `licence`.

## Sources and licences
* **Asterisk core sounds** (Debian `asterisk-core-sounds-en(-wav)`; voice of Allison Smith, (c) Digium;
  **CC-BY-SA-3.0**): 8 kHz telephone prompts. Answer = the transcript of `core-sounds-en.txt.gz`,
  spaces collapsed, symbol glosses cut ("dash [-]" -> "dash"). Non-speech clips (tones, silence)
  and clips over 30 s (the adapter's audio limit) are left out.
* **espeak-ng** (**GPL-3**) and **flite** (**BSD-like**, CMU) TTS: several voices and speaking rates
  reading the Asterisk transcripts and the Tux Paint captions. Sentences with symbols (*, #, ...)
  are left out: a voice reads them differently from the written answer.
* **Tux Paint stamp sound effects** (Debian `tuxpaint-stamps-default`; (c) the Tux Paint authors,
  https://tuxpaint.org; **GPL-2**): `<stamp>.ogg` next to stamp images outside `symbols/` (not the
  spoken `*_desc*.ogg`, not localized speech). Answer = "The sound of " + the caption with its first
  letter lower-cased ("A duck." -> "The sound of a duck."), only for captions that are one short
  noun phrase (at most 6 words; no quotes, dashes, '!', '?').

## Splits
`caption_split` of the transcript or caption (a hash of its lower-cased, punctuation-free text), the
function and fractions of the Tux Paint image set: no sentence is in two splits whatever the voice,
and a held-out stamp is held out both as an image and as a sound. The seed varies instructions,
voices and speaking rates, never the split.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..encoders.media import load_audio
from ..errors import AnymalError, DataError, InputError
from .jsonl import SkipReport
from .tuxpaint import STAMPS_DIR, caption_split, find_stamps, object_word

ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SAMPLE_RATE = 16000
MAX_SECONDS = 30.0  # load_audio's default limit: longer clips could not be used by the adapter
EXT = ".flac"
SOURCES = ("asterisk", "tts", "sounds")
LICENCES = {"asterisk": "CC-BY-SA-3.0 (Asterisk core sounds, Allison Smith / Digium)",
            "tuxpaint": "GPL-2 (Tux Paint stamps)", "espeak-ng": "audio synthesised by espeak-ng (GPL-3)",
            "flite": "audio synthesised by flite (BSD-like)"}
SPEECH_INSTRUCTIONS = ["Transcribe this audio.", "What is being said?", "Write down what you hear.",
                       "What does the speaker say?", "Transcribe the speech.", "Please write out the spoken words.",
                       "What words are spoken in this clip?", "Give a transcript of this recording."]
SOUND_INSTRUCTIONS = ["What makes this sound?", "What do you hear?", "What is making this noise?",
                      "Name the source of this sound.", "What could make a sound like this?",
                      "Describe the sound briefly."]
# (engine, voice). espeak-ng "+f3"-style suffixes are voice variants; flite `awb_time` and `kal16`
# are left out (a clock-only voice and a duplicate of kal).
VOICES = [("espeak-ng", v) for v in ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029",
                                     "en-us+f3", "en-gb+f2", "en-us+m3")] + \
         [("flite", v) for v in ("kal", "slt", "rms", "awb")]
_NON_SPEECH = re.compile(r"^\s*[\[(<]")  # "[ascending tones]", "(1 second of silence)", "<beep ascending>"
_SYMBOLS = re.compile(r"[*#@$%&/\\\[\]<>{}|~^_=+]")  # TTS voices read these differently from Allison
_PLAIN_NOUN_PHRASE = re.compile(r"^[^.!?“”\"—:;]+\.$")


def read_transcripts(path: Path = ASTERISK_TRANSCRIPTS) -> dict[str, str]:
    """`key: transcript` lines (key = path under en_US_f_Allison/ without .wav); `;` lines are comments."""
    if not path.is_file():
        raise DataError(f"{path}: Asterisk transcripts not found; apt-get install asterisk-core-sounds-en")
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.startswith(";"):
                continue
            key, sep, text = line.partition(":")
            if not sep or not key.strip():
                raise DataError(f"{path}:{n}: expected `key: transcript`, got {line.strip()!r}")
            out[key.strip()] = text.strip()
    return out


def clean_transcript(text: str) -> str | None:
    """None for non-speech; else the transcript with symbol glosses ("dash [-]") cut, spaces collapsed."""
    if _NON_SPEECH.match(text):
        return None
    return " ".join(re.sub(r"\s*\[[^\]]*\]", "", text).split()) or None


def sound_answer(caption: str) -> str | None:
    """'A duck.' -> 'The sound of a duck.'; None unless the caption is one short plain noun phrase.

    Rule: a single sentence ending in '.', without quotes, dashes or '!?:;', at most 6 words; its
    first letter is lower-cased (proper nouns later in the phrase keep their case).
    """
    if not _PLAIN_NOUN_PHRASE.match(caption) or len(caption.split()) > 6 or not object_word(caption):
        return None
    return f"The sound of {caption[0].lower()}{caption[1:]}"


def _key_order(keys: list[str], limit: int | None) -> list[str]:
    """All keys in order, or a deterministic hash-shuffled subset (so a small build spans the splits)."""
    return keys if limit is None else sorted(keys, key=lambda k: hashlib.sha256(k.encode()).hexdigest())[:limit]


@lru_cache(maxsize=None)
def _flite_voices() -> frozenset[str]:
    try:  # "Voices available: kal awb_time kal16 awb rms slt"
        return frozenset(subprocess.run(["flite", "-lv"], capture_output=True, text=True,
                                        timeout=30).stdout.split(":", 1)[-1].split())
    except (OSError, subprocess.SubprocessError):
        return frozenset()


def synthesize(text: str, engine: str, voice: str, rate: float, tmp: Path) -> np.ndarray:
    """Speak `text` -> 16 kHz mono float32. `rate` scales the speaking speed (1.0 = the voice's own)."""
    wav = tmp / f"{hashlib.sha256(f'{engine}{voice}{rate}{text}'.encode()).hexdigest()[:16]}.wav"
    if engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice, "-s", str(round(175 * rate)), "-w", str(wav), "--", text]
    elif engine == "flite":
        if voice not in _flite_voices():  # flite silently falls back to kal for unknown voices
            raise DataError(f"flite has no voice {voice!r} (has: {', '.join(sorted(_flite_voices())) or 'none'})")
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={1 / rate:.3f}", "-t", text, "-o", str(wav)]
    else:
        raise DataError(f"unknown TTS engine {engine!r}, expected espeak-ng or flite")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise DataError(f"{engine} is not installed (apt-get install {engine})") from None
    except subprocess.TimeoutExpired:
        raise DataError(f"{engine} -v {voice} timed out after 60 s") from None
    if r.returncode != 0 or not wav.is_file():
        raise DataError(f"{engine} -v {voice} failed (exit {r.returncode}): {r.stderr.strip()[:200]}")
    try:
        return load_audio(wav, SAMPLE_RATE, MAX_SECONDS)
    finally:
        wav.unlink(missing_ok=True)


def _unusable(skipped: SkipReport, where: str, e: Exception, prefix: str = "unusable audio") -> None:
    """Count a decode/validation error under a reason shared by all files (numbers and paths cut)."""
    msg = re.sub(r"^\S+: ", "", str(e))  # load_audio messages start with the (possibly temporary) file name
    skipped.add(f"{prefix}: " + re.sub(r"[\d.]+ s of audio", "audio", msg).split(" (")[0], f"{where}: {msg}")


def audio_record(out: Path, split: str, folder: str, name: str, wave: np.ndarray, instruction: str, answer: str,
                 meta: dict) -> tuple[str, dict]:
    """Write `wave` as `audio/<split>/<folder>/<name>.flac` under `out`; (split, its manifest record)."""
    rel = f"audio/{split}/{folder}/" + re.sub(r"[^\w.-]+", "_", name) + EXT
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(out / rel, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    meta["seconds"] = round(len(wave) / SAMPLE_RATE, 2)
    return split, {"messages": [{"role": "user", "content": f"<audio>{instruction}"},
                                {"role": "assistant", "content": answer}], "audios": [rel], "meta": meta}


def _asterisk(out: Path, val: float, test: float, seed: int, limit: int | None, skipped: SkipReport,
              progress: bool) -> list[tuple[str, dict]]:
    transcripts = read_transcripts()
    if not ASTERISK_DIR.is_dir():
        raise DataError(f"{ASTERISK_DIR}: Asterisk prompts not found; apt-get install asterisk-core-sounds-en-wav")
    wavs = {str(p.relative_to(ASTERISK_DIR))[:-4]: p for p in sorted(ASTERISK_DIR.rglob("*.wav"))}
    recs = []
    for key in tqdm(_key_order(sorted(wavs), limit), desc="asterisk", disable=not progress):
        text = clean_transcript(transcripts.get(key, ""))
        if text is None:
            skipped.add("Asterisk clip is not speech or has no transcript", f"{key}: {transcripts.get(key)!r}")
            continue
        try:
            wave = load_audio(wavs[key], SAMPLE_RATE, MAX_SECONDS)
        except AnymalError as e:
            _unusable(skipped, str(wavs[key]), e)
            continue
        meta = {"kind": "speech", "source": "asterisk", "file": f"{key}.wav", "voice": "asterisk:allison",
                "transcript": text, "licence": LICENCES["asterisk"]}
        q = random.Random(f"{seed}:asterisk:{key}").choice(SPEECH_INSTRUCTIONS)
        recs.append(audio_record(out, caption_split(text, val, test), "asterisk", key, wave, q, text, meta))
    return recs


def tts_sentences(limit: int | None = None) -> list[tuple[str, str]]:
    """(sentence, text source): Asterisk transcripts then Tux Paint captions, deduplicated like caption_split."""
    pool: dict[str, tuple[str, str]] = {}
    texts = [(t, "asterisk") for t in map(clean_transcript, read_transcripts().values()) if t] \
        if ASTERISK_TRANSCRIPTS.is_file() else []
    texts += [(s.caption, "tuxpaint") for s in find_stamps()[0]] if STAMPS_DIR.is_dir() else []
    for text, origin in texts:
        pool.setdefault(re.sub(r"\W+", " ", text.lower()).strip(), (text, origin))
    return [pool[k] for k in _key_order(list(pool), limit)]


def _tts(out: Path, val: float, test: float, seed: int, limit: int | None, per_sentence: int,
         skipped: SkipReport, progress: bool) -> list[tuple[str, dict]]:
    jobs = []
    for text, origin in tts_sentences(limit):
        if _SYMBOLS.search(text):
            skipped.add("TTS: sentence has symbols a voice reads differently", text)
            continue
        rng = random.Random(f"{seed}:tts:{text}")
        for engine, voice in rng.sample(VOICES, min(per_sentence, len(VOICES))):
            jobs.append((text, origin, engine, voice, rng.choice((0.8, 0.9, 1.0, 1.1, 1.25)), rng))

    def run(job: tuple) -> np.ndarray | AnymalError:
        try:
            return synthesize(job[0], job[2], job[3], job[4], Path(tmp))
        except AnymalError as e:
            return e

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        waves = list(tqdm(pool.map(run, jobs), total=len(jobs), desc="tts", disable=not progress))
    recs = []
    for (text, origin, engine, voice, rate, rng), wave in zip(jobs, waves):
        if isinstance(wave, InputError):  # spoken, but unusable (e.g. longer than 30 s)
            _unusable(skipped, f"{engine} {voice} {text[:40]!r}", wave, "TTS output unusable")
        elif isinstance(wave, Exception):
            skipped.add(f"TTS failed ({engine})", f"{voice}: {text[:40]!r}: {wave}")
        else:
            meta = {"kind": "speech", "source": engine, "voice": f"{engine}:{voice}@x{rate}", "transcript": text,
                    "text_source": origin, "licence": f"{LICENCES[engine]}; text {LICENCES[origin]}"}
            name = f"{engine}-{voice}-{hashlib.sha256(f'{rate}:{text}'.encode()).hexdigest()[:12]}"
            recs.append(audio_record(out, caption_split(text, val, test), "tts", name, wave,
                              rng.choice(SPEECH_INSTRUCTIONS), text, meta))
    return recs


def _sounds(out: Path, val: float, test: float, seed: int, limit: int | None, skipped: SkipReport,
            progress: bool) -> list[tuple[str, dict]]:
    by_ogg = {}  # the image set's stamps (not symbols/: those sounds are spoken letters and digits)
    for s in find_stamps()[0]:
        if s.path.with_suffix(".ogg").is_file():
            by_ogg.setdefault(str(s.path.with_suffix(".ogg").relative_to(STAMPS_DIR)), s)
    recs = []
    for rel_ogg in tqdm(_key_order(sorted(by_ogg), limit), desc="sounds", disable=not progress):
        s, answer = by_ogg[rel_ogg], sound_answer(by_ogg[rel_ogg].caption)
        if answer is None:
            skipped.add("sound: caption is not a short plain noun phrase", f"{rel_ogg}: {s.caption!r}")
            continue
        try:
            wave = load_audio(STAMPS_DIR / rel_ogg, SAMPLE_RATE, MAX_SECONDS)
        except AnymalError as e:
            _unusable(skipped, str(STAMPS_DIR / rel_ogg), e)
            continue
        meta = {"kind": "sound", "source": "tuxpaint", "file": rel_ogg, "voice": None, "caption": s.caption,
                "object": object_word(s.caption), "category": s.category, "licence": LICENCES["tuxpaint"]}
        q = random.Random(f"{seed}:sounds:{rel_ogg}").choice(SOUND_INSTRUCTIONS)
        recs.append(audio_record(out, caption_split(s.caption, val, test), "sounds", rel_ogg[:-4], wave, q, answer, meta))
    return recs


def build_audio(out: str | Path, seed: int = 0, val: float = 0.1, test: float = 0.1, tts_per_sentence: int = 1,
                sources: tuple[str, ...] | str = SOURCES, limit: int | dict[str, int] | None = None,
                progress: bool = True) -> dict:
    """Write `{out}/{train,val,test}.jsonl`, `audio/`, `stats.json`, `README.md`; return the stats.

    `limit` caps the clips (Asterisk, sounds) or sentences (TTS) per source, as an int for every
    source or a dict {source: n}; the subset is a deterministic hash sample, so it spans the splits.
    """
    sources = tuple(x.strip() for x in sources.split(",")) if isinstance(sources, str) else tuple(sources)
    lim = limit if isinstance(limit, dict) else {s: limit for s in SOURCES}
    if set(sources) - set(SOURCES) or set(lim) - set(SOURCES):
        raise DataError(f"unknown audio sources {sorted((set(sources) | set(lim)) - set(SOURCES))}, "
                        f"expected some of {SOURCES} (in `sources` and `limit`)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, skipped, recs = time.time(), SkipReport(), []
    if "asterisk" in sources:
        recs += _asterisk(out, val, test, seed, lim.get("asterisk"), skipped, progress)
    if "tts" in sources:
        recs += _tts(out, val, test, seed, lim.get("tts"), tts_per_sentence, skipped, progress)
    if "sounds" in sources:
        recs += _sounds(out, val, test, seed, lim.get("sounds"), skipped, progress)
    counts: dict[str, dict] = {}
    for split in ("train", "val", "test"):
        mine = [r for s, r in recs if s == split]
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in mine),
                                            encoding="utf-8")
        c = counts[split] = {"total": len(mine)}
        for r in mine:
            for k in (r["meta"]["kind"], f"{r['meta']['kind']}/{r['meta']['source']}"):
                c[k] = c.get(k, 0) + 1
        c["hours"] = round(sum(r["meta"]["seconds"] for r in mine) / 3600, 3)
        c["unique_answers"] = len({r["messages"][1]["content"] for r in mine})
    stats = {"counts": counts, "skipped": dict(skipped.reasons), "seconds_to_build": round(time.time() - start, 1),
             "bytes": sum((out / r["audios"][0]).stat().st_size for _, r in recs),
             "sources": list(sources), "seed": seed, "val": val, "test": test, "tts_per_sentence": tts_per_sentence}
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "README.md").write_text("# Audio set (built by `anymal data build audio`)\n\n"
                                   f"Counts: `{json.dumps(counts)}`\n\n" + (__doc__ or "").split("\n", 1)[1])
    if skipped.total:
        print(skipped.summary())
    return stats
