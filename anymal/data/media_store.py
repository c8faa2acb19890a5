"""Media that arrive as bytes (a Hugging Face dataset's image/audio cells, MMBench's base64 pictures),
written once to content-addressed files under the anymal cache.

The rest of the pipeline reads inputs by path and caches encoder features by path, so a picture held in a
parquet cell becomes a file named by its hash: the same bytes are written once and get the same features
on every run.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..paths import cache_dir, temp_beside

# leading bytes -> suffix, for cells that carry no file name
_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
          (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"),
          (b"\xff\xfb", ".mp3"), (b"\xff\xf3", ".mp3"))


def media_suffix(data: bytes, name: str = "") -> str:
    """The file suffix of `data`: the cell's own file name's, else sniffed from its first bytes."""
    if Path(name).suffix:
        return Path(name).suffix.lower()
    if data[:4] == b"RIFF" and data[8:12] in (b"WAVE", b"WEBP"):
        return ".wav" if data[8:12] == b"WAVE" else ".webp"
    return next((suffix for magic, suffix in _MAGIC if data.startswith(magic)), ".bin")


def stored_media(data: bytes, name: str = "") -> str:
    """The path of a file holding exactly `data` (written on first use), under `cache_dir()/media`."""
    digest = hashlib.sha256(data).hexdigest()
    path = cache_dir() / "media" / digest[:2] / (digest + media_suffix(data, name))
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(path)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)
