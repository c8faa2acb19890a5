"""3-D point cloud -> caption set from the Debian package `sweethome3d-furniture` (820 OBJ models).

Each `.sh3f` catalog is a zip holding `PluginFurnitureCatalog.properties` (`name#i`, `category#i`,
`model#i`, `creator#i`, optional `modelRotation#i`, and a catalog-wide `license=`) plus the OBJ
files. Models are sampled with trimesh (area-weighted, seeded) to 2,048 surface points, rotated by
their `modelRotation` into Sweet Home 3D's Y-up frame, centred and unit-scaled, and saved as .npy.
Split deterministically **by normalised model name** (hash), so e.g. every "Lamp" lands in one split.
Licences: BlendSwap-CC-0 is public domain; the other catalogs are CC-BY-3.0 (attribution: creator).
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...errors import DataError
from ...modalities import POINTS
from ..jsonl import SkipReport

FURNITURE_DIR = Path("/usr/share/sweethome3d/furniture")
CATEGORY_PHRASES = {  # category -> how the caption names it
    "Living room": "a living room item", "Bedroom": "a bedroom item", "Kitchen": "a kitchen item",
    "Bathroom": "a bathroom item", "Office": "an office item", "Exterior": "an outdoor item",
    "Miscellaneous": "a household object", "Characters": "a figure of a person or animal",
    "Doors and windows": "a door or window", "Lights": "a light", "Vehicles": "a vehicle",
    "Staircases": "a staircase",
}
INSTRUCTIONS = ["What is this 3D object?", "Describe this 3D model.", "What object does this point cloud show?",
                "What is shown in this 3D scan?", "Name this object.", "Give a short caption for this 3D shape."]


@dataclass
class Model:
    catalog: str
    index: int
    name: str
    category: str
    creator: str
    model: str  # path inside the zip
    rotation: list[float] | None
    licence: str
    licence_file: str | None


def read_properties(text: str) -> dict[str, str]:
    """Java .properties (ISO-8859-1 with \\uXXXX escapes, `\\` line continuations) -> dict."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        while line.endswith("\\") and not line.endswith("\\\\"):
            line = line[:-1] + next(lines, "").lstrip()
        m = re.match(r"((?:[^=:\s\\]|\\.)+)\s*[=:\s]\s*(.*)", line)
        if m:
            key, val = (s.encode("latin-1", "backslashreplace").decode("unicode_escape") for s in m.groups())
            out[key] = val
    return out


def read_catalog(path: Path) -> list[Model]:
    with zipfile.ZipFile(path) as z:
        props = read_properties(z.read("PluginFurnitureCatalog.properties").decode("latin-1"))
        files = z.namelist()
    licence = props.get("license", "see the catalog's LICENSE.TXT")
    models = []
    for key in sorted((k for k in props if k.startswith("name#")), key=lambda k: int(k.split("#")[1])):
        i = int(key.split("#")[1])
        model = props.get(f"model#{i}", "").lstrip("/")
        folder = model.rsplit("/", 1)[0] + "/"
        lic = next((f for f in files if f.startswith(folder) and "licen" in f.lower()),
                   "LICENSE.TXT" if "LICENSE.TXT" in files else None)  # per model, else the catalog's
        rot = props.get(f"modelRotation#{i}")
        models.append(Model(path.stem, i, props[key].strip(), props.get(f"category#{i}", "Miscellaneous"),
                            props.get(f"creator#{i}", ""), model, [float(v) for v in rot.split()] if rot else None,
                            licence, lic))
    return models


def norm_name(name: str) -> str:
    return re.sub(r"\W+", " ", name.lower()).strip()


