"""A sound's kind in words: a linear head on Whisper tiny.en's pooled encoder frames, trained here.

No pretrained sound classifier exists offline (no CLAP, YAMNet, PANNs or AST; BirdNET is non-commercial
and knows only birds), so `anymal pretrain sounds` fits one linear layer on the audio set's *training*
recordings (every named sound with its augmented copies, and "speech" for speech clips) over the frozen
encoder's mean, max and standard deviation of the frames of the clip's own length, and `--ship` puts it
in `anymal/assets/encoders/sound-kinds/`. As a perception part of the audio modality (`perception:
[..., whisper-tiny.en-sounds]`) it hands the LLM its top `entries` kinds as words with their
probabilities: the image classifier's design, for sound. A kind no training recording has, it cannot name.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ConfigError
from ..modalities import AUDIO
from ..paths import PACKAGE_DIR
from ..registry import ENCODERS
from .audio import valid_tokens
from .base import Encoder
from .media import load_audio
from .perception import PerceptionEncoder, whole_picture_row
from .transcript import SAMPLE_RATE, WINDOW_SECONDS

HEAD_DIR = PACKAGE_DIR / "assets" / "encoders" / "sound-kinds"
FRAMES = 1500  # Whisper's encoder frames per 30 s window


def pooled(frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, T, d] encoder frames, valid frames per clip [B] -> [B, 3d]: mean, max and std of the valid ones."""
    keep = (torch.arange(frames.shape[1], device=frames.device)[None] < valid[:, None]).unsqueeze(-1)
    n = keep.sum(1).clamp(min=1)
    mean = (frames * keep).sum(1) / n
    std = (((frames - mean[:, None]) * keep) ** 2).sum(1).div(n).sqrt()
    top = frames.masked_fill(~keep, float("-inf")).amax(1)
    return torch.cat([mean, top, std], -1)


class SoundKindHead(nn.Module):
    """Standardise pooled features with the training set's statistics, then one linear layer."""

    def __init__(self, labels: list[str], dim: int):
        super().__init__()
        self.labels = labels
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = nn.Linear(dim, len(labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)

    def save(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(out / "head.safetensors"))
        (out / "labels.json").write_text(json.dumps(self.labels, indent=0))

    @classmethod
    def load(cls, path: Path) -> "SoundKindHead":
        if not (path / "head.safetensors").is_file() or not (path / "labels.json").is_file():
            raise ConfigError(f"{path}: no sound-kind head (head.safetensors, labels.json); "
                              "train one with `anymal pretrain sounds --ship`")
        state = load_file(str(path / "head.safetensors"))
        head = cls(json.loads((path / "labels.json").read_text()), state["mean"].shape[0])
        head.load_state_dict(state)
        return head.eval()


class PooledWhisper(Encoder):
    """Whisper tiny.en's encoder, pooled over the clip's own frames: one [3d] feature per clip.

    The input is the log-mel window [80 * 3000] with, last, how many encoder frames are the clip's own
    (Whisper pads every clip to 30 s); `anymal pretrain sounds` caches these features to fit the head."""

    modality, num_tokens = AUDIO.name, 1

    def __init__(self):
        super().__init__()
        self.whisper = ENCODERS.build("whisper-tiny.en", AUDIO.name)
        self.id, self.dim = "whisper-tiny.en-pooled", 3 * self.whisper.dim
        self.preprocess_id = f"{self.whisper.preprocess_id}|valid-frames|mean-max-std"

    def load(self, item: Any) -> tuple[torch.Tensor, int]:
        mel, valid = self.whisper.load(item)
        return torch.cat([mel.flatten(), torch.tensor([float(valid)])]), 1

    def preprocess(self, item: Any) -> torch.Tensor:
        return self.load(item)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mel = x[:, :-1].reshape(x.shape[0], self.whisper.net.dims.num_mel_bins, -1)
        with torch.no_grad():
            return pooled(self.whisper(mel), x[:, -1].round().long()).unsqueeze(1)


class WhisperSoundKinds(PerceptionEncoder):
    """Top-`entries` sound kinds (with probabilities) of a clip, from the shipped `SoundKindHead`.

    As a part of a composed audio encoder it reads the main part's Whisper frames (`reads_main`), so the
    clip is not encoded twice; its own input is only how many frames are the clip's."""

    entries, reads_main = 3, "whisper-tiny.en"

    def __init__(self, name: str, modality: str, head_dir: Path = HEAD_DIR):
        if modality != AUDIO.name:
            raise ConfigError(f"encoder {name!r} names sounds, not {modality!r}")
        head = SoundKindHead.load(head_dir)
        self.labels = head.labels
        super().__init__(name, modality)
        self.head = head
        digest = hashlib.sha256((head_dir / "head.safetensors").read_bytes()).hexdigest()[:12]
        self.preprocess_id = f"valid-frames|mean-max-std|sound-kinds:{digest}|top{self.entries}"

    def preprocess(self, item: Any) -> torch.Tensor:
        wave = load_audio(item, SAMPLE_RATE, WINDOW_SECONDS)
        return torch.tensor([float(valid_tokens(len(wave), FRAMES, SAMPLE_RATE, WINDOW_SECONDS))])

    def forward(self, x: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 1] valid frame counts + the main part's Whisper frames [B, 1500, d] -> [B, entries, ROW]."""
        if frames is None:
            raise ConfigError(f"{self.id} reads the Whisper frames of its composed encoder's main part; "
                              f"use it as `perception: [{self.id}]` of a {self.reads_main} audio encoder")
        with torch.no_grad():
            probs = self.head(pooled(frames.float(), x[:, 0].round().long())).softmax(-1)
        top = probs.topk(self.entries, dim=-1)
        rows = [[whole_picture_row(int(i), float(p)) for p, i in zip(ps, ids)]
                for ps, ids in zip(top.values.tolist(), top.indices.tolist())]
        return torch.tensor(np.asarray(rows, np.float32), device=x.device)


ENCODERS.register("whisper-tiny.en-sounds")(WhisperSoundKinds)
