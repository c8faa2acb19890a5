"""One place that turns ids into objects: encoders, projectors and LLMs are all registered here.

A registry maps a name to a factory. Lookups of unknown names list what exists, so a typo in a
recipe is one clear error instead of an `if` chain falling through.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}
        self._fallback: Callable[..., T] | None = None

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            return fn

        return deco

    def register_fallback(self, fn: Callable[..., T]) -> Callable[..., T]:
        """Factory for names that are not registered (e.g. a Hugging Face model id or local dir)."""
        self._fallback = fn
        return fn

    def names(self) -> list[str]:
        return sorted(self._items)

    def add(self, name: str, item: T) -> T:
        """Register a record itself (not a factory): `get` returns it."""
        self.register(name)(item)
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def values(self) -> list[T]:
        """Registered items in registration order."""
        return list(self._items.values())

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def build(self, name: str, *args, **kwargs) -> T:
        if name in self._items:
            return self._items[name](name, *args, **kwargs)
        if self._fallback is not None:
            return self._fallback(name, *args, **kwargs)
        raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")


ENCODERS: Registry = Registry("encoder")
PROJECTORS: Registry = Registry("projector")
LLMS: Registry = Registry("llm")
STAGES: Registry = Registry("training stage")
