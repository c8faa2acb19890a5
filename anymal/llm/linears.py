"""A causal LM's linear layers as plain functions of their tensors, peft's LoRA layers included.

`FastLM` (llm/fast.py) calls a layer as `F.linear` on its own weight (no module call); a LoRA layer
the way peft's own forward computes it, base(x) + B(A(x)) * scaling per active adapter, so a LoRA
checkpoint decodes fast and gives peft's answers. The 4-bit copy (llm/quick.py) only drafts or
approximates, so it holds the weight with the deltas folded in.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def base_model(model: nn.Module) -> nn.Module:
    """The causal LM inside a peft wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def projections(model: nn.Module) -> list[nn.Module]:
    """Every block's seven linear layers (q, k, v, o; gate, up, down) and the head, of a Llama-family
    causal LM (a peft wrapper's base model), as they are: nn.Linear or LoRA layers."""
    base = base_model(model)
    return [getattr(part, name) for layer in base.model.layers for part, names in
            ((layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")), (layer.mlp, ("gate_proj", "up_proj", "down_proj")))
            for name in names] + [base.lm_head]


def lora_parts(module: nn.Module) -> tuple[nn.Linear, list[tuple[nn.Module, nn.Module, float]]] | None:
    """(base layer, [(A, B, scaling) per active adapter]) of a plain peft LoRA linear layer, else None."""
    if not hasattr(module, "base_layer") or not hasattr(module, "lora_A"):
        return None
    if module.merged or module.disable_adapters or getattr(module, "lora_variant", {}) or module.training:
        return None  # merged, switched off, DoRA-like variants or dropout at work: not the plain sum below
    active = [a for a in module.active_adapters if a in module.lora_A]
    return module.base_layer, [(module.lora_A[a], module.lora_B[a], module.scaling[a]) for a in active]


def exact_linear(linear: nn.Module):
    """The layer as a plain function of its own tensors (no module call: its hooks are never used
    here); a LoRA layer as peft computes it: base(x) + B(A(x)) * scaling per active adapter."""
    lora = lora_parts(linear)
    base = lora[0] if lora else linear
    weight, bias = base.weight, base.bias
    if not lora or not lora[1]:
        return lambda x: F.linear(x, weight, bias)
    adapters = [(a.weight, b.weight, scaling) for a, b, scaling in lora[1]]

    def run(x):
        out = F.linear(x, weight, bias)
        for a, b, scaling in adapters:
            out = out + F.linear(F.linear(x.to(a.dtype), a), b) * scaling
        return out
    return run


def effective_weight(linear: nn.Module) -> torch.Tensor:
    """The layer's weight with its LoRA deltas folded in (for the 4-bit copy, which only drafts)."""
    lora = lora_parts(linear)
    if not lora:
        return linear.weight
    return lora[0].weight + sum(b.weight.float() @ a.weight.float() * scaling for a, b, scaling in lora[1]).to(lora[0].weight.dtype)


def plain_linear(linear: nn.Module) -> nn.Module:
    """The nn.Linear under a LoRA layer (the layer itself otherwise): its shape, bias and base weight."""
    lora = lora_parts(linear)
    return lora[0] if lora else linear
