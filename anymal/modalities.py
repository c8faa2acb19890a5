"""What a modality is, one registered record each: its name, how users hand it in (CLI flag, manifest
field, server content part and formats) and what it brings along (a sample rate, a soundtrack).

Code that needs to know about modalities iterates over `MODALITIES` or reads a record's fields, rather
than comparing names. Adding a modality: a record here and an encoder (docs/add-a-modality.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from .registry import Registry


@dataclass(frozen=True)
class Modality:
    name: str  # the part type in messages, the CLI flag (--NAME), the REPL command (/NAME)
    summary: str  # what an input is, for help texts
    list_key: str  # the LLaVA-style manifest field that lists its files ("images": [...])
    part: str  # the OpenAI-style content part the server reads it from ({"type": part, part: {...}})
    formats: tuple[str, ...]  # payload `format`s the server takes (file suffixes); () = sniffed from the bytes
    takes_rate: bool = False  # a signal without its own clock may come with "rate" (Hz): (input, rate)
    soundtrack: str | None = None  # the modality a part's own sound track is read as (`"audio": true`)
    wraps: tuple[str, str] | None = None  # (registered encoder wrapper, modality): read through that
    # modality's encoder by the wrapper, e.g. ("frames", "image"): each sampled frame through the image encoder


MODALITIES: Registry[Modality] = Registry("modality")
IMAGE = MODALITIES.add("image", Modality("image", "a picture (PNG, JPEG, WebP, GIF, BMP, TIFF)", "images", "image_url",
                                         ()))
AUDIO = MODALITIES.add("audio", Modality("audio", "speech or sound (WAV, FLAC, OGG, MP3)", "audios", "input_audio",
                                         ("wav", "mp3", "flac", "ogg")))
VIDEO = MODALITIES.add("video", Modality("video", "a clip (MP4, WebM, MKV, AVI, MOV)", "videos", "video",
                                         ("mp4", "webm", "mkv", "avi", "mov"), soundtrack="audio", wraps=("frames", IMAGE.name)))
IMU = MODALITIES.add("imu", Modality("imu", "6-axis motion (CSV with t,ax,ay,az,gx,gy,gz, or .npy [T, 6])", "imus",
                                     "imu", ("csv", "npy"), takes_rate=True))
POINTS = MODALITIES.add("points", Modality("points", "a 3-D mesh (PLY, OBJ, OFF, STL) or .npy [N, 3] point cloud",
                                           "points", "points", ("ply", "obj", "off", "stl", "npy")))
