"""What an MP4/MOV file's header asks of its reader, counted before FFmpeg opens it.

FFmpeg builds its sample index while *opening* a file, from the sample tables the header declares: an
MP4 of 1.6 KB whose `stsz` box declares 50 million samples costs gigabytes before any of our checks can
run, and a thousand duplicated tracks cost a gigabyte more. So the ISO base media boxes are walked here
first (headers only, never the media data) and a file that declares more tracks or samples than any
clip we take could hold is refused unopened.
"""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import InputError, TooLargeError

MAX_TRACKS = 16
# 10 minutes (the longest clip taken) at 240 frames/s, plus its sound: far above any real clip we take
MAX_SAMPLES = int(os.environ.get("ANYMAL_MAX_VIDEO_SAMPLES", 1_000_000))
MAX_BOXES = 100_000  # headers walked in one file
# boxes that hold other boxes (moov/trak/... and fragments); every other box is skipped over unread
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"mvex", b"moof", b"traf", b"udta", b"dinf"}
ISO_BMFF = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"moof", b"styp", b"pdin", b"uuid"}


def _samples(kind: bytes, body: bytes) -> int:
    """The sample count a sample-table box declares (0 for the other boxes)."""
    if kind == b"stsz" and len(body) >= 12:
        return struct.unpack(">I", body[8:12])[0]
    if kind in (b"stz2", b"trun") and len(body) >= 8:
        return struct.unpack(">I", body[4:8])[0]
    if kind == b"stts" and len(body) >= 8:  # entries of (count, delta), as many as the box holds
        n = min(struct.unpack(">I", body[4:8])[0], (len(body) - 8) // 8)
        return int(np.frombuffer(body, ">u4", count=2 * n, offset=8)[0::2].sum(dtype=np.int64))
    return 0


class _Walk:
    def __init__(self, f, size: int, name: str):
        self.f, self.size, self.name = f, size, name
        self.boxes = self.tracks = self.samples = 0

    def run(self, start: int, end: int, depth: int = 0) -> None:
        pos = start
        while pos + 8 <= end:
            self.f.seek(pos)
            size, kind = struct.unpack(">I4s", self.f.read(8))
            head = 8
            if size == 1:  # a 64-bit size follows
                size, head = struct.unpack(">Q", self.f.read(8))[0], 16
            elif size == 0:  # to the end of the enclosing box
                size = end - pos
            if size < head or pos + size > end:
                return  # a truncated or damaged tail: FFmpeg reports what it can read of it
            self._box(kind, pos + head, pos + size, depth)
            pos += size

    def _box(self, kind: bytes, start: int, end: int, depth: int) -> None:
        self.boxes += 1
        if self.boxes > MAX_BOXES or depth > 16:
            raise TooLargeError(f"{self.name}: an MP4 header of more than {MAX_BOXES} boxes or 16 levels")
        self.tracks += kind == b"trak"
        if self.tracks > MAX_TRACKS:
            raise TooLargeError(f"{self.name}: an MP4 with more than {MAX_TRACKS} tracks")
        if kind in CONTAINERS:
            self.run(start, end, depth + 1)
        elif kind in (b"stsz", b"stz2", b"trun", b"stts"):
            self.f.seek(start)
            want = 8 + 8 * 2**20 if kind == b"stts" else 12  # stts: up to a million entries
            self.samples += _samples(kind, self.f.read(min(end - start, want)))
            if self.samples > MAX_SAMPLES:
                raise TooLargeError(f"{self.name}: the MP4 header declares more than {MAX_SAMPLES:,} samples "
                                    "(raise ANYMAL_MAX_VIDEO_SAMPLES for longer clips)")


def check_mp4_header(src: io.BytesIO | Path, name: str) -> None:
    """Refuse an MP4/MOV whose header declares more tracks or samples than a clip we take can hold;
    anything that is not an ISO base media file passes untouched (its own demuxer reads it)."""
    f = src if isinstance(src, io.BytesIO) else open(src, "rb")
    try:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        f.seek(0)
        first = f.read(8)
        if len(first) < 8 or first[4:8] not in ISO_BMFF:
            return
        _Walk(f, size, name).run(0, size)
    except struct.error:
        raise InputError(f"{name}: a damaged MP4 header") from None
    finally:
        f.seek(0)
        if f is not src:
            f.close()
