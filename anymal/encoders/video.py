"""Video input: bounded, uniform frame sampling with PyAV, the clip's audio track, and a video encoder
that runs any image encoder on each sampled frame.

Limits (all errors name the input; nothing is silently cut):
* `ANYMAL_MAX_VIDEO_PIXELS` (default 3840x2160): larger frames are **refused**, like images are.
  The decoder allocates full-size frames whatever we downscale to afterwards, so a limit on the
  stream's declared size is the only real bound on memory.
* `ANYMAL_MAX_VIDEO_SECONDS` (default 600): longer clips are **refused**, not cut (few frames of a
  long film say little, and a silent cut would answer about part of the file).
* `ANYMAL_MAX_VIDEO_FRAMES` (default 3000): the most frames decoded for one call. We seek to each
  sampled timestamp, so work is ~frames x keyframe distance, not the clip length; a file with
  too few keyframes (or an unknown duration and too many frames) hits this cap and is refused.
* `ANYMAL_MAX_VIDEO_DECODE_PIXELS` (default 4e9): the same cap in pixels, so that large frames get
  fewer (3000 frames of 640x480 or 480 of 4K, each a few seconds on 2 cores).
* MP4/MOV headers that declare more samples or tracks than a clip we take could hold (boxes.py).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, InputError, TooLargeError
from ..registry import WRAPPERS
from .base import Encoder
from .boxes import check_mp4_header
from .media import as_source, decode_audio_stream, describe, load_image

MAX_VIDEO_PIXELS = int(os.environ.get("ANYMAL_MAX_VIDEO_PIXELS", 3840 * 2160))
MAX_VIDEO_SECONDS = float(os.environ.get("ANYMAL_MAX_VIDEO_SECONDS", 600.0))
MAX_VIDEO_FRAMES = int(os.environ.get("ANYMAL_MAX_VIDEO_FRAMES", 3000))
MAX_VIDEO_DECODE_PIXELS = float(os.environ.get("ANYMAL_MAX_VIDEO_DECODE_PIXELS", 4e9))
DECODE_MAX_SIDE = 448  # decoded frames are downscaled to this long side before the image encoder's resize
SEEK_GAP = 2.0  # seconds: for nearer targets decoding on is cheaper than a seek back to a keyframe
_EPS = 1e-6


def sample_indices(n: int, frames: int) -> list[int]:
    """Indices of the frames at the centres of `frames` equal segments of `n` frames."""
    return [min(n - 1, int((k + 0.5) * n / frames + _EPS)) for k in range(frames)]


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)  # FFmpeg's reason without errno and '<none>' noise


# File suffix -> the one FFmpeg demuxer that may open it. FFmpeg probes content, not names: left to
# probe, a ".mp4" that is an ffconcat list, an HLS playlist or an image2 pattern would make FFmpeg
# open *other* files named inside it. A known suffix pins its demuxer; anything else must probe to
# one of the plain container demuxers below (none of which follows references: the MP4 demuxer's
# external data references stay off, FFmpeg's default).
DEMUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".3gp": "3gp", ".mkv": "matroska",
            ".webm": "matroska", ".avi": "avi", ".flv": "flv", ".ts": "mpegts", ".mpg": "mpeg",
            ".mpeg": "mpeg", ".ogv": "ogg", ".gif": "gif", ".h264": "h264", ".264": "h264", ".hevc": "hevc",
            ".h265": "hevc"}
CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv", "mpegts", "mpeg", "ogg", "gif", "h264",
              "hevc", "mjpeg"}  # raw streams too: one file each
FORMATS = tuple(sorted({s.lstrip(".") for s in DEMUXERS}))


def _open(item: Any, name: str):
    """A PyAV container on a plain video container, never a list or pattern of other files."""
    import av

    src = as_source(item, "a video (MP4, WebM, MKV, AVI, MOV...)")
    suffix = src.suffix.lower() if isinstance(src, Path) else ""
    check_mp4_header(src, name)  # FFmpeg indexes every sample a header declares while opening it
    try:
        container = av.open(src if isinstance(src, io.BytesIO) else str(src), mode="r", format=DEMUXERS.get(suffix))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{name}: not a readable video container: {_why(e)}") from None
    if container.format.name not in CONTAINERS | set(DEMUXERS.values()):
        container.close()
        raise InputError(f"{name}: {container.format.name!r} is not a video container anymal reads "
                         f"(expected {', '.join(FORMATS)})")
    return container


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # microseconds
    return None


def _check_size(stream, name: str) -> None:
    w, h = stream.codec_context.width, stream.codec_context.height
    if w * h == 0:
        raise InputError(f"{name}: the video stream declares {w}x{h} frames (no pixels)")
    if w * h > MAX_VIDEO_PIXELS:
        raise TooLargeError(f"{name}: {w}x{h} video frames exceed the {MAX_VIDEO_PIXELS / 1e6:.1f} MP limit "
                         "(downscale it, or raise ANYMAL_MAX_VIDEO_PIXELS)")


def _check_seconds(seconds: float, max_seconds: float, name: str) -> None:
    if seconds > max_seconds:
        raise TooLargeError(f"{name}: {seconds:.1f} s of video exceeds the {max_seconds:.0f} s limit "
                         "(trim it, or raise ANYMAL_MAX_VIDEO_SECONDS)")


def _to_pil(frame, max_side: int) -> Image.Image:
    scale = min(1.0, max_side / max(frame.width, frame.height))  # libswscale resize: cheap, no full-size copy
    return frame.to_image(width=max(1, round(frame.width * scale)), height=max(1, round(frame.height * scale)))


def _by_time(container, stream, duration: float, frames: int, max_side: int, max_frames: int,
             name: str) -> list[Image.Image]:
    """Seek near each segment centre and take the frame shown at that instant (last pts <= target)."""
    import av

    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    targets = [start + (k + 0.5) * duration / frames for k in range(frames)]
    out: list[Image.Image] = []
    decoded, last_time, it, prev, pending = 0, 0.0, None, None, None
    try:
        for t in targets:
            if it is None or t - last_time > SEEK_GAP:
                container.seek(int(t / stream.time_base), stream=stream, backward=True)
                it, prev, pending = container.decode(stream), None, None
            while True:
                if pending is None:
                    pending = next(it, None)
                    if pending is None:  # end of stream: the last frame stays on screen
                        break
                    decoded += 1
                    if decoded > max_frames:
                        raise InputError(f"{name}: needed more than {max_frames} decoded frames to sample "
                                         f"{frames} (too few keyframes?); re-encode it or raise "
                                         "ANYMAL_MAX_VIDEO_FRAMES")
                if prev is not None and pending.time is not None and pending.time > t + _EPS:
                    break  # shown after t: keep it for a later target
                prev, pending = pending, None
            if prev is None:
                raise InputError(f"{name}: no decodable video frames near {t:.2f} s")
            out.append(_to_pil(prev, max_side))
            last_time = prev.time if prev.time is not None else t
    except av.error.FFmpegError as e:
        raise InputError(f"{name}: corrupt video stream: {_why(e)}") from None
    return out


def _by_count(item: Any, name: str, frames: int, max_side: int, max_frames: int) -> list[Image.Image]:
    """Unknown duration: count packets (no decoding), then decode up to the last sampled frame."""
    import av

    n = 0
    with _open(item, name) as c:
        for p in c.demux(video=0):
            n += bool(p.size)
            if n > max_frames:
                raise InputError(f"{name}: more than {max_frames} frames and no known duration "
                                 "(raise ANYMAL_MAX_VIDEO_FRAMES)")
    if n == 0:
        raise InputError(f"{name}: the video stream has no frames")
    want = sample_indices(n, frames)
    got: dict[int, Image.Image] = {}
    with _open(item, name) as c:
        try:
            for i, f in enumerate(c.decode(video=0)):
                if i in want:
                    got[i] = _to_pil(f, max_side)
                if i >= want[-1]:
                    break
        except av.error.FFmpegError as e:
            raise InputError(f"{name}: corrupt video stream: {_why(e)}") from None
    if not got:
        raise InputError(f"{name}: no decodable video frames")
    last = got[max(got)]  # fewer decodable frames than packets: repeat the last one
    return [got.get(i, last) for i in want]


def _video_stream(container, name: str):
    """The container's first video stream, checked for size."""
    if not container.streams.video:
        raise InputError(f"{name}: no video stream (audio-only or not a video file)")
    stream = container.streams.video[0]
    _check_size(stream, name)
    return stream


