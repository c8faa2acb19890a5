"""Checkpoint directories: a JSON manifest plus adapter weights in safetensors.

    <dir>/anymal_config.json    what the adapters were trained with (backbone ids, dims, token
                                counts, projector kinds, stage, lineage, anymal version)
    <dir>/adapters.safetensors  trainable weights only (projectors; LoRA in later stages)

Loading rebuilds the backbones named in the manifest and compares their facts with the recorded
ones before any weight is touched, so a wrong LLM or encoder is a readable error, not a shape crash.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, ManifestMismatchError
from ..paths import temp_beside

MANIFEST = "anymal_config.json"
WEIGHTS = "adapters.safetensors"
FORMAT_VERSION = 1


def write_checkpoint(path: str | Path, manifest: dict, tensors: dict) -> Path:
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_m = temp_beside(d / WEIGHTS), temp_beside(d / MANIFEST)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp_w),
              metadata={"format": "anymal", "format_version": str(FORMAT_VERSION)})
    tmp_m.write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION}, indent=2))
    os.replace(tmp_w, d / WEIGHTS)  # weights first: a manifest never points at missing weights
    os.replace(tmp_m, d / MANIFEST)
    return d


def read_manifest(path: str | Path) -> dict:
    d = Path(path)
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a checkpoint directory (no such directory)")
    mf = d / MANIFEST
    if not mf.is_file():
        raise CheckpointError(f"{d}: not an anymal checkpoint (missing {MANIFEST})")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{mf}: invalid JSON ({e})") from None
    for key in ("config", "llm", "modalities", "stage"):
        if key not in manifest:
            raise CheckpointError(f"{mf}: missing field {key!r}")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{mf}: format version {manifest['format_version']} is newer than this "
                              f"anymal understands ({FORMAT_VERSION}); upgrade anymal")
    if not (d / WEIGHTS).is_file():
        raise CheckpointError(f"{d}: missing {WEIGHTS}")
    return manifest


def read_weights(path: str | Path) -> dict:
    f = Path(path) / WEIGHTS
    try:
        tensors = load_file(str(f))
    except Exception as e:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"{f}: unreadable safetensors file ({e})") from None
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())]
    if bad:  # a diverged run's weights would answer with nothing, and exit 0
        raise CheckpointError(f"{f}: {len(bad)} tensor(s) hold NaN or infinite values ({', '.join(sorted(bad)[:3])}"
                              f"{', ...' if len(bad) > 3 else ''}); the run that wrote it diverged")
    return tensors


def check_facts(manifest: dict, actual: dict, path: str | Path, only: list[str] | None = None) -> None:
    """Compare recorded backbone facts with the loaded ones; raise listing every difference. `only`:
    the modalities to compare (a model that builds them on first use checks each then)."""
    problems = []
    want, got = manifest["llm"], actual["llm"]
    for k in ("id", "hidden_size"):
        if want.get(k) != got.get(k):
            problems.append(f"LLM {k}: checkpoint {want.get(k)!r}, loaded {got.get(k)!r}")
    for m, rec in manifest["modalities"].items():
        if only is not None and m not in only:
            continue
        if m not in actual["modalities"]:
            problems.append(f"modality {m!r}: in the checkpoint but not in the model being built")
            continue
        have = actual["modalities"][m]
        for k in ("id", "dim", "num_tokens", "preprocess"):
            if rec["encoder"].get(k) != have["encoder"].get(k):
                problems.append(f"{m} encoder {k}: checkpoint {rec['encoder'].get(k)!r}, loaded {have['encoder'].get(k)!r}")
        for k in ("kind", "num_tokens"):
            if rec["projector"].get(k) != have["projector"].get(k):
                problems.append(f"{m} projector {k}: checkpoint {rec['projector'].get(k)!r}, built {have['projector'].get(k)!r}")
    if problems:
        raise ManifestMismatchError(
            f"{path}: the checkpoint does not match the backbones being loaded ({'; '.join(problems)}). "
            "Fix: load it without overriding its backbones (they are recorded in its anymal_config.json), "
            "or train an adapter for these backbones: `anymal train RECIPE --set model.llm.id=...`"
        )
