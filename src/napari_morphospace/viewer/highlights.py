"""The selected cells in the image: one "selected cells" Labels layer and one "selected points" Points layer.

Qt-free. Each follows the source shown now
(:class:`~napari_morphospace.viewer.layers.SourceOverlay`): the selected
cells of the shown Labels source at its shown frame, drawn white with a
lookup table over that frame (:func:`~napari_morphospace.core.cells.selection.highlight_mask`),
and rings around the selected points of the shown Points source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Labels, Points
from napari.utils.colormaps import DirectLabelColormap

from ..core.cells.selection import highlight_mask
from .layers import SourceOverlay
from .plot_sources import PlotSources

# White, like the outline of selected points: napari's random label colours are never white.
HIGHLIGHT_COLOR = (1.0, 1.0, 1.0, 1.0)
SELECTED_CELLS = "selected cells"  # the one highlight layer of Labels sources
SELECTED_POINTS = "selected points"  # the one highlight layer of Points sources


class SelectionHighlights:
    """Show the selected plot rows of :class:`PlotSources` in the image (``show``), for the source shown now."""

    def __init__(self, viewer: Any) -> None:
        self.sources = PlotSources(viewer)
        self.selected = np.zeros(0, bool)
        self.cells = SourceOverlay(
            viewer,
            SELECTED_CELLS,
            "labels",
            self._render_cells,
            opacity=0.9,
            blending="translucent",
            colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: HIGHLIGHT_COLOR}),
        )
        self.points = SourceOverlay(
            viewer,
            SELECTED_POINTS,
            "points",
            self._render_points,
            face_color=[0.0, 0.0, 0.0, 0.0],
            border_color=list(HIGHLIGHT_COLOR),
        )

    def show(self, sources: PlotSources, selected: np.ndarray) -> None:
        """Highlight the rows where ``selected`` (one bool per plot row of ``sources``) is True."""
        self.sources, self.selected = sources, selected
        layers = sources.layers.values()
        self.cells.set_sources([layer for layer in layers if isinstance(layer, Labels)])
        self.points.set_sources([layer for layer in layers if isinstance(layer, Points)])

    def _render_cells(self, layer: Labels, current: np.ndarray | None) -> tuple[np.ndarray, dict] | None:
        """The mask of the shown Labels source (its shown frame), written into ``current`` when it fits."""
        sources = self.sources
        source = sources.source_name(layer)
        if source is None:
            return None
        t = sources.current_t(source) if sources.has_time[source] else None
        ids = sources.index.selected_labels(self.selected, source, t)
        frame = sources.label_frame(source)
        fits = current is not None and current.shape == frame.shape and current.dtype == np.uint8
        mask = highlight_mask(frame, ids, max_label=sources.max_label[source], out=current if fits else None)
        return mask, {"scale": layer.scale[-frame.ndim :], "translate": layer.translate[-frame.ndim :]}

    def _render_points(self, layer: Points, current: Any) -> tuple[np.ndarray, dict] | None:
        """The selected points of the shown Points source, drawn as rings around them.

        The layer is added with the first selection, not with the plot: napari
        takes ~40 ms to add even an empty Points layer. Once there it stays
        (emptied when nothing is selected), keeping what the user styled.
        """
        source = self.sources.source_name(layer)
        if source is None:
            return None
        chosen = self.sources.index.selected_labels(self.selected, source) - 1  # label id = 1-based point index
        if current is None and not len(chosen):
            return None
        size = float(np.max(layer.size, initial=1.0)) * 1.5
        return layer.data[chosen], {
            "ndim": layer.ndim,
            "scale": layer.scale,
            "translate": layer.translate,
            "size": size,
        }


__all__ = ["HIGHLIGHT_COLOR", "SELECTED_CELLS", "SELECTED_POINTS", "SelectionHighlights"]
