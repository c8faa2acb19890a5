"""Named sound sources, the by-recording split, augmentation, Festival's held-out voice, the sound baseline and head."""
import json
import random
import shutil

import numpy as np
import pytest

from anymal.data.builders.sound_set import augment, split_recordings
from anymal.data.builders.speech import ASTERISK_DIR, synthesize
from anymal.data.builders.tuxpaint import caption_split
from anymal.errors import DataError

HAVE_ALL = ASTERISK_DIR.is_dir() and shutil.which("espeak-ng") is not None


def test_split_by_recording_keeps_a_known_kind_in_train_and_test():
    items = [("tux:cow", "cow", "train"), ("sfx:cow", "cow", None), ("gc:cow", "cow", None),
             *[(f"dog{i}", "dog", None) for i in range(5)], ("sfx:bell", "bell", None),
             ("tux:goat", "goat", "test"), ("sfx:goat", "goat", None), ("tux:duck", "duck", "test"), ("x:duck", "duck", None)]
    split = split_recordings(items, val=0.1, test=0.1)
    assert split["tux:cow"] == "train" and split["tux:goat"] == "test"  # fixed splits stay (held-out stamps)
    by_kind = {k: sorted(split[r] for r, o, _ in items if o == k) for k in ("cow", "dog", "goat", "duck")}
    assert by_kind["cow"] == ["test", "train", "train"]
    assert by_kind["dog"] == ["test", "train", "train", "train", "val"]  # four or more: one to val too
    assert by_kind["goat"] == ["test", "train"] and by_kind["duck"] == ["test", "train"]  # test already has one
    assert split["sfx:bell"] == caption_split("bell", 0.1, 0.1)  # a kind recorded once: by its name
    assert split == split_recordings(list(reversed(items)), val=0.1, test=0.1)  # order-independent


def test_augment_crops_quietens_and_adds_noise_deterministically():
    wave = np.sin(np.linspace(0, 2000, 48000)).astype(np.float32) * 0.5  # 3 s
    a, b = augment(wave, random.Random(1)), augment(wave, random.Random(1))
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert 0.6 * len(wave) <= len(a) <= len(wave) and not np.allclose(a, wave[:len(a)])
    assert np.abs(a).max() <= 0.5 * 1.5  # a gain of at most 0 dB plus a little noise
    short = augment(wave[:8000], random.Random(2))
    assert len(short) == 8000  # a clip under 1 s is not cut further


@pytest.mark.integration
def test_every_named_clip_is_found_and_decodes():
    from anymal.data.builders.sound_effects import NAMES, sound_clips
    from anymal.encoders.media import load_audio

    clips = sound_clips()
    assert {(c.source, c.clip) for c in clips} == set(NAMES), "a name in NAMES matches no clip (or twice)"
    assert {c.source for c in clips} == {"opensfx", "scratch", "gcompris"}
    for c in clips:
        wave = load_audio(c.data, 16000, 30)
        assert len(wave) > 800 and c.licence and "\x00" not in c.licence, c.clip
    cow = [c for c in clips if c.object == "cow"]
    assert {c.source for c in cow} == {"opensfx", "gcompris"} and cow[0].phrase == "a cow"
    assert any("CC0" in c.licence or "Zero" in c.licence for c in clips if c.source == "opensfx")


@pytest.mark.skipif(not shutil.which("text2wave"), reason="apt festival festvox-kdlpc16k (scripts/install.sh)")
def test_festival_held_out_voice_speaks_and_a_bad_voice_is_an_error(tmp_path):
    wave = synthesize("Please enter your password.", "festival", "ked", 1.0, tmp_path)
    slow = synthesize("Please enter your password.", "festival", "ked", 0.8, tmp_path)
    assert 0.8 < len(wave) / 16000 < 4 and len(slow) > 1.15 * len(wave)
    with pytest.raises(DataError, match="festival -v no_such failed"):
        synthesize("Hello.", "festival", "no_such", 1.0, tmp_path)
    assert not list(tmp_path.iterdir())  # no temporary files left


