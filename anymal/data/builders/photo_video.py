"""Real-photo video clips (`anymal data build photo-video`): a GCompris photo moving across a scene.

One real photo travels in a straight line in one of 4 directions over a static background (the clip
format of the Tux Paint stamp videos, stamp_video.py). Per clip, questions of two kinds, each record's
`meta.task` naming its type:
* motion (judged by `video-motion` and `video-qa`): `caption` "A giraffe moves from left to right.",
  `direction` "From left to right.", `object` (what is moving) "A giraffe.";
* content (`video-qa`), so a question about what the video shows gets no motion template:
  `video-what` "What is in this video?" -> "It is a giraffe." (no motion words); `video-yesno` "Is there
  a sheep in this video?", asked once about the clip's own kind ("yes") and once about a kind another clip
  of the same split shows ("no"; meta.answer, meta.asked), so every asked word is answered both ways;
  `video-describe` -> "A video of a giraffe moving from left to right." (describing may say the motion).
Answers reuse the picture phrasings (questions.py); only questions whose wording names a picture have
video-worded twins here. Training draws every phrasing at random; evaluation splits ask the motion types'
first (canonical) question and draw the content phrasings from the clip's seeded generator, so the build
is deterministic. The photos keep the photo set's splits (photos.py: by photo with near-duplicates
together, and by kind for `test-kinds`), so a photo held out of the image set is held out here too.
Directions are balanced per split (round robin). No sound track: the photos have none.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from ...modalities import VIDEO
from . import questions as Q
from .gcompris import RCC_DIR, Photo
from .photos import load_split_photos
from .stamp_video import (CAPTION_QUESTIONS, DIRECTION_ANSWERS, DIRECTION_QUESTIONS, DIRECTIONS, OBJECT_QUESTIONS,
                          render, write_clip)
from .tuxpaint import names_object

SPLITS = ("train", "val", "test", "test-kinds")
WHAT_QUESTIONS = ["What is in this video?", "What do you see in the clip?", "What does this video show?",
                  "What is this video of?", "Name what the video shows.", "What's in the clip?",
                  "Briefly, what is in the video?", "What am I looking at?", "Can you tell me what this is?"]
YES_NO_QUESTIONS = ["Is there {a} in this video?", "Do you see {a} in the clip?", "Does this video show {a}?",
                    "Can you see {a} in the video?", "Is there {a} in the clip?", "Is {a} in this video?",
                    "Is it {a}?"]
DESCRIBE_QUESTIONS = ["Describe this video.", "Tell me about this clip.", "What can you tell me about this video?",
                      "Give a short description of the clip.", "Describe the clip in one sentence."]
DESCRIBE_ANSWERS = ["A video of {a} moving from {d}.", "{A} moving from {d}.", "It shows {a} moving from {d}."]


def _ask(questions: list[str], rng: random.Random, train: bool) -> str:
    return rng.choice(questions) if train else questions[0]  # evaluation: the canonical (first) question


def motion_questions(name: str, direction: str, rng: random.Random, train: bool) -> list[tuple[str, str, str]]:
    """(task, question, answer): the caption, the direction and what is moving."""
    subject = Q.cap(Q.article(name))
    moves = "move" if Q.is_plural(name) else "moves"  # 'camels move', 'a horse moves'
    return [("caption", _ask(CAPTION_QUESTIONS, rng, train), f"{subject} {moves} from {direction}."),
            ("direction", _ask(DIRECTION_QUESTIONS, rng, train), DIRECTION_ANSWERS[direction]),
            ("object", _ask(OBJECT_QUESTIONS, rng, train), f"{subject}.")]


def what_video(name: str, rng: random.Random) -> tuple[str, str]:
    return rng.choice(WHAT_QUESTIONS), Q.what(name, rng, photo=True)[1]  # the picture answers carry over


def yes_no_video(asked: str, truth: str, rng: random.Random) -> tuple[str, str]:
    return rng.choice(YES_NO_QUESTIONS).format(a=Q.article(asked)), Q.yes_no(asked, truth, rng)[1]


def describe_video(name: str, direction: str, rng: random.Random) -> tuple[str, str]:
    a = Q.article(name)
    return rng.choice(DESCRIBE_QUESTIONS), rng.choice(DESCRIBE_ANSWERS).format(a=a, A=Q.cap(a), d=direction)


def content_questions(name: str, other: str | None, direction: str, rng: random.Random
                      ) -> list[tuple[str, str, str, dict]]:
    """(task, question, answer, extra meta): what is in it, is there an X (own kind and `other`), describe.
    No yes/no pair when the split shows no other kind (`other` None), so yes and no stay balanced."""
    out = [("video-what", *what_video(name, rng), {})]
    if other is not None:
        out += [("video-yesno", *yes_no_video(name, name, rng), {"answer": "yes", "asked": name}),
                ("video-yesno", *yes_no_video(other, name, rng), {"answer": "no", "asked": other})]
    return out + [("video-describe", *describe_video(name, direction, rng), {})]


def clip_samples(name: str, other: str | None, direction: str, rel: str, meta: dict, rng: random.Random,
                 train: bool) -> list[dict]:
    """Every record of one clip; `other` is a kind another clip of the split shows (the "no" question)."""
    qa = [(t, q, a, {}) for t, q, a in motion_questions(name, direction, rng, train)]
    qa += content_questions(name, other, direction, rng)
    return [{"messages": [{"role": "user", "content": f"<video>{q}"}, {"role": "assistant", "content": a}],
             VIDEO.list_key: [rel], "meta": {"task": task, **meta, **extra}} for task, q, a, extra in qa]


def different_kind(a: Photo, b: Photo) -> bool:
    """Neither photo's name says the other's words ('polar bear' / 'bear'), so "no" is true of one about the other."""
    return not any(names_object(x.name, n) for x, y in ((a, b), (b, a)) for n in y.names)


def other_kind(p: Photo, pool: list[Photo], rng: random.Random) -> str | None:
    others = [q for q in pool if different_kind(p, q)]
    return rng.choice(others).name if others else None


def build_photo_video(out: str | Path, rcc_dir: str | Path = RCC_DIR, val: float = 0.1, test: float = 0.2,
                      held_kinds: float = 0.12, train_clips: int = 3, seconds: float = 2.0, fps: int = 8,
                      size: int = 224, seed: int = 0, limit: int | None = None, progress: bool = True) -> dict:
    """Write `videos/<split>/*.mp4` and `{train,val,test,test-kinds}.jsonl` under `out`; return counts.
    `train_clips` clips per train photo (other directions and backgrounds), one per evaluation photo;
    `limit` caps the photos per split."""
    out = Path(out)
    photos, images, _, splits, skipped = load_split_photos(Path(rcc_dir), val, test, held_kinds)
    records: dict[str, list[dict]] = {s: [] for s in SPLITS}
    chosen = {s: [i for i, x in enumerate(splits) if x == s][:limit] for s in SPLITS}
    jobs = [(split, i, k, (n + k) % len(DIRECTIONS)) for split, idx in chosen.items() for n, i in enumerate(idx)
            for k in range(train_clips if split == "train" else 1)]
    for split, i, k, d in tqdm(jobs, desc="photo-video", disable=not progress):
        p, direction = photos[i], DIRECTIONS[d]
        rng = random.Random(f"{seed}:{p.key}:{k}")
        rel = f"{VIDEO.list_key}/{split}/{Path(p.key).stem}-{i}-{k}.mp4"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_clip(out / rel, render(images[i].convert("RGBA"), direction, max(2, round(seconds * fps)), size, rng), fps)
        meta = {"object": p.names[0], "names": p.names, "direction": direction, "has_audio": False,
                "source": f"gcompris:{p.key}", "category": p.category, "caption": p.name,
                "licence": f"{p.licence} (motion and background synthetic)"}
        other = other_kind(p, [photos[j] for j in chosen[split]], rng)
        records[split] += clip_samples(p.name, other, direction, rel, meta, rng, split == "train")
    for split, recs in records.items():
        with (out / f"{split}.jsonl").open("w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    stats = _stats(records, skipped.total)
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "README.md").write_text(
        "Built by `anymal data build photo-video`: GCompris photos (gcompris-qt-data; each record's meta.licence\n"
        "credits the photo) moving in 4 directions over synthetic backgrounds; splits as `anymal data build photos`.\n"
        "Questions per clip: caption, direction, object (what moves); video-what, video-yesno, video-describe.\n")
    if skipped.total and progress:
        print(skipped.summary())
    return stats


def _stats(records: dict[str, list[dict]], skipped: int) -> dict:
    """Records and clips per split, and records per question type."""
    return {**{s: len(r) for s, r in records.items()}, "skipped": skipped,
            "clips": {s: len({x[VIDEO.list_key][0] for x in r}) for s, r in records.items()},
            "records": {s: dict(Counter(x["meta"]["task"] for x in r)) for s, r in records.items()}}
