"""What the Latent space dock shows in the viewer from its results: traversals, differences, Grad-CAM.

Qt-free, so a script with a viewer shows the grids and maps that
:mod:`~napari_morphospace.core.analysis.traversal`,
:mod:`~napari_morphospace.core.analysis.difference` and
:mod:`~napari_morphospace.core.analysis.gradcam` compute exactly as the dock
does. :class:`LatentViews` draws them with :func:`~.decoded.show_grid` and
:func:`~.decoded.show_difference` (beside and on the decoded cell, in the
crop set's pixel spacing) and keeps the last traversal, for its matplotlib
figure, and the last difference maps, to redraw them at another threshold.
Grad-CAM maps of the encoder go into the one "Grad-CAM" layer
(:class:`~.overlays.GradcamOverlay`), placed on the cells in their fields.
Each ``show_*`` returns the line the dock's status shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..core.analysis.gradcam import gradcam_encoder
from ..core.cells.crop_set import CropSet
from ..core.errors import InputError
from ..core.figures.traversal import group_traversal_figure, traversal_figure
from ..core.models import StackedConditionalVAE
from ..core.training.bundle import Bundle, check_compatible
from .decoded import GRID, GROUP_GRID, crop_spacing, show_difference, show_grid
from .layers import source_layers
from .overlays import GradcamOverlay, chosen_cells, place_maps
from .session import session_for


def encoder_gradcam(model: Any, crop_set: CropSet, positions: np.ndarray, dim: int, sign: int) -> np.ndarray:
    """Grad-CAM of ``sign · μ_dim`` on the crops at ``positions`` (reads a zarr/dask set: call it off the GUI
    thread)."""
    images = np.asarray(crop_set.subset(positions).images, dtype=np.float32)
    return gradcam_encoder(model, images, dim, sign=sign)


class LatentViews:
    """The traversal grid, group traversals and difference layers of one viewer, and what they were made from."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.session = session_for(viewer)
        self.difference: Mapping[str, Any] | None = None  # the last difference maps shown
        self._figure: tuple[str, Any, Any] | None = None  # the last traversal shown, to draw as a figure
        self.gradcam = GradcamOverlay(viewer)

    def spacing(self, spatial_ndim: int) -> tuple[float, ...]:
        """Physical size of a decoded pixel: the session's crop set's, else 1."""
        return crop_spacing(self.session.crop_set, spatial_ndim)

    def show_grid(self, grid: np.ndarray, dims: Sequence[int], values: Sequence[float]) -> str:
        """The traversal ``grid`` ``(dims, steps, C, [Z,] Y, X)`` in the "traversal grid" layer."""
        show_grid(self.viewer, grid, name=GRID, row_axis="dimension", spacing=self.spacing(grid.ndim - 3))
        self._figure = ("grid", grid, (list(dims), values))
        return f"Traversal grid: rows are dims {list(dims)}, columns {', '.join(f'{v:+.1f}' for v in values)}"

    def show_group_traversals(self, traversals: Mapping[Any, np.ndarray], dim: int, values: Sequence[float]) -> str:
        """The traversals of ``dim`` from each group's mean, one row per group, in the "group traversals" layer."""
        grid = np.stack(list(traversals.values()))
        show_grid(self.viewer, grid, name=GROUP_GRID, row_axis="group", spacing=self.spacing(grid.ndim - 3))
        self._figure = ("groups", traversals, values)
        return f"Group traversals of dim {dim}: rows {', '.join(map(str, traversals))}"

    def figure(self) -> Figure:
        """The matplotlib figure of the last traversal grid or group traversals shown."""
        if self._figure is None:
            raise InputError("make a traversal grid or group traversals first")
        kind, data, extra = self._figure
        if kind == "grid":
            dims, values = extra
            return traversal_figure(data, dims=dims, values=values)
        return group_traversal_figure(data, values=extra)

    def save_figure(self, path: str | Path) -> Path:
        """Save :meth:`figure` as a PNG."""
        path = Path(path)
        self.figure().savefig(path, dpi=150)
        return path

    def show_difference(self, maps: Mapping[str, Any], quantile: float = 0.9) -> str:
        """The |Δ| and 1 − SSIM maps of :func:`~napari_morphospace.core.analysis.difference.compare_images` on the
        decoded cell (largest change over channels).

        Only changes at or above ``quantile`` of each map are shown.
        """
        self.difference = maps
        self.threshold(quantile)
        message = maps["ssim_message"]
        return f"Difference {maps['what']}" + (f"; no SSIM map: {message}" if message else "")

    def threshold(self, quantile: float) -> None:
        """Redraw the last difference maps showing only changes at or above ``quantile``."""
        if self.difference is not None:
            show_difference(
                self.viewer, self.difference, quantile=quantile, spacing=self.spacing(self.difference["abs"].ndim - 1)
            )

    def gradcam_cells(
        self, bundle: Bundle, cells: str, selected: tuple[str, int, int | None] | None = None
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Positions in the session's crop set, and crop-table rows, of the cells Grad-CAM runs on.

        ``cells`` as :func:`~.overlays.chosen_cells` takes it (``selected``: the
        cell picked in a Labels layer). Everything that would stop the maps
        from being shown is refused here, before computing.

        Raises
        ------
        InputError
            For the conditional model (its encoder needs a reference image),
            crops the model was not made for, or a source layer not in the viewer.
        """
        if isinstance(bundle.model, StackedConditionalVAE):
            raise InputError(
                "Grad-CAM of the conditional model's encoder needs its reference image; use a β-VAE or ME-VAE"
            )
        crop_set = self.session.crop_set
        positions = chosen_cells(crop_set, cells, selection=self.session.selection.tolist(), selected=selected)
        check_compatible(bundle, crop_set)  # the maps mean nothing on crops the model was not made for
        rows = crop_set.table.iloc[positions].reset_index(drop=True)
        source_layers(self.viewer.layers, rows)
        return positions, rows

    def show_gradcam(self, maps: np.ndarray, rows: pd.DataFrame, dim: int, sign: int) -> str:
        """The maps of the cells ``rows`` on their fields, in the "Grad-CAM" layer (``metadata``: dim, sign, cells)."""
        placed = place_maps(self.viewer.layers, list(maps), rows)  # one map per row
        self.gradcam.show(placed, dim=dim, sign=sign)
        # Fields opened from files lie over each other: name them, so the user knows which one to look at.
        names = list(dict.fromkeys(part.source.name for part in placed))
        fields = f"{len(placed)} field(s) ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})"
        if len(placed) > 1:
            fields += "; select a field's layer to see its maps"
        return f"Grad-CAM of dim {dim} ({'+' if sign > 0 else '−'}): {len(rows)} cell(s) on {fields}"
