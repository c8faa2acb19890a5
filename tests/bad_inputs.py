"""A corpus of bad inputs per modality: each case writes one file and names what its error must say.

Run against the CLI, the Python API and the server (tests/test_hardening.py): every case must be a
clean, one-line input error (exit 2, an InputError, a 400/413) that names the problem, never a
traceback, a 500, or an answer about something else.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


@dataclass
class Case:
    modality: str
    name: str  # file name (its suffix is the declared format)
    write: Callable[[Path], None]
    says: str  # a piece of the error message
    rate: float | None = None  # an IMU rate given with the file


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def _text(text: str) -> Callable[[Path], None]:
    return lambda p: p.write_text(text)


def _npy(array) -> Callable[[Path], None]:
    return lambda p: np.save(p, array, allow_pickle=False)


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _wav(samples: np.ndarray, rate: int = 16000, declared: int | None = None) -> bytes:
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    n = len(data) if declared is None else declared
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 4 + len(fmt) + 8 + n) + b"WAVE" + fmt + b"data" + struct.pack("<I", n) + data


def progressive_jpeg(scans_repeated: int) -> bytes:
    """A real progressive JPEG whose last scan is repeated: the shape of the 854 KB, 20,000-scan bomb
    that cost 45 s of decoding under the pixel limit."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    last = data.rindex(b"\xff\xda")
    return data[:last] + data[last:-2] * scans_repeated + b"\xff\xd9"


