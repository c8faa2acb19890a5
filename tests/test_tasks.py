"""Per-task judges on hand-checked answers, and the interleaved builder on small fake source sets."""
import json
import re

import pytest

from anymal.eval.tasks import TASKS, Row


def judge(task_name, prediction, reference="", **meta):
    return TASKS[task_name].judge(Row(prediction, reference, meta), [reference])


def test_video_judge_reads_direction_and_object():
    meta = {"task": "caption", "direction": "left to right", "object": "duck"}
    assert judge("video-motion", "A duck moves from left to right.", **meta) == {"direction_correct": True, "object_named": True}
    assert judge("video-motion", "A cow moves from right to left.", **meta) == {"direction_correct": False, "object_named": False}
    assert judge("video-motion", "From left to right.", task="direction", direction="left to right", object="x") == {
        "direction_correct": True}


def test_imu_judge_maps_free_text_to_one_of_twelve_activities():
    ok = judge("imu-activity", "Someone is climbing a flight of stairs.", activity="walking upstairs")
    assert ok == {"accuracy": True, "predicted": "walking upstairs"}
    assert judge("imu-activity", "The person is walking.", activity="walking upstairs")["predicted"] == "walking"
    assert judge("imu-activity", "A banana.", activity="walking")["predicted"] is None


def test_interleaved_and_furniture_judges():
    v = judge("interleaved", "You are walking upstairs while looking at a red apple.", kind="image+imu",
              activity="walking upstairs", object="apple")
    assert v == {"activity_correct": True, "object_named": True, "both_correct": True}
    v = judge("interleaved", "You are walking while looking at a pear.", kind="image+imu",
              activity="walking upstairs", object="apple")
    assert v["both_correct"] is False and v["activity_correct"] is False
    assert judge("interleaved", "No: the picture shows a cow.", kind="image+sound", match=False) == {"match_correct": True}
    assert judge("points-category", "A 3D model of a table, a living room item.", name="Round table",
                 category="Living room") == {"category_named": True, "object_named": True}


def test_speech_judge_and_corpus_wer():
    assert judge("speech-transcribe", "Please hold.", "please hold") == {"exact": True}
    assert TASKS["speech-transcribe"].corpus([{"prediction": "a b c x", "reference": "a b c d"}]) == {"WER": 0.25, "CER": pytest.approx(1 / 7)}


def test_interleaved_builder_pairs_within_splits(tmp_path):
    from anymal.data.builders.interleaved import build_interleaved

    src = {n: tmp_path / n for n in ("tuxpaint", "hapt", "audio")}
    for split in ("train", "test"):
        for n, d in src.items():
            (d / split).mkdir(parents=True, exist_ok=True)
        tux = [{"images": [f"{split}/duck-0.png"], "meta": {"caption": "A duck.", "object": "duck", "category": "animals"}},
               {"images": [f"{split}/apple-0.png"], "meta": {"caption": "A red apple.", "object": "apple", "category": "food"}}]
        hapt = [{"imus": [f"{split}/w.csv"], "meta": {"label": 2}}]
        audio = [{"audios": [f"{split}/duck.flac"], "meta": {"kind": "sound", "caption": "A duck.", "object": "duck"}}]
        for n, recs in (("tuxpaint", tux), ("hapt", hapt), ("audio", audio)):
            (src[n] / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    counts = build_interleaved(tmp_path / "out", src["tuxpaint"], src["audio"], src["hapt"], pairs={"train": 6, "test": 4})
    assert counts["train"] == {"image+imu": 6, "image+sound": 2} and counts["test"]["image+imu"] == 4
    recs = [json.loads(l) for l in (tmp_path / "out" / "test.jsonl").read_text().splitlines()]
    for r in recs:
        paths = r["images"] + r.get("imus", []) + r.get("audios", [])
        assert all("/test/" in p for p in paths)  # test pairs only test items
        user = r["messages"][0]["content"]
        assert sorted(re.findall("<(\\w+)>", user)) == sorted(k for k in ("image", "imu", "audio") if f"<{k}>" in user)
    sound = [r for r in recs if r["meta"]["kind"] == "image+sound"]
    assert {r["messages"][1]["content"].split(":")[0] for r in sound} == {"Yes", "No"}
    assert "You are walking upstairs while looking at" in recs[0]["messages"][1]["content"]
    with pytest.raises(Exception, match="val.jsonl: missing"):
        build_interleaved(tmp_path / "out2", src["tuxpaint"], src["audio"], src["hapt"], pairs={"val": 2})


@pytest.mark.integration
def test_speech_baseline_runs_whisper_on_the_task_samples(tmp_path):
    from anymal.data.jsonl import read_jsonl
    from anymal.eval.runner import split_reference

    wav = "/usr/share/asterisk/sounds/en_US_f_Allison/call-fwd-on-busy.wav"
    recs = [{"messages": [{"role": "user", "content": "<audio>Transcribe this audio."},
                          {"role": "assistant", "content": answer}], "audios": [wav], "meta": {"group": group}}
            for answer, group in (("Call-Forward on Busy.", "right"), ("Zebra.", "wrong"))]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    samples, _ = read_jsonl(tmp_path / "m.jsonl", ["audio"])
    refs = [split_reference(s.messages)[1] for s in samples]
    out = TASKS["speech-transcribe"].baseline(samples, refs, False)["whisper-tiny.en own decoder"]
    assert out["WER, group right"] <= 0.5 and out["WER, group wrong"] >= 1.0, out  # scored by group too
