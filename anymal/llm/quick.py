"""The 4-bit decode step of `FastLM` (`--decoder fast-q4`, and the drafts of `--decoder fast`):
one token per row, on a CPU.

A one-token step reads every weight once and multiplies it by a single row, so its time is the
time to stream the weights plus PyTorch's per-operation cost. Here the weights of each block's
linear layers are 4-bit groups of 32 (min/max per group: the GGUF Q4_1 blocks the shipped LLMs are
dequantised from come back as they were, but for bf16 scales), run by PyTorch's int4 CPU kernel on
bf16 activations; so is the head, whose best 16 scores are recomputed from its own rows. Layers
that read the same input are one matmul (q, k and v; gate and up), the attention scale is folded
into q's rows, and a step is written for few operations per layer. Norms, rotary embedding,
attention, softmax and the residual stream stay fp32.

Measured in place (a step, not a kernel alone): the int4 kernels take ~7 of a step's ~11 ms here,
~1.7 ms more than the same calls back to back (2 threads waking up after the serial stretches in
between); folding rotate_half into extra q/k rows saved 4 operations a layer but cost more kernel
time than it saved (12.1 -> 11.2 ms a step without it).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..paths import cache_dir
from .linears import effective_weight, plain_linear, projections

GROUP = 32  # 4-bit group size: GGUF's Q4 block
log = logging.getLogger(__name__)


def native_int4() -> bool:
    """Whether this PyTorch has the int4 CPU kernel (2.6 on) and the CPU computes bf16 natively: the
    kernel is fast only on bf16 activations (on fp32 or fp16 ones it is 20-40x slower here)."""
    try:
        torch.ops.aten._weight_int4pack_mm_for_cpu, torch.ops.aten._convert_weight_to_int4pack_for_cpu
    except (AttributeError, RuntimeError):
        return False
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def pack_int4(weights: list[torch.Tensor], biases: list[torch.Tensor | None] | None = None) -> dict[str, torch.Tensor]:
    """Weights stacked (layers that read the same input become one matmul) in 4-bit groups along
    their input, as PyTorch's int4 CPU kernel takes them: w = (q - 8) * scale + zero."""
    w = torch.cat(weights)
    n, k = w.shape
    if k % GROUP:
        raise ConfigError(f"q4 decoding needs layer inputs in groups of {GROUP}; this LLM has {k}")
    q = torch.empty(n, k, dtype=torch.int32)
    scale_zero = torch.empty(k // GROUP, n, 2)
    for start in range(0, n, 4096):  # in slices of rows: a vocabulary-sized head at once peaks at ~0.5 GB
        groups = w[start:start + 4096].float().view(-1, k // GROUP, GROUP)
        lo, hi = groups.amin(-1), groups.amax(-1)
        scale = ((hi - lo) / 15).clamp(min=1e-12)
        q[start:start + 4096] = torch.round((groups - lo[..., None]) / scale[..., None]).clamp(0, 15).view(-1, k)
        scale_zero[:, start:start + 4096] = torch.stack([scale.t(), (lo + 8 * scale).t()], -1)
    out = {"packed": torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1), "scale_zero": scale_zero.to(torch.bfloat16)}
    if biases and any(b is not None for b in biases):
        out["bias"] = torch.cat([w.new_zeros(t.shape[0]) if b is None else b for t, b in zip(weights, biases)]).float()
    return out


def q4_unsupported(model: nn.Module) -> str | None:
    """Why the int4 kernel cannot hold `model`'s layers (None: it can): it wants inputs in groups of
    32 and outputs in multiples of 16, and bf16 arithmetic the CPU runs natively."""
    if model.device.type != "cpu" or not native_int4():
        return "it needs a CPU with native bf16 (AVX512-BF16 or AMX)"
    for lin in map(plain_linear, projections(model)):
        if lin.in_features % GROUP or lin.out_features % 16:
            return f"a {lin.in_features} -> {lin.out_features} layer (the int4 kernel takes inputs in groups of {GROUP}, outputs in 16s)"
    return None


class Int4Linear:
    """y = x W^T (+ b), bf16 in and out, from `pack_int4`'s tensors."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.packed, self.scale_zero, self.bias = tensors["packed"], tensors["scale_zero"], tensors.get("bias")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [rows, in] (cast to bf16) -> [rows, out] bf16."""
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), self.packed, GROUP, self.scale_zero)
        return y if self.bias is None else y + self.bias


