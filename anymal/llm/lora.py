"""LoRA on the frozen LLM through peft (AnyMAL's instruction-tuning variant 2).

The LoRA layers are part of the model's structure, so their settings live in `ModelConfig.lora` and
travel in the checkpoint manifest: loading an instruct checkpoint rebuilds them from the manifest,
no flags needed. `merge_lora` folds them into the base weights for export.
"""
from __future__ import annotations

from ..config import LoRAConfig
from ..errors import ConfigError

LORA_MARK = "lora_"  # peft's parameter names: ...q_proj.lora_A.default.weight


def apply_lora(llm, cfg: LoRAConfig) -> None:
    """Wrap `llm.model` (a Hugging Face causal LM) with fresh LoRA layers; base weights stay frozen."""
    from peft import LoraConfig, get_peft_model

    targets = cfg.target_modules if cfg.target_modules != ["all-linear"] else "all-linear"
    try:
        llm.model = get_peft_model(llm.model, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                         target_modules=targets, bias="none"))
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        names = sorted({n.rsplit(".", 1)[-1] for n, _ in llm.model.named_modules() if n})
        raise ConfigError(f"lora.target_modules {cfg.target_modules}: {e}; this LLM's module names include "
                          f"{', '.join(n for n in names if 'proj' in n) or ', '.join(names[:12])}") from None
    llm.model.requires_grad_(False)


def has_lora(llm) -> bool:
    return hasattr(llm.model, "merge_and_unload")


def lora_parameters(llm) -> dict:
    return {n: p for n, p in llm.model.named_parameters() if LORA_MARK in n}


def merge_lora(llm) -> None:
    """Fold the LoRA deltas into the base weights and drop the wrapper (W <- W + B A * alpha / r)."""
    if has_lora(llm):
        llm.model = llm.model.merge_and_unload()
