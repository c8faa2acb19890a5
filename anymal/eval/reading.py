"""`read-text`: does the model read the text in a picture? Held-out pictures of the `read-text` set (photos
and strings no training record shows: signs, labels, screen captures, pages), scored by word accuracy (the
share of the text's words the answer says, each as often as the text has it) and exact reading (the text's
words in order, inside the answer), and "is there any text" by its first word. The reference systems are
the OCR parts themselves (RapidOCR and Tesseract: the text each reads, as its answer): the adapter is handed
one of them and should not read worse than it.
"""
from __future__ import annotations

import re
from collections import Counter

from ..data.builders import build_command, manifest
from ..modalities import IMAGE
from .question_types import _score, said
from .tasks import Row, Task, input_paths, register

READERS = ("rapidocr-text", "tesseract-text")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def word_accuracy(prediction: str, text: str) -> float:
    """The share of the text's words the prediction says (each counted at most as often as the text has it)."""
    want, got = Counter(words(text)), Counter(words(prediction))
    return sum(min(n, got[w]) for w, n in want.items()) / max(sum(want.values()), 1)


def reads_exactly(prediction: str, text: str) -> bool:
    """The text's words, in order and contiguous, are inside the prediction ('It says "OPEN".' reads OPEN)."""
    want, got = words(text), words(prediction)
    return bool(want) and any(got[i:i + len(want)] == want for i in range(len(got) - len(want) + 1))


def judge(row: Row, refs: list[str]) -> dict:
    meta = row.meta
    if meta["task"] == "has-text":
        got = said(row.prediction, "yes/no")
        return {"correct": got == meta["answer"], "has_text_correct": got == meta["answer"], "addressed": got is not None}
    exact = reads_exactly(row.prediction, meta["text"])
    return {"correct": exact, "exact": exact, "word_accuracy": word_accuracy(row.prediction, meta["text"])}


def ocr_readers(samples: list, refs: list[str], progress: bool) -> dict:
    """Each OCR part's own reading of every picture as the answer ("Yes."/"No." for is-there-text: any line read)."""
    from tqdm import tqdm

    from ..registry import ENCODERS

    out = {}
    paths = input_paths(samples, IMAGE.name)
    for name in READERS:
        reader, read = ENCODERS.build(name, IMAGE.name), {}
        for p in tqdm(sorted(set(paths)), desc=name, disable=not progress):
            read[p] = "\n".join(line for line, _, _ in reader.lines(p))
        answers = [("Yes." if read[p].strip() else "No.") if s.meta["task"] == "has-text" else read[p]
                   for p, s in zip(paths, samples)]
        out[f"{name} (the text it reads, as the answer)"] = _scores(samples, answers)
    return out


def _scores(samples: list, answers: list[str]) -> dict:
    """The judge's verdicts averaged (as the model's are), and word accuracy per kind of picture."""
    out = _score(samples, answers, judge)
    for kind in sorted({s.meta["kind"] for s in samples if s.meta["task"] != "has-text"}):
        mine = [(s, a) for s, a in zip(samples, answers) if s.meta["kind"] == kind and s.meta["task"] != "has-text"]
        out[f"word_accuracy, {kind}"] = _score([s for s, _ in mine], [a for _, a in mine], judge)["word_accuracy"]
    return out


register(Task("read-text", manifest("read-text", "test"), build_command("read-text"),
              "text rendered on held-out photos (signs, labels) and on window / page canvases, strings never "
              "trained on: read it, the window's title, is there any text", judge, group_by="kind",
              primary="word_accuracy", max_new_tokens=64, baseline=ocr_readers,
              fields="meta.task (read, title or has-text), meta.kind, meta.text; has-text: meta.answer",
              report=("word_accuracy", "exact", "has_text_correct"),
              notes=["word accuracy: the share of the text's words the answer says (each at most as often as the "
                     "text has it); exact: the text's words in order inside the answer",
                     "the reference systems are the OCR parts' own readings (RapidOCR, Tesseract)"]))
