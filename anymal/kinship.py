"""Which kind a perceived name is, next to the words of a question (issue 31).

The classifier says "beagle", the detector "bird"; a user asks "Is there a dog?", "Is there a pigeon?".
Exact names never meet there, and a 135M frozen LLM does not reliably know that a beagle is a dog. WordNet
does: `anymal/assets/kinship.json.gz` (built once by scripts/build_kinship.py, committed) lists, for each
name of the ImageNet classifier and the COCO detector, the words for the **same** kind, a **broader**
kind (beagle -> dog, hound, mammal, animal) and a **narrower** kind (bird -> pigeon, kingfisher). A
question's words are matched against them as stemmed phrases of up to four words, so "hunting dogs" meets
"hunting dog". The perception rule in evaluation and each perception entry's question features read the
same table.
"""
from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from pathlib import Path

RELATIONS = ("same", "broader", "narrower")
TABLE = Path(__file__).parent / "assets" / "kinship.json.gz"
LONGEST = 4  # words in the longest phrase matched ("american pit bull terrier")

# words of how questions are put that are also WordNet kinds ("image", "second", "top", "can", "count"):
# alone they name nothing the user asks about
QUESTION_WORDS = frozenset({"image", "picture", "photo", "photograph", "same", "second", "first", "can", "name",
                            "count", "top", "bottom", "left", "right", "side", "middle", "front", "back",
                            "colour", "color", "size", "kind", "sort", "type", "thing", "one", "show", "see"})

Kin = tuple[frozenset[str], frozenset[str], frozenset[str]]  # stemmed phrases, one set per relation


def stem(word: str) -> str:
    """Crude English singular: berries -> berry, boxes -> box, grapes -> grape, glass -> glass."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    return [stem(w) for w in re.findall(r"[a-z][a-z'-]*", text.lower())]


def phrases(text: str) -> frozenset[str]:
    """Every run of up to `LONGEST` stemmed words of `text`: what a kin phrase may be found among."""
    ws = words(text)
    runs = {" ".join(ws[i:i + n]) for n in range(1, LONGEST + 1) for i in range(len(ws) - n + 1)}
    return frozenset(runs - QUESTION_WORDS)


@lru_cache(maxsize=None)
def _table() -> dict:
    with gzip.open(TABLE, "rt") as f:
        return json.load(f)


def _kin(entry: dict[str, list[str]]) -> Kin:
    return tuple(frozenset(" ".join(words(p)) for p in entry[r]) for r in RELATIONS)  # type: ignore[return-value]


@lru_cache(maxsize=None)
def kin_of(source: str, labels: tuple[str, ...]) -> tuple[Kin | None, ...]:
    """The kin of each of `labels` (a perception part's names, in order) from `source`'s table
    ("imagenet": by class index, whatever the names are called, as its names repeat; "coco": by name); None where unknown."""
    table = _table()[source]
    if isinstance(table, list):
        if len(labels) != len(table):
            raise ValueError(f"kinship: {len(labels)} labels for {source}'s {len(table)} classes")
        return tuple(_kin(k) for k in table)
    return tuple(_kin(table[n]) if n in table else None for n in labels)


def relate(kin: Kin | None, said: frozenset[str]) -> tuple[float, float, float]:
    """1.0 per relation where one of the question's phrases `said` names the kind that way."""
    if kin is None or not said:
        return (0.0, 0.0, 0.0)
    return tuple(float(not k.isdisjoint(said)) for k in kin)  # type: ignore[return-value]
