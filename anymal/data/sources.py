"""The one place that turns a data source into samples: a manifest path, a parquet file, a Hugging Face
dataset folder or Hub id, or a DataSource entry naming its format, split and columns.

The format is read from the content (parquet and Arrow by their magic bytes, folders by their files),
or given as `format:`; a source whose format cannot be told is refused with the formats it could be,
never guessed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..config import DataSource
from ..errors import DataError
from . import hf_datasets as hf
from .jsonl import Sample, SkipReport, parsed_record, read_jsonl

PARQUET_MAGIC, ARROW_MAGIC = b"PAR1", b"ARROW1"
TRAIN, HELD_OUT = ("train",), ("validation", "val", "test")  # the splits read by default, in order
FORMATS = "a JSONL/JSON manifest, a .parquet file, a save_to_disk folder, a folder of parquet files, an " \
          "imagefolder/audiofolder, or hf://owner/name"


def as_source(source: str | DataSource) -> DataSource:
    return source if isinstance(source, DataSource) else DataSource(path=str(source))


def _sniff(path: Path) -> str:
    """A file's format by its first bytes; a folder's by the files in it."""
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(8)
        return "parquet" if head.startswith(PARQUET_MAGIC) else "arrow" if head.startswith(ARROW_MAGIC) else "jsonl"
    names = {p.name for p in path.iterdir()}
    if names & {"dataset_info.json", "dataset_dict.json"}:
        return "arrow"
    if any(path.rglob("*.parquet")):
        return "parquet"
    for kind, suffixes in hf.FOLDER_SUFFIXES.items():
        if any(p.suffix.lower() in suffixes for p in path.rglob("*")):
            return kind
    raise DataError(f"{path}: cannot tell this folder's format: expected {FORMATS}")


def local_path(src: DataSource) -> Path:
    """Where a source's files are: its path, or a Hub id's snapshot in the local cache (a DataError if absent)."""
    if src.path.startswith("hf://"):
        return hf.hub_snapshot(src.path[5:].removeprefix("datasets/"))
    return Path(src.path)


def check_source(source: str | DataSource) -> None:
    """A DataError when the source is not there (before any model loads)."""
    if not local_path(as_source(source)).exists():
        raise DataError(f"{as_source(source).path}: manifest not found")


def _rows(path: Path, fmt: str, splits: tuple[str, ...]) -> Iterator[tuple[str, dict, dict]]:
    if fmt == "parquet":
        return hf.parquet_rows([path] if path.is_file() else hf.split_files(path, splits))
    if fmt == "arrow":
        if (path / "dataset_dict.json").is_file():  # a DatasetDict: one folder per split
            folder = next((path / s for s in splits if (path / s).is_dir()), None)
            if folder is None:
                raise DataError(f"{path}: no split folder {' or '.join(splits)} in the save_to_disk dataset")
            path = folder
        return hf.arrow_rows(path)
    return hf.folder_rows(next((path / s for s in splits if (path / s).is_dir()), path), fmt)


def _record(row: dict, features: dict, src: DataSource, base: Path, where: str, modalities: list[str]) -> Sample:
    try:
        rec = hf.row_record(row, features, src.columns, base, where)
    except (TypeError, KeyError, AttributeError) as e:
        raise DataError(f"{where}: a row of an unexpected shape ({type(e).__name__}: {str(e)[:200]})") from None
    return parsed_record(rec, where, modalities, base)


def read_source(source: str | DataSource, modalities: list[str], media_root: str | None = None,
                on_error: str = "fail", splits: tuple[str, ...] = TRAIN) -> tuple[list[Sample], SkipReport]:
    """Samples of one source and the records skipped, by reason (`on_error="fail"`: the first one raises).
    A dataset with splits gives the source's `split`, else the first of `splits` it has."""
    src = as_source(source)
    path = local_path(src)
    if not path.exists():
        raise DataError(f"{path}: manifest not found")
    fmt = src.format if src.format != "auto" else _sniff(path)
    root = src.media_root or media_root
    if fmt == "jsonl":
        return read_jsonl(path, modalities, root, on_error)
    base = Path(root) if root else (path if path.is_dir() else path.parent)
    samples, skipped = [], SkipReport()
    for where, row, features in _rows(path, fmt, (src.split,) if src.split else splits):
        try:
            samples.append(_record(row, features, src, base, where, modalities))
        except DataError as e:
            if on_error == "fail":
                raise
            skipped.add_error(where, e)
    return samples, skipped
