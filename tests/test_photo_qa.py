"""Questions users ask about real pictures (issue 31): colour naming from pixels, the phrasings, the
`photo-qa` builder on the installed packages (split by picture, yes/no balanced), and the per-type judge."""
from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest

from anymal.data.builders import questions as Q
from anymal.encoders.colours import COLOURS, PixelColours, colour_index, colour_shares, dominant_colour
from anymal.eval.question_types import judge, said
from anymal.eval.tasks import Row


def test_colour_names_of_plain_colours():
    from anymal.data.builders.photo_qa import BACKGROUNDS

    for name, rgb in BACKGROUNDS.items():
        assert COLOURS[int(colour_index(np.array(rgb, np.uint8)))] == name
    for rgb, name in [((255, 255, 255), "white"), ((120, 70, 20), "brown"), ((255, 170, 180), "pink")]:
        assert COLOURS[int(colour_index(np.array(rgb, np.uint8)))] == name


def test_dominant_colour_needs_a_clear_lead():
    img = np.zeros((10, 10, 3), np.uint8)
    img[:, :6] = (200, 30, 30)
    img[:, 6:] = (40, 80, 210)
    assert dominant_colour(colour_shares(img)) is None  # 60 / 40: no clear main colour
    img[:, 6:8] = (200, 30, 30)
    assert dominant_colour(colour_shares(img)) == "red"


def test_pixel_colours_read_the_object_not_its_background():
    img = np.full((96, 96, 3), 255, np.uint8)
    img[20:60, 30:70] = (40, 160, 60)  # a green square on white
    rows = PixelColours("pixel-colours", "image").rows(img[None])[0]
    assert COLOURS[int(rows[0, 0]) - 1] == "green" and rows[0, 1] > 0.95
    assert np.allclose(rows[0, 3:7], [30 / 96, 20 / 96, 70 / 96, 60 / 96], atol=0.02)
    assert (rows[1:, 0] == 0).all()  # no other colour is said


@pytest.mark.parametrize("name,a,p", [("apple", "an apple", "apples"), ("sheep", "a sheep", "sheep"),
                                      ("grapes", "grapes", "grapes"), ("fox", "a fox", "foxes"),
                                      ("cherry", "a cherry", "cherries"), ("glass", "a glass", "glasses"),
                                      ("Eiffel Tower", "the Eiffel Tower", "Eiffel Towers")])
def test_articles_and_plurals(name, a, p):
    assert Q.article(name) == a and Q.plural(name) == p


def test_answers_say_what_their_type_needs():
    rng = random.Random(0)
    for _ in range(50):
        q, a = Q.yes_no("cat", "dog", rng)
        assert said(a, "yes/no") == "no" and "cat" in q
        assert said(Q.yes_no("dog", "dog", rng)[1], "yes/no") == "yes"
        assert said(Q.colour_of("box", "blue", rng)[1], "colour") == "blue"
        n = rng.randint(1, 4)
        assert said(Q.how_many("apple", n, rng)[1], "number") == Q.NUMBER_WORDS[n]
        assert said(Q.where("cup", "top", rng)[1], "side") == "top"
        assert said(Q.size_of("cup", False, rng)[1], "size") == "small"
        assert Q.unsure("dark", rng)[1].startswith(Q.UNSURE)


def test_judge_scores_the_answer_and_whether_it_addresses_the_question():
    colour = {"task": "colour", "answer": "red"}
    assert judge(Row("It is red.", "", colour), []) == {"correct": True, "colour_correct": True, "addressed": True,
                                                        "colour_addressed": True}
    assert judge(Row("A photo of a motorbike.", "", colour), [])["colour_addressed"] is False
    yes_no = {"task": "yesno", "answer": "no"}
    assert judge(Row("No, it is a cat.", "", yes_no), [])["correct"]
    assert not judge(Row("There is no dog.", "", yes_no), [])["addressed"]  # yes/no is the first word
    where = {"task": "where", "answer": "left"}
    assert not judge(Row("On the left or the right.", "", where), [])["correct"]
    count = {"task": "count", "answer": "three"}
    assert judge(Row("3", "", count), [])["correct"] and not judge(Row("Two.", "", count), [])["correct"]
    named = {"task": "what-at", "names": ["horse"], "other": ["cow"]}
    assert judge(Row("A horse.", "", named), [])["correct"]
    assert not judge(Row("A horse and a cow.", "", named), [])["correct"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from anymal.data.builders.photo_qa import build_photo_qa

    out = tmp_path_factory.mktemp("photo-qa")
    stats = build_photo_qa(out, splits=("val", "test", "test-kinds"), progress=False)
    return out, stats


def _records(out, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").open()]


def test_photo_qa_is_split_by_picture_with_every_type(built):
    out, stats = built
    assert stats["pictures"]["test"] >= 60 and stats["pictures"]["test-kinds"] >= 10
    pictures = {s: {p for r in _records(out, s) for p in r["meta"]["picture"].split(" | ")} for s in ("val", "test")}
    assert pictures["val"] and not pictures["val"] & pictures["test"]
    types = Counter(r["meta"]["task"] for r in _records(out, "test"))
    for t in ("name", "yesno", "colour", "count", "where", "what-at", "size", "describe", "compare", "which", "unsure"):
        assert types[t] >= 10, t
    test = _records(out, "test")
    images = {i for r in test for i in r["images"]}
    assert all((out / i).is_file() for i in images)
    two = [r for r in test if r["meta"]["task"] == "compare"]
    assert all(r["messages"][0]["content"].startswith("<image><image>") and len(r["images"]) == 2 for r in two)


def test_yes_no_is_half_no_and_every_word_asked_no_is_also_asked_yes(built):
    """The asked word never gives the answer away: a kind asked about where it is absent is a kind
    another picture of the split shows (and is asked "yes" about)."""
    out, _ = built
    for split in ("val", "test"):
        yn = [r["meta"] for r in _records(out, split) if r["meta"]["task"] == "yesno"]
        answers = Counter(m["answer"] for m in yn)
        assert answers["yes"] == answers["no"]
        asked_yes = {m["asked"] for m in yn if m["answer"] == "yes"}
        assert all(m["asked"] in asked_yes for m in yn if m["answer"] == "no")


def test_the_fixed_perception_rule_reads_every_part_of_a_real_photo():
    from anymal.eval.perception_rule import Perceived

    seen = Perceived().look("anymal/assets/examples/sheep.jpg")
    assert seen["detector"] == "sheep" and seen["top"] == "sheep"  # the detector is sure: the rule takes it
    assert "sheep" in seen["all"] and len(seen["all"]) >= 4  # detector kinds + the classifier's top 3
    assert seen["colour"] in COLOURS and seen["det"][0][1] >= 0.5
