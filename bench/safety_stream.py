"""What the output safety check costs a stream, word by word vs sentence by sentence: the shipped text
check on a typical 25-word answer pushed token-sized piece by piece, median of 5 rounds.

    .venv/bin/python bench/safety_stream.py
"""
from __future__ import annotations

import re
import statistics
import time

from anymal.safety.guard import Guard, OutputFilter, SafetyConfig
from anymal.safety.text import TextClassifier

ANSWER = ("A small red pickup truck is parked on a street. It has four wheels and a flat bed at the back. "
          "The sky above it is clear and blue.")


def stream(guard: Guard, pieces: list[str]) -> tuple[float, int]:
    f, t0 = OutputFilter(guard), time.perf_counter()
    released = [f.push(p) for p in pieces]
    text = "".join(released) + f.close()
    assert text == ANSWER
    return time.perf_counter() - t0, sum(1 for r in released if r)


def main() -> None:
    clf = TextClassifier.load()
    clf.check(["warm up"])
    pieces = re.findall(r"\S+\s*", ANSWER)
    print(f"{len(pieces)} pieces, {len(re.findall(r'[.!?]', ANSWER))} sentences")
    print("| hold | release events | check time per answer (ms) | per piece (ms) |\n|---|---|---|---|")
    for hold in ("words", "sentences"):
        guard = Guard(SafetyConfig(input_image=False, pair=False, hold=hold), text=clf)
        runs = [stream(guard, pieces) for _ in range(5)]
        ms = statistics.median(r[0] for r in runs) * 1000
        print(f"| {hold} | {runs[0][1]} | {ms:.0f} | {ms / len(pieces):.1f} |")


if __name__ == "__main__":
    main()
