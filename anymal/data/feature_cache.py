"""Frozen-encoder feature cache: each input is encoded once, then read back for every later epoch/run.

Key = sha256(encoder id, preprocessing id, encoder weights fingerprint, file bytes), so editing a file,
changing preprocessing or swapping the encoder never returns stale features. Entries are small
safetensors files written atomically.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..encoders import Encoder
from ..paths import cache_dir


def encoder_fingerprint(enc: Encoder) -> str:
    h = hashlib.sha256(f"{enc.id}|{enc.preprocess_id}".encode())
    for name, t in sorted(enc.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().flatten()[:64].numpy().tobytes())  # cheap but weight-sensitive
        h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()[:16]


class FeatureCache:
    def __init__(self, encoder: Encoder, root: str | Path | None = None):
        self.encoder = encoder
        slug = re.sub(r"[^\w.-]+", "_", encoder.id)[-40:]
        self.dir = Path(root or cache_dir() / "features") / f"{slug}-{encoder_fingerprint(encoder)}"
        self.hits = self.misses = 0

    def _key(self, source) -> Path:
        # a (file, rate) source (a clock-less IMU file) depends on the rate as much as on the bytes
        path, rate = source if isinstance(source, tuple) else (source, None)
        h = hashlib.sha256(Path(path).read_bytes() + (f"|rate={rate}".encode() if rate is not None else b"")).hexdigest()
        return self.dir / h[:2] / f"{h}.safetensors"

    def get(self, source) -> torch.Tensor:
        """Features [valid tokens, dim] for one file (or (file, rate)); raises `InputError` for undecodable files."""
        key = self._key(source)
        if key.is_file():
            try:
                t = load_file(str(key))["features"]
                self.hits += 1
                return t
            except Exception:  # a damaged entry is recomputed, not trusted
                pass
        feats = self.encoder.encode([source])[0].contiguous()
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_name(f".{key.name}.{os.getpid()}.tmp")
        save_file({"features": feats}, str(tmp))
        os.replace(tmp, key)
        self.misses += 1
        return feats
