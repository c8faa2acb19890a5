"""Video: uniform, bounded frame sampling; the audio track; the frame-wise video encoder; the stamp-video set."""
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import TinyCNN
from PIL import Image

from anymal.data.jsonl import read_jsonl
from anymal.data.builders.stamp_video import DIRECTIONS, build_video, motion_caption, subject, write_clip
from anymal.data.builders.tuxpaint import STAMPS_DIR, caption_split
from anymal.encoders import video
from anymal.encoders import load_encoder
from anymal.encoders.video import VideoEncoder, load_video, load_video_audio, sample_indices
from anymal.errors import InputError
from anymal.modalities import VIDEO


def gray_clip(path: Path, n: int = 16, fps: int = 8, size=(64, 48), audio=None) -> Path:
    """Frame i is a flat gray of level 15 * i."""
    write_clip(path, [Image.new("RGB", size, (15 * i,) * 3) for i in range(n)], fps, audio)
    return path


def levels(frames: list[Image.Image]) -> list[int]:
    return [round(float(np.asarray(f).mean()) / 15) for f in frames]


def test_sample_indices_are_segment_centres():
    assert sample_indices(16, 4) == [2, 6, 10, 14]
    assert sample_indices(16, 3) == [2, 8, 13]
    assert sample_indices(2, 4) == [0, 0, 1, 1]  # short clips repeat frames
    assert sample_indices(5, 1) == [2]


def test_uniform_sampling_picks_the_right_frames(tmp_path):
    p = gray_clip(tmp_path / "gray.mp4")
    assert levels(load_video(p, 4)) == [2, 6, 10, 14]
    assert levels(load_video(p, 3)) == [2, 8, 13]
    assert levels(load_video(p, 16)) == list(range(16))
    assert levels(load_video(p.read_bytes(), 4)) == [2, 6, 10, 14]
    # in-memory frames follow the same rule
    arr = np.stack([np.full((8, 8, 3), 15 * i, np.uint8) for i in range(16)])
    assert levels(load_video(arr, 4)) == levels(load_video([Image.fromarray(a) for a in arr], 4)) == [2, 6, 10, 14]


def test_unknown_duration_stream_is_sampled_by_count(tmp_path):
    path = tmp_path / "raw.h264"  # an elementary stream: no container, no duration
    with av.open(str(path), "w", format="h264") as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(16):
            c.mux(s.encode(av.VideoFrame.from_image(Image.new("RGB", (64, 48), (15 * i,) * 3))))
        c.mux(s.encode())
    assert levels(load_video(path, 4)) == [2, 6, 10, 14]


