"""Safe decoding of user media. Every failure becomes an `InputError` that names the input."""
from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError, TooLargeError
from ..modalities import AUDIO

# 40 megapixels by default: enough for phone photos; a 10000x10000 bomb is refused before decoding.
MAX_IMAGE_PIXELS = int(os.environ.get("ANYMAL_MAX_IMAGE_PIXELS", 40_000_000))
# A progressive JPEG is decoded once per scan: ordinary ones have about 10, a crafted one with 20,000
# repeated scans under the pixel limit costs 45 s of CPU. More scans than this are refused unread.
MAX_JPEG_SCANS = 100
# Pillow's own errors while reading a header: a PNG text chunk that inflates past its limit is a ValueError
_OPEN_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError)


def describe(item: Any) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    return f"<in-memory {type(item).__name__}>"


def as_source(item: Any, expected: str) -> io.BytesIO | Path:
    """Bytes or an existing, readable, non-empty regular file, ready for a decoder."""
    if isinstance(item, (bytes, bytearray)):
        return io.BytesIO(item)
    if not isinstance(item, (str, Path)):
        raise InputError(f"{describe(item)}: expected a file path or bytes holding {expected}")
    path = Path(item)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():  # a directory, FIFO or device: never opened (a FIFO would block, /dev/zero never ends)
        raise InputError(f"{path}: not a regular file, expected {expected}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes), expected {expected}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied (the file is not readable)")
    return path


def load_image(item: Any, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Path / bytes / PIL image / HxWx3 uint8 array -> RGB PIL image (alpha composited on `background`)."""
    name = describe(item)
    if isinstance(item, Image.Image):
        img = item
    elif isinstance(item, np.ndarray):
        if item.ndim not in (2, 3) or item.dtype != np.uint8:
            raise InputError(f"{name}: expected an HxW or HxWxC uint8 array, got {item.dtype} {item.shape}")
        img = Image.fromarray(item)
    else:
        src = as_source(item, "an image")
        try:
            with warnings.catch_warnings():  # our own pixel limit below replaces PIL's warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(src)  # lazy: reads the header only
        except Image.DecompressionBombError as e:
            raise TooLargeError(f"{name}: {e} (downscale it)") from None
        except UnidentifiedImageError:
            raise InputError(f"{name}: not a readable image (PNG, JPEG, WebP, GIF, BMP, TIFF...)") from None
        except _OPEN_ERRORS as e:
            raise InputError(f"{name}: cannot open image: {e}") from None
        _check_scans(img.format, src, name)
    w, h = img.size
    if w * h == 0:
        raise InputError(f"{name}: the image is {w}x{h} (no pixels)")
    if w * h > MAX_IMAGE_PIXELS:
        raise TooLargeError(
            f"{name}: {w}x{h} = {w * h / 1e6:.0f} MP exceeds the {MAX_IMAGE_PIXELS / 1e6:.0f} MP limit "
            "(downscale it, or raise ANYMAL_MAX_IMAGE_PIXELS)"
        )
    try:
        img.load()
        if img.mode in ("RGBA", "LA", "P", "PA"):
            img = img.convert("RGBA")
            canvas = Image.new("RGBA", img.size, background + (255,))
            img = Image.alpha_composite(canvas, img)
        return img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: corrupt or truncated image: {e}") from None


def _check_scans(kind: str | None, src: io.BytesIO | Path, name: str) -> None:
    """A JPEG's scan count, from its bytes (a start-of-scan marker cannot occur inside entropy-coded
    data, where every 0xFF byte is stuffed), before anything is decoded."""
    if kind != "JPEG":
        return
    data = src.getbuffer() if isinstance(src, io.BytesIO) else src.read_bytes()
    scans = bytes(data).count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise TooLargeError(f"{name}: a JPEG of {scans} scans; at most {MAX_JPEG_SCANS} are decoded "
                            "(re-save it as a baseline JPEG or a PNG)")


def image_megapixels(item: Any) -> float:
    """Width x height / 1e6 from the image's header (nothing decoded); a decompression bomb counts as huge.
    A JPEG with more scans than anyone decodes is refused here too."""
    name = describe(item)
    src = as_source(item, "an image")
    try:
        with Image.open(src) as img:
            (w, h), kind = img.size, img.format
    except Image.DecompressionBombError:
        return float("inf")
    except _OPEN_ERRORS:
        raise InputError(f"{name}: not a readable image (PNG, JPEG, WebP, GIF, BMP, TIFF...)") from None
    _check_scans(kind, src, name)
    return w * h / 1e6


def audio_seconds(item: Any) -> float:
    """A recording's duration from its header."""
    import soundfile as sf

    src = as_source(item, AUDIO.name)
    try:
        info = sf.info(src)
    except Exception:  # libsndfile raises its own error types
        raise InputError(f"{describe(item)}: not readable audio ({', '.join(AUDIO.formats)})") from None
    if not _header_untrusted(info):
        return float(info.duration)
    import av

    try:
        with _open_av(src, info.format.lower()) as c:
            return _frames_seconds(c, c.streams.audio[0])
    except (av.error.FFmpegError, IndexError):
        raise InputError(f"{describe(item)}: not readable audio ({info.format})") from None


