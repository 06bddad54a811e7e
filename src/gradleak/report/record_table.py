"""Reconstructed health records as a table a clinician can read, uncertain cells marked.

Heatmaps show that a record leaked; a table shows *what* leaked: each cell is the value the
attacker recovered, in the variable's own units (continuous values de-standardised, categories
by name). The attack's own confidence (tableak: agreement of its ensemble) marks the cells it
is unsure of (pale, grey italic, with "?"), so a reader sees that the confident cells are the ones
to worry about. With the ground truth, cells are green where the attacker got the variable right
and red where not (the same rule as ``feature_accuracy``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import Tensor

from ..data.schema import RecordSchema
from .plots import _atomic_write

LOW_CONFIDENCE = 0.5  # a cell below this confidence is marked uncertain (less sure than even odds)
MAX_ROWS = 16  # records drawn (a batch of 128 would be unreadable)
MAX_VARIABLES = 14  # variables drawn, in schema order
RIGHT, WRONG, UNKNOWN = "#9fd89f", "#ef9a9a", "#ffffff"  # confident cells; unsure ones are paler


def cell_text(record: Tensor, schema: RecordSchema, feature_index: int) -> str:
    """One variable of one (standardised) record, as a reader would write it."""
    f = schema.features[feature_index]
    if f.kind == "categorical":
        k = int(record[f.start:f.stop].argmax())
        return f.categories[k] if k < len(f.categories) else f"#{k}"
    if f.kind == "binary":
        return "yes" if float(record[f.start]) > 0.5 else "no"
    value = float(schema.denormalise(record.reshape(1, -1))[0, f.start])
    return f"{value:.3g}"


def _pale(colour: str) -> str:
    """``colour`` mixed 70 % with white."""
    rgb = [int(colour[k:k + 2], 16) for k in (1, 3, 5)]
    return "#" + "".join(f"{round(c + 0.7 * (255 - c)):02x}" for c in rgb)


def save_record_table(
    reconstruction: Tensor, path: str | os.PathLike[str], *, schema: RecordSchema, confidence: Tensor | None = None,
    hits: Tensor | None = None, title: str = "reconstructed records", low: float = LOW_CONFIDENCE,
) -> Path:
    """PNG table of flat records (``N x columns``, in truth order when ``hits`` is given).

    ``confidence``: ``N x variables`` in [0, 1]; ``hits``: ``N x variables`` booleans (needs the
    private data, so only an evaluator passes it).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = min(len(reconstruction), MAX_ROWS)
    variables = min(len(schema.features), MAX_VARIABLES)
    text = [[cell_text(reconstruction[i], schema, j) for j in range(variables)] for i in range(rows)]
    colours = [[UNKNOWN if hits is None else (RIGHT if bool(hits[i, j]) else WRONG) for j in range(variables)]
               for i in range(rows)]
    unsure = np.zeros((rows, variables), dtype=bool) if confidence is None else \
        (confidence[:rows, :variables].double().numpy() < low)
    fig = Figure(figsize=(max(6.0, 1.05 * variables + 0.8), 0.24 * rows + 0.9), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    table = ax.table(cellText=[[t + ("?" if unsure[i, j] else "") for j, t in enumerate(row)]
                               for i, row in enumerate(text)],
                     cellColours=colours, colLabels=[f.name[:12] for f in schema.features[:variables]],
                     rowLabels=[f"record {i}" for i in range(rows)], loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for (i, j), cell in table.get_celld().items():
        if i >= 1 and j >= 0 and unsure[i - 1, j]:
            cell.set_facecolor(_pale(colours[i - 1][j]))
            cell.get_text().set_color("#666666")
            cell.get_text().set_fontstyle("italic")
    legend = [f"pale, grey, '?': the attack's own confidence < {low:g}"]
    if hits is not None:
        legend.insert(0, "green: recovered (same category, or within tolerance), red: not")
    more = []
    if len(reconstruction) > rows:
        more.append(f"first {rows} of {len(reconstruction)} records")
    if len(schema.features) > variables:
        more.append(f"first {variables} of {len(schema.features)} variables")
    ax.set_title(title + (f" ({', '.join(more)})" if more else "") + "\n" + "; ".join(legend), fontsize=8)
    return _atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=100, bbox_inches="tight"))
