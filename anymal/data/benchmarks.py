"""Standard benchmarks read from the user's own download, in each benchmark's own format.

Each reader turns the official files into Samples (a user turn with the input and the benchmark's
canonical prompt, an assistant turn with the first reference) whose `meta` holds what the metric needs:
every reference caption, all ten VQA answers, the options and the right letter. A record whose input file
is missing is skipped and counted by reason; a file of the wrong shape is one DataError naming the field.
docs/evaluation.md says where each benchmark is downloaded and which paths to pass.
"""
from __future__ import annotations

import base64
import binascii
import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError
from .jsonl import Sample, SkipReport, resolve_media
from ..modalities import AUDIO, IMAGE
from .media_store import stored_media

SHORT = "Answer the question using a single word or phrase."  # LLaVA-1.5's VQAv2/TextVQA/POPE/MME prompt
LETTER = "Answer with the option's letter from the given choices directly."  # LLaVA-1.5's MMBench/ScienceQA
CAPTION = "Provide a one-sentence caption for the provided image."  # lmms-eval's COCO caption prompt
SOUND_CAPTION = "Describe the sound in one sentence."


@dataclass
class Files:
    """Where a benchmark lives: its main file (or folder), the media folder, a second file, the split."""
    data: Path
    media_root: Path | None = None  # default: the main file's folder
    annotations: Path | None = None  # VQAv2's answers; ScienceQA's pid_splits.json
    split: str | None = None

    @property
    def root(self) -> Path:
        return self.media_root or (self.data if self.data.is_dir() else self.data.parent)


Reader = Callable[[Files], tuple[list[Sample], SkipReport]]


def qa_sample(where: str, kind: str, path: str, prompt: str, answer: str, meta: dict) -> Sample:
    user = [{"type": kind, "path": path}] if path else []
    return Sample([{"role": "user", "content": user + [{"type": "text", "text": prompt}]},
                   {"role": "assistant", "content": [{"type": "text", "text": answer}]}], where, meta)


def load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not the {what} JSON ({e})") from None


def need(rec: Any, key: str, where: str, kind: type | tuple = object) -> Any:
    """rec[key], or one line naming the record, the field and what it should hold."""
    if not isinstance(rec, dict) or key not in rec or not isinstance(rec[key], kind):
        want = kind.__name__ if isinstance(kind, type) and kind is not object else "a value"
        raise DataError(f"{where}: field {key!r}: expected {want}")
    return rec[key]


def _collect(items, make: Callable[[Any, str], Sample]) -> tuple[list[Sample], SkipReport]:
    """make(record, where) for each (where, record); records it refuses are skipped and counted."""
    samples, skipped = [], SkipReport()
    for where, rec in items:
        try:
            samples.append(make(rec, where))
        except DataError as e:
            skipped.add_error(where, e)
    return samples, skipped


def _first_file(root: Path, names: list[str], where: str, field: str) -> str:
    for name in names:
        if (root / name).is_file():
            return resolve_media(name, root, where, field)
    raise DataError(f"{where}: field {field!r}: media file {root / names[0]} does not exist")


# ---- pictures ---------------------------------------------------------------------------------
def coco_captions(f: Files) -> tuple[list[Sample], SkipReport]:
    """`captions_val2014.json` (images + annotations): one sample per image, every caption a reference."""
    d = load_json(f.data, "COCO captions")
    images = {need(im, "id", f"{f.data}: images[{i}]"): need(im, "file_name", f"{f.data}: images[{i}]", str)
              for i, im in enumerate(need(d, "images", str(f.data), list))}
    refs = defaultdict(list)
    for i, a in enumerate(need(d, "annotations", str(f.data), list)):
        refs[need(a, "image_id", f"{f.data}: annotations[{i}]")].append(need(a, "caption", f"{f.data}: annotations[{i}]", str))

    def make(image_id, where):
        if not refs[image_id]:
            raise DataError(f"{where}: no caption in 'annotations'")
        return qa_sample(where, IMAGE.name, resolve_media(images[image_id], f.root, where, "file_name"), CAPTION,
                         refs[image_id][0], {"references": refs[image_id], "image_id": image_id})
    return _collect(((f"{f.data}: image {k}", k) for k in images), make)


