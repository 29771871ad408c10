"""The "Latent space" widget: sliders that decode live, traversal grids, difference maps and Grad-CAM overlays.

What a latent dimension means is learned by looking: move its slider and watch
the decoded cell change, lay out the walk from −3 to +3 as a grid, see where
the two ends differ, and see which regions of real cells push the dimension up
or down (Grad-CAM, placed on the cells in the full field of view).

All computing is in ``core``: :mod:`~napari_morphospace.core.analysis.traversal`
(decoding, grids, the coalescing :class:`LatentDecoder`),
:mod:`~napari_morphospace.core.analysis.overlays` (ranking, start points, difference
maps) and :mod:`~napari_morphospace.core.analysis.gradcam`. What appears in the viewer,
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
from ..core.analysis.gradcam import gradcam_encoder
from ..core.analysis.overlays import (
    find_cell,
    group_difference,
    group_traversal_figure,
    latent_from_sliders,
    ranked_dimensions,
    slider_values,
    start_vector,
    traversal_difference,
)
from ..core.analysis.traversal import group_means, group_traversals, traversal_figure, traversal_grid, traversal_values
from ..core.errors import InputError
from ..core.models import StackedConditionalVAE
from ..core.training.bundle import Bundle, check_compatible, load_bundle
from ..viewer.decoded import (
    ABS_DIFFERENCE,
    DECODED,
    GRID,
    GROUP_GRID,
    SSIM_DIFFERENCE,
    cell_box,
    crop_spacing,
    show_difference,
    show_grid,
)
from ..viewer.layers import selected_cell, source_layers
from ..viewer.overlays import SCATTER_SELECTION, GradcamOverlay, chosen_cells, place_maps
from ..viewer.session import session_for
from .combos import set_quietly
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .errors import report_errors
from .latent_decoding import LiveDecoding
from .latent_panels import STARTS, ModelPanel, SliderPanel, ViewsPanel
from .tasks import Tasks

__all__ = ["ABS_DIFFERENCE", "DECODED", "GRID", "GROUP_GRID", "SCATTER_SELECTION", "SSIM_DIFFERENCE", "LatentWidget",
           "traversable_model"]  # fmt: skip


def traversable_model(bundle: Bundle) -> tuple[torch.nn.Module, list[str], str]:
    """The model the sliders decode with, its channel names, and a note for the user.

    The stacked conditional model's target decoder needs a reference image, so
    its unconditional reference model (the reference channels) is traversed.
    """
    model = bundle.model
    if isinstance(model, StackedConditionalVAE):
        names = [bundle.channel_names[c] for c in model.reference_channels]
        return (
            model.reference,
            names,
            "conditional model: the sliders traverse its reference model (" + ", ".join(names) + ")",
        )
    return model, list(bundle.channel_names), ""


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
        self.latents: pd.DataFrame | None = None
        self.latent_scale = np.ones(0, np.float32)
        self.z = np.zeros(0, np.float32)
        self.dims: list[int] = []
        self.scores = np.zeros(0)
        self._cell_row: int | None = None
        self._difference: dict[str, Any] | None = None
        self._figure_source: tuple[str, Any, Any] | None = None
        self.gradcam = GradcamOverlay(napari_viewer)

        self.model_panel, self.slider_panel, self.views = ModelPanel(), SliderPanel(), ViewsPanel()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.tasks = Tasks("Latent space", status=self.status.setText, parent=self)
        self.decoding = LiveDecoding(
            napari_viewer,
            spacing=self._spacing,
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
        sliders.group_a.currentTextChanged.connect(lambda _: self._on_groups_changed())
        sliders.group_b.currentTextChanged.connect(lambda _: self._on_groups_changed())
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
        views.quantile.valueChanged.connect(lambda _: self._show_difference_layers())
        views.gradcam_button.clicked.connect(lambda: self.show_gradcam())

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
        return self._start(load_bundle, Path(path), on_done=self._use_loaded_bundle, action="Loading the model")

    def _use_loaded_bundle(self, bundle: Bundle) -> None:
        self.set_bundle(bundle)
        self.session.bundle = bundle

    def set_bundle(self, bundle: Bundle) -> None:
        """Decode with this bundle's model; rebuilds the sliders and restarts the decoder thread."""
        self.bundle = bundle
        self.model, self.channel_names, note = traversable_model(bundle)
        self.model.eval()
        dim = int(self.model.latent_dim)
        scale = getattr(self.model, "latent_scale", None)
        self.latent_scale = (
            np.ones(dim, np.float32) if scale is None else scale.detach().cpu().numpy().astype(np.float32)
        )
        self.z = np.zeros(dim, np.float32)
        self.decoding.set_model(self.model, self.channel_names)
        shape = "×".join(map(str, bundle.input_shape))
        self.model_panel.info.setText(
            f"{bundle.model_settings.model}, {dim} latent dimensions, crops {shape} ({', '.join(bundle.channel_names)})"
            + (f"; {note}" if note else "")
        )
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
        self.latents = table
        self._cell_row = None
        groups = (
            []
            if table is None or "group" not in table.columns
            else [str(g) for g in pd.unique(table["group"].dropna())]
        )
        self.slider_panel.set_groups(groups)
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
        self.views.set_cell_choices(groups)

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
                self.status.setText(f"{len(self.latents)} embedded cells; dimensions ranked by {by.replace('_', ' ')}.")
            except InputError as err:
                self.status.setText(f"⚠ {err} Showing dimensions in index order.")
        elif by != "index":
            self.status.setText("No latent table: dimensions in index order. Embed the crops to rank them.")
        self.scores = scores
        self.dims = [int(d) for d in order[: self.slider_panel.shown_count(n)]]
        self.slider_panel.rebuild(self.dims, slider_values(self.z, self.dims, self.latent_scale), self.latent_scale,
                                  scores, {"kl": "KL", "cohens_d": "d"}.get(by), self._on_slider)  # fmt: skip
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
        if kind not in STARTS:
            raise InputError(f"unknown start {kind!r}; choose one of {', '.join(STARTS)}")
        if group is not None:
            self.slider_panel.start_group.setCurrentText(str(group))
        set_quietly(self.slider_panel.start_combo, kind)
        self.decoding.place_next()
        if kind == "cell" and self._cell_row is None:
            self._cell_row = self._selected_row()
        if kind == "cell" and self._cell_row is None:  # nothing chosen yet: no error, say how to choose
            self._restart_from(np.zeros(len(self.z), np.float32))
            self.status.setText(
                "Start: the origin until a cell is chosen. Click a cell in the Scatter plot (or in the image with the "
                "Scatter dock open), or pick its label in a Labels layer and press 'Use selected cell'."
            )
            return
        table_group = self._table_group(self.slider_panel.start_group.currentText())
        try:
            z = start_vector(self.latents, len(self.z), kind=kind, group=table_group, row=self._cell_row)
        except InputError as err:
            self._restart_from(np.zeros(len(self.z), np.float32))
            raise InputError(f"{err}; starting from the origin instead") from err
        self._restart_from(z)

    def _restart_from(self, z: np.ndarray) -> None:
        self.z = z
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
        if self.model is None or self.slider_panel.start_combo.currentText() != "cell":
            return
        row = self._selected_row()
        if row is not None and row != self._cell_row:
            self._cell_row = row
            self.set_start("cell")

    def _on_start_group_changed(self) -> None:
        if self.slider_panel.start_combo.currentText() == "group mean":
            self.set_start("group mean")

    def _table_group(self, text: str) -> Any:
        """The group value of the latent table whose text is ``text`` (groups may be numbers)."""
        if self.latents is None or "group" not in self.latents.columns:
            return text
        return next((g for g in pd.unique(self.latents["group"].dropna()) if str(g) == text), text)

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
        if self.latents is None:
            raise InputError("starting from a cell needs the latent table: embed the crops with this model first")
        source, label, t = self.selected_cell(layer)
        self._cell_row = find_cell(self.latents, source, label, t)
        set_quietly(self.slider_panel.start_combo, "cell")
        self.set_start("cell")
        self.status.setText(f"Start: {source} label {label}" + (f" at t={t}" if t is not None else ""))

    # ------------------------------------------------------------------ decoded cell
    def _start_cell_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """World corners of the cell the sliders start from, when the start is a cell shown in the viewer."""
        if self.slider_panel.start_combo.currentText() != "cell" or self._cell_row is None or self.latents is None:
            return None
        return cell_box(self.viewer, self.latents.iloc[self._cell_row])

    def _spacing(self, spatial_ndim: int) -> tuple[float, ...]:
        return crop_spacing(self.session.crop_set, spatial_ndim)

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
            show_grid(self.viewer, grid, name=GRID, row_axis="dimension", spacing=self._spacing(grid.ndim - 3))
            self._figure_source = ("grid", grid, (dims, values))
            self.status.setText(
                f"Traversal grid: rows are dims {dims}, columns {', '.join(f'{v:+.1f}' for v in values)}"
            )

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
            grid = np.stack(list(traversals.values()))
            show_grid(self.viewer, grid, name=GROUP_GRID, row_axis="group", spacing=self._spacing(grid.ndim - 3))
            self._figure_source = ("groups", traversals, values)
            self.status.setText(f"Group traversals of dim {dim}: rows {', '.join(map(str, traversals))}")

        return self.tasks.start(group_traversals, model, group_means(self.latents), dim, values=values, on_done=done,
                                action="The group traversals", exclusive=False)  # fmt: skip

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
        return self._start(traversal_difference, model, dim, self.z.copy(), on_done=self._on_difference,
                           action="The difference maps")  # fmt: skip

    @report_errors
    def show_group_difference(self, group_a: str | None = None, group_b: str | None = None) -> Any:
        """|Δ| and 1 − SSIM between the decodes of two groups' mean μ, as overlays."""
        model = self._require_model()
        if self.latents is None:
            raise InputError("group differences need the latent table with a group column: embed the crops first")
        a = self._table_group(group_a or self.slider_panel.group_a.currentText())
        b = self._table_group(group_b or self.slider_panel.group_b.currentText())
        return self._start(group_difference, model, self.latents, a, b, on_done=self._on_difference,
                           action="The group difference maps")  # fmt: skip

    def _on_difference(self, maps: dict[str, Any]) -> None:
        self._difference = maps
        self._show_difference_layers()
        message = maps["ssim_message"]
        self.status.setText(f"Difference {maps['what']}" + (f"; no SSIM map: {message}" if message else ""))
        if message:
            show_warning(message)

    def _show_difference_layers(self) -> None:
        """(Re)draw the difference overlays thresholded at the quantile slider's value."""
        if self._difference is not None:
            show_difference(self.viewer, self._difference, quantile=float(self.views.quantile.value()),
                            spacing=self._spacing(self._difference["abs"].ndim))  # fmt: skip

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
        if isinstance(self.bundle.model, StackedConditionalVAE):
            raise InputError(
                "Grad-CAM of the conditional model's encoder needs its reference image; use a β-VAE or ME-VAE"
            )
        dim = self._selected_dim(dim)
        sign = self.views.sign() if sign is None else int(sign)
        cells = self.views.cells_combo.currentText() if cells is None else cells
        crop_set = self.session.crop_set
        selected = self.selected_cell() if cells == "selected cell" and crop_set is not None else None
        positions = chosen_cells(crop_set, cells, selection=self.session.selection, selected=selected)
        check_compatible(self.bundle, crop_set)  # the maps mean nothing on crops the model was not made for
        rows = crop_set.table.iloc[positions].reset_index(drop=True)
        source_layers(self.viewer.layers, rows)  # refuse missing source layers before computing

        def compute() -> np.ndarray:
            images = np.asarray(crop_set.subset(positions).images, dtype=np.float32)
            return gradcam_encoder(model, images, dim, sign=sign)

        self.status.setText(f"Grad-CAM of dim {dim} ({'+' if sign > 0 else '−'}) on {len(positions)} cell(s)…")
        return self._start(
            compute, on_done=lambda maps: self._show_gradcam_maps(maps, rows, dim, sign), action="Grad-CAM"
        )

    @report_errors
    def _show_gradcam_maps(self, maps: np.ndarray, rows: pd.DataFrame, dim: int, sign: int) -> Any:
        placed = place_maps(self.viewer.layers, maps, rows)
        layer = self.gradcam.show(placed, dim=dim, sign=sign)
        fields = f"{len(placed)} field(s)" + ("" if len(placed) == 1 else "; select a field's layer to see its maps")
        self.status.setText(f"Grad-CAM of dim {dim} ({'+' if sign > 0 else '−'}): {len(rows)} cell(s) on {fields}")
        return layer

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: Any) -> None:
        self.session.bundle_changed.disconnect(self._on_session_bundle)
        self.session.latents_changed.disconnect(self._on_session_latents)
        self.session.crop_set_changed.disconnect(self._on_session_crop_set)
        self.session.selection_changed.disconnect(self._on_session_selection)
        self.tasks.stop()
        self.decoding.close()
        super().closeEvent(event)
