"""Which samples each step sees, on each rank: deterministic, shardable, resumable.

One seeded stream of sample indices (a fresh permutation per epoch, as DistributedSampler draws it)
is cut into *global* steps of `batch_size x grad_accum x world_size` samples and dealt out in
micro-batches, rank-interleaved. The global step does not depend on how many processes share it:
2 processes x batch B see exactly what 1 process x batch 2B sees, which is what makes the two loss
curves equal.

Length grouping (as Hugging Face's LengthGroupedSampler does with its "megabatches"): the samples of
a window of `window` consecutive global steps are sorted by length, cut into global steps, and those
steps are visited in a seeded random order. Batches then hold similar lengths (little compute goes
to padding) while every step still draws from the whole dataset. Within a step, samples are sorted
too, so micro-batches of one step are grouped as well. The state is three integers: where the
current window starts in the stream (epoch, position) and how many of its steps were taken.
"""
from __future__ import annotations

import torch


class StepSampler:
    def __init__(self, lengths: list[int], batch_size: int, grad_accum: int, world: int, rank: int, seed: int,
                 group_by_length: bool = True, window: int = 32):
        self.lengths, self.b, self.accum, self.world, self.rank = lengths, batch_size, grad_accum, world, rank
        self.seed, self.group = seed, group_by_length
        self.window = window if group_by_length else 1
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)
        self._steps: list[list[int]] = []
        self._taken = 0
        self._start = (0, 0)

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

    def _fill_window(self) -> None:
        self._start = (self.epoch, self.pos)
        size = self.b * self.accum * self.world
        if self.pos == len(self._perm):
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation(self.epoch)
        # a window stays inside one epoch (a sample never meets itself in one sort); only a lone step
        # straddles the boundary when fewer than a step's samples are left
        n = max(1, min(self.window, (len(self._perm) - self.pos) // size))
        pool = self._take(size * n)
        if self.group:
            pool.sort(key=lambda i: -self.lengths[i])  # stable: ties keep the random order
        steps = [pool[j * size:(j + 1) * size] for j in range(n)]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + self._start[0] * 7919 + self._start[1])).tolist()
        self._steps = [steps[j] for j in order]
        self._taken = 0

    def next_step(self) -> list[list[int]]:
        """This rank's micro-batches (grad_accum lists of batch_size indices) for the next step."""
        if self._taken == len(self._steps):
            self._fill_window()
        step = self._steps[self._taken]
        self._taken += 1
        micro = [step[j * self.b:(j + 1) * self.b] for j in range(self.accum * self.world)]
        return micro[self.rank::self.world]

    def state_dict(self) -> dict:
        epoch, pos = self._start if self._steps else (self.epoch, self.pos)
        return {"epoch": epoch, "pos": pos, "taken": self._taken}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)
        self._steps, self._taken = [], 0
        if int(state.get("taken", 0)):
            self._fill_window()
            self._taken = int(state["taken"])


def padding(lengths: list[int], batches: list[list[int]]) -> float:
    """Batch positions per real token when each batch (sample indices) is padded to its longest sample."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches) / sum(lengths[i] for b in batches for i in b)


def random_padding(lengths: list[int], batch_size: int, seed: int) -> float:
    """`padding` of one epoch of random batches (one seeded draw): what length grouping would save."""
    perm = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    return padding(lengths, [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)])
