"""`speech-or-sound`: is anyone speaking in a held-out clip? Every clip of the audio set's test split
(speech by held-out transcripts and a held-out voice; sounds by recording) and its speech-over-a-sound
mixes, asked one yes/no question. The reference system is the voice-activity part itself (Silero VAD:
speech found or not), next to chance and always-yes.
"""
from __future__ import annotations

from ..data.benchmarks import Files, qa_sample
from ..data.builders import build_command, manifest
from ..data.jsonl import SkipReport, read_jsonl
from ..modalities import AUDIO
from .question_types import said
from .tasks import Row, Task, input_paths, register

QUESTION = "Is anyone speaking in this recording?"


def read_clips(f: Files) -> tuple[list, SkipReport]:
    """Each distinct clip of the manifest (and of `test-mixed.jsonl` beside it) once, asked QUESTION."""
    samples, skipped, seen = [], SkipReport(), set()
    for path in [f.data] + [p for p in [f.data.with_name("test-mixed.jsonl")] if p.is_file() and p != f.data]:
        got, bad = read_jsonl(path, [AUDIO.name], str(f.media_root) if f.media_root else None, on_error="skip")
        skipped.merge(bad)
        for s in got:
            clip = input_paths([s], AUDIO.name)[0]
            if clip in seen:
                continue
            seen.add(clip)
            mixed = s.meta.get("group") == "speech over a sound"
            speaks = mixed or s.meta.get("kind") == "speech"
            group = "speech over a sound" if mixed else "speech" if speaks else "sound"
            samples.append(qa_sample(s.where, AUDIO.name, clip, QUESTION, "Yes." if speaks else "No.",
                                     {"speaks": speaks, "group": group}))
    return samples, skipped


def judge(row: Row, refs: list[str]) -> dict:
    got = said(row.prediction, "yes/no")
    return {"correct": got == ("yes" if row.meta["speaks"] else "no"), "addressed": got is not None}


def voice_activity(samples: list, refs: list[str], progress: bool) -> dict:
    """The voice-activity part's own decision (any speech found), judged like the model's answers."""
    from ..registry import ENCODERS

    vad = ENCODERS.build("silero-vad", AUDIO.name)
    answers = ["Yes." if vad.speech_seconds(p) > 0 else "No." for p in input_paths(samples, AUDIO.name)]
    rows = [judge(Row(a, "", s.meta), []) for a, s in zip(answers, samples)]
    out = {"correct": sum(r["correct"] for r in rows) / len(rows)}
    for g in sorted({s.meta["group"] for s in samples}):
        mine = [r["correct"] for r, s in zip(rows, samples) if s.meta["group"] == g]
        out[f"correct, {g}"] = sum(mine) / len(mine)
    yes = sum(s.meta["speaks"] for s in samples) / len(samples)
    return {"silero-vad (speech found or not)": out, "always 'Yes.'": {"correct": yes}}


register(Task("speech-or-sound", manifest("audio", "test"), build_command("audio"),
              "held-out clips of the audio set (speech, sounds, speech over a sound): is anyone speaking?",
              judge, group_by="group", primary="correct", max_new_tokens=8,
              baseline=voice_activity, chance={"correct": 0.5}, reader=read_clips,
              fields="read from the audio set's manifests (meta.kind, meta.group)",
              notes=["yes/no: the answer's first word; the reference system is Silero VAD's own decision"]))
