"""Real audio sets for the audio adapter: human speech, synthetic speech and sound effects.

* Asterisk prompts (Debian `asterisk-core-sounds-en(-wav)`, CC-BY-SA-3.0): 8 kHz telephone speech
  by Allison Smith with exact transcripts -> "Transcribe this audio." / transcript.
* TTS (espeak-ng GPL-3, flite BSD-like): several voices reading the Asterisk transcripts and the
  Tux Paint stamp captions -> same task, unlimited speakers, byte-identical for the same input.
* Tux Paint stamp sound effects (`tuxpaint-stamps-default`, GPL-2) -> "What makes this sound?" /
  "The sound of a duck.".

Every clip is written as 16 kHz mono 16-bit WAV under `{out}/audio/{split}/{source}/`, so the set
is self-contained. Splits come from `caption_split` of the (normalised) transcript or caption, the
same function and fractions as the Tux Paint image set: a held-out sentence is held out for every
voice, and a held-out stamp is held out as an image and as a sound. The seed only varies
instructions, voices and speaking rates, never the split.
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
from ..errors import AnymalError, DataError
from .jsonl import SkipReport
from .tuxpaint import STAMPS_DIR, caption_split, find_stamps, object_word

ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SAMPLE_RATE = 16000
MAX_SECONDS = 30.0  # load_audio's default limit: longer clips could not be used by the adapter
SOURCES = ("asterisk", "tts", "sounds")
LICENCES = {
    "asterisk": "CC-BY-SA-3.0 (Asterisk core sounds, Allison Smith / Digium)",
    "tuxpaint": "GPL-2 (Tux Paint stamps)",
    "espeak-ng": "audio synthesised by espeak-ng (GPL-3)",
    "flite": "audio synthesised by flite (BSD-like)",
}
SPEECH_INSTRUCTIONS = [
    "Transcribe this audio.", "What is being said?", "Write down what you hear.",
    "What does the speaker say?", "Transcribe the speech.", "Please write out the spoken words.",
    "What words are spoken in this clip?", "Give a transcript of this recording.",
]
SOUND_INSTRUCTIONS = [
    "What makes this sound?", "What do you hear?", "What is making this noise?",
    "Name the source of this sound.", "What could make a sound like this?", "Describe the sound briefly.",
]
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
        raise DataError(f"{path}: Asterisk transcripts not found; install them with "
                        "`apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-wav`")
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
    if limit is None:
        return keys
    return sorted(keys, key=lambda k: hashlib.sha256(k.encode()).hexdigest())[:limit]


@lru_cache(maxsize=None)
def _flite_voices() -> frozenset[str]:
    try:
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(out.split(":", 1)[-1].split())


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


def _save(wave: np.ndarray, out: Path, rel: str) -> float:
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(out / rel, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return round(len(wave) / SAMPLE_RATE, 2)


def _record(rel: str, instruction: str, answer: str, meta: dict) -> dict:
    return {"messages": [{"role": "user", "content": f"<audio>{instruction}"},
                         {"role": "assistant", "content": answer}],
            "audios": [rel], "meta": meta}


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


def _asterisk(out: Path, val: float, test: float, seed: int, limit: int | None, skipped: SkipReport,
              progress: bool) -> list[tuple[str, dict]]:
    transcripts = read_transcripts()
    if not ASTERISK_DIR.is_dir():
        raise DataError(f"{ASTERISK_DIR}: Asterisk prompts not found; apt-get install asterisk-core-sounds-en-wav")
    wavs = {str(p.relative_to(ASTERISK_DIR))[:-4]: p for p in sorted(ASTERISK_DIR.rglob("*.wav"))}
    recs = []
    for key in tqdm(_key_order(sorted(wavs), limit), desc="asterisk", disable=not progress):
        if key not in transcripts:
            skipped.add("Asterisk clip without a transcript", str(wavs[key]))
            continue
        text = clean_transcript(transcripts[key])
        if text is None:
            skipped.add("Asterisk clip is not speech", f"{key}: {transcripts[key]}")
            continue
        try:
            wave = load_audio(wavs[key], SAMPLE_RATE, MAX_SECONDS)
        except AnymalError as e:
            skipped.add_error(str(wavs[key]), e)
            continue
        split = caption_split(text, val, test)
        rel = f"audio/{split}/asterisk/{_safe(key)}.wav"
        rng = random.Random(f"{seed}:asterisk:{key}")
        meta = {"kind": "speech", "source": "asterisk", "file": f"{key}.wav", "voice": "asterisk:allison",
                "transcript": text, "seconds": _save(wave, out, rel), "licence": LICENCES["asterisk"]}
        recs.append((split, _record(rel, rng.choice(SPEECH_INSTRUCTIONS), text, meta)))
    return recs


def tts_sentences(limit: int | None = None) -> list[tuple[str, str]]:
    """(sentence, text source) pairs: Asterisk transcripts then Tux Paint captions, deduplicated."""
    pool: dict[str, tuple[str, str]] = {}
    if ASTERISK_TRANSCRIPTS.is_file():
        for text in map(clean_transcript, read_transcripts().values()):
            if text:
                pool.setdefault(re.sub(r"\W+", " ", text.lower()).strip(), (text, "asterisk"))
    if STAMPS_DIR.is_dir():
        for s in find_stamps()[0]:
            pool.setdefault(re.sub(r"\W+", " ", s.caption.lower()).strip(), (s.caption, "tuxpaint"))
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
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        def run(job):
            try:
                return synthesize(job[0], job[2], job[3], job[4], Path(tmp))
            except AnymalError as e:
                return e
        waves = list(tqdm(pool.map(run, jobs), total=len(jobs), desc="tts", disable=not progress))
    recs = []
    for (text, origin, engine, voice, rate, rng), wave in zip(jobs, waves):
        if isinstance(wave, Exception):
            skipped.add(f"TTS failed ({engine})", f"{voice}: {text[:40]!r}: {wave}")
            continue
        split = caption_split(text, val, test)
        name = f"{engine}-{voice}-{hashlib.sha256(f'{rate}:{text}'.encode()).hexdigest()[:12]}"
        rel = f"audio/{split}/tts/{_safe(name)}.wav"
        meta = {"kind": "speech", "source": engine, "voice": f"{engine}:{voice}@x{rate}", "transcript": text,
                "text_source": origin, "seconds": _save(wave, out, rel),
                "licence": f"{LICENCES[engine]}; text {LICENCES[origin]}"}
        recs.append((split, _record(rel, rng.choice(SPEECH_INSTRUCTIONS), text, meta)))
    return recs


def _sounds(out: Path, val: float, test: float, seed: int, limit: int | None, skipped: SkipReport,
            progress: bool) -> list[tuple[str, dict]]:
    # the image set's stamps (no symbols/: those sounds are spoken letters and digits)
    by_ogg = {}
    for s in find_stamps()[0]:
        if s.path.with_suffix(".ogg").is_file():
            by_ogg.setdefault(str(s.path.with_suffix(".ogg").relative_to(STAMPS_DIR)), s)
    recs = []
    for rel_ogg in tqdm(_key_order(sorted(by_ogg), limit), desc="sounds", disable=not progress):
        s = by_ogg[rel_ogg]
        answer = sound_answer(s.caption)
        if answer is None:
            skipped.add("sound: caption is not a short plain noun phrase", f"{rel_ogg}: {s.caption!r}")
            continue
        try:
            wave = load_audio(STAMPS_DIR / rel_ogg, SAMPLE_RATE, MAX_SECONDS)
        except AnymalError as e:
            skipped.add_error(str(STAMPS_DIR / rel_ogg), e)
            continue
        split = caption_split(s.caption, val, test)
        rel = f"audio/{split}/sounds/{_safe(rel_ogg[:-4])}.wav"
        rng = random.Random(f"{seed}:sounds:{rel_ogg}")
        meta = {"kind": "sound", "source": "tuxpaint", "file": rel_ogg, "voice": None, "caption": s.caption,
                "object": object_word(s.caption), "category": s.category, "seconds": _save(wave, out, rel),
                "licence": LICENCES["tuxpaint"]}
        recs.append((split, _record(rel, rng.choice(SOUND_INSTRUCTIONS), answer, meta)))
    return recs


def _readme(stats: dict) -> str:
    return f"""# Audio set for the audio adapter (built by `anymal data build audio`)

