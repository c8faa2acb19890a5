"""A real published VQA set from the PyPI package `easy-vqa` (MIT): 64x64 shapes, 13 answers.

4,000 train and 1,000 test images with 38,575 + 9,673 questions ("what color is the shape?",
"is there a circle?"), one answer each: yes/no, a shape (circle, rectangle, triangle) or one of
8 colours. The builder copies the images, keeps the package's train/test split, carves a
validation split off train by image id, and writes messages manifests whose prompt asks for a
one-word answer. The test manifest holds `test_per_image` questions per test image (chosen by a
seeded draw) so a full evaluation stays short on a CPU; `test_per_image=0` keeps all 9,673.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from tqdm import tqdm

from ...errors import ConfigError
from ...modalities import IMAGE

SHAPES = {"circle", "rectangle", "triangle"}
PROMPT = "{question} Answer with one word."


def answer_type(answer: str) -> str:
    return "yes/no" if answer in ("yes", "no") else "shape" if answer in SHAPES else "color"


def _record(split: str, question: str, answer: str, image_id: int) -> dict:
    q = question[:1].upper() + question[1:]
    return {"messages": [{"role": "user", "content": "<image>" + PROMPT.format(question=q)},
                         {"role": "assistant", "content": answer[:1].upper() + answer[1:] + "."}],
            IMAGE.list_key: [f"images/{split}/{image_id}.png"],
            "meta": {"answer": answer, "answer_type": answer_type(answer), "image_id": image_id,
                     "question": question, "licence": "MIT (easy-vqa, Victor Zhou)"}}


def build_easy_vqa(out: str | Path, val_images: int = 400, test_per_image: int = 1, seed: int = 0,
                   progress: bool = True) -> dict:
    """Write images and `{train,val,test}.jsonl` under `out`; return counts."""
    try:
        import easy_vqa
    except ImportError:
        raise ConfigError("the easy-vqa dataset needs its package: pip install easy-vqa") from None
    if test_per_image < 0 or val_images < 0:
        raise ConfigError(f"test_per_image={test_per_image}, val_images={val_images}: expected >= 0")
    out = Path(out)
    records: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    val_ids = set(range(val_images))  # easy-vqa's ids are a random draw already: the first ones are a fair sample
    for split, questions, paths in (("train", easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths()),
                                    ("test", easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths())):
        by_image: dict[int, list[tuple[str, str]]] = {}
        for q, a, i in zip(*questions):
            by_image.setdefault(i, []).append((q, a))
        for image_id in tqdm(sorted(by_image), desc=f"easy-vqa {split}", disable=not progress):
            target = "val" if split == "train" and image_id in val_ids else split
            dst = out / IMAGE.list_key / target / f"{image_id}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths[image_id], dst)
            qa = by_image[image_id]
            if split == "test" and test_per_image:
                qa = random.Random(f"{seed}:{image_id}").sample(qa, min(test_per_image, len(qa)))
            records[target] += [_record(target, q, a, image_id) for q, a in qa]
    for split, recs in records.items():
        with (out / f"{split}.jsonl").open("w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
    (out / "README.md").write_text(
        "Built by `anymal data build easy-vqa` from the PyPI package easy-vqa 1.0 (MIT, Victor Zhou; "
        "https://github.com/vzhou842/easy-VQA). The package's train/test split is kept; val = train images "
        f"0..{val_images - 1}; test = {test_per_image or 'all'} question(s) per test image (seed {seed}).\n")
    counts = {k: len(v) for k, v in records.items()}
    counts["answers"] = {k: {t: sum(r["meta"]["answer_type"] == t for r in v) for t in ("yes/no", "shape", "color")}
                         for k, v in records.items()}
    (out / "stats.json").write_text(json.dumps(counts, indent=1))
    return counts
