"""3-D inputs: meshes (PLY/OBJ/OFF/STL via trimesh) sampled to N surface points, or `.npy` [N, 3] clouds.

Every cloud is centred on its centroid and scaled into the unit sphere, so the encoder sees shape,
not the file's units (Sweet Home 3D models are in centimetres). Sampling is seeded: the same file
always gives the same points.
"""
from __future__ import annotations

import io
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .media import as_source, load_npy

MESH_SUFFIXES = {".ply", ".obj", ".off", ".stl", ".glb", ".gltf"}


MAX_COORDINATE = 1e12  # beyond any model's units: float64 centring and scaling would overflow


def normalize_cloud(points: np.ndarray) -> np.ndarray:
    if np.abs(points).max() > MAX_COORDINATE:
        raise InputError(f"coordinates up to {np.abs(points).max():.3g} (the limit is {MAX_COORDINATE:g})")
    pts = points - points.mean(0, keepdims=True)
    radius = float(np.linalg.norm(pts, axis=1).max())
    if radius < 1e-9:
        raise InputError("the point cloud is degenerate (all points coincide)")
    return (pts / radius).astype(np.float32)


def _resample(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.choice(len(points), n, replace=len(points) < n)
    return points[idx]


def load_points(item: Any, n: int = 1024, seed: int = 0, file_type: str | None = None) -> np.ndarray:
    """Path to a mesh or .npy / bytes of a mesh (with `file_type`) / array [M, 3] -> float32 [n, 3]."""
    import trimesh

    rng = np.random.default_rng(seed)
    name = str(item) if isinstance(item, (str, Path)) else "<in-memory points>"
    if isinstance(item, np.ndarray):
        pts = item
    else:
        src = as_source(item, "a mesh or .npy point cloud")
        if not isinstance(src, Path):
            if not file_type:
                raise InputError("in-memory mesh bytes need file_type= (ply, obj, off, stl)")
        else:
            file_type = file_type or src.suffix.lower().lstrip(".")
            if src.suffix.lower() == ".npy":
                return _finish(load_npy(src, str(src)), name, n, rng)
            if f".{file_type}" not in MESH_SUFFIXES:
                raise InputError(f"{src}: unsupported 3-D format {src.suffix!r}; use {', '.join(sorted(MESH_SUFFIXES))} or .npy")
        try:  # from bytes, with no resolver: a mesh never makes trimesh open the files it names (mtllib, uri)
            data = io.BytesIO(src.read_bytes()) if isinstance(src, Path) else src
            with _trimesh_quiet():
                mesh = trimesh.load(data, file_type=file_type, force="mesh", process=False, resolver=None)
        except Exception as e:  # trimesh raises many types for malformed files
            raise InputError(f"{name}: not a readable {file_type.upper()} mesh ({type(e).__name__}: {e})") from None
        if len(getattr(mesh, "faces", [])) == 0:
            pts = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))))
        else:
            pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return _finish(np.asarray(pts), name, n, rng)


@contextmanager
def _trimesh_quiet():
    """trimesh logs some parse failures as warnings with a traceback (printed on stderr when logging is
    not configured); the error we raise says what matters."""
    log = logging.getLogger("trimesh")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _finish(pts: np.ndarray, name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if pts.dtype.kind not in "iuf":
        raise InputError(f"{name}: expected numbers (float or int points [N, 3]), got dtype {pts.dtype}")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"{name}: expected points [N, 3], got shape {list(pts.shape)}")
    if len(pts) == 0:
        raise InputError(f"{name}: has no points or faces")
    if not np.isfinite(pts).all():
        raise InputError(f"{name}: contains NaN or infinite coordinates")
    try:
        return normalize_cloud(_resample(pts.astype(np.float64), n, rng) if len(pts) != n else pts.astype(np.float64))
    except InputError as e:
        raise InputError(f"{name}: {e}") from None
