"""Bind network + attention-free, zero-initialised gated injection (ImageBind-LLM §3.2).

The bind network maps a bind-space vector to the LLM's hidden size; at the input of every decoder
layer l the hidden state of every token becomes h + g_l * b(v), with g_l a learnable scalar that
starts at 0, so an untrained injector leaves the LLM exactly as it was. It is applied with forward
pre-hooks on the Hugging Face decoder layers for the duration of one call (a context manager), so
the LLM's code is untouched and the same model serves prefix-token adapters at the same time.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..errors import ConfigError
from ..projectors.bind import BIND_DIM


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layer list of a Hugging Face causal LM (also under a peft wrapper)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n:
            return mod
    raise ConfigError(f"{type(model).__name__}: no list of {n} decoder layers found for the bind injection")


class _Block(nn.Module):
    """Pre-norm residual feed-forward block (the bind network's building block)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.RMSNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ff(self.norm(x))


class BindInjector(nn.Module):
    def __init__(self, hidden_size: int, num_layers: int, blocks: int = 2, width: int = 512):
        super().__init__()
        self.network = nn.Sequential(nn.Linear(BIND_DIM, width), *[_Block(width) for _ in range(blocks)],
                                     nn.RMSNorm(width), nn.Linear(width, hidden_size))
        self.gates = nn.Parameter(torch.zeros(num_layers))

    def facts(self) -> dict:
        return {"dim": BIND_DIM, "hidden_size": self.network[-1].out_features, "layers": len(self.gates),
                "params": sum(p.numel() for p in self.parameters())}

    @contextmanager
    def inject(self, llm: nn.Module, vectors: torch.Tensor, present: torch.Tensor) -> Iterator[None]:
        """While active, every decoder layer of `llm` adds gate_l * network(v_b) to row b's hidden
        states (rows with `present` False get nothing)."""
        layers = decoder_layers(llm)
        if len(layers) != len(self.gates):
            raise ConfigError(f"bind injector built for {len(self.gates)} layers, the LLM has {len(layers)}")
        delta = self.network(vectors) * present[:, None].to(vectors.dtype)  # [B, hidden]

        def hook(i: int):
            def add(module, args, kwargs):
                if args:
                    h = args[0]
                    return (h + (self.gates[i] * delta).to(h.dtype)[:, None, :], *args[1:]), kwargs
                h = kwargs["hidden_states"]
                return args, {**kwargs, "hidden_states": h + (self.gates[i] * delta).to(h.dtype)[:, None, :]}
            return add

        handles = [layer.register_forward_pre_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
