"""How often the optional nudity check (anymal/safety/nudity.py, NudeNet's detector) flags everyday
pictures, per threshold, and what it costs per picture. Every picture here is benign: Tux Paint's stamps
(clip-art and photo cut-outs, composited on white as a viewer shows them), the GCompris photos and the
photo-qa test pictures (`anymal data build photos && anymal data build photo-qa`). No explicit picture
exists on this machine, so recall is not measured here.

    .venv/bin/python bench/nudity_false_flags.py
"""
from __future__ import annotations

import glob
import time

from anymal.safety.nudity import NudityCheck

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
SETS = {"Tux Paint stamps": "/usr/share/tuxpaint/stamps/**/*.png",
        "GCompris photos (data/photos)": "data/photos/images/*/*",
        "photo-qa test pictures": "data/photo-qa/images/test/*"}


def main() -> None:
    check = NudityCheck()
    print("| pictures | n | " + " | ".join(f"flagged at {t}" for t in THRESHOLDS) + " | ms per picture | highest |")
    print("|---|---|" + "---|" * len(THRESHOLDS) + "---|---|")
    for name, pattern in SETS.items():
        paths = sorted(glob.glob(pattern, recursive=True))
        if not paths:
            print(f"| {name} | 0 (not built) |" + " |" * (len(THRESHOLDS) + 2))
            continue
        t0 = time.perf_counter()
        scores = check.scores(paths)
        ms = 1000 * (time.perf_counter() - t0) / len(paths)
        top = max(zip(scores, paths))
        print(f"| {name} | {len(paths)} | " + " | ".join(str(sum(s >= t for s in scores)) for t in THRESHOLDS)
              + f" | {ms:.0f} | {top[0]:.2f} ({top[1].rsplit('/', 1)[-1]}) |")


if __name__ == "__main__":
    main()
