"""Real photos -> LLaVA-style instruction data that is true by construction (`anymal data build photos`).

Source: GCompris's titled and file-named photos (gcompris.py). Splits:
* by photo, with near-duplicates (difference hash within `DUP_BITS` bits) kept together, so no photo and
  no near-copy of it is in two splits: `train`, `val`, `test`;
* by kind: photos of kinds drawn by a hash of the kind's word go to `test-kinds` only (never trained on).

Questions per photo: what is it (its name), describe it (title + the board's first sentence, where there
is one). Questions over canvases composed from photos of one split, whose answers follow from the layout:
which side is X on, what is on the left/right, is there an X, how many photos are there.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from ...modalities import IMAGE
from .gcompris import RCC_DIR, Photo, find_photos
from ..jsonl import SkipReport

DUP_BITS = 10  # of 64: dHash distance below which two photos count as one (crops, re-encodes)
MAX_SIDE = 640  # photos are stored at most this large (every encoder reads 224-300 px)
TILE = 224
WHAT = ["What is this?", "What is in this photo?", "What do you see?", "What does this picture show?",
        "Name what is shown in the photo.", "What is this a photo of?", "Briefly, what is in the image?"]
DESCRIBE = ["Describe this photo.", "Describe the image briefly.", "Tell me about this picture."]
NUMBERS = ["One", "Two", "Three", "Four"]


def dhash(img: Image.Image) -> int:
    g = np.asarray(img.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def duplicate_groups(hashes: list[int]) -> list[int]:
    """Union-find over pairs within DUP_BITS: the group id (lowest member index) of each photo."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(hashes)):
        for j in range(i):
            if bin(hashes[i] ^ hashes[j]).count("1") <= DUP_BITS:
                parent[max(root(i), root(j))] = min(root(i), root(j))
    return [root(i) for i in range(len(hashes))]


