"""How to decode: one set of generation settings and defaults for every front end (no torch here)."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields

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
    top_k: int = 0  # 0 = off: sample among the k likeliest tokens
    min_p: float = 0.0  # 0 = off: drop tokens below min_p x the likeliest one's probability
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
        self.top_p, self.min_p, self.repetition_penalty = float(self.top_p), float(self.min_p), float(self.repetition_penalty)

    def _check(self) -> None:
        def number(name: str, ok, expected: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise InputError(f"{name}: expected {expected}, got {v!r}")

        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens: expected an integer >= 1, got {self.max_new_tokens!r}")
        number("temperature", lambda v: v >= 0, "a number >= 0 (0 = greedy)")
        number("top_p", lambda v: 0 < v <= 1, "a number in (0, 1]")
        number("min_p", lambda v: 0 <= v < 1, "a number in [0, 1) (0 = off)")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InputError(f"top_k: expected an integer >= 0 (0 = off), got {self.top_k!r}")
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
            MinPLogitsWarper,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        procs = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.temperature > 0:
            procs.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k:
                procs.append(TopKLogitsWarper(self.top_k))
            if self.top_p < 1.0:
                procs.append(TopPLogitsWarper(self.top_p))
            if self.min_p:
                procs.append(MinPLogitsWarper(self.min_p))
        return procs


# Hugging Face `generate()` / OpenAI names for the same settings, and HF options anymal takes only at their default
ALIASES = {"stop_strings": "stop", "max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens"}
ONLY_DEFAULT = {"num_beams": 1, "num_return_sequences": 1, "use_cache": True}


def with_options(settings: GenerationSettings | None, options: dict) -> GenerationSettings:
    """`settings` (default: the shared defaults) with keyword options applied, in anymal's names or
    transformers' (`do_sample=False` is greedy; `do_sample=True` at temperature 0 samples at 1.0, as
    transformers does); an unknown option is an InputError listing the known ones."""
    s = copy.deepcopy(settings) if settings else GenerationSettings()
    options = dict(options)
    do_sample = options.pop("do_sample", None)
    known = [f.name for f in fields(GenerationSettings)]
    for key, value in options.items():
        name = ALIASES.get(key, key)
        if name in ONLY_DEFAULT:
            if value != ONLY_DEFAULT[name]:
                raise InputError(f"{key}={value!r}: not supported (anymal decodes one sequence per prompt, "
                                 "greedily or by sampling); leave it out")
            continue
        if name not in known:
            raise InputError(f"unknown generation option {key!r}; known: {', '.join(known + sorted(ALIASES))}, do_sample")
        setattr(s, name, [value] if name == "stop" and isinstance(value, str) else value)
    if do_sample is not None and not isinstance(do_sample, bool):
        raise InputError(f"do_sample: expected true or false, got {do_sample!r}")
    if do_sample is False:
        s.temperature = 0.0
    elif do_sample and s.temperature == 0:
        s.temperature = 1.0
    s.validate()
    return s
