"""Speech sources of the audio set (see `audio_set`): Asterisk prompts and synthetic speech.

`audio_record` writes one clip and its manifest record; the sound sources live in `sound_set`.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import random
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ...encoders.audio import SAMPLE_RATE, WINDOW_SECONDS
from ...encoders.media import load_audio
from ...errors import AnymalError, DataError, InputError
from ...modalities import AUDIO
from ..jsonl import SkipReport
from .tuxpaint import STAMPS_DIR, caption_split, find_stamps, object_word

ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
MAX_SECONDS = WINDOW_SECONDS  # longer clips would not fit the audio encoder's window
EXT = ".flac"
LICENCES = {"asterisk": "CC-BY-SA-3.0 (Asterisk core sounds, Allison Smith / Digium)",
            "tuxpaint": "GPL-2 (Tux Paint stamps)", "espeak-ng": "audio synthesised by espeak-ng (GPL-3)",
            "flite": "audio synthesised by flite (BSD-like)",
            "festival": "audio synthesised by Festival, ked diphone voice (CSTR Edinburgh, MIT-style)"}
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
# Voices no training clip uses: they read only the test split's sentences (meta.group "held-out voice"),
# in addition to the training voices, so a test sentence is heard in a known and in an unknown voice.
HELD_OUT_VOICES = [("festival", "ked")]
RATES = (0.8, 0.9, 1.0, 1.1, 1.25)  # speaking speeds, relative to a voice's own
PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival festvox-kdlpc16k"}
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


def key_order(keys: list[str], limit: int | None) -> list[str]:
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
    elif engine == "festival":
        txt = wav.with_suffix(".txt")
        txt.write_text(text, encoding="utf-8")
        cmd = ["text2wave", "-eval", f"(voice_{voice}_diphone)", "-eval",
               f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})", str(txt), "-o", str(wav)]
    else:
        raise DataError(f"unknown TTS engine {engine!r}, expected espeak-ng, flite or festival")
    try:
        return _run_tts(cmd, engine, voice, wav)
    finally:
        wav.unlink(missing_ok=True)
        wav.with_suffix(".txt").unlink(missing_ok=True)


def _run_tts(cmd: list[str], engine: str, voice: str, wav: Path) -> np.ndarray:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise DataError(f"{engine} is not installed (apt-get install {PACKAGES[engine]})") from None
    except subprocess.TimeoutExpired:
        raise DataError(f"{engine} -v {voice} timed out after 60 s") from None
    if r.returncode != 0 or not wav.is_file() or "SIOD ERROR" in r.stderr:  # festival exits 0 on errors
        raise DataError(f"{engine} -v {voice} failed (exit {r.returncode}): {r.stderr.strip()[:200]}")
    return load_audio(wav, SAMPLE_RATE, MAX_SECONDS)


def unusable(skipped: SkipReport, where: str, e: Exception, prefix: str = "unusable audio") -> None:
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
                                {"role": "assistant", "content": answer}], AUDIO.list_key: [rel], "meta": meta}


def asterisk_records(out: Path, val: float, test: float, seed: int, limit: int | None, skipped: SkipReport,
              progress: bool) -> list[tuple[str, dict]]:
    transcripts = read_transcripts()
    if not ASTERISK_DIR.is_dir():
        raise DataError(f"{ASTERISK_DIR}: Asterisk prompts not found; apt-get install asterisk-core-sounds-en-wav")
    wavs = {str(p.relative_to(ASTERISK_DIR))[:-4]: p for p in sorted(ASTERISK_DIR.rglob("*.wav"))}
    recs = []
    for key in tqdm(key_order(sorted(wavs), limit), desc="asterisk", disable=not progress):
        text = clean_transcript(transcripts.get(key, ""))
        if text is None:
            skipped.add("Asterisk clip is not speech or has no transcript", f"{key}: {transcripts.get(key)!r}")
            continue
        try:
            wave = load_audio(wavs[key], SAMPLE_RATE, MAX_SECONDS)
        except AnymalError as e:
            unusable(skipped, str(wavs[key]), e)
            continue
        meta = {"kind": "speech", "source": "asterisk", "group": "asterisk", "file": f"{key}.wav",
                "voice": "asterisk:allison", "transcript": text, "licence": LICENCES["asterisk"]}
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
    return [pool[k] for k in key_order(list(pool), limit)]


def tts_records(out: Path, val: float, test: float, seed: int, limit: int | None, per_sentence: int,
         skipped: SkipReport, progress: bool) -> list[tuple[str, dict]]:
    jobs = []
    for text, origin in tts_sentences(limit):
        if _SYMBOLS.search(text):
            skipped.add("TTS: sentence has symbols a voice reads differently", text)
            continue
        rng = random.Random(f"{seed}:tts:{text}")
        voices = rng.sample(VOICES, min(per_sentence, len(VOICES)))
        voices += HELD_OUT_VOICES if caption_split(text, val, test) == "test" else []
        for engine, voice in voices:
            jobs.append(Utterance(text, origin, engine, voice, rng.choice(RATES), rng, caption_split(text, val, test),
                                  "tts", "held-out voice" if (engine, voice) in HELD_OUT_VOICES else engine))
    return speak(out, jobs, skipped, progress)


@dataclass
class Utterance:
    """One clip to synthesise and the record it becomes (the answer is the text itself)."""
    text: str
    origin: str  # where the text comes from (a LICENCES key)
    engine: str
    voice: str
    rate: float
    rng: random.Random  # picks the instruction, after synthesis and only for a usable clip (as sets were built)
    split: str
    folder: str  # under audio/<split>/
    group: str  # meta.group: what the evaluation reports apart


def speak(out: Path, jobs: list[Utterance], skipped: SkipReport, progress: bool) -> list[tuple[str, dict]]:
    """Synthesise every job (in parallel) and write its clip and record; failures are counted in `skipped`."""
    def run(job: Utterance) -> np.ndarray | AnymalError:
        try:
            return synthesize(job.text, job.engine, job.voice, job.rate, Path(tmp))
        except AnymalError as e:
            return e

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        waves = list(tqdm(pool.map(run, jobs), total=len(jobs), desc=f"tts ({jobs[0].folder})" if jobs else "tts",
                          disable=not progress))
    recs = []
    for job, wave in zip(jobs, waves):
        where = f"{job.engine} {job.voice} {job.text[:40]!r}"
        if isinstance(wave, InputError):  # spoken, but unusable (e.g. longer than 30 s)
            unusable(skipped, where, wave, "TTS output unusable")
        elif isinstance(wave, Exception):
            skipped.add(f"TTS failed ({job.engine})", f"{where}: {wave}")
        else:
            meta = {"kind": "speech", "source": job.engine, "voice": f"{job.engine}:{job.voice}@x{job.rate}",
                    "transcript": job.text, "group": job.group, "text_source": job.origin,
                    "licence": f"{LICENCES[job.engine]}; text {LICENCES[job.origin]}"}
            name = f"{job.engine}-{job.voice}-{hashlib.sha256(f'{job.rate}:{job.text}'.encode()).hexdigest()[:12]}"
            recs.append(audio_record(out, job.split, job.folder, name, wave, job.rng.choice(SPEECH_INSTRUCTIONS),
                                     job.text, meta))
    return recs
