"""Evaluation tasks by name: which manifest, which samples, how an answer is judged, which scores.

A task is one small record here; `anymal eval --task NAME` runs it with pinned decoding. Per-sample
judges return booleans/numbers averaged into the scores; `corpus` adds corpus-level metrics (BLEU,
WER); `group_by` names the meta field whose groups get their own bar in the plot; `label_key` makes
a confusion matrix for closed-label tasks. Baselines (`anymal eval --baselines`, see baselines.py):
`chance` is the score of guessing; `probe` names the training manifest and the meta label a linear
probe on the frozen encoder's features is trained on; every task also gets a blind run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..data.builders import build_command, manifest
from ..data.builders.tuxpaint import names_object, object_word
from ..errors import ConfigError
from ..modalities import AUDIO, IMAGE
from ..registry import Registry
from .matching import match_label
from .metrics import caption_scores


@dataclass
class Row:
    prediction: str
    reference: str
    meta: dict


@dataclass
class Probe:
    """A linear probe on frozen encoder features: train manifest, meta label, the verdict it stands for."""
    train: str
    label: str  # meta field with the label (the same field on train and test items)
    score: str  # the judge's score the probe's accuracy is comparable to


@dataclass
class Retrieval:
    """Zero-shot retrieval in an encoder's text-aligned space (its `embed`): inputs vs label texts."""
    label: str  # meta field with the label
    labels: Callable[[], list[str]]  # every label of the task (the retrieval gallery)
    text: Callable[[str], str]  # label -> the text embedded for it
    score: str  # the judge's score that input->text R@1 (zero-shot accuracy) is comparable to


@dataclass
class Task:
    name: str
    manifest: str  # default manifest, built by `build`
    build: str  # the command that builds it
    about: str
    judge: Callable[[Row, list[str]], dict]  # (row, all references of the task) -> per-sample verdicts
    select: Callable[[dict], bool] = lambda meta: True
    corpus: Callable[[list[dict]], dict] | None = None  # judged rows (prediction, reference(s), verdicts) -> scores
    group_by: str = "category"
    label_key: str | None = None  # meta field holding the true label (confusion matrix)
    max_new_tokens: int = 48
    primary: str = ""  # the headline score
    notes: list[str] = field(default_factory=list)
    baseline: Callable[[list, list[str], bool], dict] | None = None  # (samples, refs, progress) -> {name: scores}
    chance: dict[str, float] = field(default_factory=dict)  # score -> a uniform guess's value, where defined
    probe: Probe | None = None
    retrieval: Retrieval | None = None
    report: tuple[str, ...] = ()  # the scores in the suite table (default: the primary one)
    # a standard benchmark's reader of its own files (anymal/data/benchmarks.py); None: an anymal manifest
    reader: Callable | None = None
    fields: str = ""  # the meta fields the judge reads, for the error when a manifest lacks one


TASKS: Registry[Task] = Registry("task", home="anymal.eval.catalog")  # its import registers the other modules' tasks


def register(task: Task) -> Task:
    return TASKS.add(task.name, task)


def get_task(name: str) -> Task:
    return TASKS.get(name)


def _object_named(row: Row, refs: list[str]) -> dict:
    obj = row.meta.get("object") or object_word(row.reference)
    return {"object_named": names_object(row.prediction, obj)}


def captions(rows: list[dict]) -> dict:
    """Captioning metrics of each prediction against all its references (`meta.references`, else the one)."""
    return caption_scores([r["prediction"] for r in rows], [r.get("references") or [r["reference"]] for r in rows])


def _label(row: Row, refs: list[str]) -> dict:
    """Closed label set = the task's distinct references; the label is the reference itself."""
    hit = match_label(row.prediction, sorted(set(refs)))
    return {"accuracy": hit == row.reference, "predicted": hit}


register(Task("image-caption", manifest("tuxpaint", "test"), build_command("tuxpaint"),
              "Tux Paint held-out captions (split by caption)", _object_named, corpus=captions,
              primary="object_named", report=("object_named", "BLEU-4", "METEOR", "CIDEr"),
              fields="meta.object (optional: the word that must be named; default: the caption's object), "
                     "meta.references (optional: every reference caption)",
              notes=["CIDEr's IDF comes from the evaluated references: unstable on small sets"]))


def _vqa(row: Row, refs: list[str]) -> dict:
    from .vqa import short_answer, vqa_accuracy

    answers = row.meta["answers"] if "answers" in row.meta else [row.meta["answer"]]
    return {"vqa_accuracy": vqa_accuracy(short_answer(row.prediction), answers)}


