"""What a modality is, one registered record each: its name, how users hand it in (CLI flag, manifest
field, server content part and formats) and what it brings along (a sample rate, a soundtrack).

Code that needs to know about modalities iterates over `MODALITIES` or reads a record's fields, rather
than comparing names. Adding a modality: a record here and an encoder (docs/add-a-modality.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from .registry import Registry


@dataclass(frozen=True)
class Size:
    """How big an input is, measured cheaply before it is queued, and the most a server takes by default."""
    probe: str  # "module:function" (path or bytes -> amount), imported on first use
    unit: str  # what the amount counts: "MP", "s", "samples"
    limit: float


@dataclass(frozen=True)
class Modality:
    name: str  # the part type in messages, the CLI flag (--NAME), the REPL command (/NAME)
    summary: str  # what an input is, for help texts
    list_key: str  # the LLaVA-style manifest field that lists its files ("images": [...])
    part: str  # the OpenAI-style content part the server reads it from ({"type": part, part: {...}})
    formats: tuple[str, ...]  # payload `format`s the server takes (file suffixes); () = sniffed from the bytes
    encoder: str  # the registered encoder a model config gets when it names none
    hf_encoder: str | None = None  # "module:Class" reading Hugging Face ids / directories of this modality
    size: Size | None = None  # the server's limit on one input (None: the body size limit only)
    by_url: bool = False  # the server part holds a URL (OpenAI's image_url), not base64 data + format
    in_memory: bool = False  # its decoder reads bytes; else the server hands it a temp file named by the format
    takes_rate: bool = False  # a signal without its own clock may come with "rate" (Hz): (input, rate)
    soundtrack: str | None = None  # the modality a part's own sound track is read as (`"audio": true`)
    # "module:function": payload -> the decoded input every encoder part reads; the server decodes each
    # input once, in its request threads, never in the thread that decodes tokens for everyone
    decode: str | None = None
    wraps: tuple[str, str] | None = None  # (registered encoder wrapper, modality): read through that
    # modality's encoder by the wrapper, e.g. ("frames", "image"): each sampled frame through the image encoder


MODALITIES: Registry[Modality] = Registry("modality")
IMAGE = MODALITIES.add("image", Modality(
    "image", "a picture (PNG, JPEG, WebP, GIF, BMP, TIFF)", "images", "image_url", (),
    encoder="efficientnet-lite0", hf_encoder="anymal.encoders.hf_vision:HFVisionEncoder",
    size=Size("anymal.encoders.media:image_megapixels", "MP", 20.0), by_url=True, in_memory=True,
    decode="anymal.encoders.media:load_image"))
AUDIO = MODALITIES.add("audio", Modality(
    "audio", "speech or sound (WAV, FLAC, OGG, MP3)", "audios", "input_audio", ("wav", "mp3", "flac", "ogg"),
    encoder="whisper-tiny.en", hf_encoder="anymal.encoders.audio:HFAudioEncoder",
    size=Size("anymal.encoders.media:audio_seconds", "s", 30.0), in_memory=True))
VIDEO = MODALITIES.add("video", Modality(
    "video", "a clip (MP4, WebM, MKV, AVI, MOV)", "videos", "video", ("mp4", "webm", "mkv", "avi", "mov"),
    encoder="efficientnet-lite0", soundtrack="audio", wraps=("frames", IMAGE.name),
    size=Size("anymal.encoders.video:video_seconds", "s", 120.0)))
IMU = MODALITIES.add("imu", Modality(
    "imu", "6-axis motion (CSV with t,ax,ay,az,gx,gy,gz, or .npy [T, 6])", "imus", "imu", ("csv", "npy"),
    encoder="imu-cnn", takes_rate=True, size=Size("anymal.encoders.motion:imu_samples", "samples", 50 * 600)))
POINTS = MODALITIES.add("points", Modality(
    "points", "a 3-D mesh (PLY, OBJ, OFF, STL) or .npy [N, 3] point cloud", "points", "points",
    ("ply", "obj", "off", "stl", "npy"), encoder="pointnet"))
