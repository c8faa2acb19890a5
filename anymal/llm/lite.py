"""A Llama-family LLM's weights without transformers' modeling stack, for answering.

Importing a transformers model class pulls in its masking, kernel-hub and weight-conversion modules
(and with them torch._dynamo and torch.distributed.tensor): ~0.5 s before any weight is read, most of
a CLI answer's budget. `LiteCausalLM` is the same parameter tree as `LlamaForCausalLM` /
`Qwen2ForCausalLM` (same names, so the same safetensors load into it), read straight from the
model directory; `fast.FastLM` decodes with it. It has no forward of its own: whatever needs
transformers' (training, LoRA, the transformers decoder, ImageBind-LLM's injection) gets a real model
built over these same tensors on first use (`LanguageModel.model`).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

FAMILIES = ("llama", "qwen2")


def lite_config(path: Path) -> SimpleNamespace | None:
    """The directory's config.json as attributes, when `LiteCausalLM` can hold its model (else None)."""
    try:
        raw = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    theta = rope.get("rope_theta", raw.get("rope_theta"))
    if raw.get("model_type") not in FAMILIES or rope.get("rope_type", "default") != "default" or theta is None:
        return None
    if not any(path.glob("*.safetensors")):
        return None
    c = SimpleNamespace(**raw)
    c.rope_theta = float(theta)
    c.head_dim = raw.get("head_dim") or raw["hidden_size"] // raw["num_attention_heads"]
    c.attention_bias = raw.get("attention_bias", raw["model_type"] == "qwen2")
    return c


class _Rotary(nn.Module):
    rope_type, attention_scaling = "default", 1.0

    def __init__(self, c: SimpleNamespace):
        super().__init__()
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.int64).float() / c.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)


def _linear(n_in: int, n_out: int, bias: bool) -> nn.Linear:
    return nn.Linear(n_in, n_out, bias=bias, device="meta")


def _norm(n: int) -> nn.Module:
    norm = nn.Module()
    norm.weight = nn.Parameter(torch.empty(n, device="meta"))
    return norm


class _Layer(nn.Module):
    def __init__(self, c: SimpleNamespace):
        super().__init__()
        E, D, bias = c.hidden_size, c.head_dim, c.attention_bias
        self.self_attn = nn.Module()
        self.self_attn.q_proj = _linear(E, c.num_attention_heads * D, bias)
        self.self_attn.k_proj = _linear(E, c.num_key_value_heads * D, bias)
        self.self_attn.v_proj = _linear(E, c.num_key_value_heads * D, bias)
        self.self_attn.o_proj = _linear(c.num_attention_heads * D, E, False)
        self.mlp = nn.Module()
        self.mlp.gate_proj = _linear(E, c.intermediate_size, False)
        self.mlp.up_proj = _linear(E, c.intermediate_size, False)
        self.mlp.down_proj = _linear(c.intermediate_size, E, False)
        self.input_layernorm, self.post_attention_layernorm = _norm(E), _norm(E)


class LiteCausalLM(nn.Module):
    """Parameters named as transformers' Llama/Qwen2 causal LMs, loaded from a model directory."""

    def __init__(self, path: Path, config: SimpleNamespace, dtype: torch.dtype):
        super().__init__()
        from safetensors.torch import load_file

        self.config, self.path = config, path
        gen = path / "generation_config.json"
        self.generation_config = SimpleNamespace(**json.loads(gen.read_text())) if gen.is_file() else SimpleNamespace()
        state = {}
        for f in sorted(path.glob("*.safetensors")):
            state.update(load_file(str(f)))
        self.model = nn.Module()
        # built around its weight: a fresh Embedding's random init on "meta" imports torch._dynamo (~1 s)
        self.model.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size,
                                               _weight=state.pop("model.embed_tokens.weight").to(dtype))
        self.model.layers = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))
        self.model.norm = _norm(config.hidden_size)
        self.model.rotary_emb = _Rotary(config)
        self.lm_head = _linear(config.hidden_size, config.vocab_size, False)
        tied = getattr(config, "tie_word_embeddings", False) or "lm_head.weight" not in state
        state = {k: v.to(dtype) for k, v in state.items()}
        state["model.embed_tokens.weight"] = self.model.embed_tokens.weight
        if tied:
            state["lm_head.weight"] = self.model.embed_tokens.weight
        self.load_state_dict(state, strict=True, assign=True)
        if tied:  # one tensor, as transformers holds it
            self.lm_head.weight = self.model.embed_tokens.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def transformers_model(self) -> nn.Module:
        """The transformers model over these same tensors (no copy)."""
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(self.path)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=self.dtype)
        model.load_state_dict(self.state_dict(), strict=False, assign=True)
        if getattr(config, "tie_word_embeddings", False):
            model.tie_weights()
        rotary = model.model.rotary_emb
        rotary.inv_freq = self.model.rotary_emb.inv_freq.to(self.device)
        if hasattr(rotary, "original_inv_freq"):
            rotary.original_inv_freq = rotary.inv_freq
        return model.eval()
