"""A real image-caption set from the Debian package `tuxpaint-stamps-default` (GPL-2).

Each stamp (a photo or clipart cut-out, PNG with alpha, or SVG) has a `.txt` whose first line is
an English caption. The builder composites stamps on a background at 224x224, turns captions into
varied captioning instructions, and splits deterministically **by caption** (hash of the
normalised caption), so no caption is shared across train/val/test.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ...errors import DataError
from ...kinship import stem, words
from ...modalities import IMAGE
from ..jsonl import SkipReport

STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
INSTRUCTIONS = [
    "What is this?",
    "What is in this picture?",
    "Describe the image briefly.",
    "What do you see?",
    "Give a short caption for this image.",
    "What does this image show?",
    "Name what is shown in the picture.",
    "Write a one-sentence description of the image.",
    "Briefly, what is this a picture of?",
    "Caption this image.",
]
BACKGROUNDS = [(255, 255, 255), (235, 242, 250), (250, 243, 230), (232, 245, 233), (240, 240, 240), (252, 236, 240)]
_LOCALIZED = re.compile(r"_[a-z]{2,3}(_[A-Z]{2})?$")


@dataclass
class Stamp:
    path: Path
    rel: str
    caption: str
    category: str


def _caption_file(img: Path) -> Path | None:
    for stem in (img.stem, re.sub(r"-\d+$", "", img.stem)):
        t = img.with_name(stem + ".txt")
        if t.is_file():
            return t
    return None


def find_stamps(root: Path = STAMPS_DIR, include_symbols: bool = False) -> tuple[list[Stamp], SkipReport]:
    if not root.is_dir():
        raise DataError(f"{root}: Tux Paint stamps not found; install them with "
                        "`apt-get install tuxpaint-stamps-default`")
    stamps, skipped = [], SkipReport()
    for img in sorted(root.rglob("*")):
        if img.suffix.lower() not in (".png", ".svg") or _LOCALIZED.search(img.stem):
            continue
        rel = str(img.relative_to(root))
        if rel.startswith("symbols/") and not include_symbols:
            continue
        txt = _caption_file(img)
        caption = txt.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip() if txt else ""
        if not caption:
            skipped.add("no English caption", rel)
            continue
        stamps.append(Stamp(img, rel, caption, rel.split("/")[0]))
    return stamps, skipped


def caption_split(caption: str, val: float, test: float) -> str:
    key = re.sub(r"\W+", " ", caption.lower()).strip()
    u = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if u < test else "val" if u < test + val else "train"


def _open_stamp(s: Stamp, size: int) -> Image.Image:
    if s.path.suffix.lower() == ".svg":
        if not shutil.which("rsvg-convert"):
            raise DataError(f"{s.path}: rendering SVG needs rsvg-convert (apt-get install librsvg2-bin)")
        png = subprocess.run(["rsvg-convert", "-w", str(size), "-h", str(size), "--keep-aspect-ratio", str(s.path)],
                             capture_output=True, check=True, timeout=60).stdout
        return Image.open(io.BytesIO(png)).convert("RGBA")
    return Image.open(s.path).convert("RGBA")


def compose(stamp: Image.Image, size: int, rng: random.Random, plain: bool) -> Image.Image:
    """Stamp on a background; `plain` = centred on white (eval), else random tint/scale/offset (train)."""
    bg = BACKGROUNDS[0] if plain else rng.choice(BACKGROUNDS)
    scale = 0.9 if plain else rng.uniform(0.65, 0.95)
    w, h = stamp.size
    f = scale * size / max(w, h)
    st = stamp.resize((max(1, round(w * f)), max(1, round(h * f))), Image.BICUBIC)
    canvas = Image.new("RGBA", (size, size), bg + (255,))
    free_x, free_y = size - st.width, size - st.height
    x = free_x // 2 if plain else rng.randint(0, free_x)
    y = free_y // 2 if plain else rng.randint(0, free_y)
    canvas.alpha_composite(st, (x, y))
    return canvas.convert("RGB")


def build_tuxpaint(out: str | Path, stamps_dir: str | Path = STAMPS_DIR, size: int = 224, val: float = 0.1,
                   test: float = 0.1, train_variants: int = 2, seed: int = 0, include_symbols: bool = False,
                   splits: tuple[str, ...] = ("train", "val", "test"), progress: bool = True) -> dict:
    """Write images and `{train,val,test}.jsonl` (messages format) under `out`; return counts."""
    out = Path(out)
    stamps, skipped = find_stamps(Path(stamps_dir), include_symbols)
    records: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for s in tqdm(stamps, desc="tuxpaint", disable=not progress):
        split = caption_split(s.caption, val, test)
        if split not in splits:
            continue
        try:
            img = _open_stamp(s, size * 2)
        except (OSError, subprocess.SubprocessError, DataError) as e:
            skipped.add("unreadable stamp image", f"{s.rel}: {e}")
            continue
        n = train_variants if split == "train" else 1
        for k in range(n):
            rng = random.Random(f"{seed}:{s.rel}:{k}")
            name = re.sub(r"[^\w.-]+", "_", s.rel.rsplit(".", 1)[0]) + f"-{k}.png"
            dst = out / IMAGE.list_key / split / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            compose(img, size, rng, plain=(k == 0)).save(dst)
            q = INSTRUCTIONS[rng.randrange(len(INSTRUCTIONS))]
            records[split].append({
                "messages": [{"role": "user", "content": f"<image>{q}"},
                             {"role": "assistant", "content": s.caption}],
                IMAGE.list_key: [f"images/{split}/{name}"],
                "meta": {"caption": s.caption, "category": s.category, "source": s.rel,
                         "object": object_word(s.caption), "licence": "GPL-2 (Tux Paint stamps)"},
            })
    for split, recs in records.items():
        if split not in splits:
            continue
        with (out / f"{split}.jsonl").open("w") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(
        "Built by `anymal data build tuxpaint` from the Debian package tuxpaint-stamps-default "
        "(Tux Paint stamps, GPL-2, (c) the Tux Paint authors; https://tuxpaint.org).\n"
        "Split by caption: no caption appears in two splits.\n")
    counts = {k: len(v) for k, v in records.items()}
    counts["captions"] = {k: len({r['meta']['caption'] for r in v}) for k, v in records.items()}
    counts["skipped"] = skipped.total
    (out / "stats.json").write_text(json.dumps(counts, indent=1))
    if skipped.total:
        print(skipped.summary())
    return counts


# ---- "does the answer name the object?" ---------------------------------------------------
_CUT = {"from", "with", "on", "in", "inside", "at", "for", "by", "and", "that", "which", "who", "called",
        "is", "are", "used", "being", "made", "to", "near", "under", "over", "holding", "wearing", "eating"}
_MEASURE = {"bunch", "head", "pair", "glass", "piece", "slice", "group", "set", "cup", "bowl", "box", "bag",
            "loaf", "stack", "plate", "bottle", "jar", "can", "pile", "couple", "kind", "type", "sort", "flock",
            "herd", "school", "ear", "stick", "bar", "bucket", "basket", "pot", "mug", "tub", "handful"}


def object_word(caption: str) -> str:
    """The head noun of a caption's first noun phrase: 'A spiny lobster, from Hawaii.' -> 'lobster'."""
    words = re.findall(r"[a-z][a-z'-]*", caption.lower().split(",")[0].split(".")[0])
    phrase: list[str] = []
    for i, w in enumerate(words):
        if w == "of" and phrase and phrase[-1] in _MEASURE:
            phrase = []
            continue
        if w in _CUT or w == "of":
            if phrase:
                break
            continue
        phrase.append(w)
    return phrase[-1] if phrase else ""


def names_object(answer: str, obj: str) -> bool:
    """True when the answer contains the object word (singular/plural-insensitive)."""
    if not obj:
        return False
    return stem(obj) in words(answer)
