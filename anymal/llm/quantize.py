"""Hold the frozen LLM in int8 or int4 weights while adapters train (AnyMAL's memory trick).

Backend: optimum-quanto, chosen because it really runs on CPU (and CUDA) and lets gradients flow
through quantized linear layers to the inputs, which is all adapter training needs (measured
against torchao 0.18, whose CPU int4 path needs an extra kernel package; bitsandbytes' CPU backend
is not used). Every linear layer of the transformer blocks gets int8 or int4 weights; int4 uses
per-group scales over groups of 32 input weights instead of quanto's default 128 (measured on
SmolLM2-135M, caption LM loss vs bf16: +7.7% with groups of 128, +0.9% with 32, for ~1 extra bit per
weight of scales). The token-embedding table, which quanto does not quantize, is held in bfloat16;
a head tied to it keeps sharing that bf16 table instead of getting a quantized copy: 4-bit logits
over a 49k vocabulary cost the most loss (measured: int4 +12% loss after 40 steps with a quantized
head), and sharing the table costs no extra memory. An untied head is quantized like the blocks.
LoRA layers stay in full precision. Inference uses the full-precision LLM, as AnyMAL did:
quantization is a training-time setting (`llm_quantize`) and is not saved in checkpoints.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


INT4_GROUP = 32


def quantize_llm(llm, bits: str) -> None:
    try:
        from optimum.quanto import freeze, qint4, qint8, quantize
        from optimum.quanto.nn import QLinear
    except ImportError:
        raise ConfigError("llm_quantize needs optimum-quanto: pip install optimum-quanto") from None
    if bits not in ("int8", "int4"):
        raise ConfigError(f"llm_quantize: {bits!r}; expected int8 or int4")
    model = llm.model
    emb = model.get_input_embeddings()
    compute = emb.weight.dtype
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    head_name = next((n for n, m in model.named_modules() if m is head), None)
    exclude = ["*lora_*"] + ([head_name] if tied and head_name else [])
    quantize(model, weights={"int8": qint8, "int4": qint4}[bits], exclude=exclude)
    if bits == "int4":  # set before freeze(), which is when the weights are packed
        for m in model.modules():
            if isinstance(m, QLinear) and m.weight_group_size and m.in_features % INT4_GROUP == 0:
                m.weight_group_size = INT4_GROUP
    freeze(model)
    emb.to(torch.bfloat16)
    emb.register_forward_hook(lambda _m, _i, out: out.to(compute))
    if tied:  # the shared bf16 table as the head: bf16 in, compute dtype out
        head.register_forward_pre_hook(lambda m, args: (args[0].to(m.weight.dtype), *args[1:]))
        head.register_forward_hook(lambda _m, _i, out: out.to(compute))
    llm.quantized = bits


def weight_bytes(tensors: nn.Module | list[torch.Tensor]) -> int:
    """Bytes of a module's parameters and buffers (or of a list of tensors), counting a quantized
    tensor's packed data and scales; shared storage is counted once."""
    seen: set[int] = set()
    total = 0

    def add(t: torch.Tensor) -> None:
        nonlocal total
        if hasattr(t, "__tensor_flatten__"):  # quanto's subclasses: count their inner tensors
            names, _ = t.__tensor_flatten__()
            for n in names:
                add(getattr(t, n))
            return
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()

    for t in tensors if isinstance(tensors, list) else [*tensors.parameters(), *tensors.buffers()]:
        add(t)
    return total
