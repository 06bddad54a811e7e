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
    emphasise: Sequence[str] = (),
    size: tuple[int, int] = (640, 400),
) -> Path:
    """One line per named series (mean with a +-std band); ``hlines`` marks thresholds.

    Series named in ``emphasise`` are drawn thick, black and dashed (e.g. the attacker's pick);
    on a log2 axis the ticks are the x values themselves (1, 2, 4, 8), not powers of two.
    """
    from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

    fig = _figure(size)
    ax = fig.add_subplot()
    xs_all: set[float] = set()
    for name, (x, mean, std) in series.items():
        x, mean = np.asarray(x, float), np.asarray(mean, float)
        xs_all.update(x.tolist())
        style = dict(color="black", linestyle="--", linewidth=2.2, zorder=5) if name in emphasise else {}
        line, = ax.plot(x, mean, marker="o", label=name, **style)
        if std is not None:
            s = np.nan_to_num(np.asarray(std, float))
            ax.fill_between(x, mean - s, mean + s, alpha=0.12 if name in emphasise else 0.2, color=line.get_color())
    if log2_x and series:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(xs_all))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    elif xs_all and all(float(x).is_integer() for x in xs_all):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for label, y in (hlines or {}).items():
        ax.axhline(y, color="0.45", linestyle=":", linewidth=1.2)
        ax.annotate(label, (1.0, y), xycoords=("axes fraction", "data"), xytext=(-4, 3), textcoords="offset points",
                    ha="right", va="bottom", fontsize="x-small", color="0.3")
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


def save_comparison_grid(
    columns: Mapping[str, object],
    path: str | os.PathLike[str],
    *,
    highlight: str | None = None,
    title: str = "",
    tile_inches: float = 1.1,
) -> Path:
    """Images side by side: one column per named set (truth first), one row per sample.

    ``columns`` maps a label to a B x C x H x W tensor or array in [0, 1] (same B for all);
    the ``highlight`` column's label is drawn bold and framed (e.g. the attacker's pick).
    Pixels are shown as they are (nearest neighbour), never smoothed.
    """
    arrays = {name: np.clip(np.nan_to_num(np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=float)),
                            0.0, 1.0) for name, a in columns.items()}
    batch = min(a.shape[0] for a in arrays.values()) if arrays else 0
    fig = _figure((int(100 * tile_inches * max(1, len(arrays))), int(100 * (tile_inches * max(1, batch) + 0.45))))
    for c, (name, images) in enumerate(arrays.items()):
        for r in range(batch):
            ax = fig.add_subplot(max(1, batch), len(arrays), r * len(arrays) + c + 1)
            image = images[r].transpose(1, 2, 0)
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0.0, vmax=1.0,
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            chosen = name == highlight
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:red" if chosen else "0.7")
                spine.set_linewidth(2.5 if chosen else 0.5)
            if r == 0:
                ax.set_title(name, fontsize="small", fontweight="bold" if chosen else "normal")
    if title:
        fig.suptitle(title, fontsize="small")
    fig.tight_layout(pad=0.3)
    return _atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
