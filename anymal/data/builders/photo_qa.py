"""Questions users ask about real pictures, true by construction (`anymal data build photo-qa`).

Pictures: GCompris's real photos (split by photo, near-duplicates together, some kinds held out: the
`photos` builder's splits) and Tux Paint's photo stamps (PNG cut-outs with transparency; split by caption,
as the `tuxpaint` builder does). For each picture, questions of every type a user asks (questions.py):
what is it; yes/no, asked about its own kind and, on another picture, about a kind it does not show, so
every asked word is answered "yes" and "no" alike; its colour (a stamp's own pixels, a photo's whole
picture, only where one colour clearly leads) and the background's; how many (1-4 copies on a grid, with
another kind beside them now and then); where (two pictures side by side or one above the other); big or
small; describe; two pictures compared; "I can't tell" for a picture made too dark or too blurry to see;
and, in training, two-turn conversations whose second question is about the second picture attached.
Every record's `meta.task` is its question type and `meta.picture` the picture(s) it shows.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from tqdm import tqdm

from ...encoders.colours import colour_shares, dominant_colour
from ...modalities import IMAGE
from . import questions as Q
from .gcompris import RCC_DIR
from .photos import load_split_photos
from .tuxpaint import STAMPS_DIR, caption_split, find_stamps, object_word
from ..jsonl import SkipReport

SIDE = 224  # a stamp's canvas; grids and pairs are 2 x SIDE
SPLITS = ("train", "val", "test", "test-kinds")
PLAIN = (255, 255, 255)
PALE = [(255, 255, 255), (235, 242, 250), (250, 243, 230), (232, 245, 233), (240, 240, 240), (252, 236, 240)]
BACKGROUNDS = {"red": (200, 30, 30), "orange": (240, 140, 20), "yellow": (245, 220, 40), "green": (40, 160, 60),
               "blue": (40, 80, 210), "purple": (130, 50, 170), "pink": (250, 150, 200), "black": (15, 15, 15),
               "gray": (128, 128, 128)}


@dataclass
class Picture:
    key: str  # where it comes from (archive path or stamp file)
    name: str  # what a person calls it
    names: list[str]  # words an answer may use to name it
    image: Image.Image  # RGBA: a stamp's transparency marks the object; a photo is opaque
    split: str
    photo: bool  # a whole photo (True) or a cut-out stamp
    caption: str | None  # a sentence the source gives about it
    licence: str

    def colour(self) -> str | None:
        """The object's clear main colour: a stamp's opaque pixels, a photo's whole picture."""
        rgba = np.asarray(self.image.convert("RGBA").resize((96, 96), Image.BILINEAR))
        mask = None if self.photo else rgba[..., 3] > 128
        return dominant_colour(colour_shares(rgba[..., :3], mask))


def gcompris_pictures(rcc_dir: Path) -> tuple[list[Picture], SkipReport]:
    photos, images, _, splits, skipped = load_split_photos(rcc_dir, val=0.1, test=0.2, held_kinds=0.12)
    out = []
    for p, im, split in zip(photos, images, splits):
        first = p.text.strip().split(". ")[0].rstrip(".") + "." if p.text.strip() else None
        out.append(Picture(f"gcompris:{p.key}", p.name, p.names, im.convert("RGBA"), split, True, first, p.licence))
    return out, skipped


def stamp_pictures(stamps_dir: Path) -> tuple[list[Picture], SkipReport]:
    stamps, skipped = find_stamps(stamps_dir)
    out = []
    for s in stamps:
        word = object_word(s.caption)
        if s.path.suffix.lower() != ".png" or not word:  # SVGs are drawings, not photos
            continue
        try:
            im = Image.open(s.path).convert("RGBA")
        except OSError as e:
            skipped.add("unreadable stamp", f"{s.rel}: {e}")
            continue
        im.thumbnail((2 * SIDE, 2 * SIDE), Image.BICUBIC)
        out.append(Picture(f"tuxpaint:{s.rel}", word, [word], im, caption_split(s.caption, 0.1, 0.1), False,
                           s.caption, "GPL-2 (Tux Paint stamps)"))
    return out, skipped


