"""Open Clip Art Library pictures (Debian `openclipart-svg`, public domain) with their titles and keywords.

~7,400 SVG drawings under /usr/share/openclipart/svg/<topic>/..., each with RDF metadata: a title
(`dc:title`, sometimes Italian or generic), keywords (`dc:subject`) and the topic folder. Rendered
to PNG on white with `rsvg-convert` (librsvg2-bin). Used for image breadth and as the labelled
picture set of the image safety check (anymal/safety/image.py), which reads title + keywords +
folder. Folders of abstract shapes (stars, gradients, patterns) are left out.
"""
from __future__ import annotations

import html
import json
import os
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ...errors import DataError
from ...modalities import IMAGE

ROOT = Path("/usr/share/openclipart/svg")
SKIP_FOLDERS = {"stars", "gradients", "patterns"}
_TITLE = re.compile(r"<dc:title>\s*(.*?)\s*</dc:title>", re.S)
_SUBJECT = re.compile(r"<dc:subject>(.*?)</dc:subject>", re.S)
_ITEM = re.compile(r"<rdf:li>\s*(.*?)\s*</rdf:li>", re.S)


def _clean(s: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", s)).strip()


def read_metadata(svg: Path) -> tuple[str, list[str]]:
    """(title, keywords) from an SVG's RDF metadata; empty when absent."""
    text = svg.read_text(errors="replace")
    title = _TITLE.search(text)
    subject = _SUBJECT.search(text)
    keywords = _ITEM.findall(subject.group(1)) if subject else []
    return (_clean(title.group(1)) if title else ""), [k for k in map(_clean, keywords) if k]


def _render(svg: Path, png: Path, size: int) -> str | None:
    """None on success, else why not."""
    try:
        r = subprocess.run(["rsvg-convert", "-w", str(size), "-h", str(size), "--keep-aspect-ratio", "-b", "white",
                            str(svg), "-o", str(png)], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "rsvg-convert took over 30 s"
    if r.returncode or not png.is_file() or png.stat().st_size == 0:
        return (r.stderr.decode(errors="replace").strip().splitlines() or ["rsvg-convert failed"])[-1][:200]
    return None


def build_openclipart(out: str | Path, size: int = 224, limit: int | None = None, seed: int = 0,
                      progress: bool = True) -> dict:
    """Render every picture (or `limit` of them, drawn with `seed`) and write train.jsonl; pictures
    that do not render are counted and listed in the result, never dropped silently."""
    if not ROOT.is_dir():
        raise DataError(f"{ROOT}: not found; install it with `apt-get install openclipart-svg`")
    if shutil.which("rsvg-convert") is None:
        raise DataError("rsvg-convert not found; install it with `apt-get install librsvg2-bin`")
    files = sorted(p for p in ROOT.rglob("*.svg")
                   if not p.is_symlink() and p.relative_to(ROOT).parts[0] not in SKIP_FOLDERS)
    if limit:
        files = sorted(random.Random(seed).sample(files, min(limit, len(files))))
    out = Path(out)
    (out / IMAGE.list_key).mkdir(parents=True, exist_ok=True)

    def one(svg: Path):
        rel = svg.relative_to(ROOT)
        title, keywords = read_metadata(svg)
        png = out / IMAGE.list_key / (re.sub(r"\W+", "_", str(rel.with_suffix("")))[-120:] + ".png")
        return rel, title, keywords, png, (None if png.is_file() and png.stat().st_size else _render(svg, png, size))

    failed, n = [], 0
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool, (out / "train.jsonl").open("w") as f:
        for rel, title, keywords, png, error in tqdm(pool.map(one, files), total=len(files), desc="openclipart",
                                                     disable=not progress, unit="svg"):
            if error:
                failed.append(f"{rel}: {error}")
                continue
            name = title or rel.stem.replace("_", " ")
            f.write(json.dumps({
                "messages": [{"role": "user", "content": "<image>What is this drawing?"},
                             {"role": "assistant", "content": f"{name}."}],
                IMAGE.list_key: [f"images/{png.name}"],
                "meta": {"caption": f"{name}.", "title": title, "keywords": keywords, "folder": rel.parts[0],
                         "source": str(rel), "licence": "public domain (Open Clip Art Library)"},
            }, ensure_ascii=False) + "\n")
            n += 1
    (out / "README.md").write_text("Built by `anymal data build openclipart` from Debian's openclipart-svg "
                                   "(Open Clip Art Library, public domain).\n")
    return {"train": n, "not_rendered": len(failed), "not_rendered_examples": failed[:5]}
