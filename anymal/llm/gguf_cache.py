"""Dequantise a bundled GGUF once into a safetensors cache that loads in a fraction of a second.

Building takes ~15 s (SmolLM2) to ~45 s (Gemma 3); afterwards `from_pretrained` on the cache is
~0.1 s. The cache is written to a temp dir and renamed into place, and carries a stamp listing
every file's size, so a partial or truncated cache is detected and rebuilt instead of crashing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from ..paths import cache_dir, replace_dir

log = logging.getLogger(__name__)
STAMP = "anymal_cache.json"


def _fingerprint(gguf: Path) -> str:
    st = gguf.stat()
    h = hashlib.sha256(f"{gguf.name}:{st.st_size}".encode())
    with gguf.open("rb") as f:
        h.update(f.read(1 << 20))
    return h.hexdigest()[:12]


def _is_valid(d: Path) -> bool:
    stamp = d / STAMP
    if not stamp.is_file():
        return False
    try:
        files = json.loads(stamp.read_text())["files"]
        for name, size in files.items():
            if (d / name).stat().st_size != size:
                return False
        from safetensors import safe_open

        for name in files:
            if name.endswith(".safetensors"):
                with safe_open(str(d / name), "pt") as f:
                    f.keys()
        return True
    except Exception:  # any unreadable stamp/file means: rebuild
        return False


def cached_gguf_model(name: str, gguf: Path) -> Path:
    """Return a directory with `config.json`, safetensors weights and tokenizer for `gguf`."""
    target = cache_dir() / "llm" / f"{name}-{_fingerprint(gguf)}"
    if _is_valid(target):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer  # here: the import alone takes ~0.3 s

    log.warning("building the %s weight cache from %s (once; ~15-45 s)", name, gguf.name)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # transformers refuses save_pretrained on a GGUF-loaded model otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
    (tmp / STAMP).write_text(json.dumps({"source": str(gguf), "files": files}, indent=1))
    replace_dir(tmp, target)
    return target
