"""Text in pictures (issue 36): the `read-text` builder renders held-out strings onto held-out photos and
canvases, true by construction; the `read-text` judge reads word accuracy and exact reading; the OCR parts'
own readings are its reference systems."""
from __future__ import annotations

import json

import pytest

from anymal.data.builders.read_text import SPLITS, build_read_text, string_split, words_by_split
from anymal.data.jsonl import read_jsonl
from anymal.eval.reading import judge, reads_exactly, word_accuracy
from anymal.eval.tasks import Row, get_task
from anymal.modalities import IMAGE


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from anymal.data.builders.gcompris import RCC_DIR

    if not RCC_DIR.is_dir():
        pytest.skip("gcompris-qt-data is not installed (scripts/install.sh)")
    out = tmp_path_factory.mktemp("read-text")
    stats = build_read_text(out, limit=40, per_photo=2, screens=40, progress=False)
    return out, stats, {s: [json.loads(line) for line in (out / f"{s}.jsonl").read_text().splitlines()] for s in SPLITS}


def test_strings_and_pictures_are_held_out(built):
    out, stats, recs = built
    assert all(stats["records"][s]["read"] for s in SPLITS) and stats["skipped"] == 0
    said = {s: {w for r in recs[s] if r["meta"]["task"] == "read" for w in r["meta"]["text"].lower().split()} for s in SPLITS}
    vocab = words_by_split()
    test_words = {w for w in said["test"] if w.isalpha() and w in set(vocab["test"])}
    assert test_words and not test_words & said["train"]  # a word read in test is never read in training
    pictures = {s: {r["meta"]["picture"] for r in recs[s]} for s in SPLITS}
    assert not pictures["test"] & pictures["train"]
    for r in recs["test"][:20]:
        assert (out / r[IMAGE.list_key][0]).is_file()


def test_is_there_text_is_asked_both_ways(built):
    _, _, recs = built
    answers = [r["meta"]["answer"] for r in recs["test"] if r["meta"]["task"] == "has-text"]
    assert answers.count("no") >= 0.2 * len(answers) and answers.count("yes") >= 0.2 * len(answers)
    for r in recs["test"]:
        if r["meta"]["task"] == "read":  # the answer says the text it asks for
            assert reads_exactly(r["messages"][-1]["content"], r["meta"]["text"])


def test_string_split_is_stable_and_case_blind():
    assert string_split("No Parking") == string_split("NO PARKING") == string_split("no parking!")


def test_judge_reads_word_accuracy_and_exact_reading():
    meta = {"task": "read", "kind": "sign", "text": "NO PARKING 24"}
    assert judge(Row('It says "No parking 24".', "", meta), [])["exact"]
    assert word_accuracy("parking", "NO PARKING 24") == pytest.approx(1 / 3)
    assert word_accuracy("no no no", "no") == 1.0 and word_accuracy("no", "no no") == 0.5
    assert not judge(Row("Parking no 24.", "", meta), [])["exact"]  # order matters for exact reading
    has = {"task": "has-text", "kind": "none", "text": "", "answer": "no"}
    assert judge(Row("No, there is none.", "", has), [])["has_text_correct"]
    assert not judge(Row("Yes.", "", has), [])["has_text_correct"]


def test_the_ocr_parts_are_the_reference_systems(built):
    """RapidOCR reads the rendered test signs and pages (the baseline the adapter should not fall below)."""
    out, _, _ = built
    samples, _ = read_jsonl(out / "test.jsonl", [IMAGE.name])
    scores = get_task("read-text").baseline(samples[:12], [], False)
    rapid = next(v for k, v in scores.items() if k.startswith("rapidocr-text"))
    assert rapid["word_accuracy"] > 0.5 and len(scores) == 2  # RapidOCR and Tesseract, side by side
