"""Every modality with the real backbones and real held-out data: training, answers, interleaving."""
from pathlib import Path

import pytest

from anymal import GenerationSettings
from anymal.config import load_train_config
from anymal.data.builders.furniture import build_furniture
from anymal.data.builders.hapt_windows import build_hapt
from anymal.data.builders.audio_set import build_audio
from anymal.data.builders.stamp_video import build_video
from anymal.eval.tasks import TASKS, Row
from anymal.model.messages import MediaPart, from_prompt
from anymal.paths import PACKAGE_DIR, RECIPES_DIR

pytestmark = pytest.mark.integration
EXAMPLES = PACKAGE_DIR / "assets" / "examples"


@pytest.fixture(scope="session")
def small_sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sets")
    build_audio(root / "audio", sources=("asterisk", "tuxpaint"), limit=12, mixes={}, progress=False)
    build_video(root / "video", limit=4, progress=False)
    build_hapt(root / "hapt", limit=2, progress=False)
    build_furniture(root / "furniture", limit=30, progress=False)
    return {n: root / n for n in ("audio", "video", "hapt", "furniture")}


def test_short_real_training_lowers_loss_for_every_new_modality(small_sets, tmp_path):
    from anymal.train.loop import train

    train_files = [str(small_sets[n] / "train.jsonl") for n in ("audio", "video", "hapt", "furniture")]
    # validation: every modality's first training samples (does the loss fall for all of them?)
    val = tmp_path / "val.jsonl"
    val.write_text("".join(_relocated(Path(f), 6) for f in train_files))
    cfg = load_train_config(RECIPES_DIR / "all-modalities.yaml", [
        f"data.train={train_files}", f"data.val={val}", "optim.max_steps=24",
        "optim.batch_size=8", "optim.warmup_steps=2", "optim.lr=3e-3", "save_every=0", "init_from=null",
        "freeze=[]", f"output_dir={tmp_path / 'run'}"])
    res = train(cfg, progress=False, log=lambda *_: None)
    assert res.skipped == 0
    assert res.val_loss < 0.95 * res.initial_val_loss, (res.initial_val_loss, res.val_loss)


def _relocated(manifest: Path, n: int) -> str:
    """The first n lines of a manifest, with media paths made absolute (to copy them elsewhere)."""
    import json

    out = []
    for line in manifest.read_text().splitlines()[:n]:
        rec = json.loads(line)
        for key in ("images", "audios", "videos", "imus", "points"):
            if key in rec:
                rec[key] = [str(manifest.parent / p) for p in rec[key]]
        out.append(json.dumps(rec) + "\n")
    return "".join(out)


def _ask(model, question, *inputs):
    media = [MediaPart(m, str(EXAMPLES / f)) for m, f in inputs]
    return model.generate([from_prompt(question, media)], GenerationSettings(max_new_tokens=40))[0]


def test_shipped_default_answers_every_modality(default_model):
    assert set(default_model.projectors) == {"image", "audio", "video", "imu", "points"}
    speech = _ask(default_model, "Transcribe this audio.", ("audio", "speech-call-forward.flac"))
    assert "call forward on busy" in speech.lower(), speech  # a held-out prompt, read through Whisper's transcript
    video = _ask(default_model, "Which way does the object move?", ("video", "goat-moving-up.mp4"))
    assert any(d in video.lower() for d in ("left to right", "right to left", "top to bottom", "bottom to top")), video
    imu = _ask(default_model, "What is the person doing?", ("imu", "walking-upstairs.csv"))
    assert TASKS["imu-activity"].judge(Row(imu, "", {"activity": "walking upstairs"}), [])["predicted"], imu
    points = _ask(default_model, "What is this 3D object?", ("points", "bench.npy"))
    assert "3D model" in points, points


def test_interleaved_answers_use_both_inputs(default_model):
    q = "Given what I see and how I'm moving, what am I doing?"
    base = _ask(default_model, q, ("image", "umbrella.png"), ("imu", "walking-upstairs.csv"))
    other_image = _ask(default_model, q, ("image", "truck.png"), ("imu", "walking-upstairs.csv"))
    other_motion = _ask(default_model, q, ("image", "umbrella.png"), ("imu", "lying-down.csv"))
    assert base.startswith("You are"), base
    assert other_image != base and other_motion != base, (base, other_image, other_motion)


def test_instruct_lora_on_generated_real_data_then_export(small_sets, tmp_path):
    """align (the shipped default) -> instruct with LoRA on generated instruction data -> export --merge."""
    import json

    from anymal import AnyMAL
    from anymal.data.builders.instruct import generate
    from anymal.model.export import export_merged
    from anymal.train.loop import train

    srcs = [str(small_sets[n] / "train.jsonl") for n in ("hapt", "furniture", "video")]
    stats = generate(srcs, str(tmp_path / "instruct.jsonl"), progress=False)
    assert {"imu/reasoning", "points/detail", "video/conversation"} <= set(stats)
    (tmp_path / "val.jsonl").write_text(_relocated(tmp_path / "instruct.jsonl", 40))
    cfg = load_train_config(RECIPES_DIR / "instruct-lora.yaml", [
        f"data.train={tmp_path / 'instruct.jsonl'}", f"data.val={tmp_path / 'val.jsonl'}", "optim.max_steps=8",
        "optim.batch_size=8", "optim.warmup_steps=1", "optim.lr=2e-3", "save_every=0", f"output_dir={tmp_path / 'run'}"])
    res = train(cfg, progress=False, log=lambda *_: None)
    assert res.val_loss < res.initial_val_loss, (res.initial_val_loss, res.val_loss)
    manifest = json.loads((res.checkpoint / "anymal_config.json").read_text())
    assert manifest["stage"] == "instruct" and [e.get("stage") for e in manifest["lineage"]][-1] == "instruct"
    lora = AnyMAL.from_pretrained(res.checkpoint)
    merged = AnyMAL.from_pretrained(export_merged(res.checkpoint, tmp_path / "merged"))
    q = "Is the person going from one place to another?"
    assert _ask(lora, q, ("imu", "walking-upstairs.csv")) == _ask(merged, q, ("imu", "walking-upstairs.csv"))
