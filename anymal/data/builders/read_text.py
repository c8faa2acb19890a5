"""Text in pictures, true by construction (`anymal data build read-text`): what users ask of a sign, a label,
a screenshot or a page.

Strings are rendered onto real photos (GCompris, split by photo as the `photos` builder splits them) and onto
plain window and page canvases, in Debian's fonts (DejaVu, Liberation, FreeFont): a sign (a coloured plate
pasted on the photo, slightly turned), a label (outlined words straight on the photo), a screen capture (a
title bar and a few lines of sentences), a page (lines of a paragraph). Words on signs and labels come from
the emoji package's CLDR names (Unicode licence) and numbers; the sentences of screens and pages from the
Asterisk prompts' transcripts and Tux Paint's captions. Both are split **by string** (a word, a sentence)
as well as by picture, so `test` holds pictures and strings no training record shows.

Questions per picture (`meta.task`): `read` ("What does the sign say?" -> the text), `title` (a window's
title), `has-text` ("Is there any text in this picture?", asked of the photo without text too: half "no").
`meta.text` is the text to read (lines joined by newlines), `meta.kind` sign / label / screen / page / none.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from ...modalities import IMAGE
from .gcompris import RCC_DIR
from .photos import load_split_photos
from .speech import tts_sentences

FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation2"),
             Path("/usr/share/fonts/truetype/freefont")]
SPLITS = ("train", "val", "test")
PLATES = [((200, 30, 30), "white"), ((30, 110, 60), "white"), ((20, 60, 160), "white"), ((250, 210, 40), "black"),
          ((245, 245, 240), "black"), ((20, 20, 20), "white"), ((240, 120, 20), "black")]
READ = {"sign": ["What does the sign say?", "Read the sign.", "What is written on the sign?",
                 "What does it say?", "Read the text in this picture."],
        "label": ["What is written in this picture?", "What does the text say?", "Read the text in this picture.",
                  "What words are on the photo?"],
        "screen": ["What does the screen say?", "Read the text on this screen.", "What is written here?",
                   "Transcribe the text in this screenshot."],
        "page": ["Read this page.", "What does the text say?", "Transcribe the text in this picture.",
                 "What is written here?"]}
SAYS = ['It says "{t}".', "{t}", 'The text reads: "{t}".', '"{t}"']
HAS_TEXT = ["Is there any text in this picture?", "Is anything written here?", "Does this picture have text in it?"]
TITLE = ["What is the title of this window?", "What does the title bar say?"]


def string_split(text: str, val: float = 0.1, test: float = 0.1) -> str:
    """A word's or sentence's split, by the hash of its lower-case letters (a string stays in one split)."""
    h = int(hashlib.sha256(re.sub(r"\W+", " ", text.lower()).strip().encode()).hexdigest()[:8], 16) / 2**32
    return "test" if h < test else "val" if h < test + val else "train"


def words_by_split() -> dict[str, list[str]]:
    """CLDR emoji-name words of 3 to 10 letters, each in its split."""
    import emoji

    words = sorted({w for d in emoji.EMOJI_DATA.values() for w in re.findall(r"[a-z]+", d["en"].lower())
                    if 3 <= len(w) <= 10})
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for w in words:
        out[string_split(w)].append(w)
    return out


def sentences_by_split() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for text, _ in tts_sentences():
        if 3 <= len(text.split()) <= 14 and text.isascii():
            out[string_split(text)].append(text)
    return out


def fonts() -> list[Path]:
    found = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf") if "Math" not in p.name)
    if not found:
        from ...errors import DataError

        raise DataError(f"no fonts in {', '.join(map(str, FONT_DIRS))}: apt-get install fonts-dejavu-core "
                        "fonts-liberation2 fonts-freefont-ttf")
    return found


def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def sign_text(words: list[str], rng: random.Random) -> str:
    """One to three words, sometimes a number, in the cases signs use ("NO PARKING", "Exit 7", "garden")."""
    text = " ".join(rng.sample(words, rng.choice([1, 1, 2, 2, 3])))
    if rng.random() < 0.25:
        text += " " + rng.choice([str(rng.randint(1, 99)), f"{rng.randint(1, 12)}:{rng.choice(['00', '30'])}",
                                  f"${rng.randint(1, 99)}.{rng.choice(['00', '50', '99'])}"])
    return rng.choice([text.upper(), text.title(), text])


def draw_sign(photo: Image.Image, text: str, font: Path, rng: random.Random) -> Image.Image:
    """A coloured plate with the text, pasted at a random place on the photo, turned a few degrees."""
    w, h = photo.size
    f = _font(font, max(14, round(h * rng.uniform(0.07, 0.14))))
    box = ImageDraw.Draw(photo).textbbox((0, 0), text, font=f)
    tw, th = box[2] - box[0], box[3] - box[1]
    if tw > 0.9 * w:  # too long for this photo: a smaller font
        f = _font(font, max(10, round(f.size * 0.9 * w / tw)))
        box = ImageDraw.Draw(photo).textbbox((0, 0), text, font=f)
        tw, th = box[2] - box[0], box[3] - box[1]
    pad = max(4, th // 3)
    plate_colour, ink = rng.choice(PLATES)
    plate = Image.new("RGBA", (tw + 2 * pad, th + 2 * pad), plate_colour + (255,))
    ImageDraw.Draw(plate).text((pad - box[0], pad - box[1]), text, font=f, fill=ink)
    plate = plate.rotate(rng.uniform(-5, 5), expand=True, resample=Image.BICUBIC)
    out = photo.convert("RGBA")
    x, y = rng.randint(0, max(0, w - plate.width)), rng.randint(0, max(0, h - plate.height))
    out.alpha_composite(plate, (x, y))
    return out.convert("RGB")


def draw_label(photo: Image.Image, text: str, font: Path, rng: random.Random) -> Image.Image:
    """Outlined words straight on the photo, near its top or bottom (a caption, a meme, a watermark)."""
    out = photo.copy()
    d = ImageDraw.Draw(out)
    w, h = out.size
    f = _font(font, max(14, round(h * rng.uniform(0.08, 0.13))))
    box = d.textbbox((0, 0), text, font=f, stroke_width=2)
    if box[2] - box[0] > 0.95 * w:
        f = _font(font, max(10, round(f.size * 0.95 * w / (box[2] - box[0]))))
        box = d.textbbox((0, 0), text, font=f, stroke_width=2)
    x = (w - (box[2] - box[0])) // 2 - box[0]
    y = rng.choice([round(0.04 * h), h - (box[3] - box[1]) - round(0.06 * h)]) - box[1]
    ink, edge = rng.choice([("white", "black"), ("yellow", "black"), ("black", "white")])
    d.text((x, y), text, font=f, fill=ink, stroke_width=max(1, f.size // 12), stroke_fill=edge)
    return out


def draw_lines(lines: list[str], font: Path, rng: random.Random, title: str | None) -> Image.Image:
    """A window (with a title bar when `title`) or a page: the lines in one font on a light canvas."""
    size = rng.randint(16, 24)
    f, w = _font(font, size), rng.choice([640, 720, 800])
    step = round(size * 1.5)
    top = step + 16 if title else 24
    im = Image.new("RGB", (w, top + step * len(lines) + 24), rng.choice([(255, 255, 255), (250, 248, 240), (240, 242, 245)]))
    d = ImageDraw.Draw(im)
    if title:
        bar, ink = rng.choice([((50, 60, 80), "white"), ((210, 215, 225), "black"), ((30, 90, 160), "white")])
        d.rectangle((0, 0, w, step + 4), fill=bar)
        d.text((12, 4), title, font=f, fill=ink)
    for i, line in enumerate(lines):
        d.text((20, top + i * step), line, font=f, fill=(20, 20, 20))
    return im


def wrap(text: str, font: Path, size: int = 20, width: int = 600) -> list[str]:
    """The sentence cut into lines that fit `width` pixels (the page renders what it reads)."""
    f, lines, cur = _font(font, size), [], ""
    for word in text.split():
        cand = f"{cur} {word}".strip()
        if cur and f.getlength(cand) > width:
            lines.append(cur)
            cur = word
        else:
            cur = cand
    return lines + ([cur] if cur else [])


def _save(out: Path, split: str, name: str, im: Image.Image) -> str:
    folder = out / IMAGE.list_key / split
    folder.mkdir(parents=True, exist_ok=True)
    im.save(folder / f"{name}.jpg", quality=92)
    return f"{IMAGE.list_key}/{split}/{name}.jpg"


def _ask(picture: str, question: str, answer: str, meta: dict) -> dict:
    return {"messages": [{"role": "user", "content": f"<image>{question}"}, {"role": "assistant", "content": answer}],
            IMAGE.list_key: [picture], "meta": meta}


def _reads(picture: str, kind: str, text: str, rng: random.Random, meta: dict) -> list[dict]:
    """Read it, and is there text (yes) — about one text picture."""
    said = text.replace("\n", " ")
    meta = {**meta, "kind": kind, "text": text}
    yes = rng.choice(["Yes.", f'Yes, it says "{said}".'])
    return [_ask(picture, rng.choice(READ[kind]), rng.choice(SAYS).format(t=said), {**meta, "task": "read"}),
            _ask(picture, rng.choice(HAS_TEXT), yes, {**meta, "task": "has-text", "answer": "yes"})]


def build_read_text(out: str | Path, rcc_dir: str | Path = RCC_DIR, per_photo: int = 3, screens: int = 800,
                    limit: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Write pictures and `{train,val,test}.jsonl` under `out`; `per_photo` text pictures per training
    photo (one per evaluation photo), `screens` window and page pictures in all (split like the strings);
    `limit` photos at most (a quick build)."""
    out = Path(out)
    photos, images, _, splits, skipped = load_split_photos(Path(rcc_dir), val=0.1, test=0.2, held_kinds=0.12)
    if limit is not None:
        photos, images, splits = photos[:limit], images[:limit], splits[:limit]
    words, sentences, faces = words_by_split(), sentences_by_split(), fonts()
    recs: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for p, im, split in tqdm(list(zip(photos, images, splits)), desc="read-text: photos", disable=not progress):
        split = "test" if split == "test-kinds" else split  # kinds do not matter to reading: more test photos
        rng = random.Random(f"{seed}:{p.key}")
        key = f"{Path(p.key).stem}-{hashlib.sha256(p.key.encode()).hexdigest()[:6]}"
        for k in range(per_photo if split == "train" else 1):
            kind = rng.choice(["sign", "sign", "label"])
            text = sign_text(words[split], rng)
            draw = draw_sign if kind == "sign" else draw_label
            picture = _save(out, split, f"{key}-{k}", draw(im.copy(), text, rng.choice(faces), rng))
            recs[split] += _reads(picture, kind, text, rng, {"picture": p.key, "licence": p.licence})
        recs[split].append(_ask(_save(out, split, f"{key}-plain", im), rng.choice(HAS_TEXT), "No.",
                                {"task": "has-text", "answer": "no", "kind": "none", "text": "", "picture": p.key,
                                 "licence": p.licence}))
    licence = "CC-BY-SA-3.0 (Asterisk prompts) / GPL-2 (Tux Paint captions); rendered here"
    for i in tqdm(range(screens), desc="read-text: screens and pages", disable=not progress):
        rng = random.Random(f"{seed}:screen:{i}")
        split = rng.choices(SPLITS, weights=[0.8, 0.1, 0.1])[0]
        font, kind = rng.choice(faces), rng.choice(["screen", "page"])
        lines = [line for s in rng.sample(sentences[split], rng.randint(1, 3)) for line in wrap(s, font)][:6]
        title = sign_text(words[split], rng) if kind == "screen" else None
        picture = _save(out, split, f"{kind}-{i}", draw_lines(lines, font, rng, title))
        meta = {"picture": f"{kind}-{i}", "licence": licence}
        recs[split] += _reads(picture, kind, "\n".join(lines), rng, meta)
        if title:
            recs[split].append(_ask(picture, rng.choice(TITLE), rng.choice(SAYS).format(t=title),
                                    {**meta, "task": "title", "kind": kind, "text": title}))
    stats = {"skipped": skipped.total, "records": {}}
    for s, rows in recs.items():
        with (out / f"{s}.jsonl").open("w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        stats["records"][s] = {t: sum(r["meta"]["task"] == t for r in rows) for t in ("read", "title", "has-text")}
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "README.md").write_text(
        "Built by `anymal data build read-text`: strings rendered onto GCompris photos (each record's meta.licence) "
        "and onto window/page canvases, in Debian's DejaVu / Liberation / FreeFont fonts. Words from the emoji "
        "package's CLDR names (Unicode licence); sentences from asterisk-core-sounds-en (CC-BY-SA-3.0) and Tux Paint "
        "captions (GPL-2). Split by photo and by string (word or sentence).\n")
    if skipped.total:
        print(skipped.summary())
    return stats
