"""Latent space explorer: a vispy scatter plot of per-cell features linked both ways to Labels (or Points) layers.

The plot shows one point per row of the chosen layers' ``features``
(:class:`~napari_morphospace.viewer.plot_sources.PlotSources`: the rows, the
axis order, the way from the image back to the rows). Selecting points
highlights their cells in one "selected cells" layer that follows the source
shown now, and is shared through the viewer's session
(:class:`~napari_morphospace.viewer.plot_selection.PlotSelection`); clicking
a cell in a source layer selects its point(s). Colours follow
:mod:`~napari_morphospace.viewer.plot_colors`. The forms are
:mod:`._qt.scatter_form`, the mouse tools :mod:`._qt.scatter_mouse`, the
crops beside the plot :mod:`._qt.scatter_crops`; this widget composes them.

2D embeddings and clusters (:mod:`._qt.scatter_compute`) go into the session's
per-cell table, which writes them into the layers' features and saves them with the analysis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from napari.layers import Labels, Points
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..core.analysis.statistics import require_finite
from ..core.cells.selection import PointPicker, points_in_polygon, points_in_rectangle
from ..core.errors import InputError
from ..viewer.callbacks import weak_click_callback
from ..viewer.layers import focus_on, is_overlay, unwrap
from ..viewer.plot_colors import point_colors
from ..viewer.plot_selection import PlotSelection
from ..viewer.plot_sources import PlotSources
from ..viewer.session import session_for
from .combos import set_quietly
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .errors import report_errors
from .scatter_compute import ComputeRow
from .scatter_crops import LOOKUPS, CropPreview
from .scatter_form import PlotForm, SelectionPanel
from .scatter_mouse import PlotMouse
from .scatter_view import ScatterView
from .tasks import Tasks
from .track_overlay import MODES as TRACK_MODES

if TYPE_CHECKING:
    import napari

# Above this many points the plot opens as a density image: a million overdrawn markers show
# no structure, and drawing them costs seconds without a GPU. The user can untick it.
DENSITY_AUTO_POINTS = 200_000


class ScatterWidget(QWidget):
    """Dockable scatter plot of cell features, linked to the source Labels layers.

    Everything the form does is also a public method (``set_sources``,
    ``set_axes``, ``set_color_by``, ``select_rows``, ``select_polygon``,
    ``pick``, ...), so the explorer can be scripted and tested.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.sources = PlotSources(napari_viewer)
        self._positions = np.zeros((0, 2), np.float32)
        self._picker: Future | None = None  # the PointPicker of the plotted positions, being built
        self._axes: tuple[str, str] | None = None
        self._axis_choices: list[str] = []
        self._color_by = ""
        self.view = ScatterView()
        self.plot = self.view.plot
        self.tasks = Tasks("Scatter", parent=self)
        self.form, self.selections = PlotForm(), SelectionPanel()
        self.compute_row = ComputeRow(
            self.session, self.tasks, on_embedded=self._show_embedding, on_clustered=self._show_clusters
        )
        self.crops = CropPreview(self.plot.canvas.native, self.crop_ids, lambda: self.session.crop_set)
        self.mouse = PlotMouse(
            self.plot,
            self.form.tool_combo.currentText,
            on_lasso=report_errors(self.select_polygon),
            on_rectangle=report_errors(self.select_rectangle),
            on_click=report_errors(self._clicked),
            on_hover=self.hover,
            on_leave=self.crops.hover_thumbnail.hide,
            parent=self,
        )
        self.plot_selection = PlotSelection(napari_viewer, on_change=self._redraw_selection)
        self.note, self.hover_label = QLabel(), QLabel("hover a point to see its cell")
        for label in (self.note, self.hover_label):
            label.setWordWrap(True)
        self._lay_out()
        self._connect_forms()
        self.viewer.layers.events.inserted.connect(self._refresh_source_list)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._on_frame_changed)
        self._click_callback = weak_click_callback(self.select_at_image_position)  # a click on a cell selects it
        self.viewer.mouse_drag_callbacks.append(self._click_callback)
        self.session.cells_changed.connect(self._on_cells_changed)
        self.session.crop_set_changed.connect(self._forget_crops)
        self.session.named_selections_changed.connect(self._on_session_named_selections)
        self._refresh_source_list()
        self._on_session_named_selections(self.session.named_selections)

    # ------------------------------------------------------------------ form
    def _lay_out(self) -> None:
        content = QWidget()
        layout = QVBoxLayout(content)
        self.plot.canvas.native.setMinimumHeight(260)
        for part, stretch in (
            (self.form, 0),
            (self.note, 0),
            (self.plot.canvas.native, 1),
            (self.crops, 0),
            (self.view.legend, 0),
            (self.view.colorbar, 0),
            (self.hover_label, 0),
            (self.compute_row, 0),
            (self.selections, 0),
        ):
            layout.addWidget(part, stretch=stretch)
        scroll_in_dock(self, content)

    def _connect_forms(self) -> None:
        form, selections = self.form, self.selections
        form.source_list.itemChanged.connect(report_errors(lambda _item: self.set_sources(form.ticked_sources())))
        form.x_combo.currentTextChanged.connect(self._on_axes_chosen)
        form.y_combo.currentTextChanged.connect(self._on_axes_chosen)
        form.color_combo.currentTextChanged.connect(report_errors(self.set_color_by))
        form.size_spin.valueChanged.connect(self._redraw)
        form.opacity_spin.valueChanged.connect(self._recolor)
        form.density_check.toggled.connect(self._redraw)
        form.tool_combo.currentTextChanged.connect(self.mouse.set_tool)
        form.track_combo.currentTextChanged.connect(lambda _text: self._redraw())
        form.thumbnail_check.toggled.connect(lambda on: None if on else self.crops.hover_thumbnail.hide())
        # clicked passes `checked`: the lambda takes it and leaves it, the method gets only the name
        selections.keep_button.clicked.connect(
            report_errors(lambda _checked=False: self.save_selection(selections.selection_name.text()))
        )
        selections.selection_list.itemClicked.connect(report_errors(lambda item: self.recall_selection(item.text())))

    def _refresh_source_list(self, event: Any = None) -> None:
        """List the Labels and Points layers that have a features table; keep the current ticks."""
        names = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, (Labels, Points)) and not is_overlay(layer) and len(layer.features)
        ]
        self.form.list_sources(names, list(self.sources.layers))

    @report_errors
    def _on_layer_removed(self, event: Any) -> None:
        removed = unwrap(event.value)  # napari may hand the layer wrapped in its proxy
        layers = list(self.sources.layers.values())
        if any(layer is removed for layer in layers):
            self._read_sources([layer for layer in layers if layer is not removed])
            self._replot()
        self._refresh_source_list()

    @report_errors
    def _on_cells_changed(self, _columns: Any = None) -> None:
        """The session's cells changed (new columns in the features): plot them, keeping axes, zoom and selection."""
        if self.sources.layers:
            self._read_sources(list(self.sources.layers.values()))
            self._replot()

    # ------------------------------------------------------------------ sources and axes
    def set_sources(self, layers: Sequence[Labels | Points | str]) -> None:
        """Plot the cells of these Labels (or Points) layers, given as objects or names.

        Their features must share the axis columns. A Points layer's rows are
        its points in order (label id = 1-based point index). Rows without a
        latent (``mu_*`` columns not all finite) are left out, with a note.

        Raises
        ------
        InputError
            When a layer is neither Labels nor Points, has no features, or a
            Labels layer's features have no label id column.
        """
        self._read_sources(layers)
        self._refresh_source_list()
        self.form.set_density(len(self.sources) > DENSITY_AUTO_POINTS)
        self._replot(fit=True)

    def _read_sources(self, layers: Sequence[Any]) -> None:
        """Read the features of the chosen layers into the plot's rows (no drawing)."""
        self.sources = PlotSources(self.viewer, layers)
        self.plot_selection.use(self.sources)
        self.view.track_keys = None
        self._forget_crops()
        self.note.setText("\n".join(self.sources.notes))

    def _replot(self, fit: bool = False) -> None:
        """Draw the sources read last: axes kept when they still exist, selection taken from the session."""
        if not self.sources.layers:
            self._axes, self._positions = None, np.zeros((0, 2), np.float32)
            self.plot.clear()
            self.plot_selection.show_highlights()
            return
        self._fill_combos(fit=fit)
        self.plot_selection.show_highlights()
        self.plot_selection.follow(self.session.selection)  # cells selected elsewhere stay selected
        self.crops.match()

    def settings(self) -> dict[str, Any]:
        """What the plot shows (sources, axes, colour column), as JSON values: saved with the analysis."""
        x, y = self._axes or ("", "")
        return {
            "sources": list(self.sources.layers),
            "x": x,
            "y": y,
            "colour": self._color_by,
            "tracks": self.form.track_combo.currentText(),
        }

    def apply_settings(self, settings: Mapping[str, Any]) -> None:
        """Show what :meth:`settings` described (a reopened analysis); sources no longer in the viewer are left out."""
        names = [name for name in settings.get("sources", []) if name in self.viewer.layers]
        if not names:
            return
        self.set_sources(names)
        x, y = settings.get("x"), settings.get("y")
        if x in self._axis_choices and y in self._axis_choices:
            self.set_axes(x, y)
        if settings.get("colour") in self.sources.shared_columns():
            self.set_color_by(settings["colour"])
        if settings.get("tracks") in TRACK_MODES:
            self.form.track_combo.setCurrentText(settings["tracks"])

    def axis_columns(self) -> list[str]:
        """Numeric columns that can be plot axes: mu_* (most informative first), PCA_*, UMAP_*, TSNE_*, others."""
        return self.sources.axis_columns()

    def _fill_combos(self, fit: bool = True) -> None:
        axes = self._axis_choices = self.axis_columns()
        colors = self.sources.color_columns()
        self.form.offer_columns(axes, colors)
        if self._axes and set(self._axes) <= set(axes):
            x, y = self._axes
        elif len(axes) >= 2:
            x, y = axes[0], axes[1]
        else:
            raise InputError("the features need at least two numeric columns to plot (e.g. mu_0 and mu_1)")
        self._color_by = self._color_by if self._color_by in colors else ""
        set_quietly(self.form.color_combo, self._color_by)
        self.set_axes(x, y, fit=fit)

    @report_errors
    def _on_axes_chosen(self, _text: str) -> None:
        x, y = self.form.x_combo.currentText(), self.form.y_combo.currentText()
        if self.sources.tables and x and y:
            self.set_axes(x, y)

    def set_axes(self, x: str, y: str, fit: bool = True) -> None:
        """Plot feature column ``x`` against column ``y`` (``fit``: zoom to all points).

        Raises
        ------
        InputError
            When a column is missing or holds NaN.
        """
        axes = self._axis_choices
        for name in (x, y):
            if name not in axes:
                raise InputError(f"no numeric feature column {name!r} in all sources; choose one of {', '.join(axes)}")
        positions = np.column_stack([self.sources.column(x), self.sources.column(y)]).astype(np.float32)
        require_finite(positions, [x, y], what="plot columns")
        self._axes = (x, y)
        self._positions = positions
        if self._picker is not None:
            self._picker.cancel()  # other axes before it started: never build it
        self._picker = LOOKUPS.submit(PointPicker, positions)  # the plot does not wait for it
        set_quietly(self.form.x_combo, x)
        set_quietly(self.form.y_combo, y)
        self._recolor()
        if fit:
            self.plot.fit(positions)

    # ------------------------------------------------------------------ colours
    def set_color_by(self, column: str) -> None:
        """Colour points by a feature column: a palette and legend for categories, a colormap and bar for numbers."""
        if column and column not in self.sources.shared_columns():
            raise InputError(f"no feature column {column!r} in all sources; choose another column to colour by")
        self._color_by = column
        set_quietly(self.form.color_combo, column)
        self._recolor()

    def _recolor(self) -> None:
        """Colour the points from the colour column (opacity applied) and draw them."""
        if self.sources.tables:
            values = self.sources.column(self._color_by) if self._color_by else None
            opacity = self.form.opacity_spin.value()
            self.view.set_colors(point_colors(values, self._color_by, n=len(self._positions), opacity=opacity))
            self._redraw()

    # ------------------------------------------------------------------ drawing
    def _redraw(self) -> None:
        """Draw all points (or their density), the track paths and the selection."""
        if not len(self._positions):
            return
        size = self.form.size_spin.value()
        self.view.draw(
            self._positions, self.sources.in_shown_frame(), size, density=self.form.density_check.isChecked()
        )
        self.view.draw_tracks(self.form.track_combo.currentText(), self.sources, self._positions, size)
        self._redraw_selection()

    def select_track_at(
        self, x: float, y: float, add: bool = False, radius: float | tuple[float, float] | None = None
    ) -> np.ndarray | None:
        """Select the track whose path passes near data position ``(x, y)`` and show its cell nearest the click
        (time slider moved to its frame); returns the track's plot rows, None when no path is near.

        ``radius`` as in :meth:`pick` (default: a few canvas pixels at the current zoom).
        """
        hit = self.view.tracks.pick(x, y, self.view.pick_radius() if radius is None else radius)
        if hit is None:
            return None
        rows, row = hit
        self.select_rows(rows, add=add)
        self.focus_row(row)
        return rows

    def _redraw_selection(self) -> None:
        rows = self.selected_rows
        self.view.draw_selected(self._positions, rows, self.sources.in_shown_frame(), self.form.size_spin.value())
        self.selections.selection_count.setText(f"{len(rows)} of {len(self._positions)} selected")

    # ------------------------------------------------------------------ selection
    @property
    def selected_rows(self) -> np.ndarray:
        """Plot rows currently selected, sorted."""
        return self.plot_selection.rows

    def select_rows(self, rows: Sequence[int] | np.ndarray, add: bool = False) -> None:
        """Select these plot rows (or add them to the selection), highlight their cells, publish their crop ids."""
        self.plot_selection.select(rows, add=add)

    def crop_ids(self) -> np.ndarray | None:
        """Crop id of each plot row (int64), or None when a source's features have no ``crop_id`` column."""
        return self.sources.crop_ids()

    def select_polygon(self, vertices: np.ndarray, add: bool = False) -> np.ndarray:
        """Select the points inside a lasso polygon given in data coordinates; returns the rows."""
        rows = points_in_polygon(self._positions, vertices)
        self.select_rows(rows, add=add)
        return rows

    def select_rectangle(self, corner_a: Sequence[float], corner_b: Sequence[float], add: bool = False) -> np.ndarray:
        """Select the points inside the rectangle with these opposite corners (data coordinates); returns the rows."""
        rows = points_in_rectangle(self._positions, corner_a, corner_b)
        self.select_rows(rows, add=add)
        return rows

    def select_labels(
        self, source: str, label_ids: Sequence[int], t: int | None = None, add: bool = False
    ) -> np.ndarray:
        """Select the points of these labels of ``source`` (at frame ``t``; all frames when None); returns the rows."""
        rows = self.sources.index.rows_of(source, label_ids, t)
        self.select_rows(rows, add=add)
        return rows

    def pick(self, x: float, y: float, radius: float | tuple[float, float] | None = None) -> int | None:
        """Plot row of the point nearest to data position ``(x, y)``, or None when none is within ``radius``.

        ``radius`` is in data units (one per axis allowed); by default it is
        a few canvas pixels at the current zoom.
        """
        if not len(self._positions):
            return None
        return self._picker.result().nearest((x, y), self.view.pick_radius() if radius is None else radius)

    def _clicked(self, point: np.ndarray, add: bool) -> None:
        """A click on the plot: on a track's path selects the whole track,
        else the point under it (and shows its cell)."""
        if self.form.track_combo.currentText() != "off" and self.select_track_at(*point, add=add) is not None:
            return
        row = self.pick(*point)
        if row is not None:
            self.select_rows([row], add=add)
            self.focus_row(row)

    def _on_frame_changed(self, event: Any = None) -> None:
        if any(self.sources.has_time.values()) and len(self._positions):
            self._redraw()
            self.plot_selection.show_highlights()

    # ------------------------------------------------------------------ plot -> image
    def focus_row(self, row: int) -> None:
        """Centre the viewer on the cell of plot ``row`` (set its time frame and z, centre the camera) and show its
        crop."""
        self.show_crop(row)
        found = self.sources.cell_position(row)
        if found is not None:
            focus_on(self.viewer, *found)

    def show_crop(self, row: int) -> None:
        """Show the crop of plot ``row`` beside the plot (from the session's crop set, by ``crop_id``)."""
        self.crops.show_row(row, self.describe_row(row))

    def _forget_crops(self, crop_set: Any = None) -> None:
        """Other crops or other rows: match them again (a new crop set's rows at once, when plotted)."""
        self.crops.forget()
        if crop_set is not None and self.sources.tables:
            self.crops.match()

    def hover(self, pixel: tuple[float, float]) -> int | None:
        """What resting the cursor at canvas ``pixel`` does: describe the nearest point and show its crop there.

        Returns the plot row under the cursor (None: no point within a few
        pixels, and nothing is shown). The crop is shown only when the
        "show the crop under the cursor" box is ticked and the row has one.
        """
        row = self.pick(*self.plot.canvas_to_data(pixel)) if len(self._positions) else None
        self.hover_label.setText(self.describe_row(row) if row is not None else "")
        self.crops.hover(row if self.form.thumbnail_check.isChecked() else None, pixel)
        return row

    # ------------------------------------------------------------------ image -> plot
    def select_at_image_position(
        self,
        position: Sequence[float],
        add: bool = False,
        view_direction: Sequence[float] | None = None,
        dims_displayed: list[int] | None = None,
    ) -> np.ndarray:
        """Select the point(s) of the cell under a world ``position``; returns the rows.

        The cell is the one of the topmost visible source that has a cell
        there. Clicking the background selects nothing and keeps the
        selection, so a click that only meant to pan does not clear it.
        """
        found = self.sources.rows_at(position, view_direction, dims_displayed)
        if found.size:
            self.select_rows(found, add=add)
        return found

    def describe_row(self, row: int) -> str:
        """One line about the cell of plot ``row``: source, frame, label id, axis (and colour) values."""
        x, y = self._positions[row]
        text = f"{self.sources.describe(row)} · {self._axes[0]} {x:.3g}, {self._axes[1]} {y:.3g}"
        if self._color_by:
            text += f" · {self._color_by} {self.sources.column(self._color_by)[row]}"
        return text

    # ------------------------------------------------------------------ named selections
    def save_selection(self, name: str) -> None:
        """Keep the current selection under ``name`` (crop ids, or (source, t, label id) without them)."""
        self.plot_selection.save(name)
        self.selections.list_names(self.plot_selection.named.names)

    def _on_session_named_selections(self, selections: dict[str, tuple[int, ...]]) -> None:
        """Offer the selections the session got elsewhere (an opened analysis) in the list."""
        self.plot_selection.keep(selections)
        self.selections.list_names(self.plot_selection.named.names)

    def recall_selection(self, name: str) -> np.ndarray:
        """Select the cells of the selection kept under ``name`` that are plotted now; returns the rows."""
        return self.plot_selection.recall(name)

    # ------------------------------------------------------------------ 2D embeddings and clusters
    def _show_embedding(self, table: pd.DataFrame, axes: tuple[str, str]) -> None:
        """Write the embedding's columns into the session's cells and plot them (the features changed: zoom to fit)."""
        self._axes = axes
        self.session.set_columns(table["crop_id"], {axis: table[axis].to_numpy() for axis in axes})
        self.plot.fit(self._positions)

    def _show_clusters(self, table: pd.DataFrame) -> None:
        """Write the cluster ids into the session's cells and colour the points by them."""
        self.session.set_columns(table["crop_id"], {"cluster": table["cluster"].to_numpy()})
        if "cluster" in self.sources.shared_columns():
            self.set_color_by("cluster")
