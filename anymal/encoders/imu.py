"""`imu-cnn`: a small 1-D CNN over 6-axis IMU (accelerometer m/s^2, gyroscope rad/s) at 50 Hz.

Trained here, contrastively against MiniLM embeddings of HAPT activity captions (IMU2CLIP style;
`anymal.train.pretrain_encoders.pretrain_imu` reproduces the shipped weights in `WEIGHTS_DIR`).

Input window: WINDOW = 512 samples = 10.24 s at 50 Hz. Everything is resampled to 50 Hz first
(`motion.load_imu`). Shorter recordings are zero-padded at the end and `load()` reports
ceil(T / 32) valid tokens (each token covers 32 samples = 0.64 s). Longer recordings are cropped
to their **central** 10.24 s. Each channel is standardised with mean/std of the training windows
(stored with the weights). The net sees a 7th channel, 1 on real samples and 0 on padding, so
padding is never mistaken for a still phone. Output: 16 time tokens x 192.

Items (a module-wide convention, shared with the CLI's `--imu-rate`):
  - a path: CSV with a header `t,ax,ay,az,gx,gy,gz` (t in seconds gives the rate) or `.npy` [T, 6];
  - `(path_or_array, rate_hz)`: a rate for CSVs without `t`, for .npy files and for arrays;
  - `{"path": p, "rate": hz}` (rate optional when the CSV has `t`), or `{"array": a, "rate": hz}`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InputError
from ..modalities import IMU
from ..paths import PACKAGE_DIR
from ..registry import ENCODERS
from .base import Encoder
from .motion import load_imu

WEIGHTS_DIR = PACKAGE_DIR / "assets" / "encoders" / "imu-cnn"
RATE = 50.0
WINDOW = 512
TOKENS = 16
STRIDE = WINDOW // TOKENS  # samples per output token


def read_imu_item(item: Any) -> np.ndarray:
    """Any accepted item (see the module docstring) -> float32 [T, 6] at 50 Hz."""
    if isinstance(item, dict):
        if "array" in item:
            if item.get("rate") is None:
                raise InputError("IMU item {'array': ...} needs a 'rate' in Hz")
            return load_imu((item["array"], item["rate"]), target_rate=RATE)
        if "path" not in item:
            raise InputError(f"IMU item dict needs 'path' or 'array' (+ optional 'rate'), got keys {sorted(item)}")
        return load_imu(item["path"], rate=item.get("rate"), target_rate=RATE)
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (str, Path)):
        return load_imu(item[0], rate=item[1], target_rate=RATE)
    return load_imu(item, target_rate=RATE)


def fit_window(x: np.ndarray, window: int = WINDOW) -> tuple[np.ndarray, int]:
    """[T, 6] -> ([min(T, window), 6], real length): the central `window` samples when longer."""
    if len(x) > window:
        start = (len(x) - window) // 2
        x = x[start:start + window]
    return x, len(x)


def valid_tokens(length: int) -> int:
    return max(1, min(TOKENS, math.ceil(length / STRIDE)))


def pack(x: np.ndarray, mean: np.ndarray, std: np.ndarray, window: int = WINDOW) -> torch.Tensor:
    """[T <= window, 6] raw -> [7, window]: standardised channels + validity mask, zero-padded at the end."""
    out = np.zeros((7, window), np.float32)
    out[:6, :len(x)] = ((x - mean) / std).T
    out[6, :len(x)] = 1.0
    return torch.from_numpy(out)


class IMUNet(nn.Module):
    """Strided conv stack: [B, 7, 512] -> [B, 16, dim]. `pooled` averages the tokens over real signal."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 192), dim: int = 192):
        super().__init__()
        kernels = (7, 5, 5, 3, 3)
        widths = (7, *channels, dim)
        assert len(widths) - 1 == len(kernels) and 2 ** len(kernels) == STRIDE
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers += [nn.Conv1d(widths[i], widths[i + 1], k, stride=2, padding=k // 2),
                       nn.BatchNorm1d(widths[i + 1]), nn.GELU()]
        self.convs = nn.Sequential(*layers[:-1])  # no activation after the last norm: tokens may be signed
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x).transpose(1, 2)

    def token_mask(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool1d(x[:, 6:7], STRIDE).squeeze(1) > 0  # [B, 16]: token covers some real signal

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        tok = self(x)
        m = self.token_mask(x).unsqueeze(-1).to(tok.dtype)
        return (tok * m).sum(1) / m.sum(1).clamp(min=1.0)


def load_trained(weights_dir: Path, what: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config) of a pretrained encoder directory written by `pretrain_encoders.ship`."""
    from safetensors.torch import load_file

    wf, cf = weights_dir / "weights.safetensors", weights_dir / "config.json"
    if not wf.is_file() or not cf.is_file():
        raise CheckpointError(f"{weights_dir}: no pretrained {what} weights (weights.safetensors + config.json); "
                              f"reinstall anymal or run `anymal pretrain {what}`")
    return load_file(str(wf)), json.loads(cf.read_text())


class IMUEncoder(Encoder):
    varies = True

    def __init__(self, name: str, modality: str = IMU.name, weights_dir: str | Path | None = None):
        super().__init__()
        tensors, cfg = load_trained(Path(weights_dir) if weights_dir else WEIGHTS_DIR, IMU.name)
        arch = cfg["arch"]
        self.net = IMUNet(tuple(arch["channels"]), arch["dim"])
        self.net.load_state_dict({k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")})
        self.head = nn.Linear(arch["dim"], tensors["head.weight"].shape[0])  # into MiniLM space (zero-shot)
        self.head.load_state_dict({"weight": tensors["head.weight"], "bias": tensors["head.bias"]})
        self.register_buffer("mean", tensors["norm.mean"])
        self.register_buffer("std", tensors["norm.std"])
        self.modality, self.id = modality, name
        self.dim, self.num_tokens = arch["dim"], TOKENS
        self.preprocess_id = f"imu50hz-w{WINDOW}-center-crop-pad-end-std-{cfg.get('norm_id', 'hapt')}"
        self.config = cfg

    def load(self, item: Any) -> tuple[torch.Tensor, int]:
        x, n = fit_window(read_imu_item(item))
        return pack(x, self.mean.cpu().numpy(), self.std.cpu().numpy()), valid_tokens(n)

    def preprocess(self, item: Any) -> torch.Tensor:
        return self.load(item)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or tuple(x.shape[1:]) != (7, WINDOW):
            raise InputError(f"imu-cnn expects [B, 7, {WINDOW}] from preprocess(), got {list(x.shape)}")
        return self.net(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unit vectors in MiniLM space [B, 384], for zero-shot matching against caption embeddings."""
        return F.normalize(self.head(self.net.pooled(x)), dim=-1)

    def facts(self) -> dict:
        return {**super().facts(), "rate_hz": RATE, "window": WINDOW, "token_seconds": STRIDE / RATE}


ENCODERS.register("imu-cnn")(IMUEncoder)