def _unit(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def assign_splits(photos: list[Photo], hashes: list[int], val: float, test: float, held_kinds: float) -> list[str]:
    groups = duplicate_groups(hashes)
    out = []
    for p, g in zip(photos, groups):
        kind = photos[g].names[0]  # a near-duplicate group follows its first photo
        if _unit(f"kind:{kind}") < held_kinds:
            out.append("test-kinds")
            continue
        u = _unit(f"photo:{photos[g].key}")
        out.append("test" if u < test else "val" if u < test + val else "train")
    return out


def article(name: str) -> str:
    if name[:1].isupper() or name.endswith("s") and not name.endswith("ss"):
        return f"the {name}" if name[:1].isupper() else name
    return ("an " if name[:1] in "aeiou" else "a ") + name


def _tile(img: Image.Image, rng: random.Random, augment: bool, side: int = TILE) -> Image.Image:
    if augment:
        w, h = img.size
        s = rng.uniform(0.75, 1.0)
        cw, ch = round(w * s), round(h * s)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
    return ImageOps.pad(img, (side, side), color="white")


def _record(question: str, answer: str, image: str, meta: dict) -> dict:
    return {"messages": [{"role": "user", "content": f"<image>{question}"}, {"role": "assistant", "content": answer}],
            IMAGE.list_key: [image], "meta": meta}


def _meta(p: Photo, task: str, **more) -> dict:
    return {"task": task, "object": p.names[0], "names": p.names, "name": p.name, "category": p.category,
            "source": f"gcompris:{p.key}", "licence": p.licence, **more}


def photo_questions(p: Photo, rel: str, rng: random.Random, hashed: int) -> list[dict]:
    out = [_record(rng.choice(WHAT), f"A photo of {article(p.name)}.", rel, _meta(p, "name", dhash=f"{hashed:016x}"))]
    if p.text:
        first = re.split(r"(?<=[.!?])\s", p.text.strip())[0]
        out.append(_record(rng.choice(DESCRIBE), f"A photo of {article(p.name)}. {first}", rel,
                           _meta(p, "describe", caption=first)))
    return out


def pair_questions(a: Photo, b: Photo, other: Photo, rel: str, rng: random.Random) -> list[dict]:
    """a on the left, b on the right; `other` is a kind absent from the canvas."""
    meta = {"left": a.names, "right": b.names, "source": f"gcompris:{a.key} | {b.key}",
            "licence": f"{a.licence}; {b.licence}", "category": "pair"}
    side, p = ("left", a) if rng.random() < 0.5 else ("right", b)
    asked = rng.choice([p, other])
    return [
        _record(f"Is the {p.name} on the left or on the right?", f"On the {side}.", rel,
                {**meta, "task": "side", "answer": side, "object": p.names[0]}),
        _record(f"What is on the {side}?", f"{article(p.name).capitalize()}.", rel,
                {**meta, "task": "what-side", "answer": side, "object": p.names[0], "names": p.names}),
        _record(f"Is there {article(asked.name)} in this picture?", "Yes." if asked is p else "No.", rel,
                {**meta, "task": "there", "answer": "yes" if asked is p else "no", "object": asked.names[0]}),
    ]


def grid_canvas(tiles: list[Image.Image], rng: random.Random) -> Image.Image:
    canvas = Image.new("RGB", (2 * TILE, 2 * TILE), "white")
    for t, cell in zip(tiles, rng.sample(range(4), len(tiles))):
        small = t.resize((TILE - 24, TILE - 24), Image.BICUBIC)
        canvas.paste(small, ((cell % 2) * TILE + 12, (cell // 2) * TILE + 12))
    return canvas


def load_split_photos(rcc_dir: Path, val: float, test: float, held_kinds: float
                      ) -> tuple[list[Photo], list[Image.Image], list[int], list[str], SkipReport]:
    """(photos, their pictures at most MAX_SIDE, difference hashes, splits, what was skipped)."""
    skipped, photos, images = SkipReport(), [], []
    for p in find_photos(rcc_dir):
        try:
            im = Image.open(io.BytesIO(p.data)).convert("RGB")
        except OSError as e:
            skipped.add("unreadable photo", f"{p.key}: {e}")
            continue
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.BICUBIC)
        photos.append(p)
        images.append(im)
    hashes = [dhash(im) for im in images]
    return photos, images, hashes, assign_splits(photos, hashes, val, test, held_kinds), skipped


def build_photos(out: str | Path, rcc_dir: str | Path = RCC_DIR, val: float = 0.1, test: float = 0.2,
                 held_kinds: float = 0.12, photo_variants: int = 3, pairs: int = 3, counts: int = 1,
                 seed: int = 0, progress: bool = True) -> dict:
    """Write images and `{train,val,test,test-kinds}.jsonl` under `out`; return counts per split.

    `pairs` / `counts`: composed canvases per photo of the split (train photos also get
    `photo_variants` cropped/flipped copies; evaluation splits one plain copy)."""
    out = Path(out)
    photos, images, hashes, splits, skipped = load_split_photos(Path(rcc_dir), val, test, held_kinds)
    records: dict[str, list[dict]] = {s: [] for s in ("train", "val", "test", "test-kinds")}
    by_split: dict[str, list[int]] = {s: [i for i, x in enumerate(splits) if x == s] for s in records}
    for split, idx in tqdm(by_split.items(), desc="photos", disable=not progress):
        folder = out / IMAGE.list_key / split
        folder.mkdir(parents=True, exist_ok=True)
        train = split == "train"
        for i in idx:
            p, rng = photos[i], random.Random(f"{seed}:{photos[i].key}")
            for k in range(photo_variants if train else 1):
                rel = f"images/{split}/{Path(p.key).stem}-{i}-{k}.jpg"
                (_tile(images[i], rng, augment=k > 0, side=max(images[i].size)) if k else images[i]).save(out / rel, quality=90)
                records[split] += photo_questions(p, rel, rng, hashes[i])
            records[split] += _composites(out, split, i, idx, photos, images, pairs, counts, rng, train)
    for split, recs in records.items():
        with (out / f"{split}.jsonl").open("w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    stats = {s: len(r) for s, r in records.items()}
    stats["photos"] = {s: len(i) for s, i in by_split.items()}
    stats["kinds"] = {s: sorted({photos[i].names[0] for i in ix}) for s, ix in by_split.items()}
    stats["skipped"] = skipped.total
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "README.md").write_text(
        "Built by `anymal data build photos` from the Debian package gcompris-qt-data (GCompris 3.1). Photos from\n"
        "Wikimedia Commons; each record's meta.licence gives its licence, author and source as GCompris credits them.\n"
        "Split by photo (near-duplicates grouped by difference hash) and, for test-kinds, by kind.\n")
    if skipped.total:
        print(skipped.summary())
    return stats


def _composites(out: Path, split: str, i: int, idx: list[int], photos: list[Photo], images: list[Image.Image],
                pairs: int, counts: int, rng: random.Random, augment: bool) -> list[dict]:
    recs = []
    kinds = {photos[j].names[0] for j in idx}
    for k in range(pairs if len(kinds) > 2 else 0):
        j = rng.choice([j for j in idx if photos[j].names[0] != photos[i].names[0]])
        o = rng.choice([x for x in idx if photos[x].names[0] not in (photos[i].names[0], photos[j].names[0])])
        a, b = (i, j) if rng.random() < 0.5 else (j, i)
        canvas = Image.new("RGB", (2 * TILE, TILE), "white")
        canvas.paste(_tile(images[a], rng, augment), (0, 0))
        canvas.paste(_tile(images[b], rng, augment), (TILE, 0))
        rel = f"images/{split}/pair-{i}-{k}.jpg"
        canvas.save(out / rel, quality=90)
        recs += pair_questions(photos[a], photos[b], photos[o], rel, rng)
    for k in range(counts):
        n = rng.randint(1, 4)
        tiles = [_tile(images[rng.choice(idx) if rng.random() < 0.5 else i], rng, augment) for _ in range(n)]
        rel = f"images/{split}/count-{i}-{k}.jpg"
        grid_canvas(tiles, rng).save(out / rel, quality=90)
        recs.append(_record("How many photos are in this picture?", f"{NUMBERS[n - 1]}.", rel,
                            {"task": "count", "answer": NUMBERS[n - 1].lower(), "object": "", "category": "count",
                             "source": f"gcompris:{photos[i].key} and others", "licence": "see the photos' READMEs"}))
    return recs
