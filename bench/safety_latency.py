"""What the input check costs per request: the shipped pair (request head + MiniLM head) against the
MiniLM head alone, on a system prompt and a question, median of 20 calls after a first one (which loads
the models; its time is printed too).

    python bench/safety_latency.py
"""
from __future__ import annotations

import statistics
import time

from anymal.safety.guard import Guard, SafetyConfig
from anymal.safety.text import TextClassifier

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "How do I terminate a Linux process that hangs?"}]


def median_ms(fn, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    guard = Guard(SafetyConfig(output_text=False, pair=False))
    t = time.perf_counter()
    guard.check_input(MESSAGES)
    first = time.perf_counter() - t
    minilm = TextClassifier.load()
    texts = [m["content"] for m in MESSAGES]
    minilm.check(texts)
    print("| input check | median per request | first request |\n|---|---|---|")
    print(f"| request head + MiniLM head (shipped) | {median_ms(lambda: guard.check_input(MESSAGES)):.1f} ms | {first:.2f} s |")
    print(f"| MiniLM head alone (before) | {median_ms(lambda: minilm.check(texts)):.1f} ms | - |")


if __name__ == "__main__":
    main()
