"""Sweeps: the cartesian grid of scenarios x attacks x defenses x seeds, resumable.

``load_grid`` turns GRID.yaml into :class:`Cell` s; ``run_sweep`` runs the cells that are not
yet in the results journal on an executor (``local`` processes or ``ray`` tasks) and appends
one JSON line per finished cell; ``aggregate`` groups the journal into mean +- std over seeds.
"""

from .aggregate import aggregate, write_sweep_report
from .cell import run_cell
from .grid import Cell, Grid, load_grid
from .journal import Journal
from .run import EXECUTORS, run_sweep

__all__ = ["Cell", "EXECUTORS", "Grid", "Journal", "aggregate", "load_grid", "run_cell", "run_sweep",
           "write_sweep_report"]
