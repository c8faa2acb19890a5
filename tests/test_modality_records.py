"""A modality is defined in one place: its record in `anymal/modalities.py`. Everywhere else its
name ("image") and its manifest key ("images") come from the record (`IMAGE.name`, `IMAGE.list_key`),
so renaming or adding a modality is one edit. Docstrings, comments and longer strings may mention
them; a string that *is* a modality name or key may not, except dataset names (data/audio, data/video
are datasets that happen to share a modality's name) and the uses listed below."""
from __future__ import annotations

import ast
from pathlib import Path

from anymal.modalities import MODALITIES

PACKAGE = Path(__file__).resolve().parents[1] / "anymal"
NAMES = {m.name for m in MODALITIES.values()} | {m.list_key for m in MODALITIES.values()}
DATASET_CALLS = {"manifest", "dataset_dir", "build_command", "lazy"}  # their first argument names a dataset
ALLOWED = {  # (module, string): why it is not a modality
    ("data/builders/speech.py", "audio"): "an English word in a skip reason",
    ("encoders/points.py", "points"): "the number of points in the encoder's facts",
    ("train/pretrain_encoders.py", "points"): "the number of points in the shipped PointNet's config",
    ("serve/protocol.py", "audio"): "OpenAI's request parameter for spoken output (refused)",
    ("data/benchmarks.py", "image"): "the benchmarks' own field names (POPE's, MMBench's column, ScienceQA's)",
    ("data/benchmarks.py", "images"): "COCO captions' list of pictures",
    ("kinship.py", "image"): "an English word questions are put in ('in this image'), not a kind asked about",
}


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def _dataset_args(tree: ast.AST) -> set[int]:
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and n.args:
            fn = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            if fn in DATASET_CALLS:
                out.add(id(n.args[0]))
    return out


def literals() -> list[str]:
    found = []
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE).as_posix()
        if rel == "modalities.py":
            continue
        tree = ast.parse(f.read_text())
        skip = _docstrings(tree) | _dataset_args(tree)
        for n in ast.walk(tree):
            if (isinstance(n, ast.Constant) and n.value in NAMES and id(n) not in skip
                    and (rel, n.value) not in ALLOWED):
                found.append(f"anymal/{rel}:{n.lineno}: {n.value!r}")
    return found


def test_modality_names_appear_as_literals_only_in_their_records():
    assert literals() == []


def test_the_check_sees_a_literal(tmp_path, monkeypatch):
    """The scan is not vacuous: a planted literal is found, its docstring twin is not."""
    (tmp_path / "planted.py").write_text('"""About the image."""\nKEY = "images"\n')
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path)
    assert literals() == ["anymal/planted.py:2: 'images'"]
