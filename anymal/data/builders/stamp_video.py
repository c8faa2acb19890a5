"""Real-content, synthetic-motion video clips from Tux Paint stamps (Debian `tuxpaint-stamps-default`, GPL-2).

No captioned real video ships in any installable package, so each clip moves one real stamp (a
photo or clipart cut-out; not `symbols/`) in a straight line across a static background, in one of
4 directions, and muxes the stamp's own sound effect (`<stamp>.ogg`, when there is one) as the
AAC audio track. Clips are H.264 MP4 (yuv420p, CRF 23, a keyframe per second) at `size` x `size`.

Per clip, three samples (messages format, `<video>` + the `videos` list, like `<image>`/`images`):
* caption:   "Describe the video briefly." -> "A red apple moves from left to right."
* direction: "Which way does the object move?" -> one of 4 fixed answers ("From left to right.")
* object:    "What is moving?" -> the caption's noun phrase ("A red apple."; "A computer mouse. Squeak!"
             -> "A computer mouse.")
`meta`: task, object (head noun), caption, direction, has_audio, source, sound, category, licence.

Splits: `caption_split` of the stamp caption with the image set's fractions, so a held-out object
stays held out across images, sounds and videos. Directions are balanced per split (round robin
over a seeded order). Stamps whose caption is not a short noun phrase (sentences, exclamations)
are skipped and counted ("Say cheese! moves from left to right." would teach nonsense); extra
sentences and asides are cut ("A computer mouse. Squeak!" -> "A computer mouse").
"""
from __future__ import annotations

import colorsys
import hashlib
import json
import random
import re
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from ...errors import DataError
from ...modalities import VIDEO
from ..jsonl import SkipReport
from .tuxpaint import STAMPS_DIR, Stamp, _open_stamp, caption_split, find_stamps, object_word

DIRECTIONS = ("left to right", "right to left", "top to bottom", "bottom to top")
DIRECTION_ANSWERS = {d: f"From {d}." for d in DIRECTIONS}
CAPTION_QUESTIONS = ["Describe the video briefly.", "What happens in this video?", "Caption this video.",
                     "Give a short caption for this clip.", "Describe what you see in the clip."]
DIRECTION_QUESTIONS = ["Which way does the object move?", "In which direction does the object move?",
                       "Where does the object go in this clip?"]
OBJECT_QUESTIONS = ["What is moving?", "What moves in this video?", "What is the moving object?"]
LICENCE = "GPL-2 (Tux Paint stamps and sounds; motion and backgrounds synthetic)"
AUDIO_RATE, AUDIO_BITRATE = 22050, 48000
_VERBISH = re.compile(r"\b(is|are|was|were|be|stands|means|has|have|carry|lets|to)\b", re.I)
_BAD_START = {"enter", "eat", "say", "remember", "with", "because", "we", "this", "down", "it", "it's", "it’s"}
_DETERMINERS = {"a", "an", "the", "our", "one", "some", "two", "three", "four", "five", "many", "several"}
_PLURAL_START = {"some", "two", "three", "four", "five", "many", "several", "these", "those"}


def subject(caption: str) -> str | None:
    """The caption's leading noun phrase, or None when it is a sentence, an order or a sign's text.

    'A red apple.' -> 'A red apple'; 'A computer mouse. Squeak!' -> 'A computer mouse';
    'A baby sheep (a lamb).' -> 'A baby sheep'; 'Mars—the red planet.' -> 'Mars';
    'Say cheese!', 'Penguins are winning!', '“Arrow”.' -> None.
    """
    text = caption.strip()
    if not text[:1].isalnum():  # quoted sign names, '– Because ...'
        return None
    first = re.match(r"[^.!?…]*", text).group(0)
    ender = text[len(first):len(first) + 1]
    head, _, rest = first.partition(",")
    if rest and len(rest.split()) <= 2 and not re.search(r"[,(—–]", rest):
        first = head + rest  # 'A ripe, red tomato' is one phrase; 'A lobster, from Hawaii' is cut below
    phrase = re.split(r"\s*[,(—–]", first)[0].replace("“", "").replace("”", "").strip()
    words = phrase.lower().split()
    if not words or len(words) > 7 or _VERBISH.search(phrase) or words[0] in _BAD_START:
        return None
    if ender == "!" and phrase == first.strip() and words[0] not in _DETERMINERS:
        return None  # 'Boom!', 'No entry!', 'Dead end ahead!'
    return phrase[0].upper() + phrase[1:]


