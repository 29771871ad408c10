"""Latent space explorer: a vispy scatter plot of per-cell features linked both ways to Labels (or Points) layers.

The plot shows one point per row of the chosen layers' ``features``
(:class:`~napari_morphospace.viewer.plot_sources.PlotSources`: the rows, the
axis order, the way from the image back to the rows). Selecting points
highlights their cells in one "selected cells" layer that follows the source
shown now (:class:`~napari_morphospace.viewer.highlights.SelectionHighlights`);
clicking a cell in a source layer selects its point(s). Colours follow
:mod:`~napari_morphospace.viewer.plot_colors`. The forms are
:mod:`._qt.scatter_form`, the mouse tools :mod:`._qt.scatter_mouse`, the
crops beside the plot :mod:`._qt.scatter_crops`; this widget composes them.

The selection and the named selections are published to the viewer's
:class:`~napari_morphospace.viewer.session.Session` as crop ids, for the
Annotate, Analysis and Latent space widgets; rows without a ``crop_id``
column (features not made by morphospace) are not published. 2D embeddings
and clusters computed here go into the session's per-cell table, which
writes them into the layers' features and saves them with the analysis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from napari.layers import Labels, Points
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..core.analysis.cell_table import EMBEDDINGS, add_cluster_column, add_embedding_columns, mu_columns
from ..core.analysis.statistics import require_finite
from ..core.analysis.tracks import TRACK_ID, track_keys
from ..core.cells.selection import NamedSelections, PointPicker, points_in_polygon, points_in_rectangle
from ..core.errors import InputError
from ..viewer.callbacks import weak_click_callback
from ..viewer.highlights import SelectionHighlights
from ..viewer.layers import focus_on, is_overlay, unwrap
from ..viewer.plot_colors import dim_other_frames, point_colors
from ..viewer.plot_sources import PlotSources
from ..viewer.session import session_for
from .combos import set_quietly
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .errors import report_errors
from .hover_thumbnail import rgb_pixmap
from .scatter_canvas import ScatterCanvas
from .scatter_crops import LOOKUPS, CropPreview
from .scatter_form import ComputeRow, PlotForm, SelectionPanel
from .scatter_mouse import PlotMouse
from .tasks import Tasks
from .track_overlay import MODES as TRACK_MODES
from .track_overlay import TrackOverlay

if TYPE_CHECKING:
    import napari

HOVER_RADIUS_PX = 6.0
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
        self.named_selections = NamedSelections()
        self.sources = PlotSources(napari_viewer)
        self._positions = np.zeros((0, 2), np.float32)
        self._base_colors = np.zeros((0, 4), np.float32)
        self._selected = np.zeros(0, bool)
        self._picker: Future | None = None  # the PointPicker of the plotted positions, being built
        self._axes: tuple[str, str] | None = None
        self._axis_choices: list[str] = []
        self._color_by = ""
        self._track_keys: np.ndarray | None = (
            None  # track key per plot row (core.analysis.tracks.track_keys), while tracks are shown
        )
        self._linking = False  # True while a selection propagates: ignore re-entrant selections
        self._publishing = False  # True while this widget writes to the session: ignore its echo

        self.plot = ScatterCanvas()
        self.track_overlay = TrackOverlay(self.plot.view)
        self.form, self.compute_row, self.selections = PlotForm(), ComputeRow(), SelectionPanel()
        self.crops = CropPreview(self.plot.canvas.native, self.crop_ids, lambda: self.session.crop_set)
        self.mouse = PlotMouse(self.plot, self.form.tool_combo.currentText, on_lasso=report_errors(self.select_polygon),
                               on_rectangle=report_errors(self.select_rectangle), on_click=report_errors(self._clicked),
                               on_hover=self.hover, on_leave=self.crops.hover_thumbnail.hide, parent=self)  # fmt: skip
        self.highlights = SelectionHighlights(napari_viewer)
        self.note, self.legend, self.colorbar = QLabel(), QLabel(), QLabel()
        self.hover_label = QLabel("hover a point to see its cell")
        for label in (self.note, self.legend, self.hover_label):
            label.setWordWrap(True)
        self.tasks = Tasks("Scatter", parent=self)
        self._lay_out()
        self._connect_forms()
        self.viewer.layers.events.inserted.connect(self._refresh_source_list)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._on_frame_changed)
        self._click_callback = weak_click_callback(self.select_at_image_position)  # a click on a cell selects it
        self.viewer.mouse_drag_callbacks.append(self._click_callback)
        self.session.cells_changed.connect(self._on_cells_changed)
        self.session.latents_changed.connect(self._describe_compute)
        self.session.crop_set_changed.connect(self._forget_crops)
        self.session.selection_changed.connect(self._on_session_selection)
        self.session.named_selections_changed.connect(self._on_session_named_selections)
        self._refresh_source_list()
        self._describe_compute()
        self._on_session_named_selections(self.session.named_selections)

    # ------------------------------------------------------------------ form
    def _lay_out(self) -> None:
        content = QWidget()
        layout = QVBoxLayout(content)
        self.plot.canvas.native.setMinimumHeight(260)
        for part, stretch in ((self.form, 0), (self.note, 0), (self.plot.canvas.native, 1), (self.crops, 0),
                              (self.legend, 0), (self.colorbar, 0), (self.hover_label, 0), (self.compute_row, 0),
                              (self.selections, 0)):  # fmt: skip
            layout.addWidget(part, stretch=stretch)
        scroll_in_dock(self, content)

    def _connect_forms(self) -> None:
        form, compute, selections = self.form, self.compute_row, self.selections
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
        compute.embed_button.clicked.connect(lambda: self.compute_embedding(compute.embed_combo.currentText()))
        compute.cluster_button.clicked.connect(
            lambda: self.compute_clusters(compute.cluster_combo.currentText(), compute.cluster_spin.value())
        )
        # clicked passes `checked`: the lambda takes it and leaves it, the method gets only the name
        selections.keep_button.clicked.connect(
            report_errors(lambda _checked=False: self.save_selection(selections.selection_name.text()))
        )
        selections.selection_list.itemClicked.connect(report_errors(lambda item: self.recall_selection(item.text())))

    def _refresh_source_list(self, event: Any = None) -> None:
        """List the Labels and Points layers that have a features table; keep the current ticks."""
        names = [layer.name for layer in self.viewer.layers
                 if isinstance(layer, (Labels, Points)) and not is_overlay(layer) and len(layer.features)]  # fmt: skip
        self.form.list_sources(names, list(self.sources.layers))

    def _describe_compute(self, _latents: Any = None) -> None:
        """The embed/cluster buttons say whether they work on a model's μ or on a measured feature table."""
        latents = self.session.latents
        self.compute_row.describe(measured=latents is not None and not mu_columns(latents))

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
        self._selected = np.zeros(len(self.sources), bool)
        self._track_keys = None
        self._forget_crops()
        self.note.setText("\n".join(self.sources.notes))

    def _replot(self, fit: bool = False) -> None:
        """Draw the sources read last: axes kept when they still exist, selection taken from the session."""
        if not self.sources.layers:
            self._axes, self._positions = None, np.zeros((0, 2), np.float32)
            self.plot.clear()
            self._update_highlights()
            return
        self._fill_combos(fit=fit)
        self._update_highlights()
        self._on_session_selection(self.session.selection)  # cells selected elsewhere stay selected
        self.crops.match()

    def settings(self) -> dict[str, Any]:
        """What the plot shows (sources, axes, colour column), as JSON values: saved with the analysis."""
        x, y = self._axes or ("", "")
        return {"sources": list(self.sources.layers), "x": x, "y": y, "colour": self._color_by,
                "tracks": self.form.track_combo.currentText()}  # fmt: skip

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
        self._base_colors = self._point_colors()
        self._redraw()
        if fit:
            self.plot.fit(positions)

    # ------------------------------------------------------------------ colours
    def set_color_by(self, column: str) -> None:
        """Colour points by a feature column: a palette and legend for categories, a colormap and bar for numbers."""
        if column and column not in self.sources.shared_columns():
            raise InputError(f"no feature column {column!r} in all sources; choose another column to colour by")
        self._color_by = column
        set_quietly(self.form.color_combo, column)
        self._base_colors = self._point_colors()
        self._redraw()

    def _point_colors(self) -> np.ndarray:
        """RGBA per point from the colour column (opacity applied); the legend and colour bar shown with them."""
        values = self.sources.column(self._color_by) if self._color_by else None
        colors = point_colors(values, self._color_by, n=len(self._positions), opacity=self.form.opacity_spin.value())
        self.legend.setText(colors.legend)
        self.colorbar.clear()
        if colors.colorbar is not None:
            self.colorbar.setPixmap(rgb_pixmap(colors.colorbar))
        return colors.colors

    def _recolor(self) -> None:
        if self.sources.tables:
            self._base_colors = self._point_colors()
            self._redraw()

    def _frame_colors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Base colours (of ``rows``, or all) with points of time-lapse sources outside the shown frame dimmed."""
        shown = self.sources.in_shown_frame()
        if rows is None:
            return dim_other_frames(self._base_colors, shown)
        return dim_other_frames(self._base_colors[rows], shown[rows])

    # ------------------------------------------------------------------ drawing
    def _redraw(self) -> None:
        """Draw all points (or their density) and the selection."""
        if not len(self._positions):
            return
        if self.form.density_check.isChecked():
            self.plot.show_density(self._positions)
        else:
            self.plot.show_points(self._positions, self._frame_colors(), self.form.size_spin.value())
        self._draw_tracks()
        self._redraw_selection()

    def _draw_tracks(self) -> None:
        """The paths of tracked cells (sources with a ``track_id`` column), their cells of the shown frame ringed."""
        mode = self.form.track_combo.currentText()
        if mode == "off" or TRACK_ID not in self.sources.shared_columns():
            self.track_overlay.clear()
            return
        index = self.sources.index
        if self._track_keys is None or len(self._track_keys) != len(self._positions):  # once per set of sources
            self._track_keys = track_keys(self.sources.column(TRACK_ID), index.source_of_rows(np.arange(len(index))))
        colors = None if mode == "by time" else self._base_colors
        self.track_overlay.show(self._positions, self._track_keys, index.t, colors, self.sources.in_shown_frame(),
                                self.form.size_spin.value())  # fmt: skip

    def _default_radius(self) -> tuple[float, float]:
        """A few canvas pixels at the current zoom, in data units."""
        width, height = self.plot.pixel_size()
        return HOVER_RADIUS_PX * width, HOVER_RADIUS_PX * height

    def select_track_at(self, x: float, y: float, add: bool = False,
                        radius: float | tuple[float, float] | None = None) -> np.ndarray | None:  # fmt: skip
        """Select the track whose path passes near data position ``(x, y)`` and show its cell nearest the click
        (time slider moved to its frame); returns the track's plot rows, None when no path is near.

        ``radius`` as in :meth:`pick` (default: a few canvas pixels at the current zoom).
        """
        hit = self.track_overlay.pick(x, y, self._default_radius() if radius is None else radius)
        if hit is None:
            return None
        rows, row = hit
        self.select_rows(rows, add=add)
        self.focus_row(row)
        return rows

    def _redraw_selection(self) -> None:
        """Draw only the selected points on top: a selection change never re-uploads all points."""
        rows = self.selected_rows
        self.plot.show_selected(self._positions[rows], self._frame_colors(rows), self.form.size_spin.value())
        self.selections.selection_count.setText(f"{len(rows)} of {len(self._positions)} selected")
        self.plot.canvas.update()

    # ------------------------------------------------------------------ selection
    @property
    def selected_rows(self) -> np.ndarray:
        """Plot rows currently selected, sorted."""
        return np.flatnonzero(self._selected)

    def select_rows(self, rows: Sequence[int] | np.ndarray, add: bool = False) -> None:
        """Select these plot rows (or add them to the selection), highlight their cells, publish their crop ids."""
        self._show_selection(rows, add=add, publish=True)

    def _show_selection(self, rows: Sequence[int] | np.ndarray, add: bool, publish: bool) -> None:
        if self._linking:
            return
        self._linking = True
        try:
            if not add:
                self._selected[:] = False
            self._selected[np.asarray(rows, dtype=np.int64)] = True
            self._redraw_selection()
            self._update_highlights()
            if publish:
                self._publish_selection()
        finally:
            self._linking = False

    def crop_ids(self) -> np.ndarray | None:
        """Crop id of each plot row (int64), or None when a source's features have no ``crop_id`` column."""
        return self.sources.crop_ids()

    def _publish_selection(self) -> None:
        """Hand the selected cells to the session as crop ids (skipped without a ``crop_id`` column)."""
        crop_ids = self.crop_ids()
        if crop_ids is None:
            return
        self._publishing = True
        try:
            self.session.selection = crop_ids[self.selected_rows]
        finally:
            self._publishing = False

    def _on_session_selection(self, selection: np.ndarray) -> None:
        """Show cells selected by another widget (not published back: the plot may show only some of them)."""
        crop_ids = None if self._publishing or not self.sources.tables else self.crop_ids()
        if crop_ids is not None:
            self._show_selection(np.flatnonzero(np.isin(crop_ids, selection)), add=False, publish=False)

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
        return self._picker.result().nearest((x, y), self._default_radius() if radius is None else radius)

    def _clicked(self, point: np.ndarray, add: bool) -> None:
        """A click on the plot: on a track's path selects the whole track,
        else the point under it (and shows its cell)."""
        if self.form.track_combo.currentText() != "off" and self.select_track_at(*point, add=add) is not None:
            return
        row = self.pick(*point)
        if row is not None:
            self.select_rows([row], add=add)
            self.focus_row(row)

    def _update_highlights(self) -> None:
        """Rewrite the highlight layers from the selection, for the source shown now (one LUT pass over its frame)."""
        self.highlights.show(self.sources, self._selected)

    def _on_frame_changed(self, event: Any = None) -> None:
        if any(self.sources.has_time.values()) and len(self._positions):
            self._redraw()
            self._update_highlights()

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
        """Keep the current selection under ``name`` (crop ids, or (source, t, label id) without them).

        Selections of crop ids are also kept in the session, so they can be
        annotated and are saved with the analysis.
        """
        self.named_selections.save(name, self.sources.row_keys()[self.selected_rows])
        self.selections.list_names(self.named_selections.names)
        crop_ids = self.crop_ids()
        if crop_ids is not None:
            self._publishing = True
            try:
                self.session.named_selections = {**self.session.named_selections, name: crop_ids[self.selected_rows]}
            finally:
                self._publishing = False

    def _on_session_named_selections(self, selections: dict[str, tuple[int, ...]]) -> None:
        """Offer the selections the session got elsewhere (an opened analysis) in the list."""
        if self._publishing:
            return
        for name, crop_ids in selections.items():
            self.named_selections.save(name, crop_ids)
        self.selections.list_names(self.named_selections.names)

    def recall_selection(self, name: str) -> np.ndarray:
        """Select the cells of the selection kept under ``name`` that are plotted now; returns the rows."""
        keys = list(self.named_selections.get(name))
        positions = self.sources.row_keys().get_indexer(keys) if keys else np.zeros(0, np.int64)
        rows = np.sort(positions[positions >= 0])
        self.select_rows(rows)
        return rows

    # ------------------------------------------------------------------ background computations
    def _session_latents(self) -> Any:
        """The session's cells that have a latent: 2D embeddings and clusters are computed on all of them."""
        latents = self.session.latents
        if latents is None:
            raise InputError(
                "there are no latents in this session: "
                "embed the crops with the Embed widget (or open an analysis) first"
            )
        return latents

    @report_errors
    def compute_embedding(self, method: str = "PCA", seed: int = 0) -> Any:
        """Embed the session's latents in 2D (PCA, UMAP or TSNE) off the GUI thread; plots ``{method}_0/1``.

        The columns go into the session's per-cell table, hence into the
        layers' features and the saved analysis. Returns the started worker
        (or None when the input was refused).
        """
        if method not in EMBEDDINGS:
            raise InputError(f"unknown embedding {method!r}; choose one of {', '.join(EMBEDDINGS)}")

        def done(table: pd.DataFrame) -> None:
            self._axes = (f"{method}_0", f"{method}_1")
            self.session.set_columns(table["crop_id"], {axis: table[axis].to_numpy() for axis in self._axes})
            self.plot.fit(self._positions)  # the features changed: the plot now shows the new axes

        return self.tasks.start(add_embedding_columns, self._session_latents(), method, seed=seed, on_done=done,
                                action=f"The {method} embedding", exclusive=False)  # fmt: skip

    @report_errors
    def compute_clusters(self, method: str = "kmeans", n_clusters: int = 3, seed: int = 0) -> Any:
        """Cluster the session's latents off the GUI thread; the ``cluster`` column goes to the per-cell table.

        Points are then coloured by cluster. Returns the started worker (or
        None when the input was refused).
        """

        def done(table: pd.DataFrame) -> None:
            self.session.set_columns(table["crop_id"], {"cluster": table["cluster"].to_numpy()})
            if "cluster" in self.sources.shared_columns():
                self.set_color_by("cluster")

        return self.tasks.start(add_cluster_column, self._session_latents(), method, n_clusters=n_clusters, seed=seed,
                                on_done=done, action="Clustering", exclusive=False)  # fmt: skip
