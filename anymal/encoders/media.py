"""Safe decoding of user media. Every failure becomes an `InputError` that names the input."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

# 40 megapixels by default: enough for phone photos; a 10000x10000 bomb is refused before decoding.
MAX_IMAGE_PIXELS = int(os.environ.get("ANYMAL_MAX_IMAGE_PIXELS", 40_000_000))


def describe(item: Any) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    return f"<in-memory {type(item).__name__}>"


def as_source(item: Any, expected: str) -> io.BytesIO | Path:
    """Bytes or an existing, non-empty file path, ready for a decoder."""
    if isinstance(item, (bytes, bytearray)):
        return io.BytesIO(item)
    path = Path(item)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes), expected {expected}")
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
            raise InputError(f"{name}: {e} (downscale it)") from None
        except UnidentifiedImageError:
            raise InputError(f"{name}: not a readable image (PNG, JPEG, WebP, GIF, BMP, TIFF...)") from None
        except OSError as e:
            raise InputError(f"{name}: cannot open image: {e}") from None
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise InputError(
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
        wave, rate = np.asarray(item[0], dtype=np.float32), int(item[1])
    else:
        src = as_source(item, "audio")
        try:
            info = sf.info(src)
            if info.frames / max(info.samplerate, 1) > max_seconds:
                raise InputError(f"{name}: {info.frames / info.samplerate:.1f} s of audio exceeds the "
                                 f"{max_seconds:.0f} s limit (trim it, or raise ANYMAL_MAX_AUDIO_SECONDS)")
            if isinstance(src, io.BytesIO):
                src.seek(0)
            wave, rate = sf.read(src, dtype="float32", always_2d=True)
        except sf.LibsndfileError as e:
            raise InputError(f"{name}: not a readable audio file (WAV, FLAC, OGG, MP3): {e}") from None
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.size == 0:
        raise InputError(f"{name}: the audio has no samples")
    if len(wave) / rate > max_seconds:
        raise InputError(f"{name}: {len(wave) / rate:.1f} s of audio exceeds the {max_seconds:.0f} s limit")
    if not np.isfinite(wave).all():
        raise InputError(f"{name}: the audio contains NaN or infinite samples")
    if float(np.abs(wave).max()) < 1e-4:
        raise InputError(f"{name}: the audio is silent (peak amplitude below -80 dBFS)")
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)
