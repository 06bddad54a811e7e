"""Reports: image grids and loss plots (HTML lives beside them)."""

from __future__ import annotations

from gradleak.report.plots import save_image_grid, save_loss_plot, tile_scale

__all__ = ["save_image_grid", "save_loss_plot", "tile_scale"]