register(Task("image-vqa", manifest("easy-vqa", "test"), build_command("easy-vqa"),
              "easy-vqa test split (shapes and colours; one question per test image): one-word answers", _vqa,
              group_by="answer_type", label_key="answer", primary="vqa_accuracy", max_new_tokens=8,
              fields="meta.answer (the reference answer) or meta.answers (a list, e.g. VQA's 10)",
              notes=["VQA normalisation (EvalAI); the answer is the reply's first clause minus 'It is'/'The answer is'",
                     "easy-vqa has one reference answer per question: VQA accuracy = exact match after normalisation"]))


def _magnifier(row: Row, refs: list[str]) -> dict:
    if row.meta["form"] == "multiple-choice":
        from .vqa import extract_choice

        picked = extract_choice(row.prediction, row.meta["options"])
        return {"correct": picked == row.meta["letter"], "mc_accuracy": picked == row.meta["letter"],
                "mc_no_pick": picked is None}
    ok = names_object(row.prediction, row.meta["object"])
    return {"correct": ok, "open_accuracy": ok}


register(Task("magnifier", manifest("magnifier", "test"), build_command("magnifier"),
              "MagnifierBench-style: a held-out stamp at ~1% of a cluttered 1024-2048 px canvas, asked "
              "multiple-choice (4 letters) and open-ended", _magnifier, group_by="form", primary="correct",
              max_new_tokens=16, chance={"correct": 0.125, "mc_accuracy": 0.25}, report=("mc_accuracy", "open_accuracy"),
              fields="meta.form ('multiple-choice' or 'open'); multiple choice: meta.options (texts), meta.letter; "
                     "open: meta.object",
              notes=["multiple-choice: the letter is read by anymal.eval.vqa.extract_choice (letter, else the one "
                     "option named); chance 0.25 there and ~0 open-ended, 0.125 over both forms"]))


# ---- audio -----------------------------------------------------------------------------------
def _exact(row: Row, refs: list[str]) -> dict:
    from .speech import normalize_text

    return {"exact": normalize_text(row.prediction) == normalize_text(row.reference)}


def _wer_of(preds: list[str], refs: list[str]) -> dict:
    from .speech import wer_cer

    r = wer_cer(preds, refs)
    return {"WER": r["wer"], "CER": r["cer"]}


def _wer(rows: list[dict]) -> dict:
    return _wer_of([r["prediction"] for r in rows], [r["reference"] for r in rows])


def input_paths(samples: list, kind: str) -> list[str]:
    """The path of each sample's first `kind` part (a reference system reads the files itself)."""
    return [next(p["path"] for m in s.messages for p in m["content"] if isinstance(p, dict) and p.get("type") == kind)
            for s in samples]


def _whisper_decoder(samples: list, refs: list[str], progress: bool) -> dict:
    """Whisper tiny.en end to end (its own decoder, CTranslate2, greedy) on the very same clips."""
    from .speech import whisper_transcribe

    preds = whisper_transcribe(input_paths(samples, AUDIO.name))
    scores = _wer_of(preds, refs)
    groups = sorted({str(s.meta.get("group")) for s in samples})
    for g in groups if len(groups) > 1 else []:  # next to the model's own rows by group
        mine = [i for i, s in enumerate(samples) if str(s.meta.get("group")) == g]
        scores[f"WER, group {g}"] = _wer_of([preds[i] for i in mine], [refs[i] for i in mine])["WER"]
    return {"whisper-tiny.en own decoder": scores}


def _sound_majority(samples: list, refs: list[str], progress: bool) -> dict:
    """Always naming the kind the training manifest (next to the test one) has most recordings of."""
    from collections import Counter
    from pathlib import Path

    from ..data.jsonl import read_jsonl

    train = Path(samples[0].where.rsplit(":", 1)[0]).with_name("train.jsonl")
    kinds = Counter(s.meta["object"] for s in read_jsonl(train, [AUDIO.name], on_error="skip")[0]
                    if s.meta.get("kind") == "sound" and not s.meta.get("augmented") and s.meta.get("object"))
    if not kinds:
        return {}
    top = kinds.most_common(1)[0][0]
    hits = [names_object(top, s.meta.get("object", "")) for s in samples]
    return {f"majority (always '{top}', the commonest training kind)": {"object_named": sum(hits) / len(hits)}}


register(Task("speech-transcribe", manifest("audio", "test"), build_command("audio"),
              "held-out Asterisk prompts + espeak-ng/flite speech (split by transcript) and a Festival voice no "
              "training clip uses (group 'held-out voice')", _exact,
              select=lambda m: m.get("kind") == "speech", corpus=_wer, group_by="group", primary="exact",
              fields="meta.kind = 'speech' (the reference is the assistant turn)",
              max_new_tokens=64, baseline=_whisper_decoder, report=("WER", "CER", "exact"),
              notes=["WER normalisation: lower case, punctuation removed; digits and number words differ"]))
