"""`pointnet`: a small PointNet++-style encoder for 3-D point clouds, trained here.

Input: `geometry.load_points(item, 1024, seed=0)`: 1,024 surface points (seeded, so the same file
always gives the same cloud), centred and scaled into the unit sphere. Sweet Home 3D models are
Y-up; other files are taken as they are (the encoder saw random yaw, not arbitrary rotations).

Net: a shared per-point MLP (3 -> 64 -> 96); 16 centroids by farthest-point sampling (started at
the point farthest from the centre, so it is deterministic); each centroid's 32 nearest neighbours,
in coordinates relative to it, go through a second MLP and are max-pooled into a local token, plus
an embedding of the centroid's position. A global token (max over all points) comes first:
17 tokens x 256. Trained contrastively against MiniLM embeddings of Sweet Home 3D captions
(`anymal.train.pretrain_encoders.pretrain_points` reproduces the shipped weights in `WEIGHTS_DIR`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..modalities import POINTS
from ..paths import PACKAGE_DIR
from ..registry import ENCODERS
from .base import Encoder
from .geometry import load_points
from .imu import load_trained

WEIGHTS_DIR = PACKAGE_DIR / "assets" / "encoders" / "pointnet"
N_POINTS = 1024
SEED = 0


def farthest_points(xyz: torch.Tensor, m: int) -> torch.Tensor:
    """[B, N, 3] -> indices [B, m] of farthest-point samples, starting from the point farthest from the origin."""
    B, N, _ = xyz.shape
    idx = torch.zeros(B, m, dtype=torch.long, device=xyz.device)
    dist = torch.full((B, N), float("inf"), device=xyz.device)
    cur = xyz.norm(dim=-1).argmax(1)
    rows = torch.arange(B, device=xyz.device)
    for i in range(m):
        idx[:, i] = cur
        dist = torch.minimum(dist, ((xyz - xyz[rows, cur][:, None]) ** 2).sum(-1))
        cur = dist.argmax(1)
    return idx


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, N, C], idx [B, ...] -> [B, ..., C]."""
    B = x.shape[0]
    flat = idx.reshape(B, -1)
    return torch.gather(x, 1, flat[..., None].expand(-1, -1, x.shape[-1])).reshape(*idx.shape, x.shape[-1])


def _mlp(*widths: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.GELU()]
    return nn.Sequential(*layers)


class PointNetNet(nn.Module):
    """[B, N, 3] -> [B, 1 + groups, dim] (global token first). `pooled` = mean of the tokens."""

    def __init__(self, groups: int = 16, neighbours: int = 32, width: int = 96, dim: int = 256):
        super().__init__()
        self.groups, self.neighbours, self.dim = groups, neighbours, dim
        self.point_mlp = _mlp(3, 64, width)
        self.local_mlp = _mlp(width + 3, width, width)
        self.local_out = nn.Linear(width, dim)  # after pooling: the wide layer runs once per group, not per point
        self.pos = nn.Linear(3, dim)  # where the local token sits
        self.global_out = nn.Linear(width, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        feats = self.point_mlp(xyz)  # [B, N, W]
        centres_idx = farthest_points(xyz, self.groups)
        centres = gather(xyz, centres_idx)  # [B, G, 3]
        d = torch.cdist(centres, xyz)  # [B, G, N]
        nbr = d.topk(self.neighbours, dim=-1, largest=False).indices  # [B, G, K]
        rel = gather(xyz, nbr) - centres[:, :, None]  # local shape, relative to the centroid
        local = self.local_mlp(torch.cat([rel * 4.0, gather(feats, nbr)], -1)).amax(2)  # [B, G, W]
        local = self.local_out(local) + self.pos(centres)
        glob = self.global_out(feats.amax(1))[:, None]
        return self.norm(torch.cat([glob, local], 1))

    def pooled(self, xyz: torch.Tensor) -> torch.Tensor:
        return self(xyz).mean(1)


class PointNetEncoder(Encoder):
    def __init__(self, name: str, modality: str = POINTS.name, weights_dir: str | Path | None = None):
        super().__init__()
        tensors, cfg = load_trained(Path(weights_dir) if weights_dir else WEIGHTS_DIR, POINTS.name)
        arch = cfg["arch"]
        self.net = PointNetNet(arch["groups"], arch["neighbours"], arch["width"], arch["dim"])
        self.net.load_state_dict({k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")})
        self.head = nn.Linear(arch["dim"], tensors["head.weight"].shape[0])  # into MiniLM space (zero-shot)
        self.head.load_state_dict({"weight": tensors["head.weight"], "bias": tensors["head.bias"]})
        self.modality, self.id = modality, name
        self.dim, self.num_tokens = arch["dim"], 1 + arch["groups"]
        self.preprocess_id = f"points{N_POINTS}-seed{SEED}-unit-sphere"
        self.config = cfg

    def preprocess(self, item: Any) -> torch.Tensor:
        return torch.from_numpy(load_points(item, N_POINTS, seed=SEED))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != 3 or x.shape[1] < self.net.neighbours:
            raise InputError(f"pointnet expects [B, N >= {self.net.neighbours}, 3] from preprocess(), "
                             f"got {list(x.shape)}")
        return self.net(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unit vectors in MiniLM space [B, 384], for zero-shot matching against caption embeddings."""
        return F.normalize(self.head(self.net.pooled(x)), dim=-1)

    def facts(self) -> dict:
        return {**super().facts(), "points": N_POINTS, "groups": self.net.groups}


def random_yaw(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate about the vertical (Y, Sweet Home 3D's up axis): furniture stands but may face anywhere."""
    a = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(a), np.sin(a)
    return points @ np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]], np.float32).T


ENCODERS.register("pointnet")(PointNetEncoder)
