"""Where a clip has speech: Silero VAD (MIT; the ONNX model inside the `silero-vad` wheel, on onnxruntime)
as a perception part of the audio modality.

Its rows are words with where they are in time: up to `entries` rows "speech" (x1..x2: the segment's
start and end as shares of the clip, score: the model's mean speech probability over it, count: how
many segments, area: the share of the clip that is speech), or one row "no speech" (score: 1 minus the
highest speech probability anywhere). `speech_seconds` is the same decision as a number, for the
speech-or-sound evaluation and for parts that should read only the speech.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..modalities import AUDIO
from ..registry import ENCODERS
from .media import load_audio
from .perception import ROW, PerceptionEncoder

RATE, WINDOW_S, CHUNK = 16000, 30.0, 512  # Silero reads 512-sample chunks at 16 kHz


def silero_model():
    """The packaged ONNX model (`pip install --no-deps silero-vad==6.2.3`; onnxruntime runs it), read by path
    (the package's own loader goes through a deprecated importlib.resources call that warns)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError("voice activity needs `pip install --no-deps silero-vad==6.2.3` and onnxruntime "
                          "(scripts/install.sh installs both)")
    from silero_vad.utils_vad import OnnxWrapper

    return OnnxWrapper(str(Path(spec.submodule_search_locations[0]) / "data" / "silero_vad.onnx"), force_onnx_cpu=True)


class SileroVoice(PerceptionEncoder):
    labels, entries = ["speech", "no speech"], 3

    def __init__(self, name: str, modality: str):
        if modality != AUDIO.name:
            raise ConfigError(f"encoder {name!r} finds speech in sound, not in {modality!r}")
        super().__init__(name, modality)
        self.model = silero_model()
        self.preprocess_id = f"16k-mono-30s|silero-vad-6.2.3-onnx|top{self.entries}-segments"

    def preprocess(self, item: Any) -> torch.Tensor:
        """The first 30 s at 16 kHz, zero-padded, with its true length appended (a batch has one shape)."""
        wave = load_audio(item, RATE, WINDOW_S)
        out = torch.zeros(int(RATE * WINDOW_S) + 1)
        out[:len(wave)] = torch.from_numpy(np.asarray(wave, np.float32))
        out[-1] = len(wave)
        return out

    def probabilities(self, wave: torch.Tensor) -> torch.Tensor:
        """Speech probability of each 512-sample chunk (32 ms)."""
        with self.lock:
            self.model.reset_states()
            return self.model.audio_forward(wave, RATE)[0]

    def segments(self, wave: torch.Tensor) -> list[dict]:
        """[{"start", "end"} in samples] of the speech in a 16 kHz wave (Silero's default thresholds)."""
        from silero_vad import get_speech_timestamps

        with self.lock:
            self.model.reset_states()
            return get_speech_timestamps(wave, self.model, sampling_rate=RATE)

    def speech_seconds(self, item: Any) -> float:
        x = self.preprocess(item)
        return sum(s["end"] - s["start"] for s in self.segments(x[:int(x[-1])])) / RATE

    def rows_of(self, wave: torch.Tensor) -> np.ndarray:
        rows = np.zeros((self.entries, ROW), np.float32)
        if len(wave) < CHUNK:
            rows[0] = [2, 1.0, 1, 0, 0, 1, 1, 1]
            return rows
        probs, segs, n = self.probabilities(wave), self.segments(wave), len(wave)
        if not segs:
            rows[0] = [2, 1.0 - float(probs.max()), 1, 0, 0, 1, 1, 1]
            return rows
        share = sum(s["end"] - s["start"] for s in segs) / n
        for e, s in enumerate(segs[:self.entries]):
            inside = probs[s["start"] // CHUNK:max(s["end"] // CHUNK, s["start"] // CHUNK + 1)]
            rows[e] = [1, float(inside.mean()), len(segs), s["start"] / n, 0, s["end"] / n, 1, share]
        return rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = [self.rows_of(r[:int(r[-1])].float().cpu()) for r in x]
        return torch.from_numpy(np.stack(rows)).to(x.device)


ENCODERS.register("silero-vad")(SileroVoice)