def test_sound_majority_baseline_names_the_commonest_training_kind(tmp_path):
    from anymal.data.jsonl import read_jsonl
    from anymal.eval.tasks import get_task

    def rec(obj, **meta):
        return json.dumps({"messages": [{"role": "user", "content": "<audio>What makes this sound?"},
                                        {"role": "assistant", "content": f"The sound of a {obj}."}],
                           "audios": ["x.flac"], "meta": {"kind": "sound", "object": obj, **meta}}) + "\n"

    import soundfile as sf

    sf.write(tmp_path / "x.flac", np.full(1600, 0.1, np.float32), 16000)
    # augmented copies do not count: 2 dogs, 1 cow (+ 3 copies)
    (tmp_path / "train.jsonl").write_text(rec("dog") + rec("dog") + rec("cow") + rec("cow", augmented=1) * 3)
    (tmp_path / "test.jsonl").write_text(rec("dog") + rec("cow") + rec("bell") + rec("dogs"))
    samples, _ = read_jsonl(tmp_path / "test.jsonl", ["audio"], on_error="skip")
    (name, scores), = get_task("sound-name").baseline(samples, [], False).items()
    assert "'dog'" in name and scores == {"object_named": 0.5}


def test_pooling_reads_only_the_clips_own_frames():
    import torch

    from anymal.encoders.sound_kinds import pooled

    frames = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [2.0], [2.0]]])
    out = pooled(frames, torch.tensor([2, 3]))
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0, 1.0], [2.0, 2.0, 0.0]]))  # mean, max, std


def test_sound_kind_head_round_trip_and_a_missing_head_names_the_command(tmp_path):
    import torch

    from anymal.encoders.sound_kinds import SoundKindHead
    from anymal.errors import ConfigError

    head = SoundKindHead(["cow", "dog", "speech"], 6)
    head.mean.fill_(0.5)
    head.save(tmp_path / "h")
    again = SoundKindHead.load(tmp_path / "h")
    x = torch.randn(4, 6)
    assert again.labels == ["cow", "dog", "speech"]
    torch.testing.assert_close(again(x), head.eval()(x))
    with pytest.raises(ConfigError, match="anymal pretrain sounds --ship"):
        SoundKindHead.load(tmp_path / "nothing")


@pytest.mark.integration
@pytest.mark.skipif(not HAVE_ALL, reason="needs the audio set's apt packages (scripts/install.sh)")
def test_pretrain_sounds_fits_a_head_that_names_training_kinds(tmp_path):
    from anymal.data.builders.audio_set import build_audio
    from anymal.encoders.composed import ComposedEncoder
    from anymal.encoders.sound_kinds import WhisperSoundKinds
    from anymal.errors import ConfigError
    from anymal.registry import ENCODERS
    from anymal.train.pretrain_sounds import pretrain_sounds

    build_audio(tmp_path / "audio", sources=("asterisk", "opensfx"), limit={"asterisk": 10, "opensfx": 12},
                sound_copies=2, mixes={}, val=0.3, test=0.3, progress=False)
    res = pretrain_sounds(tmp_path / "audio", tmp_path / "run", speech_every=2, steps=200, progress=False)
    assert res["weight_decay"] in res["val_by_weight_decay"] and res["test"]["all"]["n"] >= 1
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["labels"] == res["labels"]
    kinds = WhisperSoundKinds("whisper-tiny.en-sounds", "audio", head_dir=tmp_path / "run" / "head")
    assert "speech" in kinds.labels
    enc = ComposedEncoder(ENCODERS.build("whisper-tiny.en", "audio").freeze(), [kinds])  # reads the main frames
    train = [json.loads(l) for l in (tmp_path / "audio" / "train.jsonl").open()]
    clip = next(r for r in train if r["meta"]["kind"] == "sound" and not r["meta"].get("augmented"))
    rows = enc.encode([tmp_path / "audio" / clip["audios"][0]])[0][-3:, :8]
    assert rows[0, 1] >= rows[1, 1] >= rows[2, 1] > 0
    named = [kinds.labels[int(i) - 1] for i in rows[:, 0]]
    assert clip["meta"]["object"] in named  # a training recording's own kind is among the top 3
    other = ENCODERS.build("whisper-tiny.en", "audio")
    other.id = "whisper-base"  # any other main encoder: its frames are not the ones the head was fitted on
    with pytest.raises(ConfigError, match="reads 'whisper-tiny.en' frames"):
        ComposedEncoder(other, [kinds])
