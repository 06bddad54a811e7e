"""A tiny name -> object registry, used for datasets, models, attacks and defenses.

Lookups of unknown names raise :class:`UnknownNameError` listing the valid choices, so the
CLI can print one helpful line instead of a traceback.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError
from .validation import did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries (classes or factory functions) with one-line descriptions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, *, description: str = "") -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; duplicate names are a bug."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            self._descriptions[name] = description or (obj.__doc__ or "").strip().split("\n")[0]
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name read from a file
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
                f"{did_you_mean(name, self.names())}"
            ) from None

    def describe(self, name: str) -> str:
        self.get(name)
        return self._descriptions[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