def motion_caption(caption: str, direction: str) -> str | None:
    """'A red apple.' + 'left to right' -> 'A red apple moves from left to right.' (verb agrees in number)."""
    subj = subject(caption)
    if subj is None:
        return None
    words, last = subj.lower().split(), subj.split()[-1]
    plural = words[0] in _PLURAL_START or (  # 'Rugby goal posts'; not 'Hibiscus', 'Mars' (a name)
        words[0] not in ("a", "an", "the", "one") and last.islower() and last.endswith("s")
        and not last.endswith(("ss", "us", "is")))
    return f"{subj} {'move' if plural else 'moves'} from {direction}."


def _background(size: int, rng: random.Random) -> Image.Image:
    """Static light background: plain, a two-colour gradient, or soft blurred noise, in a random pastel."""
    def pastel() -> np.ndarray:
        return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.8, 1.0))) * 255

    kind, a = rng.choice(("plain", "gradient", "noise")), pastel()
    if kind == "plain":
        return Image.new("RGB", (size, size), tuple(int(v) for v in a))
    if kind == "gradient":
        t = np.linspace(0, 1, size)[:, None, None]
        img = a * (1 - t) + pastel() * t
        img = np.broadcast_to(img, (size, size, 3)) if rng.random() < 0.5 else np.broadcast_to(
            img.transpose(1, 0, 2), (size, size, 3))
        return Image.fromarray(img.astype(np.uint8))
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 14, (size, size, 1))
    img = Image.fromarray(np.clip(a + noise, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(3))  # smooth: cheap to encode, still a texture


def _positions(direction: str, n: int, free_x: int, free_y: int, rng: random.Random) -> list[tuple[int, int]]:
    """Top-left corners along a straight, constant-speed path from one edge to the other."""
    t = np.linspace(0.0, 1.0, n)
    if direction in ("left to right", "right to left"):
        xs, ys = t * free_x, np.full(n, rng.uniform(0.15, 0.85) * free_y)
        xs = xs if direction == "left to right" else free_x - xs
    else:
        ys, xs = t * free_y, np.full(n, rng.uniform(0.15, 0.85) * free_x)
        ys = ys if direction == "top to bottom" else free_y - ys
    return [(round(x), round(y)) for x, y in zip(xs, ys)]


def _sound_file(s: Stamp) -> Path | None:
    for stem in (s.path.stem, re.sub(r"-\d+$", "", s.path.stem)):  # frog-1.png shares frog.ogg
        p = s.path.with_name(stem + ".ogg")
        if p.is_file():
            return p
    return None


def _load_sound(path: Path, max_seconds: float) -> np.ndarray:
    import soundfile as sf
    import soxr

    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    wave = soxr.resample(wave.mean(axis=1), rate, AUDIO_RATE)[: int(max_seconds * AUDIO_RATE)]
    fade = min(len(wave), AUDIO_RATE // 20)  # 50 ms fade-out: a cut sound must not click
    wave[len(wave) - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


def write_clip(dst: Path, frames: list[Image.Image], fps: int, audio: np.ndarray | None = None) -> None:
    """H.264 MP4 (+ mono AAC at AUDIO_RATE when `audio` is given)."""
    import av

    with av.open(str(dst), "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=Fraction(fps))
        v.width, v.height, v.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        v.options = {"crf": "23", "preset": "medium", "g": str(fps)}  # a keyframe per second: cheap seeks
        a = None
        if audio is not None:
            a = c.add_stream("aac", rate=AUDIO_RATE)
            a.layout, a.bit_rate = "mono", AUDIO_BITRATE
        for img in frames:
            c.mux(v.encode(av.VideoFrame.from_image(img)))
        c.mux(v.encode())
        if a is not None:
            af = av.AudioFrame.from_ndarray(audio[None], format="flt", layout="mono")
            af.sample_rate = AUDIO_RATE
            c.mux(a.encode(af))
            c.mux(a.encode())


def render(stamp: Image.Image, direction: str, n: int, size: int, rng: random.Random) -> list[Image.Image]:
    """`n` frames of `stamp` (RGBA) crossing a static background in `direction`."""
    bg = _background(size, rng)
    w, h = stamp.size
    f = rng.uniform(0.35, 0.5) * size / max(w, h)  # big enough to recognise, small enough to travel
    st = stamp.resize((max(1, round(w * f)), max(1, round(h * f))), Image.BICUBIC)
    frames = []
    for x, y in _positions(direction, n, size - st.width, size - st.height, rng):
        canvas = bg.copy()
        canvas.paste(st, (x, y), st)
        frames.append(canvas)
    return frames


def _order(stamps: list[Stamp], seed: int) -> list[Stamp]:
    return sorted(stamps, key=lambda s: hashlib.sha256(f"{seed}:{s.rel}".encode()).hexdigest())


def build_video(out: str | Path, stamps_dir: str | Path = STAMPS_DIR, seconds: float = 2.0, fps: int = 8,
                size: int = 224, seed: int = 0, val: float = 0.1, test: float = 0.1, train_clips: int = 1,
                max_seconds: float = 4.0, limit: int | None = None, progress: bool = True) -> dict:
    """Write `videos/<split>/*.mp4` and `{train,val,test}.jsonl` under `out`; return counts.

    Clips last `seconds` at `fps`, longer (up to `max_seconds`) when the stamp's sound is longer;
    sounds beyond `max_seconds` are cut with a fade. `train_clips` clips per train stamp (different
    directions and backgrounds), one per val/test stamp; `limit` caps the stamps per split.
    """
    t0, out = time.time(), Path(out)
    stamps, skipped = find_stamps(Path(stamps_dir))
    by_split: dict[str, list[Stamp]] = {"train": [], "val": [], "test": []}
    by_stem: dict[str, Stamp] = {}  # 70 stamps ship as both foo.png and foo.svg (same picture): keep the PNG
    for s in sorted(stamps, key=lambda s: s.path.suffix.lower() != ".png"):
        if by_stem.setdefault(s.rel.rsplit(".", 1)[0], s) is not s:
            skipped.add("same stamp as PNG and SVG (kept the PNG)", s.rel)
    for s in _order(list(by_stem.values()), seed):
        if subject(s.caption) is None:
            skipped.add("caption is not a short noun phrase", f"{s.rel}: {s.caption!r}")
            continue
        by_split[caption_split(s.caption, val, test)].append(s)
    jobs = [(split, s, k, (i + k) % len(DIRECTIONS))  # round robin: balanced directions per split
            for split, group in by_split.items() for i, s in enumerate(group[:limit])
            for k in range(train_clips if split == "train" else 1)]
    records: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for split, s, k, d in tqdm(jobs, desc=VIDEO.name, disable=not progress):
        rng, direction = random.Random(f"{seed}:{s.rel}:{k}"), DIRECTIONS[d]
        try:
            stamp = _open_stamp(s, size * 2)
        except (OSError, subprocess.SubprocessError, DataError) as e:
            skipped.add("unreadable stamp image", f"{s.rel}: {e}")
            continue
        sound_path, audio = _sound_file(s), None
        if sound_path is not None:
            try:
                audio = _load_sound(sound_path, max_seconds)
            except Exception as e:  # noqa: BLE001 - any decode failure: keep the clip, without audio
                skipped.add("unreadable stamp sound (clip kept without audio)", f"{sound_path}: {e}")
        dur = min(max(seconds, len(audio) / AUDIO_RATE if audio is not None else 0.0), max_seconds)
        name = re.sub(r"[^\w-]+", "_", s.rel) + f"-{k}.mp4"  # keeps the extension: unique per stamp
        dst = out / VIDEO.list_key / split / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_clip(dst, render(stamp, direction, max(2, round(dur * fps)), size, rng), fps, audio)
        caption = motion_caption(s.caption, direction)
        meta = {"object": object_word(s.caption), "caption": s.caption, "direction": direction,
                "has_audio": audio is not None, "source": s.rel, "category": s.category,
                "sound": str(sound_path.relative_to(stamps_dir)) if audio is not None else None,
                "seconds": round(dur, 3), "licence": LICENCE}
        qa = [("caption", CAPTION_QUESTIONS, caption), ("direction", DIRECTION_QUESTIONS, DIRECTION_ANSWERS[direction]),
              ("object", OBJECT_QUESTIONS, f"{subject(s.caption)}.")]
        for task, questions, answer in qa:  # eval splits ask the canonical (first) question
            q = rng.choice(questions) if split == "train" else questions[0]
            records[split].append({"messages": [{"role": "user", "content": f"<video>{q}"},
                                                {"role": "assistant", "content": answer}],
                                   VIDEO.list_key: [f"videos/{split}/{name}"], "meta": {"task": task, **meta}})
    for split, recs in records.items():
        with (out / f"{split}.jsonl").open("w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    stats = _stats(out, records, skipped, time.time() - t0)
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "README.md").write_text(README.format(seconds=seconds, fps=fps, size=size, max_seconds=max_seconds,
                                                 stats=json.dumps(stats, indent=1)))
    if skipped.total and progress:
        print(skipped.summary())
    return stats


def _stats(out: Path, records: dict[str, list[dict]], skipped: SkipReport, secs: float) -> dict:
    clips = {k: [r["meta"] for r in v if r["meta"]["task"] == "caption"] for k, v in records.items()}
    return {**{k: len(v) for k, v in records.items()},
            "clips": {k: len(v) for k, v in clips.items()},
            "with_audio": {k: sum(m["has_audio"] for m in v) for k, v in clips.items()},
            "directions": {k: {d: sum(m["direction"] == d for m in v) for d in DIRECTIONS} for k, v in clips.items()},
            "captions": {k: len({m["caption"] for m in v}) for k, v in clips.items()},
            "skipped": skipped.total, "skip_reasons": dict(skipped.reasons),
            "megabytes": round(sum((out / p).stat().st_size for p in {r[VIDEO.list_key][0] for v in records.values()
                                                                      for r in v}) / 1e6, 1),
            "build_seconds": round(secs, 1)}


README = """# Tux Paint stamp videos (built by `anymal.data.stamp_video.build_video`)

Real content, synthetic motion: each clip moves one Tux Paint stamp (a real photo or clipart
cut-out) in a straight line across a static pastel background (plain, gradient or soft noise), in
one of four directions, over {seconds} s at {fps} fps and {size}x{size} (longer, up to {max_seconds} s,
when the stamp's sound effect is longer). The stamp's own sound effect (`<stamp>.ogg`), when it
has one, is the AAC audio track; other clips have no audio stream. H.264 MP4.

Samples: caption ("A duck moves from left to right."), direction Q/A (4 fixed answers) and
"What is moving?" (the caption's noun phrase). Split by caption with the Tux Paint image set's function
and fractions: no caption (object) is in two splits, across images, sounds and videos.

Provenance and licence: stamps, captions and sounds from the Debian package
tuxpaint-stamps-default, (c) the Tux Paint authors (https://tuxpaint.org), **GPL-2**. The motion,
backgrounds and encoding are synthetic (this builder).

Counts:
```
{stats}
```
"""
