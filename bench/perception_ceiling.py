"""How much of a naming test the frozen perception models could answer at best: the ceiling of copying.

    python bench/perception_ceiling.py [MANIFEST ...]   (default: the held-out photo and Tux Paint splits)

For each picture of a naming question (layout questions are left out), whether the classifier's top
label names the object (under either naming: WordNet's first lemma or the curated common name), and
whether *any* name the adapter is given does (the classifier's top 3 under both namings, the detector's
kinds): an oracle that always picks the right one of those candidates. An adapter that only copies names
cannot score above the second number on kinds it never saw. The judge is the eval's own (`names_object`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

DEFAULT = ["data/tuxpaint/val.jsonl", "data/tuxpaint/test.jsonl", "data/photos/val.jsonl", "data/photos/test.jsonl",
           "data/photos/test-kinds.jsonl"]
LAYOUT = ("left", "right", "How many", "Is there")


def naming_pictures(manifest: Path) -> dict[Path, list[str]]:
    """picture -> the names that count as right, for each picture asked "what is it"."""
    out: dict[Path, list[str]] = {}
    for line in manifest.read_text().splitlines():
        r = json.loads(line)
        if not any(w in r["messages"][0]["content"] for w in LAYOUT):
            out.setdefault(manifest.parent / r["images"][0], r["meta"].get("names") or [r["meta"]["object"]])
    return out


def main() -> None:
    from anymal.data.builders.tuxpaint import names_object
    from anymal.encoders import load_encoder
    from anymal.encoders.perception import Lite3CommonNames

    cls, det = load_encoder("efficientnet-lite3-labels", "image"), load_encoder("ssd-mobilenet-coco", "image")
    common = Lite3CommonNames.class_names()
    print("| manifest | pictures | classifier top label | any name given (top 3 + detector) |\n|---|---|---|---|")
    for manifest in map(Path, sys.argv[1:] or DEFAULT):
        top, any_name = [], []
        for picture, names in naming_pictures(manifest).items():
            c, d = cls.encode([picture])[0].numpy(), det.encode([picture])[0].numpy()
            ks = [int(k) - 1 for k in c[:, 0]]
            given = [cls.labels[k] for k in ks] + [common[k] for k in ks] + [det.labels[int(k) - 1] for k in d[:, 0] if k > 0]
            says = lambda labels: any(names_object(label, n) for label in labels for n in names)  # noqa: E731
            top.append(says([cls.labels[ks[0]], common[ks[0]]]))
            any_name.append(says(given))
        print(f"| {manifest} | {len(top)} | {np.mean(top):.3f} | {np.mean(any_name):.3f} |")


if __name__ == "__main__":
    main()
