"""The standard benchmarks as evaluation tasks: each reads the user's own copy in its own format
(anymal/data/benchmarks.py), asks with its canonical prompt and scores with its official metric.

  coco-caption   CIDEr / BLEU / METEOR / ROUGE-L against every reference caption
  vqav2, textvqa VQA accuracy over the ten human answers (EvalAI normalisation), per answer type
  pope           accuracy, precision, recall, F1 of "yes", and the yes-ratio; per category
  mme            per subtask acc + acc+ (both questions of a picture right), scores x100; perception and
                 cognition totals
  mmbench        multiple choice (option letters); circular accuracy where the TSV holds rotated variants
  scienceqa      multiple choice; per context (IMG, TXT, NO), as in the ScienceQA paper
  audiocaps, clotho   captioning metrics against the 5 references of each clip

`anymal eval --task NAME --data FILE [--media-root DIR] [--annotations FILE] [--split S]`.
"""
from __future__ import annotations

from collections import defaultdict

from ..data import benchmarks as bench
from .tasks import Row, Task, captions, register
from .vqa import extract_choice, short_answer, vqa_accuracy

DOCS = "download it and point --data at it (docs/evaluation.md, 'Standard benchmarks')"
CAPTION_SCORES = ("CIDEr", "BLEU-4", "METEOR", "ROUGE-L")


def _no_verdict(row: Row, refs: list[str]) -> dict:
    return {}


def _vqa(row: Row, refs: list[str]) -> dict:
    return {"vqa_accuracy": vqa_accuracy(short_answer(row.prediction), row.meta["answers"])}


def pope_answer(prediction: str) -> str:
    """POPE's own reading of a reply: its first sentence, commas dropped; "no" if it holds the word No,
    no or not, else "yes"."""
    words = prediction.split(".")[0].replace(",", "").split(" ")
    return "no" if {"No", "no", "not"} & set(words) else "yes"


def _pope(row: Row, refs: list[str]) -> dict:
    said = pope_answer(row.prediction)
    return {"accuracy": said == row.meta["label"], "predicted": said}


def pope_scores(rows: list[dict]) -> dict:
    """Precision, recall and F1 of "yes" (the object is there), and the share of "yes" answers."""
    tp = sum(r["predicted"] == "yes" and r["reference"] == "yes" for r in rows)
    said_yes = sum(r["predicted"] == "yes" for r in rows)
    truly_yes = sum(r["reference"] == "yes" for r in rows)
    precision = tp / said_yes if said_yes else 0.0
    recall = tp / truly_yes if truly_yes else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "F1": f1, "yes_ratio": said_yes / len(rows)}


PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def mme_answer(prediction: str) -> str:
    """MME's eval_tool reading: the lower-cased reply if it is yes/no, else yes/no in its first 4 characters."""
    low = prediction.strip().lower()
    if low in ("yes", "no"):
        return low
    return "yes" if "yes" in low[:4] else "no" if "no" in low[:4] else "other"


def _mme(row: Row, refs: list[str]) -> dict:
    return {"accuracy": mme_answer(row.prediction) == row.meta["label"], "picture": row.meta["picture"],
            "subtask": row.meta["subtask"]}


def mme_scores(rows: list[dict]) -> dict:
    """Per subtask: acc (per question) + acc+ (per picture, every question right), each x100; the totals
    of the perception and the cognition subtasks present."""
    by_subtask = defaultdict(list)
    for r in rows:
        by_subtask[r["subtask"]].append(r)
    out = {}
    for name, mine in sorted(by_subtask.items()):
        pictures = defaultdict(list)
        for r in mine:
            pictures[r["picture"]].append(bool(r["accuracy"]))
        acc = sum(r["accuracy"] for r in mine) / len(mine)
        acc_plus = sum(all(v) for v in pictures.values()) / len(pictures)
        out[f"{name} score"] = 100 * (acc + acc_plus)
    for total, names in (("perception", PERCEPTION), ("cognition", COGNITION)):
        present = [out[f"{n} score"] for n in names if f"{n} score" in out]
        if present:
            out[f"{total} total"] = sum(present)
    return out


