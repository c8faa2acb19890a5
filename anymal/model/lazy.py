"""Modalities built on first use: `AnyMAL.from_pretrained` loads the LLM and adapter weights, and
each modality's encoder and projector only when an input of it (or anything that needs all of them:
saving, `facts()`, the server's start) asks. A text question then never pays for loading Whisper or
the image perception models (~0.9 s of the CLI's start here); a modality's facts are checked
against the checkpoint's manifest, and its weights loaded, when it is built.
"""
from __future__ import annotations

from typing import Callable

from torch import nn


class Pending(nn.Module):
    """Stands in for a modality's encoder or projector until it is built."""


class LazyModules(nn.ModuleDict):
    """A ModuleDict whose `Pending` entries are built by `build(name)` when first read. Membership,
    order and length never build anything; `items()` and `values()` build everything."""

    def __init__(self, modules: dict[str, nn.Module], build: Callable[[str], None]):
        super().__init__(modules)
        self._build = [build]  # in a list: a bound method of the parent is not a submodule

    def pending(self) -> list[str]:
        return [k for k, m in self._modules.items() if isinstance(m, Pending)]

    def __getitem__(self, key: str) -> nn.Module:
        if isinstance(self._modules.get(key), Pending):
            self._build[0](key)
        return super().__getitem__(key)

    def put(self, key: str, module: nn.Module) -> None:
        self._modules[key] = module

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]
