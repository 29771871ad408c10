"""The vispy scene of the scatter plot: points, selected points, a density image, axes and a lasso line.

Drawing only: it knows nothing about layers or features. The axes show data
coordinates through a ``PanZoomCamera``, and vispy maps canvas pixels to
data with the scene transforms. The points (and the selected points) are
not one OpenGL marker each: before each frame whose view or points changed,
they are drawn into one picture of the view with numpy
(:mod:`~napari_morphospace.viewer.point_raster`), which the GPU, or software
OpenGL, shows as a single texture. That keeps a plot of a million points
fast without a GPU, and a selection change never redraws the other points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from vispy import scene
from vispy.visuals.transforms import STTransform

from ..viewer.point_raster import Rect, column_range, histogram2d, rasterize_points

SELECTED_EDGE = (1.0, 1.0, 1.0, 1.0)
SELECTED_GROWTH = 3.0  # selected dots are this many pixels wider than the others, inside a white ring
RING_WIDTH = 1.5


class _Canvas(scene.SceneCanvas):
    """A ``SceneCanvas`` that calls ``before_draw`` before it draws a frame (on screen or in ``render()``)."""

    def __init__(self, before_draw: Callable[[], None], **kwargs) -> None:
        self._before_draw = before_draw
        super().__init__(**kwargs)

    def _draw_scene(self, bgcolor=None) -> None:
        self._before_draw()
        super()._draw_scene(bgcolor=bgcolor)


def _rgba8(colors: np.ndarray) -> np.ndarray:
    """RGBA floats in [0, 1] as uint8."""
    return np.round(np.clip(np.asarray(colors, np.float32), 0.0, 1.0) * 255).astype(np.uint8)


class ScatterCanvas:
    """A ``SceneCanvas`` with a scatter, a selection overlay, a density view and axes."""

    def __init__(self) -> None:
        self.canvas = _Canvas(self._draw_points, keys=None, size=(400, 400), bgcolor="#1e1e1e")
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
        # the points and the selected points: each one RGBA picture of the view, redrawn by _draw_points
        self.points = scene.visuals.Image(np.zeros((1, 1, 4), np.uint8), clim=(0, 255), parent=self.view.scene)
        self.selected = scene.visuals.Image(np.zeros((1, 1, 4), np.uint8), clim=(0, 255), parent=self.view.scene)
        self.points.transform, self.selected.transform = STTransform(), STTransform()
        self.points.visible = self.selected.visible = False
        for picture in (self.density, self.points, self.selected):  # flat pictures: drawn in order, no depth test
            picture.set_gl_state("translucent", depth_test=False, cull_face=False)
        self.outline = scene.visuals.Line(color="yellow", width=1.5, parent=self.view.scene)
        # vispy draws lower orders first: density, points, selection, lasso on top
        self.density.order, self.points.order, self.selected.order, self.outline.order = 0, 1, 2, 3
        self._data: dict[
            str, tuple[np.ndarray, np.ndarray, float]
        ] = {}  # "points"/"selected" -> positions, RGBA8, size
        self._drawn: dict[str, tuple] = {}  # what each picture shows now: (view rect, shape), redrawn when it differs

    def view_rect(self) -> Rect:
        """The data rectangle the view shows now: (left, bottom, right, top)."""
        rect = self.view.camera.rect
        return float(rect.left), float(rect.bottom), float(rect.right), float(rect.top)

    def view_shape(self) -> tuple[int, int]:
        """Size of the view in physical pixels: (height, width)."""
        width, height = np.asarray(self.view.size, float) * self.canvas.pixel_scale
        return max(int(round(height)), 1), max(int(round(width)), 1)

    def _draw_points(self) -> None:
        """Before a frame: redraw the picture of the points (and of the selected points) if the view or they changed."""
        key = (self.view_rect(), self.view_shape())
        for name, visual in (("points", self.points), ("selected", self.selected)):
            if not visual.visible or self._drawn.get(name) == key:
                continue
            positions, colors, size = self._data[name]
            ring = _rgba8(SELECTED_EDGE) if name == "selected" else None
            picture = rasterize_points(
                positions,
                colors,
                key[0],
                key[1],
                size * self.canvas.pixel_scale,
                ring=ring,
                ring_width=RING_WIDTH * self.canvas.pixel_scale,
            )
            left, bottom, right, top = key[0]
            height, width = key[1]
            with visual.events.update.blocker():  # the frame being drawn shows it: no second frame
                visual.set_data(picture)
                visual.transform.scale = ((right - left) / width, (top - bottom) / height)
                visual.transform.translate = (left, bottom)
            self._drawn[name] = key

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
        """Draw all points (``positions`` (N, 2) in data coordinates, ``colors`` (N, 4) RGBA in [0, 1], ``size`` px)."""
        self._data["points"] = (np.asarray(positions, np.float32), _rgba8(colors), float(size))
        self._drawn.pop("points", None)
        self.points.visible = True
        self.density.visible = False
        self.canvas.update()

    def clear(self) -> None:
        """Show nothing (no sources chosen)."""
        self.points.visible = self.selected.visible = self.density.visible = False
        self.canvas.update()

    def show_selected(self, positions: np.ndarray, colors: np.ndarray, size: float) -> None:
        """Draw the selected points on top, larger and with a white outline."""
        self._drawn.pop("selected", None)
        if len(positions) == 0:
            self.selected.visible = False
            self.canvas.update()
            return
        self._data["selected"] = (np.asarray(positions, np.float32), _rgba8(colors), float(size) + SELECTED_GROWTH)
        self.selected.visible = True
        self.canvas.update()

    def show_density(self, positions: np.ndarray, bins: int = 256) -> None:
        """Draw a log-scaled 2D histogram of the points instead of the points (for very large N)."""
        counts, (x_edges, y_edges) = histogram2d(positions, bins)
        image = np.log1p(counts).astype(np.float32)
        self.density.set_data(image)
        self.density.clim = (0.0, max(float(image.max()), 1e-6))
        self.density.transform = STTransform(
            scale=((x_edges[-1] - x_edges[0]) / bins, (y_edges[-1] - y_edges[0]) / bins),
            translate=(x_edges[0], y_edges[0]),
        )
        self.density.visible = True
        self.points.visible = False
        self.canvas.update()

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
        low, high = column_range(positions)
        pad = np.maximum((high - low) * 0.05, 1e-3)
        self.view.camera.set_range(
            x=(low[0] - pad[0], high[0] + pad[0]), y=(low[1] - pad[1], high[1] + pad[1]), margin=0
        )
