"""`photo-qa`: questions about held-out pictures scored per question type, with the baselines that say
whether the adapter reads its inputs: the commonest training answer per type, the best fixed rule over
the same perception rows, and the perception oracle (any name perception gives).

Each type has its judge (a colour answered with the right colour word, a count with the right number,
yes/no by the answer's first word...) and, for the closed types, an *addresses* check: does the answer
say a colour / a number / yes or no / a side / big or small at all, right or wrong.

`video-qa` (at the end): the same per-type reading of real-photo videos, plus how often a question about
what the video shows is answered with the motion template ("A giraffe moves from left to right.").
"""
from __future__ import annotations

import re
from collections import Counter

from ..data.builders import build_command, manifest
from ..data.builders.questions import NUMBER_WORDS, UNSURE
from ..data.builders.stamp_video import DIRECTIONS
from ..modalities import IMAGE, VIDEO
from .matching import contains_phrase
from .perception_rule import ClipPerceived, Perceived
from .tasks import Row, Task, _names_any, input_paths, register

SIDES = ["left", "right", "top", "bottom"]
SIZES = {"big": "big", "large": "big", "small": "small", "tiny": "small", "little": "small"}
CLOSED = {"yesno": "yes/no", "compare": "yes/no", "colour": "colour", "background": "colour", "count": "number",
          "where": "side", "size": "size"}  # type -> what an answer must say to address it
NAMING = ("name", "which", "what-at", "describe")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def said(prediction: str, kind: str) -> str | None:
    """The first word of `kind` the answer says: yes/no (its first word), colour, number, side or size."""
    from ..encoders.colours import COLOURS  # here: `anymal eval --help` lists tasks without importing torch

    ws = _words(prediction)
    if kind == "yes/no":
        return ws[0] if ws and ws[0] in ("yes", "no") else None
    vocab = {"colour": {c: c for c in COLOURS} | {"grey": "gray"},
             "number": {w: w for w in NUMBER_WORDS} | {str(i): w for i, w in enumerate(NUMBER_WORDS)},
             "side": {s: s for s in SIDES}, "size": SIZES}[kind]
    return next((vocab[w] for w in ws if w in vocab), None)


def judge(row: Row, refs: list[str]) -> dict:
    task, meta, pred = row.meta["task"], row.meta, row.prediction
    if task in CLOSED:
        got = said(pred, CLOSED[task])
        ok = got == meta["answer"]
        if task == "where":  # one side only: "left ... right" is no answer
            ok = ok and not any(s != meta["answer"] and s in _words(pred) for s in SIDES)
        return {"correct": ok, f"{task}_correct": ok, "addressed": got is not None, f"{task}_addressed": got is not None}
    if task == "unsure":
        ok = UNSURE.lower() in pred.lower().replace("cannot", "can't")
    elif task == "what-at":
        ok = _names_any(pred, meta["names"]) and not _names_any(pred, meta["other"])
    else:  # name, which, describe, two-turn
        ok = _names_any(pred, meta["names"])
    return {"correct": ok, f"{task}_correct": ok}


def _score(samples: list, preds: list[str], judge=judge) -> dict:
    verdicts = [judge(Row(p, "", s.meta), []) for p, s in zip(preds, samples)]
    keys = sorted({k for v in verdicts for k in v})
    return {k: sum(float(v[k]) for v in verdicts if k in v) / sum(k in v for v in verdicts) for k in keys}


def _photo_answer(meta: dict) -> str | None:
    return meta.get("answer") if meta["task"] in CLOSED else meta.get("object")


def _train_answers(samples: list, kind: str = IMAGE.name, answer_of=_photo_answer) -> dict[str, str]:
    """Per question type, the commonest answer (`answer_of` its meta) of the training split beside the
    evaluated manifest, whose inputs are of modality `kind`."""
    from pathlib import Path

    from ..data.jsonl import read_jsonl

    train = Path(samples[0].where.rsplit(":", 1)[0]).with_name("train.jsonl")
    by_type: dict[str, Counter] = {}
    for s in read_jsonl(train, [kind], on_error="skip")[0]:
        m = s.meta
        key = answer_of(m)
        if key:
            by_type.setdefault(m["task"], Counter())[key] += 1
    return {t: c.most_common(1)[0][0] for t, c in by_type.items()}


