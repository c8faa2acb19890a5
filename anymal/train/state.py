"""Resumable training state: one file, written atomically, enough to continue bit-for-bit.

`<run>/resume.pt` (read with `weights_only=True`: tensors and plain values, never arbitrary pickled
objects) holds the trainable weights, optimizer and scheduler state, every RNG (Python,
NumPy, torch), the sampler position, the step and the running counters, plus the recipe it belongs
to. The feature cache needs nothing: it is content-addressed on disk and re-read on resume.
Under FSDP2 the sharded weights and optimizer state are gathered into full, name-keyed state
dicts (torch.distributed.checkpoint.state_dict) on save and re-sharded on load, so the same file
resumes a run on the same number of processes; every rank reads it (the run directory must be
visible to all of them, as for DDP).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import TrainingError
from ..paths import temp_beside

RESUME_FILE = "resume.pt"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from ..model.adapters import full_tensor

    return {n: full_tensor(p.detach()).clone() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    """Every RNG's state in types `torch.load(weights_only=True)` reads back (NumPy's key array as a tensor)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "torch": torch.get_rng_state()}


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    kind, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(s["torch"])


def save_state(run_dir: Path, state: dict) -> Path:
    path = run_dir / RESUME_FILE
    tmp = temp_beside(path)
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous state intact
    return path


def load_state(run_dir: Path, config: dict) -> dict:
    path = run_dir / RESUME_FILE
    if not path.is_file():
        raise TrainingError(f"--resume: {path} does not exist (the run saved no state yet; "
                            "set save_every to make runs resumable)")
    try:  # tensors and plain containers only: a planted pickle cannot run code
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # truncated, not a torch file, or holding anything but tensors and plain values
        raise TrainingError(f"--resume: {path} is not a readable resume state ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'}); delete it to start over") from None
    if not isinstance(state, dict) or not {"config", "weights", "optimizer", "step"} <= set(state):
        raise TrainingError(f"--resume: {path} is not a resume state written by anymal train")
    if state["config"] != config:
        diff = sorted(k for k in set(state["config"]) | set(config) if state["config"].get(k) != config.get(k))
        raise TrainingError(f"--resume: {path} belongs to a different recipe (differs in: {', '.join(diff)}); "
                            "resume with the recipe the run started with")
    return state


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, strict=False)


def optimizer_state(model: torch.nn.Module, opt: torch.optim.Optimizer, sharded: bool) -> dict:
    """The optimizer's state to save; under FSDP2 every rank must call this (it gathers shards)."""
    if not sharded:
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, opt, options=_full_options())


def restore_trainable(model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict, sharded: bool) -> None:
    """Put saved trainable weights and optimizer state back (re-sharding them under FSDP2)."""
    if sharded:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        set_model_state_dict(model, state["weights"], options=_full_options())
        set_optimizer_state_dict(model, opt, state["optimizer"], options=_full_options())
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in state["weights"].items():
            params[n].copy_(t)
    opt.load_state_dict(state["optimizer"])
