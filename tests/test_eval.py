"""The evaluation harness on a tiny model: matchers, reports, plots, batch-size invariance."""
import json

import pytest

from anymal.eval.matching import contains_phrase, match_label
from anymal.eval.runner import evaluate
from anymal.eval.tasks import Task, _label


def test_label_matcher_is_exact_then_bigram_f1_and_refuses_ties():
    dirs = ["From left to right.", "From right to left.", "From top to bottom.", "From bottom to top."]
    assert match_label("from left to right", dirs) == "From left to right."
    assert match_label("It moves from the right to the left.", dirs) == "From right to left."
    assert match_label("left right top bottom", dirs) is None  # listing every label is a tie, not a hit
    assert match_label("a cat", dirs) is None
    assert contains_phrase("It is walking upstairs.", "walking upstairs")
    assert not contains_phrase("It is walking.", "walking upstairs")


def _manifest(tmp_path, images):
    labels = ["A red square.", "A green square."]
    recs = [{"messages": [{"role": "user", "content": "<image>What is this?"},
                          {"role": "assistant", "content": labels[i % 2]}], "images": [str(p)],
             "meta": {"colour": labels[i % 2].split()[1]}} for i, p in enumerate(images)]
    f = tmp_path / "m.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return f


def test_report_files_and_batch_size_invariance(tiny_model, images, tmp_path):
    task = Task("colours", "", "", "tiny colour task", _label, group_by="colour", label_key="colour",
                primary="accuracy", max_new_tokens=6)
    a = evaluate(tiny_model, task, _manifest(tmp_path, images), tmp_path / "a", batch_size=1, progress=False)
    b = evaluate(tiny_model, task, _manifest(tmp_path, images), tmp_path / "b", batch_size=8, progress=False)
    pa = [json.loads(l)["prediction"] for l in (tmp_path / "a" / "predictions.jsonl").open()]
    pb = [json.loads(l)["prediction"] for l in (tmp_path / "b" / "predictions.jsonl").open()]
    assert pa == pb and a["scores"] == b["scores"] and a["n"] == 4
    for f in ("results.json", "results.md", "predictions.jsonl", "by_group.png", "confusion.png"):
        assert (tmp_path / "a" / f).stat().st_size > 0, f
    rec = json.loads((tmp_path / "a" / "results.json").read_text())
    assert rec["decoding"]["temperature"] == 0.0 and len(rec["data_sha256"]) == 64 and "torch" in rec["versions"]
    # every score per group, with its n, in the JSON and the table
    assert {g: v["n"] for g, v in rec["group_scores"].items()} == {"red": 2, "green": 2}
    for g, v in rec["group_scores"].items():
        assert rec["by_group"][g] == v["accuracy"]
        assert f"| colour = {g} (n=2) — accuracy | {v['accuracy']:.3f} |" in (tmp_path / "a" / "results.md").read_text()
    assert sum(v["accuracy"] * v["n"] for v in rec["group_scores"].values()) / 4 == pytest.approx(rec["scores"]["accuracy"])


def test_missing_manifest_names_the_builder(tiny_model, tmp_path):
    from anymal.errors import DataError

    with pytest.raises(DataError, match="anymal data build tuxpaint"):
        evaluate(tiny_model, "image-caption", tmp_path / "nope.jsonl", tmp_path / "o", progress=False)
