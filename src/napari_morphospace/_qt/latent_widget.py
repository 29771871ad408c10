"""The "Latent space" widget: sliders that decode live, traversal grids, difference maps and Grad-CAM overlays.

What a latent dimension means is learned by looking: move its slider and watch
the decoded cell change, lay out the walk from −3 to +3 as a grid, see where
the two ends differ, and see which regions of real cells push the dimension up
or down (Grad-CAM, placed on the cells in the full field of view).

All computing is in ``core``: :mod:`~napari_morphospace.core.analysis.traversal`
(decoding, grids, the coalescing :class:`LatentDecoder`, start points, slider units),
:mod:`~napari_morphospace.core.analysis.latent_summary` (ranking),
:mod:`~napari_morphospace.core.analysis.difference` (difference maps) and
:mod:`~napari_morphospace.core.analysis.gradcam`. What appears in the viewer,
and where, is :mod:`~napari_morphospace.viewer.decoded` (decoded cell beside
the cell it starts from, grids beside it, difference maps on it) and
:mod:`~napari_morphospace.viewer.overlays` (the one "Grad-CAM" layer, showing
the map of the field shown now). The forms are :mod:`._qt.latent_panels`;
this widget reads the session's model, latent table and crop set and runs the
work through its :class:`~._qt.tasks.Tasks` (several at once).

Everything the form does is also a public method (``set_slider``,
``set_start``, ``use_selected_cell``, ``show_traversal_grid``,
``show_difference``, ``show_gradcam``, ...), so it can be scripted and tested.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from napari.layers import Labels
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget
from superqt import QLabeledDoubleSlider

from ..core.analysis.cell_table import mu_columns, require_mu_columns
from ..core.analysis.difference import group_difference, traversal_difference
from ..core.analysis.latent_summary import ranked_dimensions
from ..core.analysis.traversal import (
    group_means,
    group_traversals,
    latent_from_sliders,
    slider_values,
    traversal_grid,
    traversal_values,
)
from ..core.errors import InputError
from ..core.models import StackedConditionalVAE
from ..core.training.bundle import Bundle, load_bundle
from ..viewer.latent_start import StartPoint, check_start
from ..viewer.latent_views import LatentViews, encoder_gradcam
from ..viewer.layers import selected_cell
from ..viewer.session import session_for
from .combos import set_quietly
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .errors import report_errors
from .latent_decoding import LiveDecoding, traversable_model
from .latent_panels import ModelPanel, SliderPanel, ViewsPanel
from .tasks import Tasks


def _groups(table: pd.DataFrame | None) -> list[str]:
    """The groups of a latent or crop table (its ``group`` column) in table order, as text."""
    if table is None or "group" not in table.columns:
        return []
    return [str(group) for group in pd.unique(table["group"].dropna())]


class LatentWidget(QWidget):
    """Explore a VAE's latent space: sliders, traversal grids, difference maps and Grad-CAM overlays."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.bundle: Bundle | None = None
        self.model: torch.nn.Module | None = None
        self.channel_names: list[str] = []
        self.start = StartPoint(napari_viewer)
        self.latent_scale = np.ones(0, np.float32)
        self.z = np.zeros(0, np.float32)
        self.dims: list[int] = []
        self.scores = np.zeros(0)
        self.views_shown = LatentViews(napari_viewer)

        self.model_panel, self.slider_panel, self.views = ModelPanel(), SliderPanel(), ViewsPanel()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.tasks = Tasks("Latent space", status=self.status.setText, parent=self)
        self.decoding = LiveDecoding(
            napari_viewer,
            spacing=self.views_shown.spacing,
            anchor=self._start_cell_box,
            on_error=lambda error: self.tasks.report(error, "Decoding"),
            parent=self,
        )
        content = QWidget()
        layout = QVBoxLayout(content)
        for part in (self.model_panel, self.slider_panel, self.views, self.status):
            layout.addWidget(part)
        layout.addStretch()
        scroll_in_dock(self, content)
        self._connect_forms()

        self.session.bundle_changed.connect(self._on_session_bundle)
        self.session.latents_changed.connect(self._on_session_latents)
        self.session.crop_set_changed.connect(self._on_session_crop_set)
        self.session.selection_changed.connect(self._on_session_selection)
        self.set_latents(self.session.latents, quiet=True)
        if self.session.bundle is not None:
            self.set_bundle(self.session.bundle)
        self._refresh_cell_choices()

    def _connect_forms(self) -> None:
        model, sliders, views = self.model_panel, self.slider_panel, self.views
        model.load_button.clicked.connect(lambda: self.load_bundle(model.bundle_path.value))
        sliders.rank_combo.currentTextChanged.connect(lambda _: self._rebuild_sliders())
        sliders.condition.currentTextChanged.connect(lambda _: self._on_groups_changed())
        sliders.reference.currentTextChanged.connect(lambda _: self._on_groups_changed())
        sliders.top_k.valueChanged.connect(lambda _: self._rebuild_sliders())
        sliders.show_all.toggled.connect(lambda _: self._rebuild_sliders())
        sliders.start_combo.currentTextChanged.connect(lambda kind: self.set_start(kind))
        sliders.start_group.currentTextChanged.connect(lambda _: self._on_start_group_changed())
        sliders.cell_button.clicked.connect(lambda: self.use_selected_cell())
        sliders.reset_button.clicked.connect(lambda: self.set_start(sliders.start_combo.currentText()))
        views.grid_button.clicked.connect(lambda: self.show_traversal_grid())
        views.group_grid_button.clicked.connect(lambda: self.show_group_traversals())
        views.figure_button.clicked.connect(self._ask_figure_path)
        views.difference_button.clicked.connect(lambda: self.show_difference())
        views.group_difference_button.clicked.connect(lambda: self.show_group_difference())
        views.quantile.valueChanged.connect(lambda value: self.views_shown.threshold(float(value)))
        views.gradcam_button.clicked.connect(lambda: self.show_gradcam())

    @property
    def latents(self) -> pd.DataFrame | None:
        """The latent table used for ranking and start points (None: none that fits this model)."""
        return self.start.latents

    @property
    def busy(self) -> bool:
        """True while a traversal, difference or Grad-CAM job (or a bundle load) is running."""
        return self.tasks.busy

    def _start(self, function: Any, *args: Any, on_done: Any, action: str) -> Any:
        """Run ``function(*args)`` in the background; several jobs of this widget may run at once."""
        return self.tasks.start(function, *args, on_done=on_done, action=action, exclusive=False)

    # ------------------------------------------------------------------ model and latents
    def _on_session_bundle(self, bundle: Any) -> None:
        if bundle is not None and bundle is not self.bundle:
            self.set_bundle(bundle)

    def _on_session_latents(self, table: Any) -> None:
        measured = isinstance(table, pd.DataFrame) and not mu_columns(table)  # a feature table: nothing to decode
        self.set_latents(table, quiet=measured)
        if measured:
            self.status.setText(
                "The session's cells carry features measured elsewhere, not a model's latents: "
                "sliders and traversals decode a model's latent space only."
            )

    def _on_session_crop_set(self, crop_set: Any) -> None:
        self._refresh_cell_choices()

    @report_errors
    def load_bundle(self, path: Any) -> Any:
        """Load a model bundle folder in a worker, then use it here and share it through the session."""
        if not path or str(path) in ("", "."):
            raise InputError("choose the bundle folder (with model.json and weights.safetensors) first")
        self.status.setText(f"Loading {path}…")
        return self._start(load_bundle, Path(path), on_done=self._use_loaded_bundle, action="Loading the model")

    def _use_loaded_bundle(self, bundle: Bundle) -> None:
        self.set_bundle(bundle)
        self.session.bundle = bundle

    def set_bundle(self, bundle: Bundle) -> None:
        """Decode with this bundle's model; rebuilds the sliders and restarts the decoder thread."""
        self.bundle = bundle
        sliders = traversable_model(bundle)
        self.model, self.channel_names, self.latent_scale = sliders.model, sliders.channel_names, sliders.latent_scale
        dim = len(self.latent_scale)
        self.z = np.zeros(dim, np.float32)
        self.decoding.set_model(self.model, self.channel_names)
        self.model_panel.info.setText(sliders.info)
        self.slider_panel.top_k.setMaximum(dim)
        self._check_latent_size()
        self.set_start(self.slider_panel.start_combo.currentText())

    def set_latents(self, table: pd.DataFrame | None, quiet: bool = False) -> None:
        """Use this latent table (``mu_*``, ``logvar_*``, ``group``, ``source``, ``label_id``) for ranking and start
        points."""
        if table is not None and not isinstance(table, pd.DataFrame):
            table = None
        if table is not None:
            try:
                require_mu_columns(table)
            except InputError as err:
                if not quiet:
                    show_warning(str(err))
                table = None
        self.start.use(table)
        self.slider_panel.set_groups(_groups(table))
        if self.model is not None:
            self._check_latent_size()
            self._rebuild_sliders()

    def _check_latent_size(self) -> None:
        if self.latents is None or self.model is None:
            return
        n = len(require_mu_columns(self.latents))
        if n != len(self.z) or isinstance(self.bundle.model, StackedConditionalVAE):
            self.start.use(None)
            show_warning(
                f"the latent table has {n} dimensions and was not embedded with this model's traversed encoder; "
                "it is not used for ranking or start points. Embed the crops with this model first"
            )

    def _refresh_cell_choices(self) -> None:
        crop_set = self.session.crop_set
        self.views.set_cell_choices(_groups(None if crop_set is None else crop_set.table))

    # ------------------------------------------------------------------ sliders
    def _on_groups_changed(self) -> None:
        if self.slider_panel.ranking()[0] == "cohens_d":
            self._rebuild_sliders()

    def _rebuild_sliders(self) -> None:
        """One slider per shown dimension, ranked as chosen; other dimensions keep their value."""
        if self.model is None:
            return
        n = len(self.z)
        by, groups = self.slider_panel.ranking()
        order, scores = np.arange(n), np.full(n, np.nan)
        if self.latents is not None and by != "index":
            try:
                order, scores = ranked_dimensions(self.latents, by=by, groups=groups)
                ranking = "KL" if by == "kl" else f"|Cohen's d| of {groups[0]} − {groups[1]}"
                self.status.setText(f"{len(self.latents)} embedded cells; dimensions ranked by {ranking}.")
            except InputError as err:
                self.status.setText(f"⚠ {err} Showing dimensions in index order.")
        elif by != "index":
            self.status.setText("No latent table: dimensions in index order. Embed the crops to rank them.")
        self.scores = scores
        self.dims = [int(d) for d in order[: self.slider_panel.shown_count(n)]]
        self.slider_panel.rebuild(
            self.dims,
            slider_values(self.z, self.dims, self.latent_scale),
            self.latent_scale,
            scores,
            {"kl": "KL", "cohens_d": "d"}.get(by),
            self._on_slider,
        )
        self.views.set_dimensions(order)

    def slider(self, dim: int) -> QLabeledDoubleSlider:
        """The slider of latent dimension ``dim`` (it must be shown)."""
        if dim not in self.slider_panel.sliders:
            raise InputError(f"dimension {dim} has no slider: tick 'show all' or raise 'top'")
        return self.slider_panel.sliders[dim]

    def set_slider(self, dim: int, value: float) -> None:
        """Move the slider of ``dim`` to ``value`` (units of ``latent_scale[dim]``, −3…+3); decodes the new point."""
        self.slider(dim).setValue(float(value))

    def _on_slider(self, dim: int, value: float) -> None:
        self.z = latent_from_sliders(self.z, [dim], [value], self.latent_scale)
        self.request_decode()

    def request_decode(self) -> None:
        """Ask the decoder thread for the current latent vector; a newer request replaces one not yet started."""
        self.decoding.request(self.z)

    @report_errors
    def set_start(self, kind: str, group: str | None = None) -> None:
        """Start from the origin, a group's mean μ (``group``) or the chosen cell's μ;
        resets every dimension and decodes."""
        if self.model is None:
            return
        check_start(kind)
        if group is not None:
            self.slider_panel.start_group.setCurrentText(str(group))
        set_quietly(self.slider_panel.start_combo, kind)
        self.decoding.place_next()
        try:
            z = self.start.vector(kind, len(self.z), self.slider_panel.start_group.currentText())
        except InputError:
            self._restart_from(np.zeros(len(self.z), np.float32))
            raise
        if z is None:  # start = cell, and no cell chosen yet: no error, say how to choose
            self._restart_from(np.zeros(len(self.z), np.float32))
            self.status.setText(
                "Start: the origin until a cell is chosen. Click a cell in the Scatter plot (or in the image with the "
                "Scatter dock open), or pick its label in a Labels layer and press 'Use selected cell'."
            )
            return
        self._restart_from(z)

    def _restart_from(self, z: np.ndarray) -> None:
        self.z = z
        self._rebuild_sliders()
        self.request_decode()

    def _on_session_selection(self, _selection: Any) -> None:
        """With start = cell, a newly selected cell becomes the start point."""
        if self.model is None or self.slider_panel.start_combo.currentText() != "cell":
            return
        if self.start.follow_selection():
            self.set_start("cell")

    def _on_start_group_changed(self) -> None:
        if self.slider_panel.start_combo.currentText() == "group mean":
            self.set_start("group mean")

    # ------------------------------------------------------------------ selected cell
    def _spatial_ndim(self) -> int:
        if self.bundle is not None:
            return len(self.bundle.input_shape) - 1
        crop_set = self.session.crop_set
        return crop_set.spatial_ndim if crop_set is not None else 2

    def selected_cell(self, layer: Labels | str | None = None) -> tuple[str, int, int | None]:
        """``(source, label_id, t)`` of the label selected in a Labels layer (the active one by default)."""
        return selected_cell(self.viewer, self._spatial_ndim(), layer)

    @report_errors
    def use_selected_cell(self, layer: Labels | str | None = None) -> None:
        """Start the sliders from the μ of the cell selected in a Labels layer (looked up by source, label id, t)."""
        source, label, t = self.start.pick_cell(self._spatial_ndim(), layer)
        set_quietly(self.slider_panel.start_combo, "cell")
        self.set_start("cell")
        self.status.setText(f"Start: {source} label {label}" + (f" at t={t}" if t is not None else ""))

    # ------------------------------------------------------------------ decoded cell
    def _start_cell_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """World corners of the cell the sliders start from, when the start is a cell shown in the viewer."""
        return self.start.cell_box() if self.slider_panel.start_combo.currentText() == "cell" else None

    def _require_model(self) -> torch.nn.Module:
        if self.model is None:
            raise InputError("no model: train one or load a model bundle folder first")
        return self.model

    def _selected_dim(self, dim: int | None) -> int:
        if dim is not None:
            return int(dim)
        if self.views.dim_combo.currentData() is None:
            raise InputError("no dimension chosen: load a model first")
        return int(self.views.dim_combo.currentData())

    # ------------------------------------------------------------------ traversal grids
    @report_errors
    def show_traversal_grid(self, n_steps: int | None = None, dims: list[int] | None = None) -> Any:
        """Decode the shown dimensions from −3 to +3 in ``n_steps`` (from the start point) into the "traversal grid"
        layer."""
        model = self._require_model()
        n_steps = self.views.steps.value() if n_steps is None else int(n_steps)
        dims = list(self.dims if dims is None else dims)
        values = traversal_values(n_steps)

        def done(grid: np.ndarray) -> None:
            self.status.setText(self.views_shown.show_grid(grid, dims, values))

        return self._start(
            traversal_grid, model, dims, n_steps, self.z.copy(), on_done=done, action="The traversal grid"
        )

    @report_errors
    def show_group_traversals(self, dim: int | None = None, n_steps: int | None = None) -> Any:
        """The same traversal of ``dim`` from each group's mean, side by side, in the "group traversals" layer."""
        model = self._require_model()
        if self.latents is None:
            raise InputError("group traversals need the latent table with a group column: embed the crops first")
        dim = self._selected_dim(dim)
        values = traversal_values(self.views.steps.value() if n_steps is None else int(n_steps))

        def done(traversals: dict[Any, np.ndarray]) -> None:
            self.status.setText(self.views_shown.show_group_traversals(traversals, dim, values))

        return self.tasks.start(
            group_traversals,
            model,
            group_means(self.latents),
            dim,
            values=values,
            on_done=done,
            action="The group traversals",
            exclusive=False,
        )

    def figure(self) -> Any:
        """The matplotlib figure of the last traversal grid or group traversal."""
        return self.views_shown.figure()

    @report_errors
    def save_figure(self, path: Any) -> Path:
        """Save the last traversal grid (or group traversals) as a PNG figure."""
        path = self.views_shown.save_figure(path)
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
        return self._start(
            partial(traversal_difference, start=start),
            model,
            dim,
            on_done=self._on_difference,
            action="The difference maps",
        )

    @report_errors
    def show_group_difference(self, condition: str | None = None, reference: str | None = None) -> Any:
        """|Δ| and 1 − SSIM between the decodes of the condition's and the reference's mean μ, as overlays."""
        model = self._require_model()
        if self.latents is None:
            raise InputError("group differences need the latent table with a group column: embed the crops first")
        condition = self.start.group(condition or self.slider_panel.condition.currentText())
        reference = self.start.group(reference or self.slider_panel.reference.currentText())
        return self._start(
            group_difference,
            model,
            self.latents,
            condition,
            reference,
            on_done=self._on_difference,
            action="The group difference maps",
        )

    def _on_difference(self, maps: dict[str, Any]) -> None:
        self.status.setText(self.views_shown.show_difference(maps, quantile=float(self.views.quantile.value())))
        if maps["ssim_message"]:
            show_warning(maps["ssim_message"])

    # ------------------------------------------------------------------ Grad-CAM
    @report_errors
    def show_gradcam(self, dim: int | None = None, sign: int | None = None, cells: str | None = None) -> Any:
        """Grad-CAM of ``sign · μ_dim`` on the chosen cells, shown on their source layers in source coordinates.

        One "Grad-CAM" layer shows the map of the source shown now (the active
        source layer, else the topmost visible one): a crop-sized map on the
        cell's box, or several cells' maps pasted into one map of the source's
        size (:func:`~napari_morphospace.viewer.overlays.place_maps`). Its
        ``metadata`` holds ``dim``, ``sign``, ``source`` and ``label_ids``.
        """
        model = self._require_model()
        dim = self._selected_dim(dim)
        sign = self.views.sign() if sign is None else int(sign)
        cells = self.views.cells_combo.currentText() if cells is None else cells
        selected = self.selected_cell() if cells == "selected cell" and self.session.crop_set is not None else None
        positions, rows = self.views_shown.gradcam_cells(self.bundle, cells, selected)
        self.status.setText(f"Grad-CAM of dim {dim} ({'+' if sign > 0 else '−'}) on {len(positions)} cell(s)…")
        return self._start(
            encoder_gradcam,
            model,
            self.session.crop_set,
            positions,
            dim,
            sign,
            action="Grad-CAM",
            on_done=lambda maps: self._show_gradcam_maps(maps, rows, dim, sign),
        )

    @report_errors
    def _show_gradcam_maps(self, maps: np.ndarray, rows: pd.DataFrame, dim: int, sign: int) -> None:
        self.status.setText(self.views_shown.show_gradcam(maps, rows, dim, sign))

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: Any) -> None:
        self.session.bundle_changed.disconnect(self._on_session_bundle)
        self.session.latents_changed.disconnect(self._on_session_latents)
        self.session.crop_set_changed.disconnect(self._on_session_crop_set)
        self.session.selection_changed.disconnect(self._on_session_selection)
        self.tasks.stop()
        self.decoding.close()
        super().closeEvent(event)
