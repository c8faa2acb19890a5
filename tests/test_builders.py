"""Real-data builders: deterministic, split by caption, readable by the manifest reader."""
import json

import pytest
from PIL import Image

from anymal.data.builders.emoji import FONT, build_emoji, caption_for
from anymal.errors import DataError
from anymal.data.jsonl import read_jsonl
from anymal.data.builders.openclipart import ROOT as OPENCLIPART
from anymal.data.builders.tuxpaint import STAMPS_DIR, build_tuxpaint, caption_split, names_object, object_word


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
    held = tmp_path / "test.jsonl"  # a test set's kinds stay unseen: their emoji are left out, and counted
    words = [s.messages[1]["content"][0]["text"].rstrip(".").split()[-1].lower() for s in samples[:2]]
    held.write_text("".join(json.dumps({"meta": {"object": w}}) + "\n" for w in words))
    fewer = build_emoji(tmp_path / "open", limit=20, hold_out=[str(held)], progress=False)
    assert fewer["held_out"] >= 2 and fewer["train"] == counts["train"] - fewer["held_out"]
    kept = (tmp_path / "open" / "train.jsonl").read_text().lower()
    assert not any(f" {w}." in kept for w in words)
    with pytest.raises(DataError, match="missing.jsonl"):
        build_emoji(tmp_path / "x", limit=2, hold_out=[str(tmp_path / "missing.jsonl")], progress=False)


SVG = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://creativecommons.org/ns#" width="40" height="20">
<metadata><rdf:RDF><cc:Work><dc:title>Red &amp; Round</dc:title><dc:subject><rdf:Bag><rdf:li>ball</rdf:li>
<rdf:li>toy</rdf:li></rdf:Bag></dc:subject></cc:Work></rdf:RDF></metadata>
<circle cx="10" cy="10" r="8" fill="red"/></svg>"""


def test_openclipart_build_reads_metadata_and_counts_what_does_not_render(tmp_path, monkeypatch):
    from anymal.data.builders import openclipart

    root = tmp_path / "svg"
    (root / "recreation" / "toys").mkdir(parents=True)
    (root / "patterns").mkdir()
    (root / "recreation" / "toys" / "ball.svg").write_text(SVG)
    (root / "recreation" / "broken.svg").write_text("<svg oops")
    (root / "patterns" / "dots.svg").write_text(SVG)  # abstract-shape folders are left out
    monkeypatch.setattr(openclipart, "ROOT", root)
    res = openclipart.build_openclipart(tmp_path / "out", size=64, progress=False)
    assert res["train"] == 1 and res["not_rendered"] == 1 and "broken.svg" in res["not_rendered_examples"][0]
    rec = json.loads((tmp_path / "out" / "train.jsonl").read_text())
    assert rec["meta"]["title"] == "Red & Round" and rec["meta"]["keywords"] == ["ball", "toy"]
    assert rec["meta"]["folder"] == "recreation" and rec["messages"][1]["content"] == "Red & Round."
    img = Image.open(tmp_path / "out" / rec["images"][0])
    assert img.size == (64, 32) and img.getpixel((16, 16))[:3] == (255, 0, 0)  # aspect kept, on white


@pytest.mark.skipif(not OPENCLIPART.is_dir(), reason="openclipart-svg not installed (scripts/install.sh installs it)")
def test_openclipart_build_on_the_installed_package(tmp_path):
    from anymal.data.builders.openclipart import build_openclipart

    res = build_openclipart(tmp_path, limit=6, progress=False)
    recs = [json.loads(l) for l in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert res["train"] + res["not_rendered"] == 6 and len(recs) == res["train"] >= 4
    assert all(r["meta"]["licence"].startswith("public domain") and (tmp_path / r["images"][0]).is_file() for r in recs)