class RescoredHead:
    """Logits of the whole vocabulary from the 4-bit head, the `k` best of each row recomputed with
    the model's own rows: ranking needs little precision, the winner's score gets it all (a 4-bit
    head alone changed ~1 greedy token in 7 here, against ~1 in 30 for an int8 one at 2.5x its cost)."""

    def __init__(self, quantized: dict[str, torch.Tensor], weight: torch.Tensor, k: int = 16):
        self.quantized, self.weight, self.k = Int4Linear(quantized), weight, k

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.quantized(h).float()
        best = logits.topk(self.k, -1).indices  # [B, k]
        exact = (self.weight[best] @ h.to(self.weight.dtype)[:, :, None]).squeeze(-1)
        return logits.scatter_(1, best, exact.float())


def _norm_weight(weight: torch.Tensor) -> torch.Tensor:
    return weight.float() * weight.shape[0] ** 0.5


def _rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """RMSNorm as x * weight * sqrt(n) / |x| (`_norm_weight` holds weight * sqrt(n)): one norm kernel
    instead of five (3 us instead of 8 a call); the model's eps (1e-5 against a mean square near 1)
    is left out, a tiny floor keeps a zero row finite."""
    return x * (weight / torch.linalg.vector_norm(x, dim=-1, keepdim=True).add_(1e-12))


def _packed(model: nn.Module, head_dim: int) -> dict[str, torch.Tensor]:
    """Every layer's 4-bit tensors (see the module's docstring), `{layer}.{qkv|o|gate_up|down}.*` and `head.*`."""
    out: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(model.model.layers):
        a, m = layer.self_attn, layer.mlp
        (q, qw), (k, kw), (v, vw) = ((plain_linear(p), effective_weight(p)) for p in (a.q_proj, a.k_proj, a.v_proj))
        scale = head_dim ** -0.5
        qb = None if q.bias is None else q.bias * scale
        parts = {"qkv": pack_int4([qw * scale, kw, vw], [qb, k.bias, v.bias]),
                 "o": pack_int4([effective_weight(a.o_proj)]),
                 "gate_up": pack_int4([effective_weight(m.gate_proj), effective_weight(m.up_proj)]),
                 "down": pack_int4([effective_weight(m.down_proj)])}
        out.update({f"{i}.{name}.{key}": t for name, ts in parts.items() for key, t in ts.items()})
    out.update({f"head.{key}": t for key, t in pack_int4([effective_weight(model.lm_head)]).items()})
    return out


