"""Strict readers for values that come from files or the command line.

JSON and YAML happily carry ``"8"`` where 8 was meant, ``8.5`` where an integer was, ``true``
where a number was, and keys nobody reads. Python's ``int()``/``float()``/``bool()`` would
silently coerce those, so a malformed file could run with values nobody chose. These helpers
accept exactly one spelling per type and raise :class:`GradleakError` naming the field, the
value received and what is allowed.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable, Mapping, Sequence

from .errors import GradleakError

MAX_COUNT = 2**31 - 1  # iterations, restarts, sizes: larger values are typos, and overflow int32 kernels


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for a close match of ``name`` among ``choices``, else ``""``.

    Appended at the end of a message, so messages keep their ``unknown X 'y'; choose one of: ...`` start.
    """
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_keys(
    mapping: Mapping[str, Any], *, where: str, required: Sequence[str] = (), optional: Sequence[str] = ()
) -> None:
    """Refuse missing required keys and keys nobody reads (a misspelling is never ignored)."""
    known = [*required, *optional]
    unknown = [k for k in mapping if k not in known]
    if unknown:
        key = unknown[0]
        raise GradleakError(f"{where}: unknown field {_show(key)}; valid fields: {', '.join(known)}"
                            f"{did_you_mean(key, known)}")
    missing = [k for k in required if k not in mapping]
    if missing:
        raise GradleakError(f"{where}: missing field {missing[0]!r}")


def as_mapping(value: Any, *, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GradleakError(f"{what} must be a JSON object, got {_show(value)}")
    return value


def as_bool(value: Any, *, what: str) -> bool:
    """Only the JSON booleans ``true``/``false``: not ``"false"``, not 0/1."""
    if not isinstance(value, bool):
        raise GradleakError(f"{what} must be true or false, got {_show(value)}")
    return value


def as_int(value: Any, *, what: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """A JSON integer (not a string, a float such as 8.5 or 8.0, nor a boolean) within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise GradleakError(f"{what} must be an integer, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise GradleakError(f"{what} must be >= {minimum}, got {_show(value)}")
    if maximum is not None and value > maximum:
        raise GradleakError(f"{what} must be <= {maximum}, got {_show(value)}")
    return value


def as_float(value: Any, *, what: str, minimum: float | None = None, positive: bool = False) -> float:
    """A finite JSON number (integers allowed, booleans and strings not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GradleakError(f"{what} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise GradleakError(f"{what} must be a finite number, got {_show(value)}")
    if positive and number <= 0:
        raise GradleakError(f"{what} must be > 0, got {_show(value)}")
    if minimum is not None and number < minimum:
        raise GradleakError(f"{what} must be >= {minimum}, got {_show(value)}")
    return number


def as_str(value: Any, *, what: str, choices: Sequence[str] | None = None) -> str:
    if not isinstance(value, str):
        raise GradleakError(f"{what} must be a string, got {_show(value)}")
    if choices is not None and value not in choices:
        raise GradleakError(f"{what} cannot be {value!r}; choose one of: {', '.join(choices)}"
                            f"{did_you_mean(value, choices)}")
    return value


def as_shape(value: Any, *, what: str) -> tuple[int, ...]:
    """A non-empty JSON list of positive integers (not a string such as ``"1,8,8"``)."""
    if not isinstance(value, list) or not value:
        raise GradleakError(f"{what} must be a non-empty list of positive integers, got {_show(value)}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise GradleakError(f"{what} must be a non-empty list of positive integers, got {_show(value)}")
    return tuple(value)


# ------------------------------------------------------------------ typed config dataclasses
# Count options whose 0 is documented as "off": no early stop (patience), torch's thread setting (threads).
ZERO_MEANS_OFF = frozenset({"patience", "threads"})


def config_value(config_cls: type, name: str, value: Any, *, owner: str) -> Any:
    """``value`` checked against field ``name`` of dataclass ``config_cls`` (its type hint and default).

    Typed by the hint (``int``, ``float``, ``bool``, ``str``, ``dict``, ``X | None``); ranges follow
    the default's sign, since every numeric option here is a count, a weight, a size or a tolerance:
    an int whose default is >= 1 must be >= 1 (and at most MAX_COUNT) unless 0 means "off" (:data:`ZERO_MEANS_OFF`),
    other numbers with a non-negative default must be >= 0, and step sizes (``lr``, ``*_lr``) must be > 0. Floats
    must be finite.
    """
    import dataclasses
    import typing

    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    try:
        hint = typing.get_type_hints(config_cls)[name]
    except Exception:  # an annotation that cannot be resolved: leave the value to the config's own checks
        return value
    what = f"{owner}: option {name!r}"
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
    origin = typing.get_origin(hint) or hint
    f = fields[name]
    default = f.default if f.default is not dataclasses.MISSING else None
    non_negative = isinstance(default, (int, float)) and not isinstance(default, bool) and default >= 0
    if origin is bool:
        return as_bool(value, what=what)
    if origin is int:
        minimum = 1 if isinstance(default, int) and not isinstance(default, bool) and default >= 1 else (
            0 if non_negative else None)
        minimum = 0 if name in ZERO_MEANS_OFF else minimum
        return as_int(value, what=what, minimum=minimum, maximum=MAX_COUNT)
    if origin is float:
        step = name == "lr" or name.endswith("_lr")
        return as_float(value, what=what, minimum=0.0 if non_negative else None, positive=step)
    if origin is str:
        return as_str(value, what=what)
    if origin is dict:
        return as_mapping(value, what=what)
    return value


def as_column_statistics(value: Any, *, what: str, columns: int | None = None) -> dict[str, list[float]]:
    """``{"mean": [...], "std": [...]}`` (optionally ``"min"``, ``"max"``: the attacker's own column
    range): equally long lists of finite numbers (std >= 0), one per column."""
    stats = as_mapping(value, what=what)
    check_keys(stats, where=what, required=("mean", "std"), optional=("min", "max"))
    lists = {}
    for key in ("mean", "std", *(k for k in ("min", "max") if k in stats)):
        entries = stats[key]
        if not isinstance(entries, list) or not entries:
            raise GradleakError(f"{what} {key} must be a non-empty list of numbers, got {_show(entries)}")
        lists[key] = [as_float(v, what=f"{what} {key} entry", minimum=0.0 if key == "std" else None) for v in entries]
    if len({len(v) for v in lists.values()}) != 1 or (columns is not None and len(lists["mean"]) != columns):
        expected = f"{columns}" if columns is not None else "as many stds as means"
        raise GradleakError(f"{what} has {len(lists['mean'])} means and {len(lists['std'])} stds; expected {expected}")
    return stats
