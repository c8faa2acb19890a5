"""From free text to a verdict: documented matchers used by classification-by-generation tasks.

`match_label` maps an answer to one of a closed set of reference answers: an exact match after
normalisation wins; otherwise the candidate with the highest F1 over word unigrams *and bigrams*
(bigrams keep "left to right" apart from "right to left"); a tie for the best score, or no shared
word at all, is no match (counted wrong). So a model cannot score by listing every label.
"""
from __future__ import annotations

import re
from collections import Counter

_ARTICLES = {"a", "an", "the"}


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower().replace("'", "")) if w not in _ARTICLES]


def _grams(ws: list[str]) -> Counter:
    return Counter(ws) + Counter(zip(ws, ws[1:]))


def overlap_f1(a: str, b: str) -> float:
    ga, gb = _grams(words(a)), _grams(words(b))
    common = sum((ga & gb).values())
    if not common:
        return 0.0
    p, r = common / sum(ga.values()), common / sum(gb.values())
    return 2 * p * r / (p + r)


def match_label(answer: str, candidates: list[str]) -> str | None:
    norm = " ".join(words(answer))
    for c in candidates:
        if " ".join(words(c)) == norm:
            return c
    scores = sorted(((overlap_f1(answer, c), c) for c in set(candidates)), reverse=True)
    if not scores or scores[0][0] == 0.0 or (len(scores) > 1 and scores[0][0] == scores[1][0]):
        return None
    return scores[0][1]


def contains_phrase(answer: str, phrase: str) -> bool:
    """True when the words of `phrase` appear consecutively in the answer (articles ignored)."""
    a, p = " " + " ".join(words(answer)) + " ", " ".join(words(phrase))
    return bool(p) and f" {p} " in a
