"""Speech and sound metrics, and the honest speech baseline: Whisper tiny.en with its own decoder.

Our audio adapter uses Whisper tiny.en's *encoder* in front of a frozen LLM; `whisper_baseline`
runs the same checkpoint end to end (its own decoder, greedy, through CTranslate2), so the adapter's
WER can be read against what the encoder's original decoder achieves on the same clips.

WER/CER normalisation (both sides): lower-case, curly quotes to straight, every character other
than a-z, 0-9 and in-word apostrophes becomes a space, spaces collapsed. Number words and digits
are left as they are ("press 1" != "press one"), as are spellings ("xray" != "x-ray" -> "x ray").
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from ..data.jsonl import read_jsonl
from ..data.builders.tuxpaint import names_object
from ..encoders.media import load_audio
from ..errors import DataError, InputError
from ..modalities import AUDIO


def normalize_text(text: str) -> str:
    text = text.lower().replace("’", "'").replace("‘", "'")
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text))


def wer_cer(predictions: list[str], references: list[str]) -> dict:
    """Corpus WER and CER (total edits / total reference words or characters) after `normalize_text`."""
    import jiwer

    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions for {len(references)} references, expected equal counts")
    if not references:
        raise InputError("no references to score, expected at least one")
    refs = [normalize_text(r) for r in references]
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise InputError(f"references {empty[:5]} are empty after normalisation ({references[empty[0]]!r}); "
                         "expected words to score against")
    hyps = [normalize_text(p) for p in predictions]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {"wer": words.wer, "cer": chars.cer, "n": len(refs),
            "words": sum(len(r.split()) for r in refs), "substitutions": words.substitutions,
            "deletions": words.deletions, "insertions": words.insertions}


def sound_naming_accuracy(predictions: list[str], objects: list[str]) -> float:
    """Share of answers that name the sound's object word (plural-insensitive, `names_object`)."""
    if len(predictions) != len(objects) or not objects:
        raise InputError(f"{len(predictions)} predictions for {len(objects)} objects, expected equal, non-zero counts")
    return sum(names_object(p, o) for p, o in zip(predictions, objects)) / len(objects)


def speech_clips(manifest_jsonl: str | Path, limit: int | None = None) -> list[tuple[str, str, dict]]:
    """(audio path, reference transcript, meta) for the speech samples of a manifest, in file order."""
    samples, _ = read_jsonl(manifest_jsonl, [AUDIO.name])
    out = []
    for s in samples:
        if s.meta.get("kind") != "speech":
            continue
        paths = [p["path"] for m in s.messages for p in m["content"] if p["type"] == AUDIO.name]
        answer = " ".join(p["text"] for m in s.messages if m["role"] == "assistant"
                          for p in m["content"] if p["type"] == "text")
        if len(paths) != 1:
            raise DataError(f"{s.where}: a speech sample needs exactly one audio part, found {len(paths)}")
        out.append((paths[0], s.meta.get("transcript", answer), s.meta))
    return out[:limit]


def whisper_transcribe(paths: list[str], batch_size: int = 8) -> list[str]:
    """Greedy Whisper tiny.en transcripts of audio files (each at most 30 s: one Whisper window)."""
    from ..encoders.transcript import SAMPLE_RATE, WhisperTranscriber

    whisper, out = WhisperTranscriber(), []
    for i in range(0, len(paths), batch_size):
        out += whisper.texts([load_audio(p, SAMPLE_RATE) for p in paths[i:i + batch_size]])
    return out


def whisper_baseline(manifest_jsonl: str | Path, limit: int | None = None) -> list[str]:
    """Whisper tiny.en transcripts of the manifest's speech clips (the order of `speech_clips`)."""
    return whisper_transcribe([p for p, _, _ in speech_clips(manifest_jsonl, limit)])


def whisper_report(manifest_jsonl: str | Path, limit: int | None = None) -> dict:
    """WER/CER of the Whisper baseline on a manifest: overall and per source, with its run time."""
    clips = speech_clips(manifest_jsonl, limit)
    start = time.time()
    preds = whisper_transcribe([p for p, _, _ in clips])
    report = {"all": wer_cer(preds, [r for _, r, _ in clips]), "seconds": round(time.time() - start, 1)}
    for src in sorted({m.get("source", "?") for _, _, m in clips}):
        idx = [i for i, (_, _, m) in enumerate(clips) if m.get("source", "?") == src]
        report[src] = wer_cer([preds[i] for i in idx], [clips[i][1] for i in idx])
    report["examples"] = [{"reference": r, "prediction": p} for (_, r, _), p in list(zip(clips, preds))[:10]]
    return report
