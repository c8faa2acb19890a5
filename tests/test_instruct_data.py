"""Instruction data generation: three kinds from real labels, true answers, dedupe, provenance, LLM gate."""
import json

import pytest

from anymal.data.builders import instruct
from anymal.data.jsonl import read_jsonl
from anymal.errors import DataError

RECORDS = {
    "image": {"messages": [{"role": "user", "content": "<image>What?"}, {"role": "assistant", "content": "A frog."}],
              "images": ["m/frog.png"], "meta": {"caption": "A frog.", "object": "frog", "category": "animals"}},
    "video": {"messages": [{"role": "user", "content": "<video>?"}, {"role": "assistant", "content": "x"}],
              "videos": ["m/truck.mp4"], "meta": {"caption": "A truck.", "object": "truck", "category": "vehicles",
                                                  "direction": "right to left", "has_audio": True}},
    "imu": {"messages": [{"role": "user", "content": "<imu>?"}, {"role": "assistant", "content": "x"}],
            "imus": ["m/w.csv"], "meta": {"label": 2, "activity": "walking upstairs", "seconds": 10.24}},
    "points": {"messages": [{"role": "user", "content": "<points>?"}, {"role": "assistant", "content": "x"}],
               "points": ["m/bed.npy"], "meta": {"name": "Double bed", "category": "Bedroom"}},
    "audio": {"messages": [{"role": "user", "content": "<audio>?"}, {"role": "assistant", "content": "x"}],
              "audios": ["m/duck.flac"], "meta": {"kind": "sound", "caption": "The sound of a duck.", "object": "duck"}},
}


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "m").mkdir()
    for f in ("frog.png", "truck.mp4", "w.csv", "bed.npy", "duck.flac"):
        (tmp_path / "m" / f).write_bytes(b"x")
    p = tmp_path / "src.jsonl"
    recs = list(RECORDS.values()) + [RECORDS["image"]]  # a duplicate source line
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return p


def test_three_kinds_with_true_answers_and_provenance(manifest, tmp_path):
    out = tmp_path / "gen" / "train.jsonl"
    stats = instruct.generate([str(manifest)], str(out), progress=False)
    samples, skipped = read_jsonl(out, ["image", "audio", "video", "imu", "points"])
    assert skipped.total == 0 and len(samples) == stats["records"] == 3 + 3 + 3 + 3 + 2
    assert stats["duplicates dropped"] == 3  # the repeated frog line
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    by = {(r["meta"]["modality"], r["meta"]["kind"]): r for r in recs}
    say = lambda m, k: " ".join(t["content"] for t in by[(m, k)]["messages"] if t["role"] == "assistant")
    assert "a frog" in say("image", "detail") and "an animal" in say("image", "detail")
    assert say("image", "reasoning").startswith("Yes") and say("video", "reasoning").startswith("It ends on the left side")
    assert "From right to left." in say("video", "conversation")
    assert say("imu", "reasoning").startswith("Yes") and "walking upstairs" in say("imu", "conversation").lower()
    assert say("points", "reasoning").startswith("In a bedroom")
    assert len(by[("image", "conversation")]["messages"]) == 6  # multi-turn
    prov = by[("imu", "detail")]["meta"]["provenance"]
    assert prov == {"source": f"{manifest}:3", "generator": "template"}
    assert (out.parent / by[("image", "detail")]["images"][0]).resolve() == (manifest.parent / "m/frog.png").resolve()


def test_llm_rephrasing_is_kept_only_when_it_keeps_every_fact():
    class Fake:
        def __init__(self, reply):
            self.reply = reply

        def chat(self, prompt, **kw):
            return self.reply

    facts = ["frog", "an animal"]
    assert instruct._llm_rephrase(Fake("Here we see a frog, which is an animal."), "The image shows a frog.", facts)
    assert instruct._llm_rephrase(Fake("Here we see a toad."), "The image shows a frog.", facts) is None
    assert instruct._llm_rephrase(Fake("A frog, an animal, sitting on"), "x" * 30, facts) is None  # cut off
    same = "The image shows a frog, an animal."
    assert instruct._llm_rephrase(Fake(same), same, facts) is None  # a copy is no rephrasing


def test_bad_options_and_missing_sources_are_clear(tmp_path):
    with pytest.raises(DataError, match="kinds: unknown \\['jokes'\\]"):
        instruct.generate([], str(tmp_path / "o.jsonl"), kinds="detail,jokes")
    with pytest.raises(DataError, match="nope.jsonl: manifest not found"):
        instruct.generate([str(tmp_path / "nope.jsonl")], str(tmp_path / "o.jsonl"))
