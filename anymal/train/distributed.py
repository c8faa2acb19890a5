"""Data parallelism on PyTorch's own engine (launched by `torchrun`; one process = rank 0 of 1).

`ddp`: DistributedDataParallel over the model (only trainable parameters are all-reduced).
`fsdp`: FSDP2 (`fully_shard`) over each trainable component, so a large trainable part (the full
LLM in stage `full`) is sharded across ranks instead of replicated.
Backends: NCCL on GPUs, gloo on CPU (what the tests use).
"""
from __future__ import annotations

import gc
import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def setup() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(d.local_rank)
    return d


def teardown(d: Dist) -> None:
    """End a distributed run: every rank waits for the others, then the process group goes.

    Call it only once the DDP wrapper is unreferenced: its C++ reducer holds the process group
    and frees it while holding the GIL, so when it held the last reference, gloo's destructor
    waited for a worker thread that in turn waited for the GIL to free a tensor from a finished
    collective, and the rank hung (seen in CI twice; a loop of DDP runs hung in its first two).
    The process group itself is freed by torch without the GIL."""
    if d.world == 1 or not dist.is_initialized():
        return
    gc.collect()  # the wrapper may sit in a reference cycle
    dist.barrier()
    dist.destroy_process_group()


def all_sum(values: list[float], d: Dist) -> list[float]:
    """Element-wise sum over ranks (one collective for several numbers)."""
    if d.world == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def wrap(model: torch.nn.Module, d: Dist, strategy: str) -> torch.nn.Module:
    """The module the training step calls; the unwrapped `model` stays the one to save and evaluate."""
    if d.world == 1:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # a batch without a modality leaves its projector without gradients: allowed
        return DistributedDataParallel(model, find_unused_parameters=True)
    from torch.distributed.fsdp import fully_shard

    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own and all(p.requires_grad for p in own) and "." in name:
            fully_shard(module)
    return model


def no_sync(wrapped: torch.nn.Module, last_micro_batch: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation step."""
    if last_micro_batch or not hasattr(wrapped, "no_sync"):
        return nullcontext()
    return wrapped.no_sync()
