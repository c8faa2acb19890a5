"""Hugging Face datasets as training/eval data, read offline with pyarrow (no `datasets` import):
parquet files (the Hub's format), `save_to_disk` folders (Arrow files + dataset_info.json),
`imagefolder`/`audiofolder` folders (files + optional metadata.jsonl/.csv, or one folder per class) and
Hub ids (`hf://owner/name`), found in the local Hugging Face cache, never downloaded at run time.

Each row becomes a record of jsonl.py's formats: a row with `messages`/`conversations`/`instruction`
columns is read as such; otherwise the text comes from question/answer, caption or class-label columns
(`columns:` maps them when the names differ). Image/audio cells (`{"bytes", "path"}`, the Image/Audio
features) are written once to content-addressed files (media_store.py); a record whose media this run
cannot read is a counted skip like any other bad record.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError
from ..modalities import AUDIO, IMAGE, MODALITIES, VIDEO
from .media_store import stored_media

FEATURE_KINDS = {"Image": IMAGE.name, "Audio": AUDIO.name, "Video": VIDEO.name}  # datasets feature -> modality
TEXT_FORMATS = ("messages", "conversations", "instruction")  # columns that make a row a jsonl.py record
TEXT_ROLES = {"question", "answer", "caption", "label"}  # `columns:` keys that say where the text is
PROMPTS = {"caption": "Describe the {kind}.", "label": "What is this {kind}?"}
KIND_WORDS = {IMAGE.name: "picture", AUDIO.name: "sound", VIDEO.name: "clip"}
FOLDER_SUFFIXES = {"imagefolder": (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"),
                   "audiofolder": (".wav", ".flac", ".mp3", ".ogg")}
ROW_BATCH = 256
_SPLIT_WORDS = ("train", "validation", "val", "test", "dev")


def _kind_of(feature: Any) -> str | None:
    """The modality a datasets feature holds (Image, Audio, Video, or a list/Sequence of one)."""
    if isinstance(feature, list) and len(feature) == 1:
        return _kind_of(feature[0])
    if isinstance(feature, dict):
        return FEATURE_KINDS.get(feature.get("_type")) or _kind_of(feature.get("feature"))
    return None


def _class_names(features: dict) -> dict[str, list[str]]:
    return {k: f["names"] for k, f in features.items() if isinstance(f, dict) and f.get("_type") == "ClassLabel"}


def _media_columns(features: dict, names: list[str], columns: dict[str, str]) -> dict[str, str]:
    """{column: modality}: from the features, else the mapping, else the column's own name ("images")."""
    out = {c: kind for c, kind in ((c, _kind_of(f)) for c, f in features.items()) if kind}
    out.update({col: kind for kind, col in columns.items() if kind in MODALITIES})
    for c in names:
        for m in MODALITIES.values():
            if c in (m.name, m.list_key) and c not in out:
                out[c] = m.name
    return out


def _cell_paths(cell: Any, root: Path, where: str, column: str) -> list[str]:
    """The file paths of one media cell: a path, {"bytes", "path"} (bytes written to the media store), or a list."""
    if cell is None:
        return []
    if isinstance(cell, list):
        return [p for c in cell for p in _cell_paths(c, root, where, column)]
    if isinstance(cell, str):
        return [cell if Path(cell).is_absolute() else str(root / cell)]
    if isinstance(cell, dict) and (cell.get("bytes") or cell.get("path")):
        if cell.get("bytes"):
            return [stored_media(cell["bytes"], cell.get("path") or "")]
        return _cell_paths(cell["path"], root, where, column)
    raise DataError(f"{where}: column {column!r}: expected a file path or an Image/Audio cell "
                    "({'bytes': ..., 'path': ...}); arrays decoded in memory are not stored in files")


def _pick(row: dict, columns: dict[str, str], role: str, names: tuple[str, ...]) -> Any:
    col = columns.get(role) or next((n for n in names if n in row and row[n] not in (None, "", [])), None)
    return row.get(col) if col else None


def row_record(row: dict, features: dict, columns: dict[str, str], root: Path, where: str) -> dict:
    """One dataset row as a jsonl.py record (conversation + media lists)."""
    media: dict[str, list[str]] = {}
    media_columns = _media_columns(features, list(row), columns)
    for col, kind in media_columns.items():
        if col in row:
            media.setdefault(MODALITIES.get(kind).list_key, []).extend(_cell_paths(row[col], root, where, col))
    media = {k: v for k, v in media.items() if v}
    if any(k in row for k in TEXT_FORMATS) and not set(columns) & TEXT_ROLES:
        rec = {k: v for k, v in row.items() if k not in media_columns}
        return {**rec, **media}
    kind = next((m.name for m in MODALITIES.values() if m.list_key in media), None)
    tags = "".join(f"<{m.name}>" * len(media.get(m.list_key, [])) for m in MODALITIES.values())
    question, answer = _pick(row, columns, "question", ("question", "query", "prompt")), \
        _pick(row, columns, "answer", ("answer", "answers", "response"))
    if question is None and answer is None:
        answer = _pick(row, columns, "caption", ("caption", "captions", "text", "sentences"))
        classes = _class_names(features)
        label_col = columns.get("label") or next((c for c in classes if c in row), None)
        if answer is None and label_col is not None:
            answer = _label(row[label_col], classes.get(label_col), where, label_col)
        question = PROMPTS["caption" if label_col is None else "label"].format(kind=KIND_WORDS.get(kind, "input"))
    answer = answer[0] if isinstance(answer, list) and answer else answer
    if not isinstance(question, str) or not isinstance(answer, (str, int, float)):
        raise DataError(f"{where}: no text to learn from: expected question/answer, caption/text, a class label, "
                        f"or messages/conversations/instruction columns (columns: {', '.join(row)}); map yours "
                        "with `columns:` (docs/training.md, 'Data formats')")
    return {"messages": [{"role": "user", "content": tags + question}, {"role": "assistant", "content": str(answer)}],
            **media}


