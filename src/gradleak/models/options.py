"""Typed, JSON-able model options.

Each model declares a frozen dataclass of options whose fields are made with :func:`opt`
(default + one-line help + optional choices). :func:`parse_options` turns the untyped dict
that arrives from the CLI or from a saved observation into that dataclass, so a typo or a
wrong type is one clear :class:`GradleakError` instead of a silent default.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence, TypeVar

from ..errors import GradleakError

O = TypeVar("O")


def opt(
    default: Any, help: str, *, choices: Sequence[str] | None = None, minimum: float | None = None
) -> Any:
    """A dataclass field with a documented default and, optionally, the allowed strings or
    the smallest allowed number (for a list option: of each entry)."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "minimum": minimum}
    return dataclasses.field(default=default, metadata=meta)


def _coerce(model: str, name: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of the field's default; JSON lists become tuples."""
    expected = type(default).__name__
    ok: bool
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
        expected = "a finite float"
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        expected = "list of int"
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        value = tuple(value) if ok else value
    else:  # pragma: no cover - option types are limited to the above on purpose
        raise TypeError(f"unsupported option type {expected} for {model}.{name}")
    if not ok:
        raise GradleakError(f"model {model!r}: option {name!r} must be {expected}, got {value!r}")
    return value


def parse_options(model: str, options_type: type[O], options: Mapping[str, Any]) -> O:
    """Build ``options_type`` from ``options``; unknown names, wrong types and values outside
    the declared choices raise :class:`GradleakError` naming the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        valid = ", ".join(fields) if fields else "(none)"
        from ..validation import did_you_mean

        raise GradleakError(
            f"model {model!r} has no option {unknown[0]!r}; valid options: {valid}{did_you_mean(unknown[0], fields)}"
        )
    values: dict[str, Any] = {}
    for name, value in options.items():
        f = fields[name]
        value = _coerce(model, name, value, f.default)
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise GradleakError(
                f"model {model!r}: option {name!r} cannot be {value!r}; choose one of: "
                + ", ".join(choices)
            )
        minimum = f.metadata.get("minimum")
        numbers = value if isinstance(value, tuple) else (value,)
        if minimum is not None and any(v < minimum for v in numbers):
            raise GradleakError(
                f"model {model!r}: option {name!r} must be >= {minimum}, got {value!r}"
            )
        values[name] = value
    return options_type(**values)


def options_to_json(options: Any) -> dict[str, Any]:
    """Options dataclass -> plain JSON-able dict (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()
    }


def describe_options(options_type: type) -> dict[str, dict[str, Any]]:
    """``{name: {"default", "help", "choices", "minimum"}}`` for ``gradleak models``."""
    out: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(options_type):
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        choices = f.metadata.get("choices")
        out[f.name] = {
            "default": default,
            "help": f.metadata.get("help", ""),
            "choices": list(choices) if choices is not None else None,
            "minimum": f.metadata.get("minimum"),
        }
    return out