def _fingerprint(model: nn.Module) -> str:
    """The weights' identity (a strided sample of every tensor) and what the packed layout depends on."""
    h = hashlib.sha256(f"{torch.__version__}:{torch.backends.cpu.get_cpu_capability()}:{GROUP}:v2".encode())
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update(flat[::max(1, flat.numel() // 4096)].float().numpy().tobytes())
    return h.hexdigest()[:16]


def cached_packed(model: nn.Module, head_dim: int) -> dict[str, torch.Tensor]:
    """`_packed`, kept on disk by the weights' fingerprint: packing takes ~0.4 s, loading ~0.03 s."""
    from safetensors.torch import load_file, save_file

    path = cache_dir() / "llm" / f"q4-{_fingerprint(model)}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except Exception:  # unreadable (a partial write from another tool): pack again
            pass
    state = _packed(model, head_dim)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp))
        os.replace(tmp, path)
    except OSError as e:  # a read-only or full cache: decode all the same, pack again next time
        log.warning("could not cache the 4-bit weights in %s (%s); they are packed again in each process", path.parent, e)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return state


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class _Q4Block:
    def __init__(self, layer: nn.Module, state: dict[str, torch.Tensor], i: int):
        self.qkv, self.o, self.gate_up, self.down = (Int4Linear(_sub(state, f"{i}.{n}.")) for n in ("qkv", "o", "gate_up", "down"))
        self.inner = plain_linear(layer.mlp.gate_proj).out_features
        self.norm1, self.norm2 = _norm_weight(layer.input_layernorm.weight), _norm_weight(layer.post_attention_layernorm.weight)


class Q4Step:
    """One decode step of every row (T = 1) with 4-bit weights, writing into the `KVCache` (in the model's dtype)."""

    def __init__(self, fast, model: nn.Module):
        why = q4_unsupported(model)
        if why:
            raise ConfigError(f"fast-q4 decoding cannot run this LLM: {why}; use the fast decoder (exact weights)")
        self.fast = fast
        self.heads, self.kv_heads, self.head_dim = fast.heads, fast.kv_heads, fast.head_dim
        state = cached_packed(model, self.head_dim)
        self.blocks = [_Q4Block(layer, state, i) for i, layer in enumerate(model.model.layers)]
        self.norm = _norm_weight(fast.norm)
        self.head = RescoredHead(_sub(state, "head."), effective_weight(model.lm_head))

    def __call__(self, embeds: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache) -> torch.Tensor:
        """embeds [B, 1, E]: see FastLM.forward. Written for few operations per layer: each costs
        microseconds of dispatch, as much as a small matmul."""
        B, E = embeds.shape[0], embeds.shape[-1]
        H, KV, D = self.heads, self.kv_heads, self.head_dim
        qk, kv = (H + KV) * D, KV * D  # the outputs the rotary embedding turns; the values
        # [B, H + KV, 2, D / 2]: rotate_half(x) * sin is (-x2, x1) * sin, half by half
        cos, sin = (t[:, 0].view(B, 1, 2, D // 2) for t in self.fast.rope(pos))
        allowed = self.fast.attention_mask(mask, 1)
        bias = None if allowed is None else torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf"))
        at, end = cache.length, cache.length + 1
        x = embeds.reshape(B, E).float().clone()  # the fp32 residual stream, added to in place
        # every layer's slot for this position and its keys/values so far: one view each
        key_at, value_at = cache.keys[:, :, :, at], cache.values[:, :, :, at]
        keys, values = cache.keys[:, :, :, :end].transpose(-1, -2), cache.values[:, :, :, :end]
        for i, b in enumerate(self.blocks):
            out = b.qkv(_rms(x, b.norm1))
            halves = out[:, :qk].view(B, H + KV, 2, D // 2)
            turned = torch.addcmul(halves * cos, torch.stack((-halves[:, :, 1], halves[:, :, 0]), 2), sin).view(B, qk)
            key_at[i].copy_(turned[:, H * D:].view(B, KV, D))
            value_at[i].copy_(out[:, qk:qk + kv].view(B, KV, D))
            # the cache holds the model's dtype (bf16/fp16 models too): attention runs in it, softmax in fp32
            scores = turned[:, :H * D].view(B, KV, H // KV, D).to(keys.dtype) @ keys[i]
            if bias is not None:
                scores = scores + bias
            heads = torch.softmax(scores, -1, dtype=torch.float32).to(values.dtype) @ values[i]  # [B, KV, H / KV, D]
            x.add_(b.o(heads.view(B, H * D)))
            gate_up = b.gate_up(_rms(x, b.norm2))
            x.add_(b.down(F.silu(gate_up[:, :b.inner]) * gate_up[:, b.inner:]))
        cache.length = end
        return self.head(_rms(x, self.norm))
