"""VQA accuracy with the standard answer normalisation, and multiple-choice letter extraction.

`normalize_answer` follows the official VQA evaluation (EvalAI's vqaEval.py): lower case,
punctuation removed (a period only when it is not a decimal point, commas inside numbers kept out),
number words to digits, articles dropped, common contractions restored ("dont" -> "don't").
`vqa_accuracy` is the VQA score: min(#humans who gave the answer / 3, 1) averaged over the 10
leave-one-out subsets of the human answers; with one reference answer (easy-vqa) it is exact match
after normalisation.
"""
from __future__ import annotations

import re
from itertools import combinations

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "im": "i'm", "ive": "i've", "isnt": "isn't", "itd": "it'd", "itll": "it'll", "lets": "let's",
    "shouldnt": "shouldn't", "thats": "that's", "theres": "there's", "theyre": "they're", "theyve": "they've",
    "wasnt": "wasn't", "werent": "weren't", "whats": "what's", "wheres": "where's", "whos": "who's",
    "wont": "won't", "wouldnt": "wouldn't", "youre": "you're", "youve": "you've",
}
_NUMBERS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
_NUMBERS["none"] = "0"
_ARTICLES = {"a", "an", "the"}
_PUNCT = ";/[]\"{}()=+\\_-><@`,?!*#%^&$~|:"
_PERIOD = re.compile(r"(?<!\d)(\.)(?!\d)")  # a period that is not a decimal point
_COMMA_NUM = re.compile(r"(\d)(,)(\d)")


def normalize_answer(answer: str) -> str:
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_NUM.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD.sub("", out)
    words = []
    for w in out.split():
        w = _NUMBERS.get(w, w)
        if w not in _ARTICLES:
            words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """The VQA score of one prediction against the human answers (1 to 10 of them)."""
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    if len(gts) == 1:
        return float(pred == gts[0])
    subsets = list(combinations(range(len(gts)), len(gts) - 1))
    return sum(min(sum(gts[i] == pred for i in s) / 3, 1.0) for s in subsets) / len(subsets)


def short_answer(prediction: str) -> str:
    """The answer part of a free reply to a one-word question: its first clause, minus a leading
    "The answer is" / "It is" / "Answer:" (so "It is red." -> "red")."""
    first = re.split(r"[.\n;!?]", prediction.strip(), maxsplit=1)[0]
    first = re.sub(r"^\s*(the\s+answer\s+is|answer\s*:|it\s+is|it's|this\s+is|that\s+is)\s+", "", first, flags=re.I)
    return first.strip()


_EXPLICIT = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Z])\)?(?!\s*[a-z])")  # not "Answer: A pig"
_LEADING = re.compile(r"^\s*\(?([A-Z])\)?\s*(?:[.):]|$)", re.M)  # "B", "(B)", "B.", "B)", "B: goat" at a line start


def extract_choice(prediction: str, options: list[str]) -> str | None:
    """The option letter a free reply picks, or None.

    In order: an explicit "the answer is (B)" / "Answer: B"; else letters at line starts ("B",
    "(B)", "B.", "B: goat") — exactly one distinct offered letter is a pick, several mean the reply
    repeats the option list (no pick); else the one option whose text the reply contains
    (word-bounded, case-insensitive; several = no pick). An unoffered letter is no pick; no pick is
    counted wrong.
    """
    letters = [chr(ord("A") + i) for i in range(len(options))]
    m = _EXPLICIT.search(prediction)
    if m and m.group(1) in letters:
        return m.group(1)
    leading = {x for x in _LEADING.findall(prediction) if x in letters}
    if leading:
        return leading.pop() if len(leading) == 1 else None
    low = " " + re.sub(r"[^a-z0-9]+", " ", prediction.lower()) + " "
    hits = [letters[i] for i, o in enumerate(options)
            if " " + re.sub(r"[^a-z0-9]+", " ", o.lower()).strip() + " " in low]
    return hits[0] if len(hits) == 1 else None