def _label(value: Any, names: list[str] | None, where: str, column: str) -> str:
    if isinstance(value, int) and names:
        if not 0 <= value < len(names):
            raise DataError(f"{where}: column {column!r}: label {value} is not one of the {len(names)} class names")
        return names[value]
    return str(value)


# ---- where rows come from ---------------------------------------------------------------------
def _hf_features(metadata: dict | None) -> dict:
    raw = (metadata or {}).get(b"huggingface")
    try:
        return json.loads(raw)["info"]["features"] if raw else {}
    except (ValueError, KeyError, TypeError):
        return {}


def parquet_rows(files: list[Path]) -> Iterator[tuple[str, dict, dict]]:
    """(where, row, features) of each row of parquet files, read in batches."""
    import pyarrow.parquet as pq

    for f in files:
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:  # pyarrow's ArrowInvalid / OSError on a file that is not parquet
            raise DataError(f"{f}: not a parquet file ({type(e).__name__}: {str(e)[:200]})") from None
        features, n = _hf_features(pf.schema_arrow.metadata), 0
        for batch in pf.iter_batches(batch_size=ROW_BATCH):
            for row in batch.to_pylist():
                yield f"{f}:row {n}", row, features
                n += 1


def arrow_rows(folder: Path) -> Iterator[tuple[str, dict, dict]]:
    """Rows of a `save_to_disk` folder (its Arrow stream files, in state.json's order)."""
    import pyarrow as pa

    features = json.loads((folder / "dataset_info.json").read_text()).get("features") or {}
    state = json.loads((folder / "state.json").read_text()) if (folder / "state.json").is_file() else {}
    files = [folder / d["filename"] for d in state.get("_data_files", [])] or sorted(folder.glob("*.arrow"))
    for f in files:
        with pa.memory_map(str(f)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(source).read_all()
        for n, row in enumerate(table.to_pylist()):
            yield f"{f}:row {n}", row, features


def folder_rows(folder: Path, kind: str) -> Iterator[tuple[str, dict, dict]]:
    """imagefolder/audiofolder: metadata.jsonl/.csv rows (`file_name` -> the file), else every file with the
    name of its class folder as a label."""
    media = IMAGE.name if kind == "imagefolder" else AUDIO.name
    meta = next((folder / n for n in ("metadata.jsonl", "metadata.csv") if (folder / n).is_file()), None)
    if meta is None:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in FOLDER_SUFFIXES[kind])
        classes = sorted({p.parent.name for p in files if p.parent != folder})
        features = {"label": {"_type": "ClassLabel", "names": classes}} if classes else {}
        for p in files:
            yield str(p), {media: str(p), **({"label": classes.index(p.parent.name)} if classes else {})}, features
        return
    if meta.suffix == ".csv":
        with meta.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        rows = [json.loads(line) for line in meta.read_text(encoding="utf-8").splitlines() if line.strip()]
    for n, row in enumerate(rows, 1 if meta.suffix == ".jsonl" else 2):
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            raise DataError(f"{meta}:{n}: field 'file_name': expected the {media} file's path (relative to {folder})")
        yield f"{meta}:{n}", {media: str(folder / row["file_name"]),
                              **{k: v for k, v in row.items() if k != "file_name"}}, {}


def hub_snapshot(repo_id: str) -> Path:
    """A Hub dataset's files from the local Hugging Face cache (offline: nothing is downloaded)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        from huggingface_hub import constants

        raise DataError(f"hf://{repo_id}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}); anymal reads Hub "
                        f"datasets offline: fetch it once with `hf download {repo_id} --repo-type dataset`") from None


def split_files(folder: Path, splits: tuple[str, ...], suffix: str = ".parquet") -> list[Path]:
    """The data files of the first of `splits` the folder has (named `<split>-*`/`<split>.*` or under a
    `<split>/` folder); files named for no split at all are one split, read whatever is asked."""
    files = sorted(p for p in folder.rglob(f"*{suffix}") if not any(x.startswith(".") for x in p.parts))
    split_of = {p: next((s for s in _SPLIT_WORDS if p.stem.split("-")[0] == s or s in p.relative_to(folder).parts[:-1]),
                        None) for p in files}
    if files and not any(split_of.values()):
        return files
    for s in splits:
        if chosen := [p for p in files if split_of[p] == s or (s not in _SPLIT_WORDS and s in p.parts)]:
            return chosen
    raise DataError(f"{folder}: no {suffix} files of split {' or '.join(splits)} (files named <split>-*{suffix} "
                    f"or in <split>/); it has {', '.join(sorted({str(v) for v in split_of.values()}))}")
