"""Videos that answer about their content (issue 31, item 3): the `photo-video` builder asks what is in a
clip, is there an X (balanced yes/no) and to describe it, beside the motion questions; the `video-qa`
judge scores each type and how often a content question gets the motion template."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from anymal.data.builders.photo_video import build_photo_video, clip_samples
from anymal.data.builders.stamp_video import DIRECTION_ANSWERS
from anymal.eval.question_types import says_motion, video_judge
from anymal.eval.tasks import Row, get_task
from anymal.modalities import VIDEO

SPLITS = ("train", "val", "test", "test-kinds")
CONTENT = ("video-what", "video-yesno", "video-describe")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from anymal.data.builders.gcompris import RCC_DIR

    if not RCC_DIR.is_dir():
        pytest.skip("gcompris-qt-data is not installed (scripts/install.sh installs it)")
    out = tmp_path_factory.mktemp("photo-video")
    stats = build_photo_video(out, limit=3, train_clips=2, progress=False)
    rows = {s: [json.loads(line) for line in open(out / f"{s}.jsonl")] for s in SPLITS}
    return out, stats, rows


def _of(rows: list[dict], task: str) -> list[dict]:
    return [r for r in rows if r["meta"]["task"] == task]


def _answer(r: dict) -> str:
    return r["messages"][-1]["content"]


def test_every_clip_gets_content_and_motion_questions(built):
    _, stats, rows = built
    for split in SPLITS:
        clips = {r[VIDEO.list_key][0] for r in rows[split]}
        for task in ("caption", "direction", "object", "video-what", "video-describe"):
            assert {r[VIDEO.list_key][0] for r in _of(rows[split], task)} == clips, (split, task)
        assert _of(rows[split], "video-yesno"), split
        assert stats["records"][split] == dict(Counter(r["meta"]["task"] for r in rows[split]))
        assert stats["clips"][split] == len(clips)


def test_yes_no_is_balanced_and_every_word_asked_no_is_also_asked_yes(built):
    _, _, rows = built
    for split in SPLITS:
        asked = _of(rows[split], "video-yesno")
        assert Counter(r["meta"]["answer"] for r in asked) == {"yes": len(asked) / 2, "no": len(asked) / 2}
        yes_words = {r["meta"]["asked"] for r in asked if r["meta"]["answer"] == "yes"}
        for r in asked:
            said_yes, own_kind = _answer(r).startswith("Yes"), r["meta"]["asked"] == r["meta"]["caption"]
            assert said_yes == (r["meta"]["answer"] == "yes") == own_kind
            assert r["meta"]["asked"] in yes_words, (split, r["meta"]["asked"])  # asked "no" here, "yes" elsewhere


def test_content_answers_name_the_object_without_motion(built):
    _, _, rows = built
    judge = get_task("video-qa").judge
    for split in SPLITS:
        for r in _of(rows[split], "video-what") + _of(rows[split], "video-yesno"):
            assert not says_motion(_answer(r)), _answer(r)
            assert not {"picture", "image"} & set(r["messages"][0]["content"].lower().rstrip("?").split())
        for r in _of(rows[split], "video-what") + _of(rows[split], "video-describe"):
            assert judge(Row(_answer(r), "", r["meta"]), [])["object_named"], _answer(r)
        for r in _of(rows[split], "video-describe"):  # describing may (and here does) say the motion
            assert f"from {r['meta']['direction']}" in _answer(r)


def test_direction_questions_still_exist(built):
    _, _, rows = built
    for split in SPLITS:
        direction = _of(rows[split], "direction")
        assert direction and all(_answer(r) == DIRECTION_ANSWERS[r["meta"]["direction"]] for r in direction)
        assert all(_answer(r).endswith(f"from {r['meta']['direction']}.") for r in _of(rows[split], "caption"))
    canonical = {r["messages"][0]["content"] for s in ("val", "test") for r in _of(rows[s], "direction")}
    assert canonical == {"<video>Which way does the object move?"}  # evaluation asks the first question


def test_clip_questions_are_deterministic_and_plural_aware():
    args = ("camels", "horse", "left to right", "videos/x.mp4", {"names": ["camel"]})
    first = clip_samples(*args, random.Random("0:x:0"), train=True)
    assert first == clip_samples(*args, random.Random("0:x:0"), train=True)
    assert _answer(first[0]) == "Camels move from left to right."
    alone = clip_samples("cat", None, "top to bottom", "v.mp4", {}, random.Random(0), train=False)
    assert [r["meta"]["task"] for r in alone] == ["caption", "direction", "object", "video-what", "video-describe"]


def test_judge_reads_each_type_and_the_motion_template():
    base = {"names": ["giraffe"], "direction": "left to right", "object": "giraffe"}
    what = {**base, "task": "video-what"}
    templated = video_judge(Row("A giraffe moves from left to right.", "", what), [])
    assert templated["object_named"] and templated["motion_template"] and not templated["no_motion_template"]
    plain = video_judge(Row("It is a giraffe.", "", what), [])
    assert plain["object_named"] and not plain["motion_template"] and plain["no_motion_template"]
    assert video_judge(Row("A giraffe going from top to bottom.", "", what), [])["motion_template"]
    assert not video_judge(Row("A zebra.", "", what), [])["correct"]
    no_q = {**base, "task": "video-yesno", "answer": "no", "asked": "sheep"}
    assert not video_judge(Row("Yes.", "", no_q), [])["yesno_correct"]
    assert video_judge(Row("No, it is a giraffe.", "", no_q), [])["yesno_correct"]
    assert video_judge(Row("Yes, it moves from left to right.", "", {**no_q, "answer": "yes"}), [])["motion_template"]
    direction = {**base, "task": "direction"}
    assert video_judge(Row("From left to right.", "", direction), [])["direction_correct"]
    assert not video_judge(Row("From right to left.", "", direction), [])["direction_correct"]
    caption = video_judge(Row("A giraffe moves from left to right.", "", {**base, "task": "caption"}), [])
    assert caption["correct"] and "motion_template" not in caption  # motion is what a caption is asked
    assert "motion_template" not in video_judge(Row("A giraffe moving.", "", {**base, "task": "video-describe"}), [])


def test_baselines_read_the_training_split_and_the_frames(built):
    """The majority (the training split's commonest answers), the fixed perception rule over the frames (the
    naming rule, frame-motion's direction) and the oracle (any name any frame's perception gives)."""
    from anymal.data.jsonl import read_jsonl

    out, _, _ = built
    samples, _ = read_jsonl(out / "test.jsonl", [VIDEO.name])
    majority, rule, oracle = get_task("video-qa").baseline(samples, [], False).values()
    assert majority["motion_template"] == 0.0 and 0.0 <= majority["yesno_correct"] <= 1.0
    assert majority["direction_correct"] <= 0.5  # one fixed direction cannot read 4 balanced ones
    assert rule["direction_correct"] == 1.0  # the frame-motion part follows the photo across the background
    assert rule["motion_template"] == 0.0 and oracle["object_named"] >= rule["object_named"]