def vqav2(f: Files) -> tuple[list[Sample], SkipReport]:
    """VQAv2 questions (`v2_OpenEnded_mscoco_val2014_questions.json`) + annotations (`--annotations`,
    default: `v2_mscoco_<subtype>_annotations.json` beside them); images `COCO_<subtype>_<id:012d>.jpg`."""
    q = load_json(f.data, "VQAv2 questions")
    subtype = q.get("data_subtype", "val2014") if isinstance(q, dict) else "val2014"
    ann_path = f.annotations or f.data.with_name(f"v2_mscoco_{subtype}_annotations.json")
    answers = {need(a, "question_id", f"{ann_path}: annotations[{i}]"): a
               for i, a in enumerate(need(load_json(ann_path, "VQAv2 annotations"), "annotations", str(ann_path), list))}

    def make(rec, where):
        qid, image_id = need(rec, "question_id", where), need(rec, "image_id", where, int)
        if qid not in answers:
            raise DataError(f"{where}: question {qid} has no entry in the annotations")
        a = answers[qid]
        given = [need(x, "answer", f"{where}: annotation answers", str) for x in need(a, "answers", where, list)]
        path = _first_file(f.root, [f"COCO_{subtype}_{image_id:012d}.jpg", f"{image_id:012d}.jpg"], where, "image_id")
        return qa_sample(where, IMAGE.name, path, f"{need(rec, 'question', where, str)}\n{SHORT}",
                         a.get("multiple_choice_answer") or given[0],
                         {"answers": given, "answer_type": a.get("answer_type", "-"), "question_id": qid})
    return _collect(((f"{f.data}: questions[{i}]", r) for i, r in enumerate(need(q, "questions", str(f.data), list))), make)


def textvqa(f: Files) -> tuple[list[Sample], SkipReport]:
    """`TextVQA_0.5.1_val.json` ({"data": [...]}, ten answers each); images `<image_id>.jpg` in --media-root."""
    d = load_json(f.data, "TextVQA")

    def make(rec, where):
        given = need(rec, "answers", where, list)
        path = resolve_media(f"{need(rec, 'image_id', where, str)}.jpg", f.root, where, "image_id")
        return qa_sample(where, IMAGE.name, path, f"{need(rec, 'question', where, str)}\n{SHORT}", str(given[0]),
                         {"answers": [str(a) for a in given], "question_id": rec.get("question_id")})
    return _collect(((f"{f.data}: data[{i}]", r) for i, r in enumerate(need(d, "data", str(f.data), list))), make)


def pope(f: Files) -> tuple[list[Sample], SkipReport]:
    """POPE's `coco_pope_{random,popular,adversarial}.json`: JSON lines despite the suffix (a folder: all of
    them); the category is the file's last word unless a line names it."""
    files = sorted(f.data.glob("*.json")) if f.data.is_dir() else [f.data]
    items = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                items.append((f"{path}:{n}", (path, line)))

    def make(item, where):
        path, line = item
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: malformed JSON ({e.msg})") from None
        label = need(rec, "label", where, str).strip().lower()
        if label not in ("yes", "no"):
            raise DataError(f"{where}: field 'label': expected 'yes' or 'no', got {label!r}")
        category = rec.get("category") or path.stem.rsplit("_", 1)[-1]
        return qa_sample(where, IMAGE.name, resolve_media(need(rec, "image", where, str), f.root, where, "image"),
                         f"{need(rec, 'text', where, str)}\n{SHORT}", label, {"label": label, "category": category})
    return _collect(items, make)


def mme(f: Files) -> tuple[list[Sample], SkipReport]:
    """The MME release folder: per subtask, `name.txt` ("question<TAB>Yes|No" lines) beside its picture, or in
    `questions_answers_YN/` with the picture in `images/`."""
    if not f.data.is_dir():
        raise DataError(f"{f.data}: expected the MME_Benchmark_release_version folder")
    items = [(f"{txt}:{n}", (txt, line)) for txt in sorted(f.data.rglob("*.txt"))
             for n, line in enumerate(txt.read_text(encoding="utf-8", errors="replace").splitlines(), 1) if line.strip()]

    def make(item, where):
        txt, line = item
        parts = line.split("\t")
        if len(parts) != 2 or parts[1].strip().lower() not in ("yes", "no"):
            raise DataError(f"{where}: expected 'question<TAB>Yes' or 'question<TAB>No'")
        subtask_dir = txt.parent.parent if txt.parent.name == "questions_answers_YN" else txt.parent
        folder = subtask_dir / "images" if txt.parent.name == "questions_answers_YN" else txt.parent
        names = [txt.stem + s for s in (".jpg", ".png", ".jpeg", ".JPG", ".PNG")]
        answer = parts[1].strip().lower()
        return qa_sample(where, IMAGE.name, _first_file(folder, names, where, "image"), f"{parts[0].strip()}\n{SHORT}",
                         answer, {"label": answer, "subtask": subtask_dir.name, "picture": str(txt.with_suffix(""))})
    return _collect(items, make)