def load_npy(path: Path, name: str) -> np.ndarray:
    """A numeric .npy array, its header checked against the file first: a header that declares a huge
    shape over a few bytes of data was a MemoryError, not an error that names the file."""
    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            read = {1: fmt.read_array_header_1_0, 2: fmt.read_array_header_2_0}.get(fmt.read_magic(f)[0])
            if read is None:
                raise ValueError("a .npy format version other than 1 or 2")
            shape, _, dtype = read(f, max_header_size=10_000)
            data_bytes = path.stat().st_size - f.tell()
    except (ValueError, OSError, SyntaxError, TypeError) as e:
        raise InputError(f"{name}: not a readable .npy array ({e})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InputError(f"{name}: not a readable .npy array (it holds {dtype}; expected numbers)")
    declared = math.prod(shape) * dtype.itemsize
    if declared > data_bytes:
        raise InputError(f"{name}: not a readable .npy array (the header declares shape {list(shape)}, "
                         f"{declared:,} bytes, but the file holds {data_bytes:,} bytes of data)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"{name}: not a readable .npy array ({e})") from None


def letterbox(img: Image.Image, size: int, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Fit inside a size x size square keeping the aspect ratio (LLaVA-1.5 pads rather than crops)."""
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(img.resize((nw, nh), Image.BICUBIC), ((size - nw) // 2, (size - nh) // 2))
    return canvas


# ---- audio ---------------------------------------------------------------------------------
MAX_AUDIO_SECONDS = float(os.environ.get("ANYMAL_MAX_AUDIO_SECONDS", 30.0))


def load_audio(item: Any, sample_rate: int = 16000, max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Path / bytes / (waveform, rate) -> mono float32 at `sample_rate` (soundfile decode, soxr resample).

    WAV/FLAC/OGG/MP3 (libsndfile). Multi-channel audio is averaged to mono. Empty, silent, corrupt
    and over-long inputs are errors that name the input (longer clips are refused, not cut: a silent
    truncation would answer about part of the file).
    """
    import soundfile as sf
    import soxr

    name = describe(item)
    if isinstance(item, tuple) and len(item) == 2:
        wave, rate = _waveform(item)
    else:
        src = as_source(item, AUDIO.name)
        _check_wav_complete(src, name)
        try:
            info = sf.info(src)
            if isinstance(src, io.BytesIO):
                src.seek(0)
            wave, rate = _decode_av(src, name, max_seconds, info.format.lower()) if _header_untrusted(info) \
                else _read_bounded(src, name, max_seconds)
        except sf.LibsndfileError as e:
            raise InputError(f"{name}: not a readable audio file (WAV, FLAC, OGG, MP3): {e}") from None
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise InputError(f"{name}: expected a waveform [samples] or [samples, channels], got shape {list(wave.shape)}")
    if wave.size == 0:
        raise InputError(f"{name}: the audio has no samples")
    if len(wave) / rate > max_seconds:
        raise TooLargeError(f"{name}: {len(wave) / rate:.1f} s of audio exceeds the {max_seconds:.0f} s limit")
    if not np.isfinite(wave).all():
        raise InputError(f"{name}: the audio contains NaN or infinite samples")
    if float(np.abs(wave).max()) < 1e-4:
        raise InputError(f"{name}: the audio is silent (peak amplitude below -80 dBFS)")
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def _too_long(name: str, seconds: float, max_seconds: float) -> TooLargeError:
    return TooLargeError(f"{name}: {seconds:.1f} s of audio exceeds the {max_seconds:.0f} s limit (trim it, "
                         "or raise ANYMAL_MAX_AUDIO_SECONDS)")


def _read_bounded(src, name: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """libsndfile's samples, read until the data ends, never more than the limit: the length a header
    declares is not trusted (a FLAC streamed without its total says "unknown", a huge number here)."""
    import soundfile as sf

    with sf.SoundFile(src) as f:
        rate, limit, blocks, total = f.samplerate, int(max_seconds * f.samplerate) + 1, [], 0
        while total <= limit:
            block = f.read(65536, dtype="float32", always_2d=True)
            if not len(block):
                break
            blocks.append(block)
            total += len(block)
    if total > limit:
        raise _too_long(name, total / rate, max_seconds)  # "at least": the rest was never read
    return (np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)), rate


def _header_untrusted(info) -> bool:
    """Lengths libsndfile takes from a header alone: an MP3's Xing frame count (10 frames over two
    hours of them read as 0.58 s), and a FLAC streamed without its total ("unknown": it cannot read
    those at all). Such files are measured from their frames and decoded by FFmpeg instead."""
    return info.format == "MP3" or info.frames >= 2**62


def _frames_seconds(container, stream) -> float:
    """A stream's real length, from its packets (demuxed, not decoded)."""
    return float(sum(p.duration or 0 for p in container.demux(stream)) * stream.time_base)


def _open_av(src, fmt: str):
    import av

    if isinstance(src, io.BytesIO):
        src.seek(0)
    return av.open(src if isinstance(src, io.BytesIO) else str(src), format=fmt)


def decode_audio_stream(container, stream, rate: int, max_seconds: float, too_long) -> np.ndarray:
    """A PyAV audio stream decoded to mono float32 at `rate`, one pass, stopped as soon as it holds more
    than `max_seconds` (`too_long(seconds)` is raised then): whatever its header said, never more is
    decoded. FFmpeg's own errors are the caller's to name."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks, total, limit = [], 0, int(max_seconds * rate) + 1
    for frame in container.decode(stream):
        for r in resampler.resample(frame):
            chunks.append(r.to_ndarray().reshape(-1))
            total += chunks[-1].size
        if total > limit:
            raise too_long(total / rate)
    chunks += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)


def _decode_av(src, name: str, max_seconds: float, fmt: str) -> tuple[np.ndarray, int]:
    import av

    try:
        with _open_av(src, fmt) as c:
            stream = c.streams.audio[0]
            rate = stream.codec_context.sample_rate
            wave = decode_audio_stream(c, stream, rate, max_seconds, lambda s: _too_long(name, s, max_seconds))
    except (av.error.FFmpegError, IndexError) as e:
        raise InputError(f"{name}: not a readable {fmt.upper()} file: {e}") from None
    return wave, rate


def _waveform(item: tuple) -> tuple[np.ndarray, int]:
    """`(waveform, rate)` in memory: a positive whole rate, samples first ([samples] or [samples, channels])."""
    wave, rate = item
    if isinstance(wave, (str, Path, bytes)):
        raise InputError(f"{describe(wave)}: a sample rate goes with an in-memory waveform; "
                         "an audio file carries its own (drop the rate)")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not np.isfinite(rate) \
            or rate < 1 or rate != int(rate):
        raise InputError(f"<in-memory waveform>: rate must be a whole number of Hz >= 1, got {rate!r}")
    try:
        wave = np.asarray(wave, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError("<in-memory waveform>: expected an array of numbers") from None
    if wave.ndim == 2 and wave.shape[0] < wave.shape[1] and wave.shape[0] <= 8:
        raise InputError(f"<in-memory waveform>: shape {list(wave.shape)} looks channels-first; "
                         "expected [samples, channels] (pass wave.T)")
    return wave, int(rate)


def _check_wav_complete(src: io.BytesIO | Path, name: str) -> None:
    """A WAV whose data chunk declares more bytes than the file holds was cut short: libsndfile would
    silently read what is there, and the answer would be about part of the recording. Files a few
    bytes short of their header (1% or less, common in the wild) are read as they are."""
    if isinstance(src, io.BytesIO):
        head = src.getvalue()[:4096]
    else:
        with src.open("rb") as f:
            head = f.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    size = len(src.getvalue()) if isinstance(src, io.BytesIO) else src.stat().st_size
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk == b"data":
            held = size - pos - 8
            if length != 0xFFFFFFFF and held < 0.99 * length:  # 0xFFFFFFFF: streamed, length unknown
                raise InputError(f"{name}: truncated WAV: its data chunk declares {length} bytes, "
                                 f"the file holds {held}")
            return
        pos += 8 + length + (length & 1)
