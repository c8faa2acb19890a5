"""What the output safety check costs a stream, word by word, sentence by sentence or the whole answer
held: the shipped text check on a typical 25-word answer pushed token-sized piece by piece, median of 5
rounds. "First text after" is the piece after which the client first receives anything: with the
answer held, the whole generation time is added to the time to first text.

    .venv/bin/python bench/safety_stream.py
"""
from __future__ import annotations

import re
import statistics
import time

from anymal.safety import HOLDS
from anymal.safety.guard import Guard, OutputFilter, SafetyConfig
from anymal.safety.text import TextClassifier

ANSWER = ("A small red pickup truck is parked on a street. It has four wheels and a flat bed at the back. "
          "The sky above it is clear and blue.")


def stream(guard: Guard, pieces: list[str]) -> tuple[float, int, int]:
    """(check seconds, release events, the piece after which text was first released)."""
    f, t0 = OutputFilter(guard), time.perf_counter()
    released = [f.push(p) for p in pieces]
    released.append(f.close())
    assert "".join(released) == ANSWER
    first = next(i for i, r in enumerate(released, 1) if r)
    return time.perf_counter() - t0, sum(1 for r in released if r), first


def main() -> None:
    clf = TextClassifier.load()
    clf.check(["warm up"])
    pieces = re.findall(r"\S+\s*", ANSWER)
    print(f"{len(pieces)} pieces, {len(re.findall(r'[.!?]', ANSWER))} sentences")
    print("| hold | release events | first text after piece | check time per answer (ms) | per piece (ms) |\n"
          "|---|---|---|---|---|")
    for hold in HOLDS:
        guard = Guard(SafetyConfig(input_image=False, pair=False, hold=hold), text=clf)
        runs = [stream(guard, pieces) for _ in range(5)]
        ms = statistics.median(r[0] for r in runs) * 1000
        first = f"{runs[0][2]} of {len(pieces)}" if runs[0][2] <= len(pieces) else "the end"
        print(f"| {hold} | {runs[0][1]} | {first} | {ms:.0f} | {ms / len(pieces):.1f} |")


if __name__ == "__main__":
    main()
