"""Which samples each step sees, on each rank: deterministic, shardable, resumable.

One seeded stream of sample indices (a fresh permutation per epoch, as DistributedSampler draws it)
is cut into *global* steps of `batch_size x grad_accum x world_size` samples. Each global step is
sorted by length (length-grouped batching: micro-batches of similar lengths waste little padding)
and dealt out in micro-batches, rank-interleaved. The global step therefore does not depend on how
many processes share it: 2 processes x batch B see exactly what 1 process x batch 2B sees, which
is what makes the two loss curves equal. The state is two integers (epoch, position).
"""
from __future__ import annotations

import torch


class StepSampler:
    def __init__(self, lengths: list[int], batch_size: int, grad_accum: int, world: int, rank: int, seed: int,
                 group_by_length: bool = True):
        self.lengths, self.b, self.accum, self.world, self.rank = lengths, batch_size, grad_accum, world, rank
        self.seed, self.group = seed, group_by_length
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        return torch.randperm(len(self.lengths), generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()

    def _take(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            if self.pos == len(self._perm):
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            k = min(n - len(out), len(self._perm) - self.pos)
            out += self._perm[self.pos:self.pos + k]
            self.pos += k
        return out

    def next_step(self) -> list[list[int]]:
        """This rank's micro-batches (grad_accum lists of batch_size indices) for the next step."""
        step = self._take(self.b * self.accum * self.world)
        if self.group:
            step.sort(key=lambda i: -self.lengths[i])  # stable: ties keep the random order
        micro = [step[j * self.b:(j + 1) * self.b] for j in range(self.accum * self.world)]
        return micro[self.rank::self.world]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)
