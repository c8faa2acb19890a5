"""Audio encoders: a fixed analysis window (Whisper's 30 s), with token counts that follow the real clip.

Whisper pads every clip to 30 s and always returns 1500 frames (50 per second). `AudioEncoder.load`
reports how many of those frames cover the real clip, so a 2 s sound gets the tokens of 2 s, not of
30 s of padding. Clips longer than the window are refused with a clear error (see `load_audio`):
anymal does not chunk, because a silent cut would answer about part of the file.

Any Hugging Face audio model id or local directory (Whisper, wav2vec 2.0, HuBERT, ...) works through
`HFAudioEncoder`, the registry's fallback for the audio modality.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..modalities import AUDIO
from ..quiet import quiet_loading
from .base import Encoder
from .media import MAX_AUDIO_SECONDS, load_audio


def valid_tokens(samples: int, num_tokens: int, sample_rate: int, window_seconds: float) -> int:
    """Tokens of a full window that hold a clip of `samples` samples (at least one)."""
    return min(num_tokens, max(1, math.ceil(num_tokens * samples / (sample_rate * window_seconds))))


SAMPLE_RATE, WINDOW_SECONDS = 16000, 30.0  # Whisper's analysis window: the defaults


class AudioEncoder(Encoder):
    """Subclasses set `sample_rate`, `window_seconds`, `num_tokens` and implement `features(wave)`."""

    modality = AUDIO.name
    varies = True
    sample_rate = SAMPLE_RATE
    window_seconds = WINDOW_SECONDS

    def features(self, wave: np.ndarray) -> torch.Tensor:
        """A mono waveform (at most one window long) -> the model-ready input for a full window."""
        raise NotImplementedError

    def load(self, item: Any) -> tuple[torch.Tensor, int]:
        wave = load_audio(item, self.sample_rate, min(self.window_seconds, MAX_AUDIO_SECONDS))
        return self.features(wave), valid_tokens(len(wave), self.num_tokens, self.sample_rate, self.window_seconds)

    def preprocess(self, item: Any) -> torch.Tensor:
        return self.load(item)[0]


class HFAudioEncoder(AudioEncoder):
    """A Hugging Face audio model's encoder: last hidden states over a zero-padded window."""

    def __init__(self, name: str, modality: str, window_seconds: float = 30.0):
        super().__init__()
        if modality != AUDIO.name:
            raise ConfigError(f"encoder {name!r} is an audio model; it cannot encode {modality!r}")
        from transformers import AutoFeatureExtractor, AutoModel

        try:
            with quiet_loading():  # modalities are built without quieting transformers: its own load does
                model = AutoModel.from_pretrained(name)
                self.extractor = AutoFeatureExtractor.from_pretrained(name)
        except OSError as e:
            raise ConfigError(f"encoder {name!r} is neither registered nor a loadable Hugging Face audio model: {e}") from None
        self.net = model.get_encoder() if hasattr(model, "get_encoder") else model  # seq2seq -> its encoder
        self.id, self.sample_rate, self.window_seconds = name, int(self.extractor.sampling_rate), window_seconds
        self.preprocess_id = f"hf-audio-{self.sample_rate}-{window_seconds:g}s"
        with torch.no_grad():
            out = self(self.features(np.zeros(1, np.float32))[None])
        self.num_tokens, self.dim = out.shape[1], out.shape[2]

    def features(self, wave: np.ndarray) -> torch.Tensor:
        full = np.zeros(int(self.sample_rate * self.window_seconds), np.float32)
        full[:len(wave)] = wave
        out = self.extractor(full, sampling_rate=self.sample_rate, return_tensors="pt")
        return (out.get("input_features") if "input_features" in out else out["input_values"])[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = "input_features" if self.net.main_input_name == "input_features" else "input_values"
        return self.net(**{key: x}).last_hidden_state