def _choice(row: Row, refs: list[str]) -> dict:
    picked = extract_choice(row.prediction, row.meta["options"])
    return {"accuracy": picked == row.meta["letter"], "no_pick": picked is None,
            **({"circular": row.meta["circular"]} if "circular" in row.meta else {})}


def circular_scores(rows: list[dict]) -> dict:
    """MMBench's CircularEval, where the TSV holds a question's rotated variants: right only if every
    variant is right."""
    groups = defaultdict(list)
    for r in rows:
        groups[r.get("circular")].append(bool(r["accuracy"]))
    if None in groups or all(len(v) == 1 for v in groups.values()):
        return {}
    return {"circular_accuracy": sum(all(v) for v in groups.values()) / len(groups)}


def _caption_task(name: str, reader, about: str) -> Task:
    return Task(name, "", DOCS, about, _no_verdict, corpus=captions, primary="CIDEr", group_by="-",
                reader=reader, report=CAPTION_SCORES, max_new_tokens=40, fields="read from the benchmark's own files",
                notes=["METEOR needs java on PATH; CIDEr's IDF comes from the evaluated references"])


register(_caption_task("coco-caption", bench.coco_captions,
                       "COCO captions (captions_val2014.json + the pictures): every reference caption"))
register(_caption_task("audiocaps", bench.audiocaps, "AudioCaps (CSV + your clips): the 5 captions of each clip"))
register(_caption_task("clotho", bench.clotho, "Clotho (captions CSV + the evaluation clips): 5 captions each"))
for _name, _reader, _about in (("vqav2", bench.vqav2, "VQAv2 (questions + annotations + COCO pictures)"),
                               ("textvqa", bench.textvqa, "TextVQA (TextVQA_0.5.1_val.json + its pictures)")):
    register(Task(_name, "", DOCS, _about + ": VQA accuracy over the 10 human answers", _vqa, reader=_reader,
                  group_by="answer_type", primary="vqa_accuracy", max_new_tokens=10, fields="read from the benchmark's own files",
                  notes=["EvalAI normalisation; the answer is the reply's first clause minus 'It is'/'The answer is'"]))
register(Task("pope", "", DOCS, "POPE (coco_pope_*.json + COCO val2014 pictures): object hallucination, yes/no",
              _pope, reader=bench.pope, corpus=pope_scores, label_key="label", primary="accuracy", max_new_tokens=10,
              report=("accuracy", "precision", "recall", "F1", "yes_ratio"), chance={"accuracy": 0.5},
              fields="read from the benchmark's own files",
              notes=["POPE's own parser: 'no' if the first sentence holds No/no/not, else 'yes'"]))
register(Task("mme", "", DOCS, "MME (the release folder): yes/no per subtask, acc + acc+ x100",
              _mme, reader=bench.mme, corpus=mme_scores, group_by="subtask", primary="accuracy",
              max_new_tokens=10, report=("perception total", "cognition total", "accuracy"), chance={"accuracy": 0.5},
              fields="read from the benchmark's own files",
              notes=["MME's eval_tool reading: yes/no as the reply, else in its first 4 characters; 'other' is wrong"]))
register(Task("mmbench", "", DOCS, "MMBench (its TSV, base64 pictures): multiple choice by option letter",
              _choice, reader=bench.mmbench, corpus=circular_scores, primary="accuracy", max_new_tokens=10,
              report=("accuracy", "circular_accuracy"), fields="read from the benchmark's own files",
              notes=["the letter is read by anymal.eval.vqa.extract_choice; no pick counts wrong",
                     "circular_accuracy where the TSV holds rotated variants (index modulo 1,000,000)"]))
register(Task("scienceqa", "", DOCS, "ScienceQA (problems.json + pid_splits.json + pictures): multiple choice",
              _choice, reader=bench.scienceqa, group_by="context", primary="accuracy", max_new_tokens=10,
              fields="read from the benchmark's own files",
              notes=["context IMG (a picture), TXT (a text hint only), NO (neither); the ScienceQA paper's split"]))

