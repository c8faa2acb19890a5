"""A broad-vocabulary image-caption set: Noto Color Emoji glyphs named by their CLDR names.

Rendered from the Debian font `fonts-noto-color-emoji` (OFL-1.1) with names from the PyPI `emoji`
package (BSD): ~1,900 concepts (animals, food, objects, vehicles, places...). Used as extra
alignment data so the image adapter learns names for far more things than Tux Paint's ~500
training captions. Country/region flags, keycaps and skin-tone variants are left out.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from ...errors import DataError
from ...modalities import IMAGE
from .tuxpaint import INSTRUCTIONS, compose, names_object, object_word

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def _wanted(e: str, name: str) -> bool:
    if any(0x1F1E6 <= ord(c) <= 0x1F1FF or 0xE0000 <= ord(c) <= 0xE007F for c in e):
        return False  # country/region flags
    return "skin_tone" not in name and "keycap" not in name


def caption_for(name: str) -> str:
    words = name.strip(":").replace("_", " ").strip()
    article = "An" if words[:1].lower() in "aeiou" else "A"
    return f"{article} {words}."


def held_out_kinds(manifests: list[str]) -> set[str]:
    """Every object kind (`meta.object`, `meta.names`) of the given test manifests."""
    kinds: set[str] = set()
    for m in manifests:
        if not Path(m).is_file():
            raise DataError(f"hold_out: {m} not found; build that set first (anymal data build ...)")
        for line in Path(m).read_text().splitlines():
            meta = json.loads(line).get("meta", {}) if line.strip() else {}
            kinds.update(k for k in [meta.get("object"), *meta.get("names", [])] if k)
    return kinds


def build_emoji(out: str | Path, size: int = 224, variants: int = 1, seed: int = 0, limit: int | None = None,
                hold_out: list[str] | None = None, progress: bool = True) -> dict:
    """`hold_out`: test manifests whose object kinds must stay unseen: an emoji whose name contains one
    of their object words ("lemon" in "lemon", "hedgehog") is left out and counted."""
    try:
        import emoji
    except ImportError:
        raise DataError("the emoji set needs the `emoji` package: pip install emoji") from None
    if not FONT.is_file():
        raise DataError(f"{FONT}: not found; install it with `apt-get install fonts-noto-color-emoji`")
    font = ImageFont.truetype(str(FONT), 109)  # the only size this bitmap font renders
    out = Path(out)
    (out / IMAGE.list_key).mkdir(parents=True, exist_ok=True)
    fq = emoji.STATUS["fully_qualified"]
    items = [(e, v["en"]) for e, v in emoji.EMOJI_DATA.items() if v.get("status") == fq and _wanted(e, v["en"])]
    items = items[:limit] if limit else items
    kinds = held_out_kinds(hold_out or [])
    kept = [(e, name) for e, name in items if not any(names_object(caption_for(name), k) for k in kinds)]
    held, items = len(items) - len(kept), kept
    n = 0
    with (out / "train.jsonl").open("w") as f:
        for e, name in tqdm(items, desc="emoji", disable=not progress):
            glyph = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
            ImageDraw.Draw(glyph).text((0, 0), e, font=font, embedded_color=True)
            box = glyph.getbbox()
            if not box:
                continue
            glyph = glyph.crop(box)
            caption = caption_for(name)
            slug = re.sub(r"\W+", "_", name.strip(":"))[:60]
            for k in range(variants):
                rng = random.Random(f"{seed}:{name}:{k}")
                path = out / IMAGE.list_key / f"{slug}-{k}.png"
                compose(glyph, size, rng, plain=(k == 0)).save(path)
                q = INSTRUCTIONS[rng.randrange(len(INSTRUCTIONS))]
                f.write(json.dumps({
                    "messages": [{"role": "user", "content": f"<image>{q}"}, {"role": "assistant", "content": caption}],
                    IMAGE.list_key: [f"images/{path.name}"],
                    "meta": {"caption": caption, "category": "emoji", "object": object_word(caption),
                             "licence": "OFL-1.1 (Noto Color Emoji); names: CLDR via the emoji package"},
                }, ensure_ascii=False) + "\n")
                n += 1
    (out / "README.md").write_text("Built by `anymal data build emoji` from Noto Color Emoji (OFL-1.1, Google) "
                                   "with CLDR names from the `emoji` package (BSD).\n")
    return {"train": n, "concepts": len(items), "held_out": held}
