"""Dataset builders by name (`anymal data build NAME`): each turns installed packages into JSONL manifests.

Imports are lazy so that `anymal data build audio` does not import the video or 3-D stacks.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from ..errors import ConfigError

# name -> (module, function, one-line description)
BUILDERS: dict[str, tuple[str, str, str]] = {
    "tuxpaint": ("anymal.data.tuxpaint", "build_tuxpaint", "Tux Paint stamps -> image captioning, split by caption"),
    "photos": ("anymal.data.photos", "build_photos",
               "GCompris real photos (titles, descriptions, file names) -> what/describe/where/how many/is there, "
               "split by photo (near-duplicates together) and by kind"),
    "photo-video": ("anymal.data.photo_video", "build_photo_video",
                    "GCompris real photos moving in 4 directions -> video captions/QA, split as `photos`"),
    "emoji": ("anymal.data.emoji", "build_emoji", "Noto Color Emoji + CLDR names -> broad-vocabulary captions"),
    "openclipart": ("anymal.data.openclipart", "build_openclipart",
                    "Open Clip Art Library SVGs (public domain) -> pictures with titles, keywords, topic"),
    "audio": ("anymal.data.audio_set", "build_audio",
              "Asterisk prompts + espeak-ng/flite/Festival speech -> transcripts; "
              "Tux Paint, OpenSFX, Scratch, GCompris sounds -> names"),
    "human-speech": ("anymal.data.human_speech", "build_human_speech",
                     "KTuberling + KLettres real human voices reading English words -> a test-only transcription set"),
    "video": ("anymal.data.stamp_video", "build_video",
              "Tux Paint stamps moving in 4 directions (with their sounds) -> video captions/QA, split by caption"),
    "hapt": ("anymal.data.hapt_windows", "build_hapt", "UCI HAPT smartphone IMU -> activity windows, split by user"),
    "furniture": ("anymal.data.furniture", "build_furniture",
                  "Sweet Home 3D furniture meshes -> point clouds with captions, split by model name"),
    "easy-vqa": ("anymal.data.easy_vqa", "build_easy_vqa", "easy-vqa (PyPI) shapes and colours -> one-word VQA"),
    "magnifier": ("anymal.data.magnifier", "build_magnifier",
                  "held-out Tux Paint stamps at ~1% of a cluttered 1024-2048 px canvas -> MC + open questions"),
    "interleaved": ("anymal.data.interleaved", "build_interleaved",
                    "image + IMU and image + sound questions from the built tuxpaint, audio and hapt sets"),
}


def builder(name: str) -> Callable[..., dict]:
    if name not in BUILDERS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(BUILDERS))}")
    module, fn, _ = BUILDERS[name]
    return getattr(importlib.import_module(module), fn)


def build(name: str, out: str, **options: Any) -> dict:
    """Run builder `name`; options it does not take are an error that lists the ones it does."""
    fn = builder(name)
    params = inspect.signature(fn).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        known = ", ".join(p for p in params if p != "out")
        raise ConfigError(f"dataset {name!r} has no option {', '.join(unknown)}; its options: {known}")
    return fn(out, **options)