def place(pic: Picture, size: tuple[int, int], scale: float, rng: random.Random, bg: tuple, centred: bool = False
          ) -> Image.Image:
    """The picture at `scale` of the canvas's shorter side, on a plain `bg` canvas."""
    canvas = Image.new("RGBA", size, bg + (255,))
    im = pic.image.copy()
    side = max(8, round(scale * min(size)))
    f = side / max(im.size)
    im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BICUBIC)
    fx, fy = size[0] - im.width, size[1] - im.height
    x, y = (fx // 2, fy // 2) if centred else (rng.randint(0, fx), rng.randint(0, fy))
    canvas.alpha_composite(im, (x, y))
    return canvas.convert("RGB")


def base_picture(pic: Picture, rng: random.Random, augment: bool) -> Image.Image:
    """The picture as a user sends it: a photo as it is (cropped and flipped when augmented), a stamp
    on a pale background."""
    if pic.photo:
        im = pic.image.convert("RGB")
        if augment:
            w, h = im.size
            s = rng.uniform(0.75, 1.0)
            x, y = rng.randint(0, w - round(w * s)), rng.randint(0, h - round(h * s))
            im = im.crop((x, y, x + round(w * s), y + round(h * s)))
            im = ImageOps.mirror(im) if rng.random() < 0.5 else im
        return im
    scale = rng.uniform(0.65, 0.95) if augment else 0.9
    return place(pic, (SIDE, SIDE), scale, rng, rng.choice(PALE) if augment else PLAIN, centred=not augment)


def grid(pics: list[Picture], rng: random.Random) -> Image.Image:
    """Up to 4 pictures in random cells of a 2 x 2 grid."""
    canvas = Image.new("RGB", (2 * SIDE, 2 * SIDE), PLAIN)
    for pic, cell in zip(pics, rng.sample(range(4), len(pics))):
        tile = place(pic, (SIDE, SIDE), rng.uniform(0.7, 0.9), rng, PLAIN)
        canvas.paste(tile, ((cell % 2) * SIDE, (cell // 2) * SIDE))
    return canvas


def pair(a: Picture, b: Picture, across: bool, rng: random.Random) -> Image.Image:
    """`a` left of `b` (across) or above it."""
    size = (2 * SIDE, SIDE) if across else (SIDE, 2 * SIDE)
    canvas = Image.new("RGB", size, PLAIN)
    for pic, k in ((a, 0), (b, 1)):
        tile = place(pic, (SIDE, SIDE), rng.uniform(0.75, 0.95), rng, PLAIN)
        canvas.paste(tile, (k * SIDE, 0) if across else (0, k * SIDE))
    return canvas


def degraded(im: Image.Image, reason: str) -> Image.Image:
    if reason == "dark":
        return ImageEnhance.Brightness(im).enhance(0.03)
    return im.filter(ImageFilter.GaussianBlur(radius=max(im.size) / 12))


class Writer:
    """Saves pictures and collects one split's records."""

    def __init__(self, out: Path, split: str):
        self.out, self.split, self.records, self.files = out, split, [], 0
        (out / IMAGE.list_key / split).mkdir(parents=True, exist_ok=True)

    def save(self, im: Image.Image, stem: str) -> str:
        rel = f"{IMAGE.list_key}/{self.split}/{stem}-{self.files}.jpg"
        im.convert("RGB").save(self.out / rel, quality=90)
        self.files += 1
        return rel

    def add(self, turns: list[tuple[str, str]], images: list[str], meta: dict, shown: int = 1) -> None:
        """`turns` of (question, answer); the first `shown` images go with the first turn, one with each later."""
        messages = []
        for k, (q, a) in enumerate(turns):
            tags = "<image>" * (shown if k == 0 else 1)
            messages += [{"role": "user", "content": tags + q}, {"role": "assistant", "content": a}]
        self.records.append({"messages": messages, IMAGE.list_key: images, "meta": meta})


def picture_questions(w: Writer, pic: Picture, other: Picture, rng: random.Random, augment: bool) -> None:
    """Questions about one picture, on its own and on canvases with `other` (a different kind)."""
    meta = {"picture": pic.key, "object": pic.names[0], "names": pic.names, "group": "photo" if pic.photo else "stamp",
            "licence": pic.licence}
    rel = w.save(base_picture(pic, rng, augment), pic.name.replace(" ", "_"))
    w.add([Q.what(pic.name, rng, pic.photo)], [rel], {**meta, "task": "name"})
    w.add([Q.yes_no(pic.name, pic.name, rng)], [rel], {**meta, "task": "yesno", "answer": "yes", "asked": pic.name})
    w.add([Q.yes_no(other.name, pic.name, rng)], [rel], {**meta, "task": "yesno", "answer": "no", "asked": other.name})
    colour = pic.colour()
    if colour:
        w.add([Q.colour_of(None if pic.photo else pic.name, colour, rng)], [rel], {**meta, "task": "colour", "answer": colour})
    w.add([Q.describe(pic.name, colour, pic.caption, rng, pic.photo)], [rel],
          {**meta, "task": "describe"})
    n = rng.randint(1, 4)
    crowd = [pic] * n + ([other] if n < 4 and rng.random() < 0.4 else [])
    w.add([Q.how_many(pic.name, n, rng)], [w.save(grid(crowd, rng), "count")], {**meta, "task": "count", "answer": Q.NUMBER_WORDS[n]})
    across, first = rng.random() < 0.5, rng.random() < 0.5
    a, b = (pic, other) if first else (other, pic)
    sides = ("left", "right") if across else ("top", "bottom")
    canvas = w.save(pair(a, b, across, rng), "pair")
    mine, theirs = (sides[0], sides[1]) if first else (sides[1], sides[0])
    pair_meta = {**meta, "picture": f"{pic.key} | {other.key}", "other": other.names}
    w.add([Q.where(pic.name, mine, rng)], [canvas], {**pair_meta, "task": "where", "answer": mine})
    w.add([Q.what_at(other.name, theirs, rng)], [canvas], {**pair_meta, "task": "what-at", "answer": theirs,
                                                           "object": other.names[0], "names": other.names, "other": pic.names})
    big = rng.random() < 0.5
    scaled = place(pic, (SIDE, SIDE), rng.uniform(0.85, 1.0) if big else rng.uniform(0.2, 0.3), rng, PLAIN)
    w.add([Q.size_of(pic.name, big, rng)], [w.save(scaled, "size")], {**meta, "task": "size", "answer": "big" if big else "small"})
    if not pic.photo:
        bg = rng.choice([c for c in BACKGROUNDS if c != colour])
        on_bg = place(pic, (SIDE, SIDE), rng.uniform(0.5, 0.7), rng, BACKGROUNDS[bg])
        w.add([Q.background_colour(bg, rng)], [w.save(on_bg, "background")], {**meta, "task": "background", "answer": bg})
    same = rng.random() < 0.5
    second = pic if same else other
    two = [rel, w.save(base_picture(second, rng, True), "second")]
    w.add([Q.same_kind(pic.name, second.name, rng)], two, {**meta, "task": "compare", "answer": "yes" if same else "no",
                                                          "picture": f"{pic.key} | {second.key}"}, shown=2)
    w.add([Q.which_picture(second.name, "second", rng)], two,
          {**meta, "task": "which", "object": second.names[0], "names": second.names, "picture": f"{pic.key} | {second.key}"},
          shown=2)
    if rng.random() < 1 / 3:
        reason = rng.choice(["dark", "blurry"])
        w.add([Q.unsure(reason, rng)], [w.save(degraded(base_picture(pic, rng, augment), reason), reason)],
              {**meta, "task": "unsure", "answer": reason})
    if augment and rng.random() < 0.5:  # two turns, each about the picture attached with it
        later = w.save(base_picture(other, rng, True), "turn2")
        second_q = rng.choice([Q.what(other.name, rng, other.photo), Q.yes_no(other.name, other.name, rng),
                               Q.yes_no(pic.name, other.name, rng)])
        w.add([Q.what(pic.name, rng, pic.photo), second_q], [rel, later],
              {**meta, "task": "two-turn", "picture": f"{pic.key} | {other.key}"})


def build_photo_qa(out: str | Path, rcc_dir: str | Path = RCC_DIR, stamps_dir: str | Path = STAMPS_DIR,
                   variants: int = 2, seed: int = 0, splits: tuple[str, ...] = SPLITS, progress: bool = True) -> dict:
    """Write pictures and `{train,val,test,test-kinds}.jsonl` under `out`; return counts per split and type.

    Training pictures get `variants` passes (augmented copies, new canvases and phrasings); `splits`
    limits what is written (the others are not built)."""
    out = Path(out)
    photos, skipped = gcompris_pictures(Path(rcc_dir))
    stamps, stamp_skips = stamp_pictures(Path(stamps_dir))
    skipped.merge(stamp_skips)
    pictures = photos + stamps
    writers = {s: Writer(out, s) for s in splits}
    for pic in tqdm([p for p in pictures if p.split in splits], desc="photo-qa", disable=not progress):
        pool = [p for p in pictures if p.split == pic.split and p.name != pic.name]
        for k in range(variants if pic.split == "train" else 1):
            rng = random.Random(f"{seed}:{pic.key}:{k}")
            picture_questions(writers[pic.split], pic, rng.choice(pool), rng, augment=k > 0 or pic.split == "train")
    stats: dict = {"skipped": skipped.total, "pictures": {}, "records": {}}
    for s, w in writers.items():
        with (out / f"{s}.jsonl").open("w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in w.records)
        types: dict[str, int] = {}
        for r in w.records:
            types[r["meta"]["task"]] = types.get(r["meta"]["task"], 0) + 1
        stats["records"][s] = types
        stats["pictures"][s] = sum(p.split == s for p in pictures)
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "README.md").write_text(
        "Built by `anymal data build photo-qa` from gcompris-qt-data (GCompris 3.1 photos, Wikimedia Commons: "
        "each record's meta.licence) and tuxpaint-stamps-default (photo stamps, GPL-2).\n"
        "Split by picture (GCompris: near-duplicates together, some kinds only in test-kinds; stamps: by caption).\n")
    if skipped.total:
        print(skipped.summary())
    return stats

