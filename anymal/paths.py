"""Where anymal keeps derived files (dequantised LLM weights, encoder feature caches)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = PACKAGE_DIR / "assets" / "default"
RECIPES_DIR = PACKAGE_DIR / "recipes"


def cache_dir() -> Path:
    """`$ANYMAL_CACHE`, else `$XDG_CACHE_HOME/anymal`, else `~/.cache/anymal`."""
    if os.environ.get("ANYMAL_CACHE"):
        return Path(os.environ["ANYMAL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "anymal"


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
