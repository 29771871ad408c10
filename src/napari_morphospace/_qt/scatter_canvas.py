"""The vispy scene of the scatter plot: points, selected points, a density image, axes and a lasso line.

Drawing only: it knows nothing about layers or features. Points are drawn in
data coordinates with a ``PanZoomCamera``, so the axes show the real values
and vispy maps canvas pixels to data with the scene transforms.
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.visuals.transforms import STTransform

SELECTED_EDGE = (1.0, 1.0, 1.0, 1.0)


class ScatterCanvas:
    """A ``SceneCanvas`` with a scatter (``Markers``), a selection overlay, a density view and axes."""

    def __init__(self) -> None:
        self.canvas = scene.SceneCanvas(keys=None, size=(400, 400), bgcolor="#1e1e1e")
        grid = self.canvas.central_widget.add_grid(margin=4)
        self.y_axis = scene.AxisWidget(orientation="left", axis_font_size=7, tick_label_margin=4)
        self.y_axis.width_max = 44
        self.x_axis = scene.AxisWidget(orientation="bottom", axis_font_size=7, tick_label_margin=12)
        self.x_axis.height_max = 28
        grid.add_widget(self.y_axis, row=0, col=0)
        grid.add_widget(self.x_axis, row=1, col=1)
        self.view = grid.add_view(row=0, col=1, camera="panzoom")
        self.x_axis.link_view(self.view)
        self.y_axis.link_view(self.view)
        self.density = scene.visuals.Image(np.zeros((1, 1), np.float32), cmap="viridis", parent=self.view.scene)
        self.density.visible = False
        # Markers need data before vispy asks for their bounds: start with one hidden point.
        self.markers = scene.visuals.Markers(pos=np.zeros((1, 2), np.float32), parent=self.view.scene)
        self.selected = scene.visuals.Markers(pos=np.zeros((1, 2), np.float32), parent=self.view.scene)
        self.markers.visible = self.selected.visible = False
        self.outline = scene.visuals.Line(color="yellow", width=1.5, parent=self.view.scene)
        # vispy draws lower orders first: density, points, selection, lasso on top
        self.density.order, self.markers.order, self.selected.order, self.outline.order = 0, 1, 2, 3

    def canvas_to_data(self, position: tuple[float, float]) -> np.ndarray:
        """Data coordinates ``(x, y)`` of a canvas pixel position."""
        transform = self.canvas.scene.node_transform(self.view.scene)
        return transform.map(np.asarray(position, dtype=float))[:2]

    def pixel_size(self) -> tuple[float, float]:
        """Data units per canvas pixel along x and y at the current zoom."""
        rect = self.view.camera.rect
        width, height = self.view.size
        return abs(rect.width) / max(width, 1.0), abs(rect.height) / max(height, 1.0)

    def show_points(self, positions: np.ndarray, colors: np.ndarray, size: float) -> None:
        """Draw all points (``positions`` (N, 2) float32 in data coordinates, ``colors`` (N, 4) RGBA)."""
        self.markers.set_data(positions, face_color=colors, size=size, edge_width=0)
        self.markers.visible = True
        self.density.visible = False

    def clear(self) -> None:
        """Show nothing (no sources chosen)."""
        self.markers.visible = self.selected.visible = self.density.visible = False

    def show_selected(self, positions: np.ndarray, colors: np.ndarray, size: float) -> None:
        """Draw the selected points on top, larger and with a white outline."""
        if len(positions) == 0:
            self.selected.visible = False
            return
        self.selected.set_data(positions, face_color=colors, size=size + 3, edge_width=1.5, edge_color=SELECTED_EDGE)
        self.selected.visible = True

    def show_density(self, positions: np.ndarray, bins: int = 256) -> None:
        """Draw a log-scaled 2D histogram of the points instead of the points (for very large N)."""
        x, y = positions[:, 0], positions[:, 1]
        counts, x_edges, y_edges = np.histogram2d(x, y, bins=bins)
        image = np.log1p(counts.T).astype(np.float32)
        self.density.set_data(image)
        self.density.clim = (0.0, max(float(image.max()), 1e-6))
        self.density.transform = STTransform(
            scale=((x_edges[-1] - x_edges[0]) / bins, (y_edges[-1] - y_edges[0]) / bins),
            translate=(x_edges[0], y_edges[0]),
        )
        self.density.visible = True
        self.markers.visible = False

    def show_outline(self, vertices: np.ndarray | None) -> None:
        """Draw the lasso/rectangle being dragged (None hides it)."""
        if vertices is None or len(vertices) < 2:
            self.outline.visible = False
            return
        self.outline.set_data(np.asarray(vertices, dtype=np.float32))
        self.outline.visible = True

    def fit(self, positions: np.ndarray) -> None:
        """Zoom so that all points are in view, with a small margin."""
        if len(positions) == 0:
            return
        low, high = positions.min(axis=0), positions.max(axis=0)
        pad = np.maximum((high - low) * 0.05, 1e-3)
        self.view.camera.set_range(x=(low[0] - pad[0], high[0] + pad[0]), y=(low[1] - pad[1], high[1] + pad[1]), margin=0)
