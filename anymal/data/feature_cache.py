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
from tqdm import tqdm

from ..encoders import Encoder
from ..errors import AnymalError
from ..paths import cache_dir, temp_beside


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
        self._save(key, feats)
        return feats

    def _cached(self, source) -> bool:
        try:
            return self._key(source).is_file()
        except OSError:  # unreadable: `get` reports it where the sample is prepared
            return True

    def _save(self, key: Path, feats: torch.Tensor) -> None:
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(key)
        save_file({"features": feats.contiguous()}, str(tmp))
        os.replace(tmp, key)
        self.misses += 1

    def fill(self, sources: list, batch_size: int = 8, progress: bool = True, desc: str = "encoding") -> None:
        """Encode the sources not cached yet, `batch_size` at a time (batched decoding is several times
        faster than one by one); an input that fails is left for `get` to report with its own error."""
        todo = list(dict.fromkeys(s for s in sources if not self._cached(s)))
        for i in tqdm(range(0, len(todo), batch_size), desc=desc, disable=not progress or not todo, unit="batch"):
            batch = todo[i:i + batch_size]
            try:
                feats = self.encoder.encode(batch)
            except AnymalError:  # one bad file: the others are encoded one by one by `get`
                continue
            for source, f in zip(batch, feats):
                self._save(self._key(source), f)