register(Task("sound-name", manifest("audio", "test"), build_command("audio"),
              "held-out sound recordings (Tux Paint, OpenSFX, Scratch, GCompris; split by recording): is the "
              "sound's source named? group 'known kind': other recordings of the kind were trained on; 'new kind': "
              "none were", _object_named, select=lambda m: m.get("kind") == "sound", group_by="group",
              fields="meta.kind = 'sound', meta.object (optional: the source's word)",
              primary="object_named", baseline=_sound_majority,
              notes=["small sets (tens of recordings per group): read with care"]))


# ---- video -----------------------------------------------------------------------------------
def _video(row: Row, refs: list[str]) -> dict:
    from .matching import contains_phrase

    out = {}
    if row.meta.get("task") in ("caption", "direction"):
        out["direction_correct"] = contains_phrase(row.prediction, row.meta["direction"])
    if row.meta.get("task") in ("caption", "object"):
        out["object_named"] = names_object(row.prediction, row.meta["object"])
    return out


register(Task("video-motion", manifest("video", "test"), build_command("video"),
              "held-out Tux Paint stamps moving in 4 directions: direction and object", _video,
              select=lambda m: m.get("task") in ("caption", "direction", "object"),
              group_by="direction", primary="direction_correct", chance={"direction_correct": 0.25},
              fields="meta.task ('caption', 'direction' or 'object'), meta.direction, meta.object",
              report=("direction_correct", "object_named"),
              probe=Probe(manifest("video", "train"), "direction", "direction_correct"),
              notes=["chance for the direction is 0.25 (4 balanced directions)"]))


# ---- IMU -------------------------------------------------------------------------------------
def _activity(row: Row, refs: list[str]) -> dict:
    from ..data.builders.hapt import LABELS
    from ..data.builders.hapt_windows import CAPTIONS

    label_of = {c: LABELS[k] for k, cs in CAPTIONS.items() for c in cs}
    hit = match_label(row.prediction, sorted(label_of))
    predicted = label_of.get(hit) if hit else None
    return {"accuracy": predicted == row.meta["activity"], "predicted": predicted}


def _activities() -> list[str]:
    from ..data.builders.hapt import LABELS

    return [LABELS[k] for k in sorted(LABELS)]


def _activity_caption(activity: str) -> str:
    from ..data.builders.hapt import LABELS
    from ..data.builders.hapt_windows import CAPTIONS

    return CAPTIONS[next(k for k, v in LABELS.items() if v == activity)][0]


register(Task("imu-activity", manifest("hapt", "test"), build_command("hapt"),
              "UCI HAPT windows of held-out users 26-30: is the activity named?", _activity,
              group_by="activity", label_key="activity", primary="accuracy", chance={"accuracy": 1 / 12},
              fields="meta.activity (one of the 12 HAPT activity names)",
              probe=Probe(manifest("hapt", "train"), "activity", "accuracy"),
              retrieval=Retrieval("activity", _activities, _activity_caption, "accuracy"),
              notes=["matcher: the answer is mapped to the closest of the 36 activity captions (3 per activity)"]))


# ---- 3-D -------------------------------------------------------------------------------------
def _furniture(row: Row, refs: list[str]) -> dict:
    from .matching import contains_phrase

    name = row.meta["name"]
    return {"category_named": contains_phrase(row.prediction, row.meta["category"].lower()),
            "object_named": names_object(row.prediction, object_word(name + "."))}


def _categories() -> list[str]:
    from ..data.builders.furniture import CATEGORY_PHRASES

    return sorted(CATEGORY_PHRASES)


def _category_text(category: str) -> str:
    from ..data.builders.furniture import category_prompt

    return category_prompt(category)


register(Task("points-category", manifest("furniture", "test"), build_command("furniture"),
              "Sweet Home 3D models with held-out names: category and object named", _furniture,
              primary="category_named", probe=Probe(manifest("furniture", "train"), "category", "category_named"),
              fields="meta.category, meta.name (the model's name)",
              retrieval=Retrieval("category", _categories, _category_text, "category_named")))


