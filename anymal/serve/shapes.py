"""Other servers' request shapes for the same content parts, turned into anymal's own before they are read:
a bare string `image_url` (ollama's clients) and vLLM's `video_url` / `audio_url` parts holding a base64
data: URL."""
from __future__ import annotations

import re

from ..modalities import AUDIO, VIDEO
from .errors import ServeError

# vLLM's media parts -> the modality whose part reads the same data: {"type": "video_url", "video_url": {"url": ...}}
URL_PARTS = {"video_url": VIDEO.part, "audio_url": AUDIO.part}
# data: URL MIME subtypes -> the format names the parts take
MIME_FORMATS = {"mpeg": "mp3", "x-wav": "wav", "wave": "wav", "x-flac": "flac", "quicktime": "mov", "x-matroska": "mkv",
                "x-msvideo": "avi"}


def common_shapes(part: dict, param: str) -> dict:
    """Other servers' shapes of the same parts: a bare string `image_url` (ollama's clients) and vLLM's
    `video_url`/`audio_url` parts holding a base64 data: URL."""
    kind = part["type"]
    if kind == "image_url" and isinstance(part.get("image_url"), str):
        return {**part, "image_url": {"url": part["image_url"]}}
    if kind not in URL_PARTS:
        return part
    body = part.get(kind)
    url = body.get("url") if isinstance(body, dict) else body
    m = re.match(r"data:[a-z]+/([\w.+-]+);base64,", url, re.I) if isinstance(url, str) else None
    if not m:
        raise ServeError(400, f"a {kind} part takes a base64 data: URL (data:video/mp4;base64,...)", param + f".{kind}.url")
    target = URL_PARTS[kind]
    return {"type": target, target: {"format": MIME_FORMATS.get(m.group(1).lower(), m.group(1).lower()),
                                     "data": url[m.end():]}}