def _constant_answer(task: str, value: str) -> str:
    return {"yesno": f"{value.capitalize()}.", "compare": f"{value.capitalize()}."}.get(task, f"{value}.")


class PerceptionRule(Perceived):
    """The fixed rules over the rows the adapter reads, per question type (`Perceived.top` for names)."""

    def answer(self, sample, paths: list[str]) -> str:
        task, meta = sample.meta["task"], sample.meta
        seen = [self.look(p) for p in paths]
        first = seen[0]
        if task in ("yesno",):
            return "Yes." if self.shows(paths[0], meta["asked"]) else "No."
        if task == "compare":
            return "Yes." if seen[0]["top"] == seen[1]["top"] else "No."
        if task == "which":
            return seen[1]["top"]
        if task in ("colour", "background"):
            return first["colour"]
        if task == "count":
            return NUMBER_WORDS[min(int(first["det"][0][2][2]), 10)] if first["det"] else "one"
        if task == "size":
            return "big" if first["det"] and first["det"][0][2][7] > 0.3 else "small"
        if task == "where":
            box = first["det"][0][2] if first["det"] else None
            return _side_of(box, meta["answer"]) if box is not None else ""
        return first["top"]

    def oracle(self, sample, paths: list[str]) -> bool:
        """Whether any name perception gives (detector kinds, classifier top 3) names the object."""
        look = self.look(paths[-1] if sample.meta["task"] == "which" else paths[0])
        return any(_names_any(n, sample.meta["names"]) for n in look["all"])


def _side_of(box, answer: str) -> str:
    """Left/right (or top/bottom, as the question's axis) of the detector's best box centre."""
    across = answer in ("left", "right")
    centre = (box[3] + box[5]) / 2 if across else (box[4] + box[6]) / 2
    return ("left" if centre < 0.5 else "right") if across else ("top" if centre < 0.5 else "bottom")


def _image_paths(sample) -> list[str]:
    return [p["path"] for m in sample.messages if isinstance(m["content"], list) for p in m["content"]
            if isinstance(p, dict) and p.get("type") == IMAGE.name]


def baselines(samples: list, refs: list[str], progress: bool) -> dict:
    common = _train_answers(samples)
    majority = [_constant_answer(s.meta["task"], common.get(s.meta["task"], "")) for s in samples]
    rule = PerceptionRule()
    ruled = [rule.answer(s, _image_paths(s)) for s in samples]
    naming = [s for s in samples if s.meta["task"] in NAMING]
    oracle = [rule.oracle(s, _image_paths(s)) for s in naming]
    return {"majority (commonest training answer per type)": _score(samples, majority),
            "fixed perception rule (detector if >= 0.5, else classifier; colour part; detector count/box)":
                _score(samples, ruled),
            "perception oracle (any name perception gives; naming types)":
                {"correct": sum(oracle) / max(len(oracle), 1),
                 **{f"{t}_correct": _mean([o for o, s in zip(oracle, naming) if s.meta["task"] == t]) for t in NAMING}}}


def _mean(xs: list) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


register(Task("photo-qa", manifest("photo-qa", "test"), build_command("photo-qa"),
              "questions users ask about held-out real pictures (GCompris photos by photo, Tux Paint photo stamps "
              "by caption), scored per question type (--manifest data/photo-qa/test-kinds.jsonl: kinds never "
              "trained on)", judge, group_by="task", primary="correct", max_new_tokens=32, baseline=baselines,
              fields="meta.task (a question type); closed types: meta.answer; naming types: meta.names; "
                     "what-at: meta.other",
              report=("correct", "addressed", "name_correct", "yesno_correct", "colour_correct", "count_correct",
                      "where_correct", "size_correct"),
              notes=["closed types (yes/no, colour, count, where, size) are judged by the first such word the "
                     "answer says; 'addressed' = it says one at all",
                     "naming types: the answer contains one of the picture's words (plural-insensitive)"]))


