"""IMU (6-axis motion) input files, documented format, with errors that name file, line and column.

CSV: a header row, columns `ax,ay,az` (accelerometer, m/s^2) and `gx,gy,gz` (gyroscope, rad/s), plus
either a `t` column (seconds, increasing) or a sample rate given by the caller (`--imu-rate HZ`).
Extra columns are ignored. `.npy`: a float array [T, 6] in the same column order, with a rate.
In memory: `(array [T, 6], rate)`. Every input is resampled (linear interpolation) to `target_rate`.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, TooLargeError
from .media import as_source, load_npy

COLUMNS = ("ax", "ay", "az", "gx", "gy", "gz")
MAX_MAGNITUDE = 1e4  # 1,000 g or 10,000 rad/s: beyond any sensor, a unit or parsing mistake
MAX_IMU_SECONDS = float(os.environ.get("ANYMAL_MAX_IMU_SECONDS", 600.0))
# 600 s at 1 kHz in long lines: a 1 GB CSV was read whole (5.7 GB of memory) before any limit applied
MAX_IMU_CSV_BYTES = int(os.environ.get("ANYMAL_MAX_IMU_CSV_BYTES", 64 * 2**20))
# a row of t and six numbers is under 200 characters; extra columns a phone app exports fit easily
MAX_IMU_CSV_LINE = 16_384
_LONG_LINE = re.compile(rb"[^\n]{%d}" % (MAX_IMU_CSV_LINE + 1))


def _text(path: Path) -> str:
    """The CSV as text (a UTF-8 byte-order mark is dropped); undecodable bytes name their line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    _check_csv_lines(raw, str(path))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: byte 0x{raw[e.start]:02x} is not UTF-8 text; expected a CSV "
                         f"with columns t,{','.join(COLUMNS)}") from None


def _check_csv_size(src: io.BytesIO | Path) -> None:
    size = src.getbuffer().nbytes if isinstance(src, io.BytesIO) else src.stat().st_size
    if size > MAX_IMU_CSV_BYTES:
        raise TooLargeError(f"{_source_name(src)}: {size:,} bytes of CSV; at most "
                            f"{MAX_IMU_CSV_BYTES:,} are read (raise ANYMAL_MAX_IMU_CSV_BYTES)")


def _source_name(src: io.BytesIO | Path) -> str:
    return str(src) if isinstance(src, Path) else getattr(src, "name", "the IMU CSV")


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    _check_csv_size(path)
    try:
        return _parse_csv(path)
    except csv.Error as e:  # a field past the csv module's limit, an unterminated quote...
        raise InputError(f"{path}: not a readable CSV ({e}); expected columns t,{','.join(COLUMNS)}") from None


