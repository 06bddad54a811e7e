"""Picture of a rank analysis: per-layer RA-i with and without virtual constraints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..report.charts import _figure
from ..report.plots import _atomic_write
from .rank import RankReport


def save_rank_chart(report: RankReport, path: str | os.PathLike[str], *, title: str) -> Path:
    """Bars per layer (input side left): closed-form RA-i, RA-i with virtual constraints, and the
    numerical rank deficiency where it was computed. Above zero: that layer cannot be recovered."""
    names = [r.name for r in report.layers]
    pos = np.arange(len(names))
    fig = _figure((120 + 90 * len(names), 420))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(pos - 0.27, [r.closed_form_index for r in report.layers], 0.27, label="closed-form RA-i (R-GAP)")
    ax.bar(pos, [r.ra_index for r in report.layers], 0.27, label="RA-i with virtual constraints")
    deficits = [np.nan if r.numerical_rank is None else r.unknowns - r.numerical_rank for r in report.layers]
    ax.bar(pos + 0.27, deficits, 0.27, label="numerical rank deficiency")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(pos, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("constraints missing (> 0) / spare (< 0)")
    ax.set_title(f"{title}: {'full rank' if report.closed_form_full_rank else 'rank deficient'} (RA-i {report.index:+d})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _atomic_write(path, lambda f: fig.savefig(f, format="png"))
