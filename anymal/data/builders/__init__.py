"""Dataset builders by name (`anymal data build NAME`): each turns installed packages into JSONL manifests
(one module each in this package, with the domain knowledge of its source: captions, splits, labels).

Imports are lazy so that `anymal data build audio` does not import the video or 3-D stacks.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from ...errors import ConfigError
from ...registry import Registry

BUILDERS: Registry[Callable[..., dict]] = Registry("dataset")
_B = "anymal.data.builders."
BUILDERS.lazy("tuxpaint", _B + "tuxpaint:build_tuxpaint", "Tux Paint stamps -> image captioning, split by caption")
BUILDERS.lazy("photos", _B + "photos:build_photos",
              "GCompris real photos (titles, descriptions, file names) -> what/describe/where/how many/is there, "
              "split by photo (near-duplicates together) and by kind")
BUILDERS.lazy("photo-qa", _B + "photo_qa:build_photo_qa",
              "GCompris photos + Tux Paint photo stamps -> what / yes-no / colour / how many / where / size / "
              "describe / compare / can't tell questions, several phrasings each, split by picture")
BUILDERS.lazy("photo-video", _B + "photo_video:build_photo_video",
              "GCompris real photos moving in 4 directions -> video captions/QA, split as `photos`")
BUILDERS.lazy("emoji", _B + "emoji:build_emoji", "Noto Color Emoji + CLDR names -> broad-vocabulary captions")
BUILDERS.lazy("openclipart", _B + "openclipart:build_openclipart",
              "Open Clip Art Library SVGs (public domain) -> pictures with titles, keywords, topic")
BUILDERS.lazy("audio", _B + "audio_set:build_audio",
              "Asterisk prompts + espeak-ng/flite/Festival speech -> transcripts; "
              "Tux Paint, OpenSFX, Scratch, GCompris sounds -> names")
BUILDERS.lazy("human-speech", _B + "human_speech:build_human_speech",
              "KTuberling + KLettres real human voices reading English words -> a test-only transcription set")
BUILDERS.lazy("video", _B + "stamp_video:build_video",
              "Tux Paint stamps moving in 4 directions (with their sounds) -> video captions/QA, split by caption")
BUILDERS.lazy("hapt", _B + "hapt_windows:build_hapt", "UCI HAPT smartphone IMU -> activity windows, split by user")
BUILDERS.lazy("furniture", _B + "furniture:build_furniture",
              "Sweet Home 3D furniture meshes -> point clouds with captions, split by model name")
BUILDERS.lazy("easy-vqa", _B + "easy_vqa:build_easy_vqa", "easy-vqa (PyPI) shapes and colours -> one-word VQA")
BUILDERS.lazy("magnifier", _B + "magnifier:build_magnifier",
              "held-out Tux Paint stamps at ~1% of a cluttered 1024-2048 px canvas -> MC + open questions")
BUILDERS.lazy("read-text", _B + "read_text:build_read_text",
              "strings rendered onto GCompris photos (signs, labels) and window/page canvases -> read it / is there "
              "text / window title, split by photo and by string")
BUILDERS.lazy("unrelated", _B + "unrelated:build_unrelated",
              "questions unrelated to the attached photo / sound / motion / video, answered as the LLM alone "
              "answers them (after photos, tuxpaint, audio, hapt, photo-video)")
BUILDERS.lazy("interleaved", _B + "interleaved:build_interleaved",
              "image + IMU and image + sound questions from the built tuxpaint, audio and hapt sets")


def _known(name: str) -> None:
    """A ConfigError listing the known datasets when `name` is none (without importing any builder)."""
    if name not in BUILDERS:
        BUILDERS.get(name)


def dataset_dir(name: str) -> str:
    """Where `anymal data build NAME` writes by default: the one place that knows the `data/NAME` layout."""
    _known(name)
    return f"data/{name}"


def manifest(name: str, split: str) -> str:
    """A built dataset's split manifest, e.g. manifest("tuxpaint", "test") -> data/tuxpaint/test.jsonl."""
    return f"{dataset_dir(name)}/{split}.jsonl"


def build_command(name: str) -> str:
    """The command that builds dataset `name` (for "not built yet" errors)."""
    _known(name)
    return f"anymal data build {name}"


def builder(name: str) -> Callable[..., dict]:
    return BUILDERS.get(name)


def build(name: str, out: str, **options: Any) -> dict:
    """Run builder `name`; options it does not take are an error that lists the ones it does."""
    fn = builder(name)
    params = inspect.signature(fn).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        known = ", ".join(p for p in params if p != "out")
        raise ConfigError(f"dataset {name!r} has no option {', '.join(unknown)}; its options: {known}")
    return fn(out, **options)
