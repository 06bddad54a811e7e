"""Summary charts for audits and sweeps: metric vs batch size, and privacy vs utility.

matplotlib's object API on the Agg canvas (as in :mod:`gradleak.report.plots`): no pyplot,
no global state, safe headless. Every writer is atomic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .plots import _atomic_write

Series = tuple[Sequence[float], Sequence[float], Sequence[float] | None]  # x, mean, std (or None)


def _figure(size: tuple[int, int]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_series_plot(
    series: Mapping[str, Series],
    path: str | os.PathLike[str],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log2_x: bool = True,
    hlines: Mapping[str, float] | None = None,
    size: tuple[int, int] = (640, 400),
) -> Path:
    """One line per named series (mean with a +-std band); ``hlines`` marks thresholds."""
    fig = _figure(size)
    ax = fig.add_subplot()
    for name, (x, mean, std) in series.items():
        x, mean = np.asarray(x, float), np.asarray(mean, float)
        ax.plot(x, mean, marker="o", label=name)
        if std is not None:
            s = np.nan_to_num(np.asarray(std, float))
            ax.fill_between(x, mean - s, mean + s, alpha=0.2)
    for label, y in (hlines or {}).items():
        ax.axhline(y, color="0.4", linestyle="--", linewidth=1)
        ax.text(ax.get_xlim()[0], y, f" {label}", va="bottom", fontsize="small", color="0.3")
    if log2_x and series:
        ax.set_xscale("log", base=2)
    if not series:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    elif len(series) <= 12:
        ax.legend(fontsize="small")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=100))


def save_frontier_plot(
    points: Sequence[tuple[str, float, float]],
    path: str | os.PathLike[str],
    *,
    title: str = "Privacy-utility frontier",
    xlabel: str = "client accuracy (utility)",
    ylabel: str = "attack PSNR, dB (leakage: lower is safer)",
    safe_below: float | None = None,
    size: tuple[int, int] = (640, 420),
) -> Path:
    """Scatter of (label, utility, leakage); the Pareto-optimal points are joined by a line."""
    fig = _figure(size)
    ax = fig.add_subplot()
    pts = [(lbl, float(u), float(p)) for lbl, u, p in points if np.isfinite(u) and np.isfinite(p)]
    for lbl, u, p in pts:
        ax.scatter([u], [p], s=30)
        ax.annotate(lbl, (u, p), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
    # Pareto front: higher utility and lower leakage are better.
    front = [q for q in pts if not any(o[1] >= q[1] and o[2] <= q[2] and (o[1], o[2]) != (q[1], q[2]) for o in pts)]
    front.sort(key=lambda q: q[1])
    if len(front) > 1:
        ax.plot([q[1] for q in front], [q[2] for q in front], color="tab:red", linewidth=1, label="Pareto front")
        ax.legend(fontsize="small")
    if safe_below is not None:
        ax.axhline(safe_below, color="0.4", linestyle="--", linewidth=1)
    if not pts:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
