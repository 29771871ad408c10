"""What the scatter plot draws: all points (or their density), the selected points on top, track paths, the colour key.

Display only: the Scatter widget hands it the plotted positions, the rows
selected and the rows in the frame shown in the viewer (points of other
frames are dimmed). The colours come from
:mod:`~napari_morphospace.viewer.plot_colors`, the vispy scene is
:mod:`._qt.scatter_canvas`, the paths :mod:`._qt.track_overlay`.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QLabel

from ..core.analysis.tracks import TRACK_ID, track_keys
from ..viewer.plot_colors import PointColors, dim_other_frames
from ..viewer.plot_sources import PlotSources
from .hover_thumbnail import rgb_pixmap
from .scatter_canvas import ScatterCanvas
from .track_overlay import TrackOverlay

HOVER_RADIUS_PX = 6.0


class ScatterView:
    """The canvas (``plot``), the track paths (``tracks``), and the legend and colour bar of the colour column."""

    def __init__(self) -> None:
        self.plot = ScatterCanvas()
        self.tracks = TrackOverlay(self.plot.view)
        self.legend, self.colorbar = QLabel(), QLabel()
        self.legend.setWordWrap(True)
        self.base_colors = np.zeros((0, 4), np.float32)  # RGBA per point before dimming other frames
        self.track_keys: np.ndarray | None = None  # per plot row (core.analysis.tracks.track_keys), once computed

    def set_colors(self, colors: PointColors) -> None:
        """Colour the points with ``colors``; show its legend and colour bar."""
        self.base_colors = colors.colors
        self.legend.setText(colors.legend)
        self.colorbar.clear()
        if colors.colorbar is not None:
            self.colorbar.setPixmap(rgb_pixmap(colors.colorbar))

    def frame_colors(self, shown: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The colours of ``rows`` (or all points) as drawn: those outside the shown frame (``shown`` False) dimmed."""
        if rows is None:
            return dim_other_frames(self.base_colors, shown)
        return dim_other_frames(self.base_colors[rows], shown[rows])

    def draw(self, positions: np.ndarray, shown: np.ndarray, size: float, *, density: bool) -> None:
        """All points in their :meth:`frame_colors`, or their density."""
        if density:
            self.plot.show_density(positions)
        else:
            self.plot.show_points(positions, self.frame_colors(shown), size)

    def draw_selected(self, positions: np.ndarray, rows: np.ndarray, shown: np.ndarray, size: float) -> None:
        """Only the selected ``rows``, on top: a selection change never re-uploads all points."""
        self.plot.show_selected(positions[rows], self.frame_colors(shown, rows), size)
        self.plot.canvas.update()

    def draw_tracks(self, mode: str, sources: PlotSources, positions: np.ndarray, size: float) -> None:
        """The paths of tracked cells (sources with a ``track_id`` column), their cells of the shown frame ringed."""
        if mode == "off" or TRACK_ID not in sources.shared_columns():
            self.tracks.clear()
            return
        index = sources.index
        if self.track_keys is None or len(self.track_keys) != len(positions):  # once per set of sources
            self.track_keys = track_keys(sources.column(TRACK_ID), index.source_of_rows(np.arange(len(index))))
        colors = None if mode == "by time" else self.base_colors
        self.tracks.show(positions, self.track_keys, index.t, colors, sources.in_shown_frame(), size)

    def pick_radius(self) -> tuple[float, float]:
        """A few canvas pixels at the current zoom, in data units: how near a click or the cursor must be."""
        width, height = self.plot.pixel_size()
        return HOVER_RADIUS_PX * width, HOVER_RADIUS_PX * height
