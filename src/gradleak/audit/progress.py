"""One live progress bar for a whole audit: the stage, the task, and an ETA.

Tasks are planned up front with an estimated cost in "units" (one unit ~ one forward and
double-backward pass of the victim, see :class:`~gradleak.audit.battery.Plan`), so the bar's
rate, and hence its ETA, is meaningful across attacks of very different speed. A task
reports its own iterations; whatever it leaves unreported is credited when it ends.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm import tqdm


class AuditProgress:
    """A tqdm bar over planned units; :meth:`task` scopes the work of one step."""

    def __init__(self, *, total: float, enabled: bool = True) -> None:
        self.bar = tqdm(total=max(1, round(total)), desc="audit", unit="u", file=sys.stderr, disable=not enabled,
                        dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
        self.done = 0.0

    def add(self, units: float) -> None:
        """Grow the plan (stages whose size is known only later, e.g. after the battery)."""
        self.bar.total = max(1, round(self.bar.total + units))
        self.bar.refresh()

    def label(self, text: str) -> None:
        """Show what runs now (within a task)."""
        self.bar.set_postfix_str(text, refresh=False)

    def _advance(self, units: float) -> None:
        before = round(self.done)
        self.done += units
        step = round(self.done) - before
        if step > 0:
            self.bar.update(step)

    @contextmanager
    def task(self, stage: str, label: str, *, units: float, per_step: float = 1.0) -> Iterator[Callable[[int], None]]:
        """Yield ``advance(n)`` for n finished iterations (each worth ``per_step`` units)."""
        self.bar.set_description_str(stage)
        self.bar.set_postfix_str(label)
        spent = 0.0

        def advance(n: int) -> None:
            nonlocal spent
            step = min(n * per_step, units - spent)
            if step > 0:
                spent += step
                self._advance(step)

        try:
            yield advance
        finally:
            self._advance(units - spent)

    def close(self) -> None:
        self.bar.close()
