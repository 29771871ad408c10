"""The "Latent space" widget: sliders that decode live, traversal grids, difference maps and Grad-CAM overlays.

What a latent dimension means is learned by looking: move its slider and watch
the decoded cell change, lay out the walk from −3 to +3 as a grid, see where
the two ends differ, and see which regions of real cells push the dimension up
or down (Grad-CAM, placed on the cells in the full field of view).

The decoded cell appears where the user looks: next to the cell it starts
from, else in the corner of the current view; difference maps lie on it and
traversal grids beside it. Grad-CAM maps go into one "Grad-CAM" layer that
shows the map of the field shown now (fields opened from files lie over each
other at the origin; one layer per field would stack them there).

All computing is in ``core``: :mod:`~napari_morphospace.core.analysis.traversal`
(decoding, grids, the coalescing :class:`LatentDecoder`),
:mod:`~napari_morphospace.core.analysis.difference`, :mod:`~napari_morphospace.core.analysis.gradcam`
and :mod:`~napari_morphospace.core.analysis.overlays` (ranking, start points, overlay
placement). This widget reads the session's model, latent table and crop set,
runs decodes off the GUI thread and shows the results as layers.

Everything the form does is also a public method (``set_slider``,
``set_start``, ``use_selected_cell``, ``show_traversal_grid``,
``show_difference``, ``show_gradcam``, ...), so it can be scripted and tested.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from magicgui.widgets import FileEdit
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from ..core.analysis.cell_table import mu_columns, require_mu_columns
from ..core.analysis.difference import threshold_map
from ..core.analysis.gradcam import gradcam_encoder
from ..core.analysis.overlays import (
    SLIDER_EXTENT,
    channel_colormaps,
    difference_maps,
    find_cell,
    group_traversal_figure,
    latent_from_sliders,
    ranked_dimensions,
    slider_values,
    source_overlay,
    start_vector,
)
from ..core.analysis.traversal import (
    LatentDecoder,
    decode_latents,
    group_means,
    group_traversals,
    traversal_figure,
    traversal_grid,
    traversal_values,
    traverse,
)
from ..core.errors import InputError
from ..core.models import StackedConditionalVAE
from ..core.training.bundle import Bundle, check_compatible, load_bundle
from ..viewer.features import source_names
from ..viewer.layers import SourceOverlay, place_in_view, source_layers
from ..viewer.session import session_for
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .errors import report_errors

DECODED = "decoded cell"
GRID = "traversal grid"
GROUP_GRID = "group traversals"
ABS_DIFFERENCE = "difference |Δ|"
SSIM_DIFFERENCE = "difference 1−SSIM"
GRADCAM = "Grad-CAM"  # the one layer of Grad-CAM maps, showing the field shown now
RANKINGS = {"KL to prior": "kl", "|Cohen's d| (groups)": "cohens_d", "index": "index"}
STARTS = ("origin", "group mean", "cell")
SCATTER_SELECTION = "scatter selection"  # Grad-CAM cells: the session's selection (crop ids)
DEFAULT_TOP_K = 8
SCALE_TOOLTIP = (
    "Latent dimension {dim}, from −3 to +3 in units of latent_scale[{dim}] = {scale:.3g}: "
    "the prior SD (1) for the β-VAEs; for the multi-encoder VAE the empirical SD of the combined latent "
    "(set when the model was calibrated). The other dimensions stay at the start point."
)


def traversable_model(bundle: Bundle) -> tuple[torch.nn.Module, list[str], str]:
    """The model the sliders decode with, its channel names, and a note for the user.

    The stacked conditional model's target decoder needs a reference image, so
    its unconditional reference model (the reference channels) is traversed.
    """
    model = bundle.model
    if isinstance(model, StackedConditionalVAE):
        names = [bundle.channel_names[c] for c in model.reference_channels]
        return model.reference, names, "conditional model: the sliders traverse its reference model (" + ", ".join(names) + ")"
    return model, list(bundle.channel_names), ""


class LatentWidget(QWidget):
    """Explore a VAE's latent space: sliders, traversal grids, difference maps and Grad-CAM overlays."""

    #: Emitted by the decoder thread; delivered on the GUI thread (queued connection).
    _frame_ready = Signal()
    _decode_error = Signal(object)
    #: Emitted on the GUI thread after the "decoded cell" layer shows a new frame, with its latent vector.
    frame_shown = Signal(object)

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.bundle: Bundle | None = None
        self.model: torch.nn.Module | None = None
        self.channel_names: list[str] = []
        self.latents: pd.DataFrame | None = None
        self.latent_scale = np.ones(0, np.float32)
        self.z = np.zeros(0, np.float32)
        self.dims: list[int] = []
        self.scores = np.zeros(0)
        self.frames_shown = 0
        self.shown_z: np.ndarray | None = None
        self._decoder: LatentDecoder | None = None
        self._latest: tuple[int, np.ndarray, np.ndarray] | None = None
        self._latest_lock = threading.Lock()
        self._shown_serial = 0
        self._shown_3d = False
        self._cell_row: int | None = None
        self._sliders: dict[int, QLabeledDoubleSlider] = {}
        self._workers: set[Any] = set()
        self._difference: dict[str, Any] | None = None
        self._figure_source: tuple[str, Any, Any] | None = None
        self._place_decoded = True  # place the decoded cell where the user looks on its next frame
        #: Grad-CAM overlays per source layer name and frame (None: no time axis): (data, translate, scale, label ids).
        self._gradcam_maps: dict[str, dict[int | None, tuple]] = {}
        self._gradcam_of: dict[str, int] = {}
        self._gradcam = SourceOverlay(napari_viewer, GRADCAM, "image", self._render_gradcam, colormap="inferno",
                                      blending="additive", opacity=0.7, contrast_limits=(0.0, 1.0))  # fmt: skip

        self._build_form()
        self._frame_ready.connect(self._show_latest_frame, Qt.ConnectionType.QueuedConnection)
        self._decode_error.connect(self._on_error, Qt.ConnectionType.QueuedConnection)
        self.session.bundle_changed.connect(self._on_session_bundle)
        self.session.latents_changed.connect(self._on_session_latents)
        self.session.crop_set_changed.connect(self._on_session_crop_set)
        self.session.selection_changed.connect(self._on_session_selection)
        self.viewer.dims.events.current_step.connect(self._on_frame_changed)
        self.set_latents(self.session.latents, quiet=True)
        if self.session.bundle is not None:
            self.set_bundle(self.session.bundle)
        self._refresh_cell_choices()

    # ------------------------------------------------------------------ form
    def _build_form(self) -> None:
        self.bundle_path = FileEdit(mode="d", label="bundle", value="")
        self.load_button = QPushButton("Load model")
        self.model_info = QLabel("No model: train one, or load a bundle folder.")
        self.model_info.setWordWrap(True)

        self.rank_combo = QComboBox()
        self.rank_combo.addItems(list(RANKINGS))
        self.group_a, self.group_b = QComboBox(), QComboBox()
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 512)
        self.top_k.setValue(DEFAULT_TOP_K)
        self.show_all = QCheckBox("show all")
        self.start_combo = QComboBox()
        self.start_combo.addItems(list(STARTS))
        self.start_group = QComboBox()
        self.cell_button = QPushButton("Use selected cell")
        self.cell_button.setToolTip(
            "Start from the μ of the cell picked in a Labels layer (its selected label), looked up in the latent table. "
            "With start = cell, clicking a cell in the Scatter plot (or in the image, with the Scatter dock open) "
            "starts from it too"
        )
        self.reset_button = QPushButton("Reset to start")

        self.slider_box = QWidget()
        self.slider_layout = QFormLayout(self.slider_box)
        self.slider_layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.slider_box)
        scroll.setMinimumHeight(160)

        self.dim_combo = QComboBox()
        self.dim_combo.setToolTip("The dimension used by the difference maps, group traversals and Grad-CAM")
        self._dim_chosen = False  # set once the user picks a dimension (activated: user actions only)
        self.dim_combo.activated.connect(lambda _index: setattr(self, "_dim_chosen", True))
        self.steps = QSpinBox()
        self.steps.setRange(2, 21)
        self.steps.setValue(7)
        self.grid_button = QPushButton("Traversal grid")
        self.group_grid_button = QPushButton("Group traversals")
        self.figure_button = QPushButton("Save figure…")

        self.difference_button = QPushButton("−3 vs +3")
        self.group_difference_button = QPushButton("group A vs B")
        self.quantile = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.quantile.setRange(0.0, 0.99)
        self.quantile.setDecimals(2)
        self.quantile.setValue(0.9)
        self.quantile.setToolTip("Show only changes at or above this quantile of each map (0 shows everything)")

        self.sign_combo = QComboBox()
        self.sign_combo.addItems(["+", "−"])
        self.sign_combo.setToolTip("A latent's sign is arbitrary: + shows what raises μ_k, − what lowers it")
        self.cells_combo = QComboBox()
        self.gradcam_button = QPushButton("Grad-CAM")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        content = QWidget()
        layout = QVBoxLayout(content)
        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        row = QHBoxLayout()
        row.addWidget(self.bundle_path.native)
        row.addWidget(self.load_button)
        form.addRow(row)
        form.addRow(self.model_info)
        layout.addWidget(model_box)

        slider_group = QGroupBox("Sliders")
        form = QFormLayout(slider_group)
        row = QHBoxLayout()
        row.addWidget(self.rank_combo)
        row.addWidget(QLabel("top"))
        row.addWidget(self.top_k)
        row.addWidget(self.show_all)
        form.addRow("rank by", row)
        row = QHBoxLayout()
        row.addWidget(self.group_a)
        row.addWidget(QLabel("vs"))
        row.addWidget(self.group_b)
        form.addRow("groups A, B", row)
        row = QHBoxLayout()
        row.addWidget(self.start_combo)
        row.addWidget(self.start_group)
        row.addWidget(self.cell_button)
        form.addRow("start", row)
        form.addRow(scroll)
        form.addRow(self.reset_button)
        layout.addWidget(slider_group)

        views = QGroupBox("Traversal, differences, Grad-CAM")
        form = QFormLayout(views)
        form.addRow("dimension", self.dim_combo)
        row = QHBoxLayout()
        row.addWidget(QLabel("steps"))
        row.addWidget(self.steps)
        row.addWidget(self.grid_button)
        row.addWidget(self.group_grid_button)
        row.addWidget(self.figure_button)
        form.addRow("traversal", row)
        row = QHBoxLayout()
        row.addWidget(self.difference_button)
        row.addWidget(self.group_difference_button)
        form.addRow("difference", row)
        form.addRow("threshold quantile", self.quantile)
        row = QHBoxLayout()
        row.addWidget(self.sign_combo)
        row.addWidget(self.cells_combo)
        row.addWidget(self.gradcam_button)
        form.addRow("Grad-CAM", row)
        layout.addWidget(views)
        layout.addWidget(self.status)
        layout.addStretch()
        scroll_in_dock(self, content)

        self.load_button.clicked.connect(lambda: self.load_bundle(self.bundle_path.value))
        self.rank_combo.currentTextChanged.connect(lambda _: self._rebuild_sliders())
        self.group_a.currentTextChanged.connect(lambda _: self._on_groups_changed())
        self.group_b.currentTextChanged.connect(lambda _: self._on_groups_changed())
        self.top_k.valueChanged.connect(lambda _: self._rebuild_sliders())
        self.show_all.toggled.connect(lambda _: self._rebuild_sliders())
        self.start_combo.currentTextChanged.connect(lambda kind: self.set_start(kind))
        self.start_group.currentTextChanged.connect(lambda _: self._on_start_group_changed())
        self.cell_button.clicked.connect(lambda: self.use_selected_cell())
        self.reset_button.clicked.connect(lambda: self.set_start(self.start_combo.currentText()))
        self.grid_button.clicked.connect(lambda: self.show_traversal_grid())
        self.group_grid_button.clicked.connect(lambda: self.show_group_traversals())
        self.figure_button.clicked.connect(self._ask_figure_path)
        self.difference_button.clicked.connect(lambda: self.show_difference())
        self.group_difference_button.clicked.connect(lambda: self.show_group_difference())
        self.quantile.valueChanged.connect(lambda _: self._show_difference_layers())
        self.gradcam_button.clicked.connect(lambda: self.show_gradcam())

    # ------------------------------------------------------------------ model and latents
    def _on_session_bundle(self, bundle: Any) -> None:
        if bundle is not None and bundle is not self.bundle:
            self.set_bundle(bundle)

    def _on_session_latents(self, table: Any) -> None:
        measured = isinstance(table, pd.DataFrame) and not mu_columns(table)  # a feature table: nothing to decode
        self.set_latents(table, quiet=measured)
        if measured:
            self.status.setText("The session's cells carry features measured elsewhere, not a model's latents: "
                                "sliders and traversals decode a model's latent space only.")  # fmt: skip

    def _on_session_crop_set(self, crop_set: Any) -> None:
        self._refresh_cell_choices()

    @report_errors
    def load_bundle(self, path: Any) -> Any:
        """Load a model bundle folder in a worker, then use it here and share it through the session."""
        if not path or str(path) in ("", "."):
            raise InputError("choose the bundle folder (with model.json and weights.safetensors) first")
        self.status.setText(f"Loading {path}…")
        return self._start(load_bundle, self._use_loaded_bundle, Path(path))

    def _use_loaded_bundle(self, bundle: Bundle) -> None:
        self.set_bundle(bundle)
        self.session.bundle = bundle

    def set_bundle(self, bundle: Bundle) -> None:
        """Decode with this bundle's model; rebuilds the sliders and restarts the decoder thread."""
        self._close_decoder()
        self.bundle = bundle
        self.model, self.channel_names, note = traversable_model(bundle)
        self.model.eval()
        dim = int(self.model.latent_dim)
        scale = getattr(self.model, "latent_scale", None)
        self.latent_scale = np.ones(dim, np.float32) if scale is None else scale.detach().cpu().numpy().astype(np.float32)
        self.z = np.zeros(dim, np.float32)
        self._shown_3d = False
        self._decoder = LatentDecoder(self.model, self._on_decoded, on_error=self._decode_error.emit)
        shape = "×".join(map(str, bundle.input_shape))
        self.model_info.setText(
            f"{bundle.model_settings.model}, {dim} latent dimensions, crops {shape} ({', '.join(bundle.channel_names)})"
            + (f"; {note}" if note else "")
        )
        self.top_k.setMaximum(dim)
        self._check_latent_size()
        self.set_start(self.start_combo.currentText())

    def set_latents(self, table: pd.DataFrame | None, quiet: bool = False) -> None:
        """Use this latent table (``mu_*``, ``logvar_*``, ``group``, ``source``, ``label_id``) for ranking and start points."""
        if table is not None and not isinstance(table, pd.DataFrame):
            table = None
        if table is not None:
            try:
                require_mu_columns(table)
            except InputError as err:
                if not quiet:
                    show_warning(str(err))
                table = None
        self.latents = table
        self._cell_row = None
        groups = [] if table is None or "group" not in table.columns else [str(g) for g in pd.unique(table["group"].dropna())]
        for combo, default in ((self.group_a, 0), (self.group_b, 1), (self.start_group, 0)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(groups)
            if len(groups) > default:
                combo.setCurrentIndex(default)
            combo.blockSignals(False)
        if self.model is not None:
            self._check_latent_size()
            self._rebuild_sliders()

    def _check_latent_size(self) -> None:
        if self.latents is None or self.model is None:
            return
        n = len(require_mu_columns(self.latents))
        if n != len(self.z) or isinstance(self.bundle.model, StackedConditionalVAE):
            self.latents = None
            show_warning(
                f"the latent table has {n} dimensions and was not embedded with this model's traversed encoder; "
                "it is not used for ranking or start points. Embed the crops with this model first"
            )

    def _refresh_cell_choices(self) -> None:
        crop_set = self.session.crop_set
        groups = []
        if crop_set is not None and "group" in crop_set.table.columns:
            groups = [str(g) for g in pd.unique(crop_set.table["group"].dropna())]
        current = self.cells_combo.currentText()
        self.cells_combo.clear()
        self.cells_combo.addItems(["selected cell", SCATTER_SELECTION, *[f"group: {g}" for g in groups], "all cells"])
        if current:
            self.cells_combo.setCurrentText(current)

    # ------------------------------------------------------------------ sliders
    def _ranking(self) -> tuple[str, tuple[str, ...]]:
        return RANKINGS[self.rank_combo.currentText()], (self.group_a.currentText(), self.group_b.currentText())

    def _on_groups_changed(self) -> None:
        if self._ranking()[0] == "cohens_d":
            self._rebuild_sliders()

    def _rebuild_sliders(self) -> None:
        """One slider per shown dimension, ranked as chosen; other dimensions keep their value."""
        if self.model is None:
            return
        n = len(self.z)
        by, groups = self._ranking()
        order, scores = np.arange(n), np.full(n, np.nan)
        if self.latents is not None and by != "index":
            try:
                order, scores = ranked_dimensions(self.latents, by=by, groups=groups)
                self.status.setText(f"{len(self.latents)} embedded cells; dimensions ranked by {by.replace('_', ' ')}.")
            except InputError as err:
                self.status.setText(f"⚠ {err} Showing dimensions in index order.")
        elif by != "index":
            self.status.setText("No latent table: dimensions in index order. Embed the crops to rank them.")
        self.scores = scores
        k = n if self.show_all.isChecked() else min(self.top_k.value(), n)
        self.dims = [int(d) for d in order[:k]]
        while self.slider_layout.rowCount():
            self.slider_layout.removeRow(0)
        self._sliders = {}
        score_name = {"kl": "KL", "cohens_d": "d"}.get(by)
        for dim in self.dims:
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(-SLIDER_EXTENT, SLIDER_EXTENT)
            slider.setDecimals(2)
            slider.setSingleStep(0.05)
            slider.setToolTip(SCALE_TOOLTIP.format(dim=dim, scale=float(self.latent_scale[dim])))
            slider.setValue(float(np.clip(slider_values(self.z, [dim], self.latent_scale)[0], -SLIDER_EXTENT, SLIDER_EXTENT)))
            slider.valueChanged.connect(lambda value, dim=dim: self._on_slider(dim, value))
            label = f"dim {dim}" + (f" ({score_name} {scores[dim]:.2f})" if score_name and np.isfinite(scores[dim]) else "")
            self.slider_layout.addRow(label, slider)
            self._sliders[dim] = slider
        current = self.dim_combo.currentData()
        self.dim_combo.clear()
        for dim in order:
            self.dim_combo.addItem(f"dim {int(dim)}", int(dim))
        # The user's choice stays; otherwise the most informative dimension, as ranked now.
        index = self.dim_combo.findData(current) if self._dim_chosen else 0
        self.dim_combo.setCurrentIndex(max(index, 0))

    def slider(self, dim: int) -> QLabeledDoubleSlider:
        """The slider of latent dimension ``dim`` (it must be shown)."""
        if dim not in self._sliders:
            raise InputError(f"dimension {dim} has no slider: tick 'show all' or raise 'top'")
        return self._sliders[dim]

    def set_slider(self, dim: int, value: float) -> None:
        """Move the slider of ``dim`` to ``value`` (units of ``latent_scale[dim]``, −3…+3); decodes the new point."""
        self.slider(dim).setValue(float(value))

    def _on_slider(self, dim: int, value: float) -> None:
        self.z = latent_from_sliders(self.z, [dim], [value], self.latent_scale)
        self.request_decode()

    def request_decode(self) -> None:
        """Ask the decoder thread for the current latent vector; a newer request replaces one not yet started."""
        if self._decoder is None:
            return
        self._decoder.request(self.z)

    @report_errors
    def set_start(self, kind: str, group: str | None = None) -> None:
        """Start from the origin, a group's mean μ (``group``) or the chosen cell's μ; resets every dimension and decodes."""
        if self.model is None:
            return
        if kind not in STARTS:
            raise InputError(f"unknown start {kind!r}; choose one of {', '.join(STARTS)}")
        if group is not None:
            self.start_group.setCurrentText(str(group))
        self._set_combo(self.start_combo, kind)
        self._place_decoded = True
        if kind == "cell" and self._cell_row is None:
            self._cell_row = self._selected_row()
        if kind == "cell" and self._cell_row is None:  # nothing chosen yet: no error, say how to choose
            self.z = np.zeros(len(self.z), np.float32)
            self._rebuild_sliders()
            self.request_decode()
            self.status.setText(
                "Start: the origin until a cell is chosen. Click a cell in the Scatter plot (or in the image with the "
                "Scatter dock open), or pick its label in a Labels layer and press 'Use selected cell'."
            )
            return
        table_group = self._table_group(self.start_group.currentText())
        try:
            self.z = start_vector(self.latents, len(self.z), kind=kind, group=table_group, row=self._cell_row)
        except InputError as err:
            self.z = np.zeros(len(self.z), np.float32)
            self._rebuild_sliders()
            self.request_decode()
            raise InputError(f"{err}; starting from the origin instead") from err
        self._rebuild_sliders()
        self.request_decode()

    def _selected_row(self) -> int | None:
        """Row in the latent table of the first cell selected in the session (Scatter plot, clicks), or None."""
        selection = self.session.selection
        if self.latents is None or not len(selection) or "crop_id" not in self.latents.columns:
            return None
        rows = np.flatnonzero(self.latents["crop_id"].to_numpy() == selection[0])
        return int(rows[0]) if rows.size else None

    def _on_session_selection(self, _selection: Any) -> None:
        """With start = cell, a newly selected cell becomes the start point."""
        if self.model is None or self.start_combo.currentText() != "cell":
            return
        row = self._selected_row()
        if row is not None and row != self._cell_row:
            self._cell_row = row
            self.set_start("cell")

    def _on_start_group_changed(self) -> None:
        if self.start_combo.currentText() == "group mean":
            self.set_start("group mean")

    def _table_group(self, text: str) -> Any:
        """The group value of the latent table whose text is ``text`` (groups may be numbers)."""
        if self.latents is None or "group" not in self.latents.columns:
            return text
        return next((g for g in pd.unique(self.latents["group"].dropna()) if str(g) == text), text)

    @staticmethod
    def _set_combo(combo: QComboBox, text: str) -> None:
        combo.blockSignals(True)
        combo.setCurrentText(text)
        combo.blockSignals(False)

    # ------------------------------------------------------------------ selected cell
    def _spatial_ndim(self) -> int:
        if self.bundle is not None:
            return len(self.bundle.input_shape) - 1
        crop_set = self.session.crop_set
        return crop_set.spatial_ndim if crop_set is not None else 2

    def selected_cell(self, layer: Labels | str | None = None) -> tuple[str, int, int | None]:
        """``(source, label_id, t)`` of the label selected in a Labels layer (the active one by default).

        ``t`` is the shown frame when the layer has an axis before the spatial ones, else None.
        """
        if isinstance(layer, str):
            layer = self.viewer.layers[layer]
        if layer is None:
            active = self.viewer.layers.selection.active
            candidates = [active] + [lay for lay in self.viewer.layers if lay is not active]
            layer = next((lay for lay in candidates if isinstance(lay, Labels) and not lay.name.endswith(" selection")), None)
        if not isinstance(layer, Labels):
            raise InputError("no Labels layer to take the selected cell from: add the cells' Labels layer and select a label")
        label = int(layer.selected_label)
        if label == 0:
            raise InputError(f"label 0 (background) is selected in {layer.name!r}: pick a cell with the label picker")
        leading = layer.ndim - self._spatial_ndim()
        t = int(round(layer.world_to_data(self.viewer.dims.point)[0])) if leading == 1 else None
        return layer.name, label, t

    @report_errors
    def use_selected_cell(self, layer: Labels | str | None = None) -> None:
        """Start the sliders from the μ of the cell selected in a Labels layer (looked up by source, label id, t)."""
        if self.latents is None:
            raise InputError("starting from a cell needs the latent table: embed the crops with this model first")
        source, label, t = self.selected_cell(layer)
        self._cell_row = find_cell(self.latents, source, label, t)
        self._set_combo(self.start_combo, "cell")
        self.set_start("cell")
        self.status.setText(f"Start: {source} label {label}" + (f" at t={t}" if t is not None else ""))

    # ------------------------------------------------------------------ decoded cell
    def _on_decoded(self, z: np.ndarray, image: np.ndarray) -> None:
        """Decoder thread: keep the newest result and wake the GUI thread (never touches a widget)."""
        with self._latest_lock:
            serial = 1 if self._latest is None else self._latest[0] + 1
            self._latest = (serial, z, image)
        self._frame_ready.emit()

    def _show_latest_frame(self) -> None:
        with self._latest_lock:
            latest = self._latest
        if latest is None or latest[0] == self._shown_serial:
            return  # several results arrived before the GUI got here: the newest was shown already
        serial, z, image = latest
        self._shown_serial = serial
        layers = self._put_channels(DECODED, image)
        if self._place_decoded:  # a new start point: where the user looks, beside the cell it starts from
            self._place_decoded = False
            for layer in layers:
                layer.translate = self._decoded_translate(layer)
        self.frames_shown += 1
        self.shown_z = z
        if image.ndim == 4 and not self._shown_3d:
            self._shown_3d = True
            self.viewer.dims.ndisplay = 3
        self.frame_shown.emit(z)

    def _decoded_translate(self, layer: Image) -> np.ndarray:
        """Next to the start cell, else in the top-left corner of the view; beside all data when the view is unknown."""
        if layer.ndim >= 2:
            size = np.asarray(layer.data.shape[-2:], float) * np.asarray(layer.scale[-2:], float)
            corner = place_in_view(self.viewer, size, self._start_cell_box())
            if corner is not None:
                translate = np.zeros(layer.ndim)
                translate[-2:] = corner
                return translate
        return self._beside_data(layer)

    def _start_cell_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """World corners (top-left, bottom-right) of the cell the sliders start from, when it is in the viewer."""
        if self.start_combo.currentText() != "cell" or self._cell_row is None or self.latents is None:
            return None
        row = self.latents.iloc[self._cell_row]
        if not {"source", "y_start", "y_stop", "x_start", "x_stop"} <= set(row.index):
            return None
        layer = next((lay for lay in self.viewer.layers
                      if isinstance(lay, Labels) and str(row["source"]) in source_names(lay)), None)  # fmt: skip
        if layer is None:
            return None
        leading = [int(row["t"])] if layer.ndim > 2 and "t" in row.index else [0] * (layer.ndim - 2)
        corners = [[*leading, row["y_start"] - 0.5, row["x_start"] - 0.5], [*leading, row["y_stop"] - 0.5, row["x_stop"] - 0.5]]
        low, high = (np.asarray(layer.data_to_world(c), float) for c in corners)
        return low, high

    def _beside_data(self, layer: Image) -> np.ndarray:
        """A translate that puts ``layer`` just left of every other layer's extent (world coordinates)."""
        others = [other for other in self.viewer.layers if other is not layer and not other.name.startswith(DECODED)]
        if not others:
            return np.zeros(layer.ndim)
        low = np.min([other.extent.world[0][-layer.ndim :] for other in others if other.ndim >= layer.ndim] or [np.zeros(layer.ndim)], axis=0)
        width = layer.data.shape[-1] * layer.scale[-1]
        translate = np.array(low, dtype=float)
        translate[-1] -= 1.15 * width
        return translate

    def _spacing(self, spatial_ndim: int) -> tuple[float, ...]:
        """Physical size of one crop pixel, from the session's crop set when it has one of this dimensionality."""
        crop_set = self.session.crop_set
        spacing = tuple(getattr(crop_set, "spacing", ()) or ())
        return tuple(float(s) for s in spacing) if len(spacing) == spatial_ndim else (1.0,) * spatial_ndim

    def _known_colormaps(self) -> dict[str, str]:
        return {layer.name: layer.colormap.name for layer in self.viewer.layers if isinstance(layer, Image) and not layer.rgb}

    def _put_channels(self, name: str, image: np.ndarray) -> list[Image]:
        """Show a decoded image ``(C, [Z,] Y, X)``: one layer ``name`` (one channel) or ``"name <channel>"`` per channel."""
        spacing = self._spacing(image.ndim - 1)
        if image.shape[0] == 1:
            return [self._put_image(name, image[0], colormap="gray", scale=spacing, contrast_limits=(0.0, 1.0))]
        names = self.channel_names if len(self.channel_names) == image.shape[0] else [str(c) for c in range(image.shape[0])]
        colormaps = channel_colormaps(names, self._known_colormaps())
        return [
            self._put_image(f"{name} {channel}", image[c], colormap=cmap, scale=spacing, contrast_limits=(0.0, 1.0), blending="additive")
            for c, (channel, cmap) in enumerate(zip(names, colormaps))
        ]

    def _put_image(self, name: str, data: np.ndarray, **kwargs: Any) -> Image:
        """Update layer ``name`` in place (same dimensionality), else add it; the user's active layer stays active."""
        layers = self.viewer.layers
        if name in layers and isinstance(layers[name], Image) and layers[name].ndim == data.ndim:
            layer = layers[name]
            layer.data = data
            for key in ("scale", "translate", "contrast_limits"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            return layer
        if name in layers:
            layers.remove(name)
        active = layers.selection.active
        layer = self.viewer.add_image(data, name=name, **kwargs)
        if active is not None and active in layers:
            layers.selection.active = active
        return layer

    # ------------------------------------------------------------------ background work
    def _start(self, function: Callable, on_done: Callable, *args: Any, **kwargs: Any) -> Any:
        worker = create_worker(function, *args, _start_thread=False, **kwargs)
        worker.returned.connect(on_done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self._workers.discard(worker))
        self._workers.add(worker)
        worker.start()
        return worker

    @property
    def busy(self) -> bool:
        """True while a traversal, difference or Grad-CAM job (or a bundle load) is running."""
        return bool(self._workers)

    def _on_error(self, error: BaseException) -> None:
        if isinstance(error, InputError):
            self.status.setText(f"⚠ {error}")
            show_error(str(error))
        else:
            self.status.setText(f"Unexpected error: {error!r}")
            show_error(f"The latent-space job failed unexpectedly: {error!r}")

    def _require_model(self) -> torch.nn.Module:
        if self.model is None:
            raise InputError("no model: train one or load a model bundle folder first")
        return self.model

    def _selected_dim(self, dim: int | None) -> int:
        if dim is not None:
            return int(dim)
        if self.dim_combo.currentData() is None:
            raise InputError("no dimension chosen: load a model first")
        return int(self.dim_combo.currentData())

    # ------------------------------------------------------------------ traversal grids
    @report_errors
    def show_traversal_grid(self, n_steps: int | None = None, dims: list[int] | None = None) -> Any:
        """Decode the shown dimensions from −3 to +3 in ``n_steps`` (from the start point) into the "traversal grid" layer."""
        model = self._require_model()
        n_steps = self.steps.value() if n_steps is None else int(n_steps)
        dims = list(self.dims if dims is None else dims)
        values = traversal_values(n_steps)
        start = self.z.copy()

        def done(grid: np.ndarray) -> None:
            self._show_grid(GRID, grid, "dimension")
            self._figure_source = ("grid", grid, (dims, values))
            self.status.setText(f"Traversal grid: rows are dims {dims}, columns {', '.join(f'{v:+.1f}' for v in values)}")

        return self._start(traversal_grid, done, model, dims, n_steps, start)

    @report_errors
    def show_group_traversals(self, dim: int | None = None, n_steps: int | None = None) -> Any:
        """The same traversal of ``dim`` from each group's mean, side by side, in the "group traversals" layer."""
        model = self._require_model()
        if self.latents is None:
            raise InputError("group traversals need the latent table with a group column: embed the crops first")
        dim = self._selected_dim(dim)
        n_steps = self.steps.value() if n_steps is None else int(n_steps)
        means = group_means(self.latents)
        values = traversal_values(n_steps)

        def done(traversals: dict[Any, np.ndarray]) -> None:
            self._show_grid(GROUP_GRID, np.stack(list(traversals.values())), "group")
            self._figure_source = ("groups", traversals, values)
            self.status.setText(f"Group traversals of dim {dim}: rows {', '.join(map(str, traversals))}")

        return self._start(group_traversals, done, model, means, dim, values=values)

    def _show_grid(self, name: str, grid: np.ndarray, row_axis: str) -> None:
        spatial = grid.ndim - 3
        labels = (row_axis, "step", "channel", *("zyx"[3 - spatial :]))
        scale = (1.0, 1.0, 1.0, *self._spacing(spatial))
        translate = np.zeros(grid.ndim)
        decoded = self._decoded_layer()
        if decoded is not None and spatial == 2:  # right of the decoded cell, where the user is looking
            width = decoded.data.shape[-1] * decoded.scale[-1]
            translate[-2:] = np.asarray(decoded.translate[-2:], float) + [0.0, 1.15 * width]
        layer = self._put_image(name, grid, colormap="gray", scale=scale, contrast_limits=(0.0, 1.0), axis_labels=labels,
                                translate=translate)  # fmt: skip
        layer.axis_labels = labels

    def _decoded_layer(self) -> Image | None:
        """The (first channel's) decoded-cell layer, or None before the first decode."""
        return next((lay for lay in self.viewer.layers if lay.name.startswith(DECODED) and isinstance(lay, Image)), None)

    def figure(self) -> Any:
        """The matplotlib figure of the last traversal grid or group traversal."""
        if self._figure_source is None:
            raise InputError("make a traversal grid or group traversals first")
        kind, data, extra = self._figure_source
        if kind == "grid":
            dims, values = extra
            return traversal_figure(data, dims=dims, values=values)
        return group_traversal_figure(data, values=extra)

    @report_errors
    def save_figure(self, path: Any) -> Path:
        """Save the last traversal grid (or group traversals) as a PNG figure."""
        path = Path(path)
        self.figure().savefig(path, dpi=150)
        show_info(f"Saved the traversal figure to {path}")
        return path

    def _ask_figure_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save traversal figure", "traversal.png", "PNG (*.png)")
        if path:
            self.save_figure(path)

    # ------------------------------------------------------------------ difference maps
    @report_errors
    def show_difference(self, dim: int | None = None) -> Any:
        """|Δ| and 1 − SSIM between the decodes at −3 and +3 of ``dim`` (others at the start point), as overlays."""
        model = self._require_model()
        dim = self._selected_dim(dim)
        start = self.z.copy()

        def compute() -> dict[str, Any]:
            low, high = traverse(model, dim, start=start, values=[-SLIDER_EXTENT, SLIDER_EXTENT])
            return {**difference_maps(low, high, data_range=1.0, sigma=1.5), "what": f"dim {dim}: −3 vs +3"}

        return self._start(compute, self._on_difference)

    @report_errors
    def show_group_difference(self, group_a: str | None = None, group_b: str | None = None) -> Any:
        """|Δ| and 1 − SSIM between the decodes of two groups' mean μ, as overlays."""
        model = self._require_model()
        if self.latents is None:
            raise InputError("group differences need the latent table with a group column: embed the crops first")
        a = self._table_group(group_a or self.group_a.currentText())
        b = self._table_group(group_b or self.group_b.currentText())
        means = group_means(self.latents)
        if a not in means or b not in means or a == b:
            raise InputError(f"choose two different groups of the latent table ({', '.join(map(str, means))}); got {a!r} and {b!r}")
        mean_a, mean_b = means[a], means[b]

        def compute() -> dict[str, Any]:
            decoded_a, decoded_b = decode_latents(model, np.stack([mean_a, mean_b]))
            return {**difference_maps(decoded_a, decoded_b, data_range=1.0, sigma=1.5), "what": f"{a} vs {b}"}

        return self._start(compute, self._on_difference)

    def _on_difference(self, maps: dict[str, Any]) -> None:
        self._difference = maps
        self._show_difference_layers()
        message = maps["ssim_message"]
        self.status.setText(f"Difference {maps['what']}" + (f"; no SSIM map: {message}" if message else ""))
        if message:
            show_warning(message)

    def _show_difference_layers(self) -> None:
        """(Re)draw the difference overlays thresholded at the quantile slider's value."""
        if self._difference is None:
            return
        quantile = float(self.quantile.value())
        spacing = self._spacing(self._difference["abs"].ndim)
        for name, key, colormap in ((ABS_DIFFERENCE, "abs", "inferno"), (SSIM_DIFFERENCE, "dissimilarity", "magma")):
            raw = self._difference[key]
            if raw is None:
                if name in self.viewer.layers:
                    self.viewer.layers.remove(name)
                continue
            peak = max(float(raw.max()), 1e-3)
            decoded = self._decoded_layer()  # the maps lie on the decoded cell: where it changes
            translate = decoded.translate if decoded is not None and decoded.ndim == raw.ndim else np.zeros(raw.ndim)
            layer = self._put_image(
                name, threshold_map(raw, quantile=quantile), colormap=colormap, blending="additive",
                opacity=0.8, scale=spacing, contrast_limits=(0.0, peak), translate=translate,
            )  # fmt: skip
            layer.metadata["difference"] = self._difference["what"]

    # ------------------------------------------------------------------ Grad-CAM
    def _gradcam_positions(self, cells: str) -> np.ndarray:
        """Positions in the session's crop set of the chosen cells: the selected cell, the scatter selection, a group, or all."""
        crop_set = self.session.crop_set
        if crop_set is None:
            raise InputError("Grad-CAM needs the crops: build or load a crop set in the Cells widget first")
        table = crop_set.table
        if cells == "selected cell":
            source, label, t = self.selected_cell()
            return np.array([find_cell(table, source, label, t)])
        if cells == SCATTER_SELECTION:
            selection = self.session.selection
            if not len(selection):
                raise InputError("no cells are selected in the scatter plot: lasso, box or click points there first")
            rows = np.flatnonzero(table["crop_id"].isin(selection).to_numpy())
            if rows.size < len(selection):
                raise InputError(
                    f"{len(selection) - rows.size} selected cell(s) are not in the crop set of this viewer; "
                    "plot the latents of this crop set in the scatter plot and select again"
                )
            return rows
        if cells == "all cells":
            return np.arange(len(table))
        if cells.startswith("group: "):
            group = cells.removeprefix("group: ")
            rows = np.flatnonzero(table["group"].astype(str).to_numpy() == group)
            if rows.size == 0:
                raise InputError(f"no crop of group {group!r} in the crop set")
            return rows
        raise InputError(
            f"unknown cell choice {cells!r}; use 'selected cell', {SCATTER_SELECTION!r}, 'group: <name>' or 'all cells'"
        )

    @report_errors
    def show_gradcam(self, dim: int | None = None, sign: int | None = None, cells: str | None = None) -> Any:
        """Grad-CAM of ``sign · μ_dim`` on the chosen cells, shown on their source layers in source coordinates.

        One cell of a source (and frame) gets a crop-sized map placed with
        ``translate``/``scale`` on its bounding box; several cells of one source
        are pasted into one map of the source's size (larger value wins where
        boxes overlap). The one "Grad-CAM" layer shows the map of the source
        shown now (the active source layer, else the topmost visible one);
        its ``metadata`` holds ``dim``, ``sign``, ``source`` and ``label_ids``.
        """
        model = self._require_model()
        if isinstance(self.bundle.model, StackedConditionalVAE):
            raise InputError("Grad-CAM of the conditional model's encoder needs its reference image; use a β-VAE or ME-VAE")
        dim = self._selected_dim(dim)
        sign = (1 if self.sign_combo.currentText() == "+" else -1) if sign is None else int(sign)
        cells = self.cells_combo.currentText() if cells is None else cells
        positions = self._gradcam_positions(cells)
        crop_set = self.session.crop_set
        check_compatible(self.bundle, crop_set)  # the maps mean nothing on crops the model was not made for
        rows = crop_set.table.iloc[positions].reset_index(drop=True)
        source_layers(self.viewer.layers, rows)  # refuse missing source layers before computing

        def compute() -> np.ndarray:
            images = np.asarray(crop_set.subset(positions).images, dtype=np.float32)
            return gradcam_encoder(model, images, dim, sign=sign)

        self.status.setText(f"Grad-CAM of dim {dim} ({'+' if sign > 0 else '−'}) on {len(positions)} cell(s)…")
        return self._start(compute, lambda maps: self._show_gradcam_maps(maps, rows, dim, sign))

    def _show_gradcam_maps(self, maps: np.ndarray, rows: pd.DataFrame, dim: int, sign: int) -> Image | None:
        """Keep one overlay per source (and frame) and show the one of the field shown now in the "Grad-CAM" layer."""
        layers = source_layers(self.viewer.layers, rows)
        spatial = maps.ndim - 1
        has_t = "t" in rows.columns
        keys = ["source", "t"] if has_t else ["source"]
        gradcam: dict[str, dict[int | None, tuple]] = {}
        for key, part in rows.assign(source=rows["source"].astype(str)).groupby(keys, sort=False):
            source = key[0] if isinstance(key, tuple) else key
            layer = layers[source]
            leading = layer.ndim - spatial
            if leading not in (0, 1):
                raise InputError(f"layer {source!r} has {layer.ndim} axes; Grad-CAM overlays support [T,] {'ZYX'[3 - spatial:]} layers")
            index = (int(part["t"].iloc[0]),) if leading == 1 and has_t else (0,) * leading
            shape = layer.level_shapes[0] if layer.multiscale else layer.data.shape
            data, translate, scale = source_overlay(
                [maps[i] for i in part.index], part, layer_shape=shape, layer_scale=layer.scale,
                layer_translate=layer.translate, leading_index=index,
            )  # fmt: skip
            frame = index[0] if leading else None
            gradcam.setdefault(layer.name, {})[frame] = (data, translate, scale, part["label_id"].tolist())
        self._gradcam_maps, self._gradcam_of = gradcam, {"dim": dim, "sign": sign}
        self._gradcam.set_sources([layers[source] for source in rows["source"].astype(str).unique()])
        fields = f"{len(gradcam)} field(s)" + ("" if len(gradcam) == 1 else "; select a field's layer to see its maps")
        self.status.setText(f"Grad-CAM of dim {dim} ({'+' if sign > 0 else '−'}): {len(rows)} cell(s) on {fields}")
        return self._gradcam.layer

    def _render_gradcam(self, layer: Labels, _current: Any) -> tuple[np.ndarray, dict] | None:
        """The Grad-CAM overlay of the shown source layer at its shown frame (None: no map there)."""
        frames = self._gradcam_maps.get(layer.name)
        if not frames:
            return None
        frame = None if None in frames else int(round(layer.world_to_data(self.viewer.dims.point)[0]))
        if frame not in frames:
            return None
        data, translate, scale, label_ids = frames[frame]
        metadata = {**self._gradcam_of, "source": layer.name, "label_ids": label_ids}
        return data, {"translate": translate, "scale": scale, "metadata": metadata}

    def _on_frame_changed(self, _event: Any = None) -> None:
        if any(None not in frames for frames in self._gradcam_maps.values()):
            self._gradcam.refresh()

    # ------------------------------------------------------------------ closing
    def _close_decoder(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None

    def closeEvent(self, event: Any) -> None:
        self.session.bundle_changed.disconnect(self._on_session_bundle)
        self.session.latents_changed.disconnect(self._on_session_latents)
        self.session.crop_set_changed.disconnect(self._on_session_crop_set)
        self.session.selection_changed.disconnect(self._on_session_selection)
        self._close_decoder()
        super().closeEvent(event)