def video_seconds(item: Any) -> float | None:
    """The clip's duration from its header (None when the container does not say), opened as load_video would."""
    name = describe(item)
    with _open(item, name) as container:
        return _duration(container, _video_stream(container, name))


def load_video(item: Any, frames: int = 4, max_side: int = DECODE_MAX_SIDE, max_seconds: float = MAX_VIDEO_SECONDS,
               max_frames: int | None = None) -> list[Image.Image]:
    """Path / bytes / list of frames (PIL or HxWx3 uint8) / [F,H,W,3] uint8 array -> `frames` RGB images.

    Frames are sampled uniformly: the one shown at the centre of each of `frames` equal time
    segments (for a constant-rate clip of n frames: index floor((k + 0.5) * n / frames)). Short
    clips repeat frames. Decoded frames are downscaled to at most `max_side` px on their long side.
    `max_frames` (default `ANYMAL_MAX_VIDEO_FRAMES`) caps the frames decoded: the work bound.
    """
    max_frames = max_frames or MAX_VIDEO_FRAMES
    if frames < 1:
        raise InputError(f"frames must be >= 1, got {frames}")
    name = describe(item)
    if isinstance(item, np.ndarray) or (isinstance(item, (list, tuple)) and item
                                         and isinstance(item[0], (Image.Image, np.ndarray))):
        if isinstance(item, np.ndarray) and (item.ndim != 4 or item.shape[-1] != 3 or item.dtype != np.uint8):
            raise InputError(f"{name}: expected an [F,H,W,3] uint8 array of frames, got {item.dtype} {item.shape}")
        if len(item) == 0:
            raise InputError(f"{name}: no frames")
        return [load_image(item[i]) for i in sample_indices(len(item), frames)]
    if isinstance(item, (list, tuple)):
        raise InputError(f"{name}: expected a video file, bytes, or a non-empty list of frames")
    with _open(item, name) as container:
        stream = _video_stream(container, name)
        stream.thread_type = "AUTO"
        pixels = stream.codec_context.width * stream.codec_context.height
        max_frames = max(1, min(max_frames, int(MAX_VIDEO_DECODE_PIXELS // pixels)))
        duration = _duration(container, stream)
        if duration is not None:
            _check_seconds(duration, max_seconds, name)
        if duration and duration > 0:
            return _by_time(container, stream, duration, frames, max_side, max_frames, name)
    return _by_count(item, name, frames, max_side, max_frames)


def load_video_audio(item: Any, sample_rate: int = 16000, max_seconds: float = MAX_VIDEO_SECONDS) -> np.ndarray | None:
    """The clip's first audio track as mono float32 at `sample_rate` (PyAV decode + resample); None
    when the file has no audio stream or it decodes to no samples. Silent tracks are returned as they are."""
    import av

    name = describe(item)
    with _open(item, name) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        duration = _duration(container, stream)
        if duration is not None:
            _check_seconds(duration, max_seconds, name)
        try:  # duration unknown or wrong: still bounded
            wave = decode_audio_stream(container, stream, sample_rate, max_seconds,
                                       lambda s: _check_seconds(s, max_seconds, name))
        except av.error.FFmpegError as e:
            raise InputError(f"{name}: corrupt audio stream: {_why(e)}") from None
    return np.ascontiguousarray(wave) if wave.size else None


class VideoEncoder(Encoder):
    """`frames` uniformly sampled frames through a frozen image encoder; tokens are frame-major.

    Output [B, frames * N, D] for an image encoder of N tokens; `grid` is the per-frame grid
    (projectors pool each frame separately, keeping frame order).
    """

    def __init__(self, image: Encoder, modality: str, frames: int = 4):
        super().__init__()
        if frames < 1:
            raise InputError(f"a video encoder needs frames >= 1, got {frames}")
        if not image.fixed_input:
            raise ConfigError(f"{image.id} makes features per picture at its own size: it cannot read video frames; "
                              "use efficientnet-lite0 or the tiled encoder for video")
        self.inner, self.frames = image, frames
        self.modality, self.id = modality, f"{image.id}@{frames}f"
        self.dim, self.grid, self.varies = image.dim, image.grid, image.varies
        self.num_tokens = frames * image.num_tokens

    @property
    def preprocess_id(self) -> str:  # read each time: the image encoder's input resolution may change
        return f"{self.inner.preprocess_id}|uniform{self.frames}f-centres-max{DECODE_MAX_SIDE}"

    def preprocess(self, item: Any) -> torch.Tensor:
        return torch.stack([self.inner.preprocess(f) for f in load_video(item, self.frames)])  # [F, C, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f = x.shape[:2]
        if f != self.frames:
            raise InputError(f"video encoder {self.id}: expected {self.frames} frames, got input {tuple(x.shape)}")
        # a composed image encoder is told the frames of a clip are consecutive (its frame-motion part reads them)
        y = self.inner(x.flatten(0, 1), f) if hasattr(self.inner, "parts") else self.inner(x.flatten(0, 1))  # [B*F, N, D]
        return y.reshape(b, f * y.shape[1], y.shape[2])

    def facts(self) -> dict:
        return {**super().facts(), "frames": self.frames, "image_encoder": self.inner.id}


@WRAPPERS.register("frames", "uniformly sampled frames of a clip, each through the image encoder")
def _frames(name: str, inner: Encoder, modality: str, frames: int = 4) -> VideoEncoder:
    return VideoEncoder(inner, modality, frames)
