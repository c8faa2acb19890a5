"""Real-data builders: deterministic, split by caption, readable by the manifest reader."""
import json

import pytest
from PIL import Image

from anymal.data.emoji import FONT, build_emoji, caption_for
from anymal.data.jsonl import read_jsonl
from anymal.data.tuxpaint import STAMPS_DIR, build_tuxpaint, caption_split, names_object, object_word


@pytest.mark.parametrize("caption,obj", [
    ("A spiny lobster, from the Hawaiian islands.", "lobster"), ("A bunch of grapes.", "grapes"),
    ("A male black rhino.", "rhino"), ("A chick inside an egg.", "chick"), ("A glass of water.", "water"),
    ("Our moon.", "moon"), ("A computer mouse. Squeak!", "mouse")])
def test_object_word(caption, obj):
    assert object_word(caption) == obj


def test_names_object_is_plural_insensitive():
    assert names_object("Two ripe strawberries on a plate.", "strawberry")
    assert names_object("A bunch of grape", "grapes")
    assert not names_object("A red fruit.", "strawberry")
    assert not names_object("anything", "")


def test_caption_split_is_by_normalised_caption():
    assert caption_split("A frog.", 0.1, 0.1) == caption_split("a frog", 0.1, 0.1)
    splits = {caption_split(f"A thing number {i}.", 0.1, 0.1) for i in range(200)}
    assert splits == {"train", "val", "test"}


@pytest.mark.skipif(not STAMPS_DIR.is_dir(), reason="apt package tuxpaint-stamps-default not installed")
def test_tuxpaint_build_is_deterministic_and_caption_disjoint(tmp_path):
    a = build_tuxpaint(tmp_path / "a", splits=("val", "test"), progress=False)
    b = build_tuxpaint(tmp_path / "b", splits=("val", "test"), progress=False)
    assert a == b and (tmp_path / "a" / "test.jsonl").read_bytes() == (tmp_path / "b" / "test.jsonl").read_bytes()
    caps = {s: {json.loads(l)["meta"]["caption"] for l in (tmp_path / "a" / f"{s}.jsonl").open()} for s in ("val", "test")}
    assert caps["val"] and caps["test"] and not caps["val"] & caps["test"]
    samples, skipped = read_jsonl(tmp_path / "a" / "test.jsonl", ["image"])
    assert len(samples) == a["test"] and skipped.total == 0
    img = Image.open(samples[0].messages[0]["content"][0]["path"])
    assert img.size == (224, 224) and img.mode == "RGB"


@pytest.mark.skipif(not FONT.is_file(), reason="apt package fonts-noto-color-emoji not installed")
def test_emoji_build(tmp_path):
    counts = build_emoji(tmp_path, limit=20, progress=False)
    samples, skipped = read_jsonl(tmp_path / "train.jsonl", ["image"])
    assert counts["train"] == len(samples) >= 15 and skipped.total == 0
    assert all(s.messages[1]["content"][0]["text"].endswith(".") for s in samples)
    assert caption_for(":goat:") == "A goat." and caption_for(":ice_cream:") == "An ice cream."
