"""Chat messages with typed content parts, Hugging Face style.

    [{"role": "user", "content": [{"type": "image", "path": "duck.png"},
                                  {"type": "text", "text": "What is this?"}]}]

A modality part carries its input under `path`, under its own type name (`"image": <PIL/array>`),
or as `url` (local `file://` only). Parts may appear anywhere, any number of times. Signals without
their own clock (an IMU `.npy`, a CSV without `t`, a raw waveform) add `"rate": HZ`; the source is
then the pair `(input, rate)`. A video part with `"audio": true` is followed by the clip's own audio
track as an audio part (none if the clip has no track or it is silent).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..modalities import AUDIO, MODALITIES

ROLES = ("system", "user", "assistant")


@dataclass
class MediaPart:
    modality: str
    source: Any  # path, PIL image, array, bytes

    def __repr__(self) -> str:
        src = self.source if isinstance(self.source, str) else type(self.source).__name__
        return f"MediaPart({self.modality}, {src})"


Part = str | MediaPart


@dataclass
class Conversation:
    """Messages after validation, once: (role, [text | MediaPart]) turns. A video's soundtrack is
    decoded here, so code that passes a Conversation on never decodes it again."""
    turns: list[tuple[str, list[Part]]]

    @property
    def media(self) -> list[MediaPart]:
        """The modality inputs, in order of appearance."""
        return [p for _, parts in self.turns for p in parts if isinstance(p, MediaPart)]


SLOT_MARKERS = ("\ue000", "\ue001")  # private-use characters the processor marks input slots with


def check_text(text: str, where: str) -> str:
    """Text a tokenizer can take: valid Unicode (no lone surrogates) without the processor's slot markers."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"{where}: not valid Unicode text (a lone surrogate at character {e.start})") from None
    for c in SLOT_MARKERS:
        if c in text:
            raise InputError(f"{where}: contains U+{ord(c):04X} at character {text.index(c)}, a private-use "
                             "character anymal reserves for input slots; remove it")
    return text


def is_rate_pair(value: Any) -> bool:
    """`(input, rate)`: a signal and its sample rate in Hz (a tuple of two inputs has no number second)."""
    return (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (int, float))
            and not isinstance(value[1], bool))


def _media_source(part: dict, kind: str, where: str) -> Any:
    for key in ("path", kind, "url"):
        if key in part and part[key] is not None:
            src = part[key]
            if key == "url" and isinstance(src, str):
                if not src.startswith("file://"):
                    raise InputError(f"{where}: only local file:// urls are accepted here, got {src[:40]!r}")
                src = src[len("file://"):]
            if part.get("rate") is not None:
                try:
                    return (src, float(part["rate"]))
                except (TypeError, ValueError):
                    raise InputError(f"{where}.rate: expected a number (Hz), got {part['rate']!r}") from None
            return src
    raise InputError(f"{where}: a {kind!r} part needs 'path' (or '{kind}' with in-memory data)")


def normalize(messages: list[dict], modalities: set[str]) -> list[tuple[str, list[Part]]]:
    """Validate messages and return [(role, [text | MediaPart, ...]), ...]."""
    if not isinstance(messages, list) or not messages:
        raise InputError("messages: expected a non-empty list of {'role', 'content'} dicts")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise InputError(f"{where}: expected a dict with 'role' and 'content'")
        role = str(m["role"]).lower()
        if role not in ROLES:
            raise InputError(f"{where}.role: {m['role']!r} is not one of {ROLES}")
        content = m["content"]
        if isinstance(content, str):
            out.append((role, [check_text(content, f"{where}.content")]))
            continue
        if not isinstance(content, list):
            raise InputError(f"{where}.content: expected a string or a list of typed parts")
        parts: list[Part] = []
        for j, p in enumerate(content):
            pw = f"{where}.content[{j}]"
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "text":
                if not isinstance(p.get("text"), str):
                    raise InputError(f"{pw}: a text part needs a string 'text'")
                parts.append(check_text(p["text"], f"{pw}.text"))
            elif kind in modalities:
                if role == "assistant":
                    raise InputError(f"{pw}: assistant messages cannot contain {kind} inputs")
                parts.append(MediaPart(kind, _media_source(p, kind, pw)))
                track = MODALITIES.get(kind).soundtrack if kind in MODALITIES else None
                if track and p.get(track) is True:  # e.g. a video part's {"audio": true}
                    parts += soundtrack(parts[-1].source, modalities, pw)
            else:
                known = ", ".join(sorted({"text", *modalities}))
                raise InputError(f"{pw}: unknown part type {kind!r}; this model accepts: {known}")
        out.append((role, parts))
    return out


def soundtrack(video: Any, modalities: set[str] | list[str], where: str) -> list[MediaPart]:
    """The clip's own audio track as an audio part: [] when it has none or it is silent (< -80 dBFS)."""
    if AUDIO.name not in modalities:
        raise InputError(f"{where}: the video's audio track needs a model with an audio adapter")
    import numpy as np

    from ..encoders.video import load_video_audio

    wave = load_video_audio(video)
    if wave is None or not wave.size or float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) < 1e-4:
        return []
    return [MediaPart(AUDIO.name, (wave, 16000))]


def from_prompt(prompt: str, media: list[MediaPart]) -> list[dict]:
    """`chat("What is this?", image=...)`: media first, then the question (the training layout)."""
    parts = [{"type": m.modality, "path": m.source} for m in media]  # (input, rate) pairs stay pairs
    return [{"role": "user", "content": parts + [{"type": "text", "text": prompt}]}]