def png_text_bomb() -> bytes:
    """A PNG whose compressed text chunk inflates past Pillow's limit."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * (PngImagePlugin.MAX_TEXT_CHUNK + 10), zip=True)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def mp4_clip() -> bytes:
    """16 gray frames at 8 fps, 64x48, as a real MP4."""
    import tempfile

    from anymal.data.builders.stamp_video import write_clip

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "clip.mp4"
        write_clip(path, [Image.new("RGB", (64, 48), (15 * i,) * 3) for i in range(16)], 8, None)
        return path.read_bytes()


def mp4_box(data: bytes, path: list[bytes]) -> tuple[int, int]:
    """(offset, size) of the ISO box at `path` (moov/trak/... from the top)."""
    start, end = 0, len(data)
    for kind in path:
        pos = start
        while data[pos + 4:pos + 8] != kind:
            pos += struct.unpack(">I", data[pos:pos + 4])[0]
            if pos + 8 > end:
                raise KeyError(kind)
        size = struct.unpack(">I", data[pos:pos + 4])[0]
        start, end = pos + 8, pos + size
    return start - 8, end - start + 8


def mp4_declaring_samples(count: int) -> bytes:
    """An MP4 whose sample-size box declares `count` samples of 1,000 bytes (the 1.6 KB memory bomb:
    FFmpeg indexes every declared sample while opening)."""
    data = bytearray(mp4_clip())
    pos, _ = mp4_box(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsz"])
    data[pos + 12:pos + 20] = struct.pack(">II", 1000, count)
    return bytes(data)


def mp4_of_tracks(copies: int) -> bytes:
    """An MP4 whose one track is repeated `copies` times more (1,000 cost ~1 GB to open)."""
    data = mp4_clip()
    moov, size = mp4_box(data, [b"moov"])
    trak, tsize = mp4_box(data, [b"moov", b"trak"])
    body = data[moov + 8:moov + size] + data[trak:trak + tsize] * copies
    return data[:moov] + struct.pack(">I4s", 8 + len(body), b"moov") + body + data[moov + size:]


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A float32 .npy header declaring `shape` (what follows it is up to the caller)."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple(shape)}, }}".encode()
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


_tone = np.sin(np.linspace(0, 400 * np.pi, 16000)).astype(np.float32) * 0.5
_imu_head = "t,ax,ay,az,gx,gy,gz\n"
_imu_row = "{t},0.1,9.8,0.2,0.01,0.02,0.03\n"
_imu_rows = "".join(_imu_row.format(t=i / 50) for i in range(100))
_ffconcat = "ffconcat version 1.0\nfile /etc/hostname\n"

CASES = [
    Case("image", "empty.png", _bytes(b""), "empty file"),
    Case("image", "text.png", _text("hello"), "not a readable image"),
    Case("image", "truncated.png", lambda p: p.write_bytes(_png(64, 64)[:80]), "truncated"),
    Case("audio", "text.wav", _text("hello"), "not a readable audio file"),
    Case("audio", "silent.wav", _bytes(_wav(np.zeros(16000, np.float32))), "silent"),
    Case("audio", "truncated.wav", _bytes(_wav(_tone, declared=64000)), "truncated WAV"),
    Case("video", "concat.mp4", _text(_ffconcat), "not a readable video container"),
    Case("video", "text.mp4", _text("hello"), "not a readable video container"),
    Case("video", "image.mp4", _bytes(_png(32, 32)), "not a readable video container"),
    Case("imu", "latin1.csv", _bytes((_imu_head + _imu_rows[:60] + "caf\xe9\n").encode("latin-1")), "not UTF-8"),
    Case("imu", "nan-t.csv", _text(_imu_head + _imu_rows.replace("0.04,", "nan,", 1)), "column 't'"),
    Case("imu", "header.csv", _text("a,b,c\n1,2,3\n"), "header lacks"),
    Case("imu", "word.csv", _text(_imu_head + _imu_rows + "1,x,2,3,4,5,6\n"), "expected a number"),
    Case("imu", "huge.csv", _text(_imu_head + _imu_rows.replace("9.8", "1e300", 1)), "not physical"),
    Case("imu", "strings.npy", _npy(np.array([["a"] * 6] * 4)), "not a readable .npy", rate=50.0),
    Case("imu", "nan-rate.npy", _npy(np.zeros((100, 6), np.float32)), "sample rate", rate=float("nan")),
    Case("imu", "inf-rate.npy", _npy(np.zeros((100, 6), np.float32)), "sample rate", rate=float("inf")),
    Case("imu", "zero-rate.npy", _npy(np.zeros((100, 6), np.float32)), "sample rate must be", rate=0.0),
    Case("points", "strings.npy", _npy(np.array([["a", "b", "c"]] * 8)), "expected numbers"),
    Case("points", "huge.npy", _npy(np.array([[1e308, 0, 0], [-1e308, 1, 0], [0, 0, 1]])), "coordinates up to"),
    Case("points", "nan.npy", _npy(np.array([[np.nan, 0, 0], [0, 1, 0], [0, 0, 1]])), "NaN"),
    Case("points", "flat.npy", _npy(np.ones((10, 3))), "degenerate"),
    Case("points", "text.ply", _text("hello"), "not a readable PLY"),
    # issue 33: inputs that bought minutes or gigabytes
    Case("image", "scans.jpg", _bytes(progressive_jpeg(20_000)), "scans"),
    Case("image", "text-bomb.png", _bytes(png_text_bomb()), "image"),
    Case("video", "samples.mp4", _bytes(mp4_declaring_samples(50_000_000)), "samples"),
    Case("video", "tracks.mp4", _bytes(mp4_of_tracks(1000)), "tracks"),
    Case("imu", "wide-field.csv", _text(_imu_head + "0," + "1" * 140_000 + ",0,0,0,0,0\n"), "a line of over 16,384"),
    Case("imu", "open-quote.csv", _text(_imu_head + '0,"1,0,0,0,0,0\n' + _imu_rows * 60), "not a readable CSV"),
    Case("imu", "declared.npy", _bytes(npy_header((10_000_000_000, 6)) + bytes(2400)), "header declares", rate=50.0),
    Case("points", "declared.npy", _bytes(npy_header((10_000_000_000, 3)) + bytes(2400)), "header declares"),
]