# ---- video-qa: what real-photo videos show, and whether motion is said only when asked --------------
VIDEO_CONTENT = ("video-what", "video-yesno")  # about what the video shows: the motion template is no answer
VIDEO_NAMING = ("caption", "object", "video-what", "video-describe")
MOTION_VERBS = {"move", "moves", "moving", "moved"}


def says_motion(text: str) -> bool:
    """The answer says motion: a motion verb or a direction ('from left to right', 'top to bottom')."""
    return bool(MOTION_VERBS & set(_words(text))) or any(contains_phrase(text, d) for d in DIRECTIONS)


def video_judge(row: Row, refs: list[str]) -> dict:
    task, meta, pred = row.meta["task"], row.meta, row.prediction
    out = {}
    if task in VIDEO_NAMING:
        out["object_named"] = _names_any(pred, meta.get("names") or [meta["object"]])  # stamp clips: one word
    if task in ("caption", "direction"):  # video-motion's rule
        out["direction_correct"] = contains_phrase(pred, meta["direction"])
    if task == "video-yesno":
        out["yesno_correct"] = said(pred, "yes/no") == meta["answer"]
    if task in VIDEO_CONTENT:
        out["motion_template"] = says_motion(pred)
        out["no_motion_template"] = not out["motion_template"]
    return {"correct": all(out.get(k, True) for k in ("object_named", "direction_correct", "yesno_correct")), **out}


def _video_answer(meta: dict) -> str | None:
    return meta.get("answer") or (meta["direction"] if meta["task"] == "direction" else meta.get("object"))


def _video_constant(task: str, value: str) -> str:
    return {"video-yesno": f"{value.capitalize()}.", "direction": f"From {value}."}.get(task, f"{value}.")


def video_baselines(samples: list, refs: list[str], progress: bool) -> dict:
    common = _train_answers(samples, VIDEO.name, _video_answer)
    majority = [_video_constant(s.meta["task"], common.get(s.meta["task"], "")) for s in samples]
    rule = ClipPerceived()
    seen = [rule.clip(p) for p in input_paths(samples, VIDEO.name)]
    return {"majority (commonest training answer per type; a caption names the commonest object)":
            _score(samples, majority, video_judge),
            "fixed perception rule (the naming rule's commonest name over the frames; frame-motion's direction)":
                _score(samples, [_video_rule(s.meta, c) for s, c in zip(samples, seen)], video_judge),
            "perception oracle (any name any frame's perception gives; the rule's direction and yes/no)":
                _score(samples, [_video_rule(s.meta, {**c, "top": ", ".join(c["all"])}) for s, c in zip(samples, seen)],
                       video_judge)}


def _video_rule(meta: dict, seen: dict) -> str:
    """The fixed rule's answer to one clip question, in the training answers' forms."""
    task, name, way = meta["task"], seen["top"], seen["direction"]
    if task == "video-yesno":
        return "Yes." if ClipPerceived.seen_shows(seen, meta["asked"]) else "No."
    if task == "direction":
        return f"From {way}." if way else ""
    if task in ("caption", "video-describe"):
        return f"A video of a {name} moving from {way}." if way else f"A video of a {name}."
    return f"A {name}."


register(Task("video-qa", manifest("photo-video", "test"), build_command("photo-video"),
              "questions about held-out real photos moving (GCompris, split by photo): what is in it, is there an "
              "X, describe it, what moves and which way; content answers should not be the motion template "
              "(--manifest data/photo-video/test-kinds.jsonl: kinds never trained on)", video_judge,
              group_by="task", primary="correct", max_new_tokens=32, baseline=video_baselines,
              fields="meta.task (video-what, video-yesno, caption, direction...); meta.names or meta.object; "
                     "meta.direction; yes/no: meta.answer",
              report=("correct", "object_named", "yesno_correct", "direction_correct", "no_motion_template"),
              notes=["object named: the answer contains one of the photo's words (plural-insensitive); yes/no: the "
                     "answer's first word; direction: the direction's words in order (as video-motion)",
                     "motion_template: share of content answers (video-what, video-yesno) that say a motion verb "
                     "or a direction; lower is better, no_motion_template = 1 - it",
                     "correct: every verdict of the row holds (a caption: object and direction)"]))
