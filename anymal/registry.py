"""One place that turns ids into objects: every swappable part and named thing is a `Registry` —
encoders and their wrappers, projectors, LLMs and training stages (here), modalities, dataset builders, eval tasks and
suites, and retrieval pairs (beside what they register).

A registry maps a name to a factory, a record, or a lazily imported one. Lookups of unknown names list what exists, so a typo in a
recipe is one clear error instead of an `if` chain falling through.

A registry may name its `home`: the package whose import fills it. Reading the registry imports the
home first, so the ground layer (the typed configs) checks names against the real registrations
(`check`) without importing the layers above it, and no name list is ever written twice.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


_MISSING = object()


def import_target(target: str) -> Any:
    """The object a `module:attribute` string names, imported now (records name code they do not import)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class _Lazy:
    """A registered `module:attribute`, imported on first use (a heavy stack loads only when asked for)."""

    def __init__(self, target: str):
        self.target = target

    def load(self):
        return import_target(self.target)


class Registry(Generic[T]):
    """Names -> items (factories, records, or lazily imported ones), with a one-line `about` each.
    Reads like a dict (`REG[name]`, `name in REG`, iteration in registration order)."""

    made: list["Registry"] = []  # every registry, for `foreign_modules`

    def __init__(self, kind: str, home: str | None = None):
        Registry.made.append(self)
        self.kind, self._home = kind, home
        self._items: dict[str, Any] = {}
        self._about: dict[str, str] = {}
        self._fallback: Callable[..., T] | None = None

    def register(self, name: str, about: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            self._about[name] = about
            return fn

        return deco

    def add(self, name: str, item: T, about: str = "") -> T:
        """Register an item itself (a record, not a factory): `get` returns it."""
        self.register(name, about)(item)
        return item

    def lazy(self, name: str, target: str, about: str = "") -> None:
        """Register `module:attribute` without importing it yet."""
        self.register(name, about)(_Lazy(target))

    def _filled(self) -> dict[str, Any]:
        """The entries, after the home package has registered its own."""
        if self._home:
            home, self._home = self._home, None  # first: its own lookups while it imports must not recurse
            importlib.import_module(home)
        return self._items

    def check(self, name: str, field: str) -> None:
        """A ConfigError naming the config `field` when `name` is not registered."""
        if name not in self:
            raise ConfigError(f"{field}: unknown {self.kind} {name!r}; known: {', '.join(self.names())}")

    def register_fallback(self, fn: Callable[..., T]) -> Callable[..., T]:
        """Factory for names that are not registered (e.g. a Hugging Face model id or local dir)."""
        self._fallback = fn
        return fn

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The item `name` (imported now if it was registered lazily); `default` (as dict.get) or a
        ConfigError listing the known names when there is none."""
        if name not in self._filled():
            if default is not _MISSING:
                return default
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        item = self._items[name]
        if isinstance(item, _Lazy):
            item = self._items[name] = item.load()
        return item

    def about(self, name: str) -> str:
        return self._about.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._filled())

    def values(self) -> list[T]:
        """Registered items in registration order."""
        return [self.get(n) for n in self._filled()]

    def build(self, name: str, *args, **kwargs) -> T:
        if name in self._filled():
            return self.get(name)(name, *args, **kwargs)
        if self._fallback is not None:
            return self._fallback(name, *args, **kwargs)
        raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")

    # dict-like reading (and replacing, e.g. by a test's monkeypatch)
    def __contains__(self, name: str) -> bool:
        return name in self._filled()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._filled()))

    def __len__(self) -> int:
        return len(self._filled())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, item: T) -> None:
        self._items[name] = item

    def __delitem__(self, name: str) -> None:
        del self._items[name]


def foreign_modules() -> list[str]:
    """The modules outside anymal that registered something here (a user's own encoder, a test's tiny
    parts): a fresh process that imports them sees the same registries (the server's engine process)."""
    found = set()
    for reg in Registry.made:
        for item in reg._items.values():
            module = item.target.partition(":")[0] if isinstance(item, _Lazy) else getattr(item, "__module__", None)
            if isinstance(module, str) and module.partition(".")[0] not in ("anymal", "__main__", "__mp_main__"):
                found.add(module)
    return sorted(found)


ENCODERS: Registry = Registry("encoder", home="anymal.encoders")
WRAPPERS: Registry = Registry("encoder wrapper", home="anymal.encoders")  # around another modality's (video: frames)
PROJECTORS: Registry = Registry("projector", home="anymal.projectors")
LLMS: Registry = Registry("llm", home="anymal.llm.backbone")
STAGES: Registry = Registry("training stage", home="anymal.train.stages")
