"""The bind head: a modality's pooled encoder feature -> a unit vector in the shared 384-d space.

It is registered as projector kind `bind` so a modality switches from prefix tokens to injection by
config alone (`projector: bind`). It emits no tokens: the processor reserves no slots for it, and
the model turns its vectors into the bind network's per-layer additions instead.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import PROJECTORS
from ..text_embed import DIM as BIND_DIM


@PROJECTORS.register("bind")
class BindHead(nn.Module):
    injects = True  # contributes a bind-space vector, not prefix tokens
    num_tokens = 0
    reads_content = False

    def __init__(self, name: str, cfg, in_dim: int, **_facts):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, BIND_DIM
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, cfg.width), nn.GELU(),
                                 nn.Linear(cfg.width, BIND_DIM))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def tokens_for(self, n_in: int) -> int:
        return 0

    def count(self, feats: torch.Tensor) -> int:
        return 0

    def embed(self, features: list[torch.Tensor]) -> torch.Tensor:
        """[n_i, in_dim] features per input -> [N, 384] unit vectors (tokens mean-pooled first)."""
        pooled = torch.stack([f.float().mean(0) for f in features]).to(self.net[1].weight.device)
        return F.normalize(self.net(pooled), dim=-1)
