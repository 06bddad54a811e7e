"""Error hierarchy: every user-facing problem is a ``GradleakError`` (a ``ValueError``).

The CLI turns any ``GradleakError`` into one line on stderr and exit status 2, so raise
these (with a message naming the offending value and the valid choices) for bad input.
"""

from __future__ import annotations


class GradleakError(ValueError):
    """Base class for problems caused by the user's input, not by a bug."""


class UnknownNameError(GradleakError):
    """A registry lookup for a name that is not registered."""


class ShapeError(GradleakError):
    """Tensors whose shapes do not fit together (observation vs model, batch vs data)."""


class DataError(GradleakError):
    """Missing, corrupt or unsafe data files."""


class ObservationError(GradleakError):
    """An observation that cannot be trusted or used (NaN/Inf, missing keys, bad format)."""