# ---- interleaved -----------------------------------------------------------------------------
def _interleaved(row: Row, refs: list[str]) -> dict:
    import re

    from ..data.builders.interleaved import ACTIVITY

    if row.meta["kind"] == "image+imu":
        m = re.search(r"you are (.*?)(?: while| and|[.,]|$)", row.prediction, re.I)
        doing = match_label(m.group(1), sorted(ACTIVITY.values())) if m else None
        activity_ok = doing == row.meta["activity"]
        object_ok = names_object(row.prediction, row.meta["object"])
        return {"activity_correct": activity_ok, "object_named": object_ok, "both_correct": activity_ok and object_ok}
    said_yes = row.prediction.strip().lower().startswith("yes")
    said_no = row.prediction.strip().lower().startswith("no")
    return {"match_correct": (said_yes and row.meta["match"]) or (said_no and not row.meta["match"])}


register(Task("interleaved", manifest("interleaved", "test"), build_command("interleaved"),
              "image + IMU (activity and object) and image + sound (do they match?) questions", _interleaved,
              group_by="kind", primary="both_correct",
              fields="meta.kind ('image+imu' or 'image+sound'); image+imu: meta.activity, meta.object; "
                     "image+sound: meta.match (true/false)",
              report=("activity_correct", "object_named", "both_correct", "match_correct")))


# ---- real photos -----------------------------------------------------------------------------
def _names_any(prediction: str, names: list[str]) -> bool:
    return any(names_object(prediction, n) for n in names)


def _photo_named(row: Row, refs: list[str]) -> dict:
    return {"object_named": _names_any(row.prediction, row.meta["names"])}


def _perception_answers(samples: list, refs: list[str], progress: bool) -> dict:
    """The frozen perception models' own answers judged like the model's: each one's top label, the fixed
    rule over both (detector if its score is at least 0.5, else classifier) and the oracle (any name)."""
    from .perception_rule import Perceived

    seen = Perceived()
    looks = [seen.look(p) for p in input_paths(samples, IMAGE.name)]
    answers = {"ssd-mobilenet-coco top label": [lk["detector"] for lk in looks],
               "efficientnet-lite3-labels top label": [lk["classifier"] for lk in looks],
               f"fixed rule (detector if >= {seen.sure}, else classifier)": [lk["top"] for lk in looks]}
    out = {name: {"object_named": sum(_names_any(a, s.meta["names"]) for a, s in zip(labels, samples)) / len(samples)}
           for name, labels in answers.items()}
    oracle = [any(_names_any(n, s.meta["names"]) for n in lk["all"]) for lk, s in zip(looks, samples)]
    out["perception oracle (any name it gives)"] = {"object_named": sum(oracle) / len(samples)}
    return out


register(Task("photo-object", manifest("photos", "test"), build_command("photos"),
              "GCompris real photos held out by photo (near-duplicates grouped): is what it shows named? "
              "(--manifest data/photos/test-kinds.jsonl: kinds never trained on)", _photo_named,
              select=lambda m: m.get("task") == "name", primary="object_named", baseline=_perception_answers,
              fields="meta.task = 'name', meta.names (every acceptable name)",
              notes=["named = the answer contains one of the photo's words (e.g. 'pliers'/'plier'), plural-insensitive",
                     "baselines: each perception model's top label, the fixed rule (detector if >= 0.5, else "
                     "classifier), the oracle (any name perception gives)"]))


def _photo_layout(row: Row, refs: list[str]) -> dict:
    from .matching import contains_phrase

    task, answer = row.meta["task"], row.meta["answer"]
    if task == "what-side":
        other = row.meta["right" if answer == "left" else "left"]
        ok = _names_any(row.prediction, row.meta["names"]) and not _names_any(row.prediction, other)
    elif task == "there":
        ok = row.prediction.strip().lower().startswith(answer)
    else:  # side, count: the one expected word, and not the alternatives
        options = ["left", "right"] if task == "side" else ["one", "two", "three", "four"]
        ok = contains_phrase(row.prediction, answer) and not any(contains_phrase(row.prediction, o)
                                                                 for o in options if o != answer)
    return {"correct": ok, f"{task}_correct": ok}


register(Task("photo-layout", manifest("photos", "test"), build_command("photos"),
              "canvases of held-out real photos: which side, what is on a side, is there an X, how many photos",
              _photo_layout, select=lambda m: m.get("task") in ("side", "what-side", "there", "count"),
              group_by="task", primary="correct", max_new_tokens=16,
              fields="meta.task (side, what-side, there, count), meta.answer, meta.names; what-side: meta.left, meta.right",
              chance={"side_correct": 0.5, "there_correct": 0.5, "count_correct": 0.25},
              report=("side_correct", "what-side_correct", "there_correct", "count_correct"),
              notes=["answers follow from how the canvas was composed (true by construction)"]))