def _long_clip(path: Path, n: int, gop: int, rate: Fraction = Fraction(1)) -> Path:
    """n frames at `rate` fps; frame i shows i % 16 (left half) and i // 16 (right half) as gray levels (x 11)."""
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = 32, 16, "yuv420p"
        s.options = {"g": str(gop), "preset": "ultrafast"}
        for i in range(n):
            a = np.empty((16, 32, 3), np.uint8)
            a[:, :16], a[:, 16:] = 11 * (i % 16), 11 * (i // 16)
            c.mux(s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        c.mux(s.encode())
    return path


def test_long_clip_seeks_instead_of_decoding_everything(tmp_path, monkeypatch):
    p = _long_clip(tmp_path / "long.mp4", 240, gop=8)  # 4 minutes
    monkeypatch.setattr(video, "MAX_VIDEO_FRAMES", 60)  # decoding all 240 frames would fail
    assert _indices(load_video(p, 4)) == sample_indices(240, 4) == [30, 90, 150, 210]
    with pytest.raises(InputError, match=r"long\.mp4: 240\.0 s of video exceeds the 60 s limit"):
        load_video(p, 4, max_seconds=60)
    q = _long_clip(tmp_path / "one_keyframe.mp4", 240, gop=1000)  # every seek lands on frame 0
    with pytest.raises(InputError, match=r"one_keyframe\.mp4: needed more than 60 decoded frames"):
        load_video(q, 4)
    hour = _long_clip(tmp_path / "hour.mp4", 360, gop=8, rate=Fraction(1, 10))  # 1 h, a frame per 10 s
    with pytest.raises(InputError, match=r"hour\.mp4: 3600\.0 s of video exceeds the 600 s limit"):
        load_video(hour)  # refused from the header, nothing decoded
    assert _indices(load_video(hour, 3, max_seconds=4000)) == sample_indices(360, 3) == [60, 180, 300]


def _indices(frames: list[Image.Image]) -> list[int]:
    return [round(float(np.asarray(f)[:, :16].mean()) / 11) + 16 * round(float(np.asarray(f)[:, 16:].mean()) / 11)
            for f in frames]


def test_bad_inputs_name_the_file(tmp_path, monkeypatch):
    (tmp_path / "garbage.mp4").write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(InputError, match=r"garbage\.mp4: not a readable video container"):
        load_video(tmp_path / "garbage.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mp4: empty file"):
        load_video(tmp_path / "empty.mp4")
    with pytest.raises(InputError, match="no such file"):
        load_video(tmp_path / "missing.mp4")
    with av.open(str(tmp_path / "sound.m4a"), "w", format="mp4") as c:  # audio only
        a = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4000), np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        c.mux(a.encode(frame))
        c.mux(a.encode())
    with pytest.raises(InputError, match=r"sound\.m4a: no video stream"):
        load_video(tmp_path / "sound.m4a")
    with av.open(str(tmp_path / "junk.mp4"), "w", format="mp4") as c:  # a video stream of undecodable packets
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
        for i in range(8):
            pkt = av.Packet(np.random.default_rng(i).integers(0, 256, 500, dtype=np.uint8).tobytes())
            pkt.stream, pkt.pts, pkt.dts, pkt.time_base = s, i, i, s.time_base
            c.mux(pkt)
    with pytest.raises(InputError, match=r"junk\.mp4: (corrupt video stream|no decodable video frames|the video stream declares 0x0)"):
        load_video(tmp_path / "junk.mp4")
    clip = gray_clip(tmp_path / "big.mp4")
    monkeypatch.setattr(video, "MAX_VIDEO_PIXELS", 1000)
    with pytest.raises(InputError, match=r"big\.mp4: 64x48 video frames exceed the 0\.0 MP limit"):
        load_video(clip)
    with pytest.raises(InputError, match="uint8 array"):
        load_video(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(InputError, match="non-empty list"):
        load_video([])


def test_video_audio_track_is_16k_mono(tmp_path):
    t = np.arange(int(2.0 * 22050)) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wave = load_video_audio(gray_clip(tmp_path / "tone.mp4", audio=tone))
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 1.9 < len(wave) / 16000 < 2.2  # AAC adds priming/padding of a few ms
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440) < 5
    assert load_video_audio(gray_clip(tmp_path / "silent.mp4")) is None


def test_video_encoder_runs_the_image_encoder_per_frame(tmp_path):
    image = TinyCNN("tiny-cnn", "image").freeze()
    enc = VideoEncoder(image, VIDEO.name, frames=4).freeze()
    assert (enc.modality, enc.id, enc.dim, enc.num_tokens, enc.grid) == ("video", "tiny-cnn@4f", 24, 64, (4, 4))
    facts = enc.facts()
    assert facts["frames"] == 4 and facts["num_tokens"] == 64 and "letterbox32" in facts["preprocess"]
    x = enc.preprocess(gray_clip(tmp_path / "g.mp4"))
    assert x.shape == (4, 3, 32, 32)
    batch = torch.stack([x, x.flip(0)])
    y = enc(batch)
    assert y.shape == (2, 64, 24)
    for f in range(4):  # frame-major: tokens f*16 .. f*16+15 are frame f's grid
        torch.testing.assert_close(y[:, 16 * f:16 * (f + 1)], image(batch[:, f]))
    assert [t.shape for t in enc.encode([tmp_path / "g.mp4"])] == [(64, 24)]
    wired = load_encoder("tiny-cnn", "video", frames=2)
    assert wired.id == "tiny-cnn@2f" and wired.num_tokens == 32


@pytest.mark.parametrize("caption,expected", [
    ("A red apple.", "A red apple moves from left to right."),
    ("Some cherries.", "Some cherries move from left to right."),
    ("A computer mouse. Squeak!", "A computer mouse moves from left to right."),
    ("A ripe, red tomato!", "A ripe red tomato moves from left to right."),
    ("Mars—the red planet.", "Mars moves from left to right."),
    ("Say cheese!", None), ("Penguins are wining!", None), ("“Arrow”.", None)])
def test_motion_caption(caption, expected):
    assert motion_caption(caption, "left to right") == expected
    assert (subject(caption) is None) == (expected is None)


def _centroid_shift(frames: list[Image.Image]) -> np.ndarray:
    """(dx, dy) of the moving stamp between the first and last frame: pixels off the static background."""
    a = np.stack([np.asarray(f, dtype=np.float32) for f in frames])
    moving = np.abs(a - np.median(a, axis=0)).sum(-1) > 60
    ys, xs = np.nonzero(moving[0])
    ye, xe = np.nonzero(moving[-1])
    return np.array([xe.mean() - xs.mean(), ye.mean() - ys.mean()])


@pytest.mark.skipif(not STAMPS_DIR.is_dir(), reason="apt package tuxpaint-stamps-default not installed")
def test_stamp_video_build(tmp_path):
    stats = build_video(tmp_path, limit=4, progress=False)
    assert stats["clips"] == {"train": 4, "val": 4, "test": 4}
    assert all(d == {k: 1 for k in DIRECTIONS} for d in stats["directions"].values())
    captions = {}
    for split in ("train", "val", "test"):
        samples, skipped = read_jsonl(tmp_path / f"{split}.jsonl", ["video"])
        assert skipped.total == 0 and len(samples) == stats[split] == 12
        assert len({s.messages[0]["content"][0]["path"] for s in samples}) == 4  # one file per clip
        captions[split] = {s.meta["caption"] for s in samples}
        assert all(caption_split(c, 0.1, 0.1) == split for c in captions[split])
        for s in samples:
            if s.meta["task"] != "caption":
                continue
            path, answer = s.messages[0]["content"][0]["path"], s.messages[1]["content"][0]["text"]
            direction = s.meta["direction"]
            assert answer.endswith(f"from {direction}.")
            dx, dy = _centroid_shift(load_video(path, 16))
            along, across = {"left to right": (dx, dy), "right to left": (-dx, dy),
                             "top to bottom": (dy, dx), "bottom to top": (-dy, dx)}[direction]
            assert along > 30 and along > 3 * abs(across), (path, direction, dx, dy)
            assert (load_video_audio(path) is not None) == s.meta["has_audio"]
    assert not (captions["train"] & captions["val"] or captions["train"] & captions["test"]
                or captions["val"] & captions["test"])
    assert json.loads((tmp_path / "stats.json").read_text())["clips"] == stats["clips"]
    assert "GPL-2" in (tmp_path / "README.md").read_text()


def test_a_video_part_can_bring_its_own_audio_track(tmp_path):
    from anymal.model.messages import MediaPart, normalize

    t = np.arange(22050, dtype=np.float32) / 22050  # write_clip's audio rate
    tone = gray_clip(tmp_path / "tone.mp4", audio=(0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    mute = gray_clip(tmp_path / "mute.mp4")
    msg = lambda p: [{"role": "user", "content": [{"type": "video", "path": str(p), "audio": True},
                                                  {"type": "text", "text": "What happens?"}]}]
    parts = normalize(msg(tone), {"video", "audio"})[0][1]
    assert [p.modality for p in parts if isinstance(p, MediaPart)] == ["video", "audio"]
    wave, rate = parts[1].source
    assert rate == 16000 and 0.9 < wave.size / 16000 < 1.2  # 1 s, resampled
    assert [p.modality for p in normalize(msg(mute), {"video", "audio"})[0][1] if isinstance(p, MediaPart)] == ["video"]
    with pytest.raises(InputError, match="needs a model with an audio adapter"):
        normalize(msg(tone), {"video"})


def _textured_stamp(rng: np.random.Generator, side: int = 90) -> Image.Image:
    """A cut-out of random coloured blocks (a thing whose pixels differ from each other, like a photo)."""
    blocks = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize((side, side), Image.NEAREST).convert("RGBA")


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_frame_motion_says_which_way_the_thing_moves(direction):
    import random

    from anymal.data.builders.stamp_video import render
    from anymal.encoders.frame_motion import DIRECTIONS as SAID, FrameMotion

    part = FrameMotion("frame-motion", "image")
    frames = render(_textured_stamp(np.random.default_rng(0)), direction, 4, 224, random.Random(direction))
    x = torch.stack([part.preprocess(f) for f in frames])
    rows = part(x, clip_frames=4)
    assert rows.shape == (4, 1, 8)
    assert [SAID[int(k) - 1] for k in rows[:, 0, 0]] == [direction] * 4
    assert (rows[:, 0, 1] > 0.5).all()  # a clear step is said with confidence
    assert not part(x, clip_frames=1).any()  # single pictures: nothing moves


def test_frame_motion_says_nothing_without_a_static_background():
    from anymal.encoders.frame_motion import FrameMotion

    part = FrameMotion("frame-motion", "image")
    noise = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (4, 64, 64, 3)).astype(np.float32))
    assert not part(noise, clip_frames=4).any()  # every pixel changes: a moving camera, not a moving thing
    still = torch.full((4, 64, 64, 3), 200.0)
    still[:, 20:40, 20:40] = 30.0  # a thing that stays put is the background here: nothing to follow
    assert not part(still, clip_frames=4).any()


def test_a_video_encoder_tells_its_frame_motion_part_the_clip(tmp_path):
    """Through the real wiring (video wrapper -> composed encoder -> part), on the two bundled clips."""
    from anymal.encoders.frame_motion import DIRECTIONS as SAID
    from anymal.paths import PACKAGE_DIR

    enc = load_encoder("tiny-cnn", "video", frames=4, perception=["frame-motion"])
    assert enc.id == "tiny-cnn+frame-motion@4f" and enc.num_tokens == 4 * (16 + 1)
    clips = [PACKAGE_DIR / "assets" / "examples" / n for n in ("horse-moving-right.mp4", "goat-moving-up.mp4")]
    feats = enc(torch.stack([enc.preprocess(c) for c in clips]))
    labels = feats.reshape(2, 4, 17, -1)[:, :, 16, 0]  # each frame's motion entry, its label index + 1
    assert [[SAID[int(k) - 1] for k in clip] for clip in labels] == [["left to right"] * 4, ["bottom to top"] * 4]
