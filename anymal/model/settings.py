"""How to decode: one set of generation settings and defaults for every front end (no torch here)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError

# Below this a temperature picks the most likely token anyway, and dividing the logits by it can
# overflow them to inf (then NaN probabilities): such a temperature decodes greedily.
GREEDY_BELOW = 1e-3
PENALTY_RANGE = (0.01, 100.0)  # a repetition penalty outside it overflows the logits it divides


@dataclass
class GenerationSettings:
    """How to decode; the one source of defaults for the CLI, the Python API, the server and eval."""
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field in range, or an InputError that names it (NaN never slips through a comparison);
        then normalised: JSON and JavaScript send 1 for 1.0, and transformers' processors refuse an int."""
        self._check()
        self.temperature = 0.0 if self.temperature < GREEDY_BELOW else float(self.temperature)
        self.top_p, self.repetition_penalty = float(self.top_p), float(self.repetition_penalty)

    def _check(self) -> None:
        def number(name: str, ok, expected: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise InputError(f"{name}: expected {expected}, got {v!r}")

        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens: expected an integer >= 1, got {self.max_new_tokens!r}")
        number("temperature", lambda v: v >= 0, "a number >= 0 (0 = greedy)")
        number("top_p", lambda v: 0 < v <= 1, "a number in (0, 1]")
        lo, hi = PENALTY_RANGE
        number("repetition_penalty", lambda v: lo <= v <= hi, f"a number in [{lo}, {hi:g}] (1 = off)")
        if not isinstance(self.stop, list) or not all(isinstance(x, str) and x for x in self.stop):
            raise InputError(f"stop: expected a list of non-empty strings, got {self.stop!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise InputError(f"seed: expected an integer, got {self.seed!r}")

    def processors(self):
        """transformers' logits processors for these settings (imported here: the settings themselves
        are read by every command's flags before the model stack loads); none for plain greedy
        decoding, which then never imports transformers."""
        if self.repetition_penalty == 1.0 and self.temperature == 0:
            return []
        from transformers import LogitsProcessorList
        from transformers.generation.logits_process import (
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        procs = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.temperature > 0:
            procs.append(TemperatureLogitsWarper(self.temperature))
            if self.top_p < 1.0:
                procs.append(TopPLogitsWarper(self.top_p))
        return procs