def name_split(name: str, val: float, test: float) -> str:
    u = int(hashlib.sha256(norm_name(name).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if u < test else "val" if u < test + val else "train"


def caption(name: str, category: str) -> str:
    """'Deck chair', 'Exterior' -> 'A 3D model of a deck chair, an outdoor item.'"""
    words = name.split()
    if len(words) > 1 and words[1][:1].isupper() or words[0].isupper():
        noun = name  # a proper name ("Seat Leon") or an acronym keeps its case
    else:
        noun = name[:1].lower() + name[1:]
    plural = re.search(r"[^su]s$", words[-1].lower()) is not None and not re.search(r"\d", name)
    article = "" if plural else ("an " if noun[:1].lower() in "aeiou" else "a ")
    return f"A 3D model of {article}{noun}, {CATEGORY_PHRASES.get(category, 'an object')}."


def category_prompt(category: str) -> str:
    """The caption of a category alone: 'A 3D model of an outdoor item.' (zero-shot class text)."""
    return f"A 3D model of {CATEGORY_PHRASES.get(category, 'an object')}."


def sample_model(z: zipfile.ZipFile, m: Model, n: int, seed: int) -> np.ndarray:
    import trimesh

    from ...encoders.geometry import normalize_cloud

    mesh = trimesh.load(io.BytesIO(z.read(m.model)), file_type="obj", force="mesh", process=False)
    if len(getattr(mesh, "faces", [])) == 0:
        raise DataError("mesh has no faces")
    pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    pts = np.asarray(pts, np.float64)
    if m.rotation:
        pts = pts @ np.asarray(m.rotation).reshape(3, 3).T  # Sweet Home 3D's modelRotation, row-major
    return normalize_cloud(pts)


def build_furniture(out: str | Path, furniture_dir: str | Path = FURNITURE_DIR, points: int = 2048, val: float = 0.1,
                    test: float = 0.15, seed: int = 0, limit: int | None = None,
                    splits: tuple[str, ...] = ("train", "val", "test"), progress: bool = True) -> dict:
    """Write `points/<split>/*.npy` and `{split}.jsonl` under `out`; return counts (and build seconds)."""
    out, root = Path(out), Path(furniture_dir)
    catalogs = sorted(root.glob("*.sh3f")) if root.is_dir() else []
    if not catalogs:
        raise DataError(f"{root}: no Sweet Home 3D catalogs (*.sh3f); apt-get install sweethome3d-furniture")
    t0, skipped = time.time(), SkipReport()
    records: dict[str, list[dict]] = {s: [] for s in splits}
    for s in splits:
        shutil.rmtree(out / POINTS.list_key / s, ignore_errors=True)  # no stale clouds from an earlier build
    for cat_path in catalogs:
        try:
            models = read_catalog(cat_path)
        except (zipfile.BadZipFile, KeyError, OSError) as e:
            skipped.add("unreadable catalog", f"{cat_path}: {e}")
            continue
        models = models[:limit] if limit else models
        with zipfile.ZipFile(cat_path) as z:
            for m in tqdm(models, desc=cat_path.stem, disable=not progress):
                split = name_split(m.name, val, test)
                if split not in splits:
                    continue
                where = f"{cat_path.name}:{m.model}"
                try:
                    cloud = sample_model(z, m, points, seed)
                except Exception as e:  # trimesh/zip raise many types for broken models
                    skipped.add(f"unreadable model ({type(e).__name__})", f"{where}: {e}")
                    continue
                rel = f"points/{split}/{m.catalog}-{m.index:03d}-{re.sub(r'[^a-z0-9]+', '_', norm_name(m.name))}.npy"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                np.save(out / rel, cloud.astype(np.float32))
                rng = random.Random(f"{seed}:{rel}")
                cap = caption(m.name, m.category)
                records[split].append({
                    "messages": [{"role": "user", "content": f"<points>{rng.choice(INSTRUCTIONS)}"},
                                 {"role": "assistant", "content": cap}],
                    POINTS.list_key: [rel],
                    "meta": {"name": m.name, "category": m.category, "creator": m.creator, "catalog": m.catalog,
                             "licence": m.licence, "licence_file": m.licence_file, "source": where}})
    for split, recs in records.items():
        with (out / f"{split}.jsonl").open("w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    counts: dict = {s: len(r) for s, r in records.items()}
    counts["names"] = {s: len({r["meta"]["name"] for r in recs}) for s, recs in records.items()}
    counts["categories"] = {s: {c: sum(r["meta"]["category"] == c for r in recs) for c in CATEGORY_PHRASES}
                            for s, recs in records.items()}
    counts["skipped"] = skipped.total
    counts["skip_reasons"] = dict(skipped.reasons)
    counts["seconds"] = round(time.time() - t0, 1)
    (out / "stats.json").write_text(json.dumps(counts, indent=1))
    (out / "README.md").write_text(
        "Built by anymal.data.furniture.build_furniture from the Debian package sweethome3d-furniture 1.8\n"
        "(Sweet Home 3D furniture libraries, www.sweethome3d.com). BlendSwap-CC-0 models are public domain;\n"
        "Blend Swap CC-BY, Kator Legaz, Reallusion and Scopia models are CC-BY-3.0: credit the `creator` in\n"
        "each line's meta (per-model licence files are named in meta.licence_file). Split by model name.\n")
    if skipped.total and progress:
        print(skipped.summary())
    return counts


__all__ = ["CATEGORY_PHRASES", "INSTRUCTIONS", "build_furniture", "caption", "category_prompt", "read_catalog",
           "read_properties"]
