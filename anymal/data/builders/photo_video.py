"""Real-photo video clips (`anymal data build photo-video`): a GCompris photo moving across a scene.

Same clip format, questions and `video-motion` judging as the Tux Paint stamp videos (stamp_video.py):
one real photo travels in a straight line in one of 4 directions over a static background, and the
samples ask for a caption ("A giraffe moves from left to right."), the direction and what is moving.
The photos keep the photo set's splits (photos.py: by photo with near-duplicates together, and by kind
for `test-kinds`), so a photo held out of the image set is held out here too. Directions are balanced per
split (round robin). No sound track: the photos have none.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from tqdm import tqdm

from ...modalities import VIDEO
from .gcompris import RCC_DIR
from .photos import article, load_split_photos
from .stamp_video import (CAPTION_QUESTIONS, DIRECTION_ANSWERS, DIRECTION_QUESTIONS, DIRECTIONS, OBJECT_QUESTIONS,
                          render, write_clip)


def clip_samples(name: str, direction: str, rel: str, meta: dict, rng: random.Random, train: bool) -> list[dict]:
    subject = article(name)
    moves = "move" if subject == name and name.endswith("s") else "moves"  # 'camels move', 'a horse moves'
    qa = [("caption", CAPTION_QUESTIONS, f"{subject[0].upper()}{subject[1:]} {moves} from {direction}."),
          ("direction", DIRECTION_QUESTIONS, DIRECTION_ANSWERS[direction]),
          ("object", OBJECT_QUESTIONS, f"{subject[0].upper()}{subject[1:]}.")]
    return [{"messages": [{"role": "user", "content": f"<video>{rng.choice(qs) if train else qs[0]}"},
                          {"role": "assistant", "content": answer}],
             VIDEO.list_key: [rel], "meta": {"task": task, **meta}} for task, qs, answer in qa]


def build_photo_video(out: str | Path, rcc_dir: str | Path = RCC_DIR, val: float = 0.1, test: float = 0.2,
                      held_kinds: float = 0.12, train_clips: int = 3, seconds: float = 2.0, fps: int = 8,
                      size: int = 224, seed: int = 0, limit: int | None = None, progress: bool = True) -> dict:
    """Write `videos/<split>/*.mp4` and `{train,val,test,test-kinds}.jsonl` under `out`; return counts.
    `train_clips` clips per train photo (other directions and backgrounds), one per evaluation photo;
    `limit` caps the photos per split."""
    out = Path(out)
    photos, images, _, splits, skipped = load_split_photos(Path(rcc_dir), val, test, held_kinds)
    records: dict[str, list[dict]] = {s: [] for s in ("train", "val", "test", "test-kinds")}
    jobs = []
    for split in records:
        idx = [i for i, s in enumerate(splits) if s == split][:limit]
        jobs += [(split, i, k, (n + k) % len(DIRECTIONS)) for n, i in enumerate(idx)
                 for k in range(train_clips if split == "train" else 1)]
    for split, i, k, d in tqdm(jobs, desc="photo-video", disable=not progress):
        p, direction = photos[i], DIRECTIONS[d]
        rng = random.Random(f"{seed}:{p.key}:{k}")
        rel = f"videos/{split}/{Path(p.key).stem}-{i}-{k}.mp4"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_clip(out / rel, render(images[i].convert("RGBA"), direction, max(2, round(seconds * fps)), size, rng), fps)
        meta = {"object": p.names[0], "names": p.names, "direction": direction, "has_audio": False,
                "source": f"gcompris:{p.key}", "category": p.category, "caption": p.name,
                "licence": f"{p.licence} (motion and background synthetic)"}
        records[split] += clip_samples(p.name, direction, rel, meta, rng, split == "train")
    for split, recs in records.items():
        with (out / f"{split}.jsonl").open("w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    stats = {**{s: len(r) for s, r in records.items()}, "skipped": skipped.total,
             "clips": {s: len(r) // 3 for s, r in records.items()}}
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "README.md").write_text(
        "Built by `anymal data build photo-video`: GCompris photos (gcompris-qt-data; each record's meta.licence\n"
        "credits the photo) moving in 4 directions over synthetic backgrounds; splits as `anymal data build photos`.\n")
    if skipped.total and progress:
        print(skipped.summary())
    return stats
