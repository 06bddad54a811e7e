"""Pictures of health records: truth, reconstruction and their difference as heatmaps.

A time-series record (T x F, e.g. 48 hours x 76 columns) is a matrix, so the natural picture is
a heatmap with time downwards and columns across; one row of panels per record (truth |
reconstruction | absolute error). Flat table rows are stacked into one B x F matrix per panel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ShapeError
from .plots import _atomic_write

MAX_RECORDS = 4  # panels rows shown; larger batches show their first records (after matching)


def _matrices(records: Tensor, limit: int) -> list[np.ndarray]:
    data = records.detach().cpu().double().numpy()
    if data.ndim == 2:  # flat rows: one matrix for the batch
        return [data]
    if data.ndim != 3:
        raise ShapeError(f"record heatmaps need B x T x F or B x F tensors, got {tuple(records.shape)}")
    return [m for m in data[:limit]]


def save_record_heatmaps(
    truth: Tensor | None,
    reconstruction: Tensor,
    path: str | os.PathLike[str],
    *,
    title: str = "records",
    limit: int = MAX_RECORDS,
) -> Path:
    """PNG with truth / reconstruction / |error| heatmaps (reconstruction alone without truth).

    ``reconstruction`` must already be in truth order (apply the Hungarian assignment first).
    Truth and reconstruction share one colour scale so that equal values look equal.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recon = _matrices(reconstruction, limit)
    true = _matrices(truth, limit) if truth is not None else None
    columns = 1 if true is None else 3
    values = np.concatenate([m.ravel() for m in recon + (true or [])])
    finite = values[np.isfinite(values)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    hi = hi if hi > lo else lo + 1.0
    fig = Figure(figsize=(3.6 * columns, 2.6 * len(recon) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(len(recon), columns, squeeze=False))
    for i, r in enumerate(recon):
        panels = [("reconstruction", r, "viridis", (lo, hi))]
        if true is not None:
            err = np.abs(r - true[i])
            panels = [("truth", true[i], "viridis", (lo, hi)), panels[0],
                      ("|error|", err, "magma", (0.0, max(float(np.nanmax(err)) if err.size else 0.0, 1e-12)))]
        for j, (name, matrix, cmap, (vmin, vmax)) in enumerate(panels):
            ax = axes[i, j]
            image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{name} {i}" if len(recon) > 1 else name, fontsize=9)
            ax.set_xlabel("column", fontsize=8)
            ax.set_ylabel("hour" if r.shape[0] > 1 and reconstruction.ndim == 3 else "record", fontsize=8)
            ax.tick_params(labelsize=7)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=100))


def ordered(reconstruction: Tensor, assignment: list[int] | None) -> Tensor:
    """Reconstructions in truth order (identity without an assignment)."""
    if assignment is None:
        return reconstruction
    return reconstruction[torch.as_tensor(assignment, dtype=torch.long)]
