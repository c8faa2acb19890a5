"""What the engine tells a request's handler, and what the handler streams to its client: typed events."""
from __future__ import annotations

from dataclasses import dataclass

from .protocol import ServeError


@dataclass(frozen=True)
class PromptUsage:
    """The prompt's token counts: {"text": n, <modality>: n} (sent once, before any text)."""
    counts: dict[str, int]


@dataclass(frozen=True)
class Delta:
    """New text of one choice; `tokens`: the tokens decoded for that choice so far."""
    choice: int
    text: str
    tokens: int


@dataclass(frozen=True)
class Finish:
    """A choice is done: `reason` is stop, length or content_filter; `tokens` its completion tokens."""
    choice: int
    reason: str
    tokens: int


@dataclass(frozen=True)
class Failed:
    """The request failed; the error goes to its client."""
    error: ServeError


Event = PromptUsage | Delta | Finish | Failed
