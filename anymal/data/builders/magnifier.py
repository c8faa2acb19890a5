"""A MagnifierBench-style high-resolution set: one small real object in a large cluttered canvas.

OtterHD's MagnifierBench asks about small objects in big, busy images. Here the object is a real
Tux Paint stamp whose caption is in the held-out **test** split (so no adapter saw it in training),
scaled to about 1% of the canvas area (`area` range) and pasted at a random place into a
1024-2048 px canvas (random width and height) cluttered with a gradient, noise and a few hundred
random shapes. Every canvas gets two questions about the object:

* multiple-choice: four object names (the truth + three other stamps' names, shuffled), "Answer with
  the option's letter." — judged by the letter picked (`anymal.eval.vqa.extract_choice`);
* open-ended: "What is the small object ...?" — judged by whether the answer names the object.

Deterministic for a seed: the same canvases, placements and options every build. `split=train`
builds a training set of the same form from the *training* captions instead (`train.jsonl`, images
`train-*.jpg`, other seeds): what the high-resolution adapters learn the task from.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from ...errors import ConfigError, DataError
from ...kinship import stem
from ...modalities import IMAGE
from .tuxpaint import STAMPS_DIR, _open_stamp, caption_split, find_stamps, object_word

MC_PROMPT = "What is the small object in this picture?\n{options}\nAnswer with the option's letter."
OPEN_PROMPT = "What is the small object in this picture? Answer in a few words."


def clutter(width: int, height: int, rng: random.Random) -> Image.Image:
    """A busy background: a colour gradient, pixel noise and a few hundred random shapes and lines."""
    nrng = np.random.default_rng(rng.randrange(2**32))
    c0, c1 = (np.array([rng.randrange(120, 256) for _ in range(3)], np.float32) for _ in range(2))
    t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    base = c0 * (1 - t) + c1 * t + nrng.normal(0, 10, (height, width, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(width * height / 8000)):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(8, max(9, min(width, height) // 12))
        colour = tuple(rng.randrange(60, 256) for _ in range(3))
        kind = rng.randrange(3)
        if kind == 0:
            draw.ellipse((x - r, y - r, x + r, y + r // 2), fill=colour)
        elif kind == 1:
            draw.rectangle((x, y, x + r, y + rng.randrange(4, r + 5)), fill=colour)
        else:
            draw.line((x, y, x + rng.randrange(-3 * r, 3 * r), y + rng.randrange(-3 * r, 3 * r)), fill=colour,
                      width=rng.randrange(2, 6))
    return img


def place(stamp: Image.Image, width: int, height: int, area: float, rng: random.Random
          ) -> tuple[Image.Image, tuple[int, int]]:
    """Scale the stamp so its box covers `area` of the canvas; a random position fully inside it."""
    w, h = stamp.size
    f = (area * width * height / (w * h)) ** 0.5
    st = stamp.resize((max(1, round(w * f)), max(1, round(h * f))), Image.BICUBIC)
    return st, (rng.randrange(0, width - st.width + 1), rng.randrange(0, height - st.height + 1))


def build_magnifier(out: str | Path, images: int = 100, min_side: int = 1024, max_side: int = 2048,
                    area: tuple[float, float] = (0.008, 0.012), seed: int = 0, stamps_dir: str | Path = STAMPS_DIR,
                    progress: bool = True, split: str = "test") -> dict:
    """Write `images/*.jpg` and `<split>.jsonl` (two questions per canvas) under `out`; return counts."""
    if split not in ("train", "test"):
        raise ConfigError(f"split={split!r}: expected train or test")
    if not 64 <= min_side <= max_side:
        raise ConfigError(f"min_side={min_side}, max_side={max_side}: expected 64 <= min_side <= max_side")
    area = tuple(area)  # type: ignore[assignment]
    if not 0 < area[0] <= area[1] < 0.5:
        raise ConfigError(f"area={area}: expected a (low, high) fraction of the canvas, 0 < low <= high < 0.5")
    stamps, _ = find_stamps(Path(stamps_dir))
    held_out = [s for s in stamps if caption_split(s.caption, 0.1, 0.1) == split and object_word(s.caption)]
    names = sorted({object_word(s.caption) for s in stamps if object_word(s.caption)})
    if not held_out or len(names) < 4:
        raise DataError(f"{stamps_dir}: too few captioned stamps for the magnifier set ({len(held_out)} held out)")
    out = Path(out)
    (out / IMAGE.list_key).mkdir(parents=True, exist_ok=True)
    records = []
    for k in tqdm(range(images), desc="magnifier", disable=not progress):
        rng = random.Random(f"{seed}:{k}" if split == "test" else f"{seed}:{split}:{k}")
        s = held_out[k % len(held_out)]
        obj = object_word(s.caption)
        width, height = rng.randrange(min_side, max_side + 1), rng.randrange(min_side, max_side + 1)
        canvas = clutter(width, height, rng)
        frac = rng.uniform(*area)
        st, (x, y) = place(_open_stamp(s, 512), width, height, frac, rng)
        canvas.paste(st, (x, y), st)
        name = f"{k:04d}.jpg" if split == "test" else f"{split}-{k:04d}.jpg"
        canvas.save(out / IMAGE.list_key / name, quality=90)
        distractors = rng.sample([n for n in names if stem(n) != stem(obj)], 3)
        options = distractors + [obj]
        rng.shuffle(options)
        letter = "ABCD"[options.index(obj)]
        meta = {"object": obj, "caption": s.caption, "source": s.rel, "width": width, "height": height,
                "box": [x, y, x + st.width, y + st.height], "area_frac": round(st.width * st.height / (width * height), 5),
                "licence": "GPL-2 (Tux Paint stamps)"}
        listed = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))
        records.append({"messages": [{"role": "user", "content": "<image>" + MC_PROMPT.format(options=listed)},
                                     {"role": "assistant", "content": letter}],
                        IMAGE.list_key: [f"images/{name}"], "meta": {**meta, "form": "multiple-choice", "options": options,
                                                               "letter": letter}})
        records.append({"messages": [{"role": "user", "content": "<image>" + OPEN_PROMPT},
                                     {"role": "assistant", "content": s.caption}],
                        IMAGE.list_key: [f"images/{name}"], "meta": {**meta, "form": "open-ended"}})
    with (out / f"{split}.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / f"README-{split}.md" if split != "test" else out / "README.md").write_text(
        f"Built by `anymal data build magnifier --opt split={split}`: {split}-split Tux Paint stamps (GPL-2) pasted "
        f"at ~1% of the area into cluttered {min_side}-{max_side} px canvases (seed {seed}); a multiple-choice and "
        "an open-ended question per canvas.\n")
    counts = {IMAGE.list_key: images, split: len(records), "objects": len({r["meta"]["object"] for r in records})}
    (out / (f"stats-{split}.json" if split != "test" else "stats.json")).write_text(json.dumps(counts, indent=1))
    return counts
