"""One registry per extension point: ``register``, ``create``, ``names``; close-match suggestions on typos."""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from optik.core.errors import ConfigError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> factory. Names are case-insensitive; a duplicate name raises; an unknown one suggests."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, summary: str = "", **meta: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory, summary=summary or (factory.__doc__ or "").strip().split("\n")[0], **meta)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., T], *, summary: str = "", **meta: Any) -> None:
        key = name.lower()
        if key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = Entry(name, factory, summary, meta)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._entries

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name.lower()]
        except KeyError:
            close = difflib.get_close_matches(name.lower(), self._entries, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(self._entries[c].name) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}"
                f" (`optik {self.kind}s` lists them)."
            ) from None

    def create(self, name: str, **kwargs: Any) -> T:
        return self.get(name).factory(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        return [e.name for k, e in sorted(self._entries.items()) if fnmatch.fnmatch(k, pattern.lower())]

    def entries(self, pattern: str = "*") -> list[Entry[T]]:
        return [self.get(n) for n in self.names(pattern)]
