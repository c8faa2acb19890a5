"""Text safety classifier: a small head on the shipped MiniLM sentence embeddings.

Classes: safe, violence, harassment, hate, self-harm, sexual. The head is multinomial logistic
regression (L-BFGS) on the 384-d all-MiniLM-L6-v2 embedding of the text, trained on
`data/prompts.jsonl` — prompts we wrote, including harmless ones that share words with harmful
ones ("How do I kill a Python process?"). A deterministic split by text hash holds 30% out for the
precision/recall that `anymal safety eval` prints. A text is unsafe when P(not safe) >= threshold;
its category is the most likely unsafe class. The trained head ships in `data/text_head.safetensors`
(`anymal safety train` rebuilds it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import ConfigError
from ..objectives import fit_linear_head

DATA = Path(__file__).with_name("data")
PROMPTS, HEAD = DATA / "prompts.jsonl", DATA / "text_head.safetensors"
CLASSES = ["safe", "violence", "harassment", "hate", "self-harm", "sexual"]


def load_prompts(path: Path = PROMPTS) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        r = json.loads(line)
        if r.get("label") not in CLASSES or not isinstance(r.get("text"), str) or not r["text"].strip():
            raise ConfigError(f"{path}:{i}: expected {{text, label in {CLASSES}}}, got {line[:80]!r}")
        rows.append(r)
    return rows


def split_of(text: str, held_out: float = 0.3) -> str:
    u = int(hashlib.sha256(text.strip().lower().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if u < held_out else "train"


@dataclass
class Verdict:
    unsafe: bool
    score: float  # P(not safe)
    category: str  # most likely unsafe class (meaningful when unsafe)


class TextClassifier:
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, threshold: float = 0.5):
        self.weight, self.bias, self.threshold = weight, bias, threshold

    @classmethod
    def load(cls, path: Path = HEAD, threshold: float = 0.5) -> "TextClassifier":
        if not path.is_file():
            raise ConfigError(f"{path}: no trained safety head; build it with `anymal safety train`")
        t = load_file(str(path))
        return cls(t["weight"], t["bias"], threshold)

    def probs(self, texts: list[str]) -> torch.Tensor:
        from ..text_embed import embed_texts

        with torch.no_grad():
            return torch.softmax(embed_texts(texts).float() @ self.weight + self.bias, -1)

    def check(self, texts: list[str]) -> list[Verdict]:
        if not texts:
            return []
        p = self.probs(texts)
        unsafe = 1 - p[:, 0]
        cats = p[:, 1:].argmax(1) + 1
        return [Verdict(bool(u >= self.threshold), float(u), CLASSES[int(c)]) for u, c in zip(unsafe, cats)]


def train_text_head(rows: list[dict], l2: float = 1e-3, out: Path | None = HEAD) -> TextClassifier:
    from ..text_embed import embed_texts

    x = embed_texts([r["text"] for r in rows]).float()
    y = torch.tensor([CLASSES.index(r["label"]) for r in rows])
    weight, bias = fit_linear_head(x, y, len(CLASSES), l2, scale=10.0)  # x10: unit-norm embeddings
    if out is not None:
        save_file({"weight": weight, "bias": bias}, str(out), metadata={"classes": ",".join(CLASSES)})
    return TextClassifier(weight, bias)


def precision_recall(flags: list[bool], truth: list[bool]) -> dict:
    tp = sum(f and t for f, t in zip(flags, truth))
    fp = sum(f and not t for f, t in zip(flags, truth))
    fn = sum(t and not f for f, t in zip(flags, truth))
    return {"precision": tp / (tp + fp) if tp + fp else float("nan"), "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "n": len(truth), "positives": sum(truth), "flagged": sum(flags)}