def _parse_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with io.StringIO(_text(path), newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise InputError(f"{path}:1: header lacks column(s) {', '.join(missing)}; expected "
                             f"{','.join(COLUMNS)} (+ optional t); got {','.join(header) or 'nothing'}")
        cols = [header.index(c) for c in COLUMNS]
        tcol = header.index("t") if "t" in header else None
        rows, times = [], []
        for line, row in enumerate(reader, 2):
            if not row or not any(x.strip() for x in row):
                continue
            try:
                rows.append([float(row[i]) for i in cols])
                if tcol is not None:
                    times.append(float(row[tcol]))
            except (ValueError, IndexError):
                bad = next((header[i] for i in cols + ([tcol] if tcol is not None else [])
                            if i >= len(row) or not _is_float(row[i])), "?")
                raise InputError(f"{path}:{line}: column {bad!r}: expected a number") from None
    return np.asarray(rows, np.float64).reshape(-1, 6), (np.asarray(times) if tcol is not None else None)


def imu_samples(item: Any) -> int:
    """How many samples a recording holds, without parsing it: a CSV's lines, an .npy's first dimension."""
    src = as_source(item, "an IMU recording")
    if isinstance(src, Path) and src.suffix.lower() == ".npy":
        try:
            return int(np.load(src, allow_pickle=False, mmap_mode="r").shape[0])
        except (OSError, ValueError, IndexError):
            raise InputError(f"{src.name}: not a readable .npy array") from None
    _check_csv_size(src)
    data = src.getvalue() if isinstance(src, io.BytesIO) else src.read_bytes()
    _check_csv_lines(data, _source_name(src))
    return data.count(b"\n") + (not data.endswith(b"\n"))


def _check_csv_lines(data: bytes, name: str) -> None:
    """Refuse a line no IMU row needs before anything parses it: the server counts samples with this at
    the door, so a 140,000-character field costs a scan, not a queued request and a safety check."""
    long = _LONG_LINE.search(data)
    if long:
        line = data.count(b"\n", 0, long.start()) + 1
        raise InputError(f"{name}:{line}: a line of over {MAX_IMU_CSV_LINE:,} characters; an IMU CSV row (t,"
                         f"{','.join(COLUMNS)} and any extra columns) is at most that long")


def _check_rate(rate: Any, name: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not math.isfinite(rate) \
            or not 0 < rate <= 10_000:
        raise InputError(f"{name}: the sample rate must be a number of Hz in (0, 10000], got {rate!r}")


def _is_float(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def load_imu(item: Any, rate: float | None = None, target_rate: float = 50.0,
             max_seconds: float = MAX_IMU_SECONDS) -> np.ndarray:
    """CSV / .npy path or (array, rate) -> float32 [T, 6] at `target_rate` Hz."""
    name = str(item) if isinstance(item, (str, Path)) else "<in-memory IMU>"
    times = None
    if rate is not None:
        _check_rate(rate, name)
    if isinstance(item, tuple) and len(item) == 2:
        _check_rate(item[1], name)
        try:
            data, rate = np.asarray(item[0], np.float64), float(item[1])
        except (TypeError, ValueError):
            raise InputError(f"{name}: expected an array [T, 6] of numbers") from None
    else:
        path = as_source(item, "IMU CSV or .npy")
        if not isinstance(path, Path):
            raise InputError("in-memory IMU data must be given as (array [T, 6], rate)")
        if path.suffix.lower() == ".npy":
            data = load_npy(path, str(path)).astype(np.float64)
        else:
            data, times = _read_csv(path)
    if data.ndim != 2 or data.shape[1] != 6:
        raise InputError(f"{name}: expected [T, 6] samples ({','.join(COLUMNS)}), got shape {list(data.shape)}")
    if len(data) < 2:
        raise InputError(f"{name}: needs at least 2 samples, got {len(data)}")
    if not np.isfinite(data).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    if np.abs(data).max() > MAX_MAGNITUDE:
        raise InputError(f"{name}: values up to {np.abs(data).max():.3g}; accelerometer (m/s^2) and gyroscope "
                         f"(rad/s) readings beyond {MAX_MAGNITUDE:g} are not physical")
    if times is None:
        if rate is None:
            raise InputError(f"{name}: no 't' column, so a sample rate is needed (e.g. --imu-rate 50)")
        times = np.arange(len(data)) / rate
    elif not np.isfinite(times).all():
        k = int(np.argmin(np.isfinite(times))) + 2  # CSV line of the offending sample
        raise InputError(f"{name}:{k}: column 't': expected a finite time in seconds")
    elif np.any(np.diff(times) <= 0):
        k = int(np.argmax(np.diff(times) <= 0)) + 3  # CSV line of the offending sample
        raise InputError(f"{name}:{k}: column 't': timestamps must increase")
    duration = float(times[-1] - times[0])
    if duration > max_seconds:
        raise TooLargeError(f"{name}: {duration:.0f} s of IMU data exceeds the {max_seconds:.0f} s limit")
    grid = times[0] + np.arange(int(np.floor(duration * target_rate)) + 1) / target_rate
    out = np.stack([np.interp(grid, times, data[:, j]) for j in range(6)], 1)
    return out.astype(np.float32)