# ---- multiple choice --------------------------------------------------------------------------
def choice_prompt(question: str, options: list[str], hint: str = "") -> str:
    lines = ([hint] if hint else []) + [question] + [f"{chr(65 + i)}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines + [LETTER])


def _cell(row: dict, key: str) -> str:
    v = (row.get(key) or "").strip()
    return "" if v.lower() == "nan" else v


def mmbench(f: Files) -> tuple[list[Sample], SkipReport]:
    """MMBench's TSV (index, question, hint, A-D, answer, category, base64 image); rows whose `index`
    agree modulo 1,000,000 are one question's circular variants."""
    rows = _csv_rows(f.data, ("index", "question", "A", "B", "answer", "image"), delimiter="\t")

    def make(row, where):
        options = [_cell(row, c) for c in "ABCDEFGHI" if _cell(row, c)]
        answer = _cell(row, "answer")
        if answer not in [chr(65 + i) for i in range(len(options))]:
            raise DataError(f"{where}: field 'answer': expected one of the option letters (a test-split row has "
                            "none: score those on the MMBench server)")
        try:
            picture = base64.b64decode(row["image"], validate=True)
        except (binascii.Error, ValueError):
            raise DataError(f"{where}: field 'image': expected a base64 picture") from None
        return qa_sample(where, IMAGE.name, stored_media(picture),
                         choice_prompt(_cell(row, "question"), options, _cell(row, "hint")), answer,
                         {"letter": answer, "options": options, "category": _cell(row, "category") or "-",
                          "circular": str(int(float(row["index"])) % 1_000_000)})
    return _collect(((f"{f.data}:{n}", row) for n, row in rows), make)


def scienceqa(f: Files) -> tuple[list[Sample], SkipReport]:
    """ScienceQA's `problems.json` + `pid_splits.json` (--annotations; default beside it), pictures at
    `<split>/<pid>/image.png` under --media-root (or its `images/`); split default `test`."""
    problems = load_json(f.data, "ScienceQA problems")
    split = f.split or "test"
    splits = load_json(f.annotations or f.data.with_name("pid_splits.json"), "ScienceQA pid_splits")
    pids = need(splits, split, f"{f.annotations or f.data.with_name('pid_splits.json')}", list)

    def make(pid, where):
        p = need(problems, str(pid), f"{f.data}", dict)
        options, answer = need(p, "choices", where, list), need(p, "answer", where, int)
        path = ""
        if p.get("image"):
            path = _first_file(f.root, [f"{split}/{pid}/{p['image']}", f"images/{split}/{pid}/{p['image']}"], where, "image")
        hint = (p.get("hint") or "").strip()
        context = "IMG" if path else "TXT" if hint else "NO"
        return qa_sample(where, IMAGE.name, path, choice_prompt(need(p, "question", where, str), options,
                                                             f"Context: {hint}" if hint else ""),
                         chr(65 + answer), {"letter": chr(65 + answer), "options": options, "context": context,
                                            "subject": p.get("subject", "-")})
    return _collect(((f"{f.data}: {pid}", pid) for pid in pids), make)


# ---- sounds -----------------------------------------------------------------------------------
_AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


def audiocaps(f: Files) -> tuple[list[Sample], SkipReport]:
    """AudioCaps' CSV (audiocap_id, youtube_id, start_time, caption; the test set has 5 rows per clip),
    one sample per clip; its audio `<youtube_id>.wav` (or `Y<youtube_id>`, `<audiocap_id>`, any of
    wav/flac/mp3/ogg) in --media-root. Clips missing from a download are counted."""
    rows = _csv_rows(f.data, ("youtube_id", "caption"))
    clips = defaultdict(list)
    for n, row in rows:
        clips[row["youtube_id"]].append((n, row))

    def make(clip, where):
        yt, first = clip[0], clip[1][0][1]
        stems = [yt, f"Y{yt}", first.get("audiocap_id", ""), f"{yt}_{first.get('start_time', '')}"]
        path = _first_file(f.root, [s + x for s in stems if s for x in _AUDIO_SUFFIXES], where, "youtube_id")
        refs = [row["caption"] for _, row in clip[1]]
        return qa_sample(where, AUDIO.name, path, SOUND_CAPTION, refs[0], {"references": refs, "clip": yt})
    return _collect(((f"{f.data}:{rs[0][0]}", (yt, rs)) for yt, rs in clips.items()), make)


def clotho(f: Files) -> tuple[list[Sample], SkipReport]:
    """Clotho's `clotho_captions_evaluation.csv` (file_name, caption_1..caption_5); the audio in --media-root."""
    rows = _csv_rows(f.data, ("file_name", "caption_1"))

    def make(row, where):
        refs = [row[k] for k in sorted(row, key=str) if re.fullmatch(r"caption_\d+", k or "") and row[k]]
        return qa_sample(where, AUDIO.name, resolve_media(row["file_name"], f.root, where, "file_name"), SOUND_CAPTION,
                         refs[0], {"references": refs, "clip": row["file_name"]})
    return _collect(((f"{f.data}:{n}", row) for n, row in rows), make)


def _csv_rows(path: Path, columns: tuple[str, ...], delimiter: str = ",") -> list[tuple[int, dict]]:
    """(line, row) of a CSV/TSV with the columns it must have; fields may be whole base64 pictures (MMBench),
    so the csv module's field limit is raised while it reads (the limit is global: other readers keep theirs)."""
    if not path.is_file():
        raise DataError(f"{path}: not found")
    default = csv.field_size_limit(1 << 26)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: expected columns {', '.join(columns)}; missing {', '.join(missing)}")
            return [(n, row) for n, row in enumerate(reader, 2)]
    finally:
        csv.field_size_limit(default)