Counts: {json.dumps(stats['counts'])}

Every clip is 16 kHz mono 16-bit WAV under `audio/<split>/<source>/`. Manifests `train/val/test.jsonl`
use the messages format: the user turn is `<audio>` + an instruction, the assistant turn the answer;
`meta` has `kind` (speech | sound), `source`, `voice`, `transcript` or `caption` (+ `object`), `licence`.

## Sources and licences
* **Asterisk core sounds** (Debian `asterisk-core-sounds-en(-wav)`), voice of Allison Smith,
  (c) Digium, **CC-BY-SA-3.0**. 8 kHz telephone prompts, resampled to 16 kHz. Answer = the
  transcript from `core-sounds-en.txt.gz`, whitespace collapsed, symbol glosses cut ("dash [-]" ->
  "dash"). Non-speech clips (tones, silence) and clips over {MAX_SECONDS:.0f} s are left out.
* **espeak-ng** (**GPL-3**) and **flite** (**BSD-like**, CMU/Edinburgh) TTS reading the Asterisk
  transcripts and the Tux Paint captions with several voices and speaking rates. Sentences with
  symbols (*, #, ...) are left out: a voice reads them differently from the written answer.
* **Tux Paint stamp sound effects** (Debian `tuxpaint-stamps-default`, (c) the Tux Paint authors,
  **GPL-2**; https://tuxpaint.org): `<stamp>.ogg` next to the stamp images outside `symbols/`
  (spoken descriptions `*_desc*.ogg` and localized speech are not used). Answer = "The sound of " +
  the caption with its first letter lower-cased ("A duck." -> "The sound of a duck."), only for
  captions that are one short noun phrase (no quotes, '!', '?', at most 6 words).

## Splits
`caption_split` (a hash of the lower-cased, punctuation-free transcript or caption; the function
used for the Tux Paint image set): no transcript or caption is in two splits, whatever the voice,
and a held-out stamp is held out both as an image and as a sound.
"""


def build_audio(out: str | Path, seed: int = 0, val: float = 0.1, test: float = 0.1, tts_per_sentence: int = 2,
                sources: tuple[str, ...] = SOURCES, limit: int | dict[str, int] | None = None,
                progress: bool = True) -> dict:
    """Write `{out}/{train,val,test}.jsonl`, `audio/`, `stats.json`, `README.md`; return the stats.

    `limit` caps the clips (Asterisk, sounds) or sentences (TTS) per source, as an int for every
    source or a dict {source: n}; the subset is a deterministic hash sample, so it spans the splits.
    """
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise DataError(f"unknown audio sources {sorted(unknown)}, expected some of {list(SOURCES)}")
    lim = limit if isinstance(limit, dict) else {s: limit for s in SOURCES}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, skipped, recs = time.time(), SkipReport(), []
    if "asterisk" in sources:
        recs += _asterisk(out, val, test, seed, lim.get("asterisk"), skipped, progress)
    if "tts" in sources:
        recs += _tts(out, val, test, seed, lim.get("tts"), tts_per_sentence, skipped, progress)
    if "sounds" in sources:
        recs += _sounds(out, val, test, seed, lim.get("sounds"), skipped, progress)
    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "val", "test"):
        mine = [r for s, r in recs if s == split]
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for r in mine:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
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
    (out / "README.md").write_text(_readme(stats))
    if skipped.total:
        print(skipped.summary())
    return stats
