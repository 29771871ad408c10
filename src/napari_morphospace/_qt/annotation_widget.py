"""The "Annotate" widget: classes with colours, assign cells by selection or click, undo/redo, export.

All logic lives in :mod:`core.project.annotations` (store, autosave, overlay lookup
table) and :mod:`core.project.export`; this widget is a form, buttons and the overlay.
The cells are the session's: its crop set, or the rows of a feature table
opened in the Analysis widget (then there are no crops to export); every change goes into the
session's per-cell table (``annotation`` column), which writes the layers'
features, and is autosaved into the analysis folder: the one chosen in the
form, or by default ``<crop set folder>/../analysis`` (a sibling ``analysis``
folder of the crop-set folder) when the session knows where the crop set was
saved. "Assign to selected" takes the cells selected in the scatter plot (or
clicked in the image while the Scatter dock is open: the session's
selection, as crop ids); "Assign to named selection" takes a selection kept
in the scatter plot (or opened with an analysis). One "annotations" layer
shows the classes on the source shown now. Scripts call
:meth:`AnnotationWidget.assign` with crop ids.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.widgets import FileEdit
from napari.layers import Labels
from napari.utils.notifications import show_info
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QColorDialog,
    QInputDialog,
    QLabel,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from ..core.analysis.cell_table import has_latents
from ..core.errors import InputError
from ..core.project.annotations import AnnotationStore
from ..core.project.export import export_anndata, export_crops, export_table
from ..viewer.annotations import (
    annotated_sources,
    annotation_layer,
    clicked_cells,
    source_rows,
)
from ..viewer.callbacks import weak_key_callback
from ..viewer.layers import SourceOverlay
from ..viewer.session import session_for
from .annotation_assign import AssignPanel
from .annotation_classes import ClassList
from .annotation_export import ExportForm
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .errors import report_errors

if TYPE_CHECKING:
    import napari

NO_CELLS = (
    "there are no cells to annotate; build crops in the Cells widget, or open a feature table in the Analysis widget"
)
OVERLAY_NAME = "annotations"  # the one layer that shows the classes on the source shown now
ANALYSIS_FOLDER_NAME = "analysis"


class AnnotationWidget(QWidget):
    """Dockable annotation panel; every button is also a public method for scripts and tests."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.store: AnnotationStore | None = None
        self._store_problem: str | None = None  # why the analysis folder's annotations did not open, for the status
        self.crop_set: Any = None
        #: The cells to annotate (crop_id, source, label_id, t): the crop set's table, or a feature table's rows.
        self.cells: pd.DataFrame | None = None
        self._click_layers: list[Labels] = []
        self._finalizer: weakref.finalize | None = None
        self._build_form()
        self._overlay = SourceOverlay(
            napari_viewer, OVERLAY_NAME, "labels", self._render_overlay, opacity=0.5, blending="translucent"
        )
        self.session.crop_set_changed.connect(self._on_crop_set)
        self.session.latents_changed.connect(self._on_latents)
        self.session.named_selections_changed.connect(self._on_named_selections)
        self._on_named_selections(self.session.named_selections)
        # weakly: a key binding must not keep a closed widget alive
        napari_viewer.bind_key("Control-Z", weak_key_callback(self._undo_clicked), overwrite=True)
        napari_viewer.bind_key("Control-Shift-Z", weak_key_callback(self._redo_clicked), overwrite=True)
        if self.session.crop_set is not None:
            self._on_crop_set(self.session.crop_set)
        elif self.session.cells is not None:
            self._on_latents(self.session.latents)

    # ---------------------------------------------------------------- the form

    def _build_form(self) -> None:
        content = QWidget()
        layout = QVBoxLayout(content)
        self.folder_edit = FileEdit(mode="d", label="analysis folder", value="")
        self.folder_edit.changed.connect(lambda value: report_errors(self.set_analysis_folder)(value))
        layout.addWidget(QLabel("Analysis folder (annotations are saved here after every change)"))
        layout.addWidget(self.folder_edit.native)

        self.classes_box = ClassList(
            add=report_errors(self.add_class),
            rename=self._rename_clicked,
            colour=self._colour_clicked,
            remove=self._remove_clicked,
        )
        self.class_list, self.name_edit = self.classes_box.list, self.classes_box.name_edit
        layout.addWidget(self.classes_box)

        self.assign_panel = AssignPanel(
            on_assign=report_errors(self.assign_selected),
            on_clear=report_errors(self.clear_selected),
            on_named=report_errors(self.assign_named),
            on_click_mode=self.set_click_mode,
            on_undo=self._undo_clicked,
            on_redo=self._redo_clicked,
        )
        layout.addWidget(self.assign_panel)

        self.export_form = ExportForm(self.export_crops, self.export_table, ask=lambda question: self._ask(question))
        layout.addWidget(self.export_form)
        layout.addStretch()
        scroll_in_dock(self, content)
        self._refresh()

    def _ask(self, question: str) -> bool:
        """Yes/no question to the user (tests replace this method)."""
        answer = QMessageBox.question(self, "Morphospace", question)
        return answer == QMessageBox.StandardButton.Yes

    # ------------------------------------------------------- crop set and store

    def set_crop_set(self, crop_set: Any, folder: str | Path | None = None) -> None:
        """Annotate the crops of ``crop_set``, made the session's; ``folder`` (where it is saved) gives the default
        analysis folder."""
        self.session.crop_set_changed.disconnect(self._on_crop_set)  # here a refusal is raised, not only shown
        try:
            self.session.crop_set_folder = Path(folder) if folder else None
            self.session.crop_set = crop_set
        finally:
            self.session.crop_set_changed.connect(self._on_crop_set)
        self._use_crop_set(crop_set)

    def _on_crop_set(self, crop_set: Any) -> None:
        report_errors(self._use_crop_set)(crop_set)

    def _on_latents(self, _latents: Any) -> None:
        """A feature table opened without a crop set: its rows are the cells to annotate."""
        if self.session.crop_set is None:
            report_errors(self._use_cells)(self.session.cells)

    def _use_crop_set(self, crop_set: Any) -> None:
        self.crop_set = crop_set
        self._use_cells(None if crop_set is None else crop_set.table)

    def _use_cells(self, cells: pd.DataFrame | None) -> None:
        self._close_store()
        self.cells = cells
        try:
            if cells is not None:
                folder_value = str(self.folder_edit.value)
                default = self._default_folder()
                if folder_value in ("", ".") and default is not None:
                    self.folder_edit.changed.disconnect()
                    self.folder_edit.value = default
                    self.folder_edit.changed.connect(lambda value: report_errors(self.set_analysis_folder)(value))
                if self.analysis_folder() is not None:
                    self._open_store()
        finally:
            self._refresh()  # also when the folder did not open: the status says why

    def analysis_folder(self) -> Path | None:
        """The folder annotations autosave to: the chosen one, else the default (:meth:`_default_folder`)."""
        value = str(self.folder_edit.value)
        return Path(value) if value not in ("", ".") else self._default_folder()

    def _default_folder(self) -> Path | None:
        """The analysis folder opened in this viewer, else ``<crop set folder>/../analysis``."""
        if self.session.analysis_folder is not None:
            return Path(self.session.analysis_folder)
        if self.session.crop_set_folder is not None:
            return Path(self.session.crop_set_folder).parent / ANALYSIS_FOLDER_NAME
        return None

    def set_analysis_folder(self, folder: str | Path) -> None:
        """Autosave to ``folder`` from now on, continuing the annotations saved there."""
        if str(self.folder_edit.value) != str(folder):
            self.folder_edit.value = folder  # emits changed -> comes back here once
            return
        self._close_store()
        try:
            if self.cells is not None:
                self._open_store()
        finally:
            self._refresh()

    def _open_store(self) -> None:
        folder = self.analysis_folder()
        if folder is None:
            raise InputError("choose an analysis folder first: annotations are saved there after every change")
        crop_ids = self.cells["crop_id"].to_numpy()
        try:
            try:
                store = AnnotationStore.open(folder, crop_ids)
            except InputError as err:
                if "damaged" in str(err) and self._ask(f"{err}\n\nKeep the damaged file as a backup and continue?"):
                    store = AnnotationStore.open(folder, crop_ids, on_damaged="backup")
                else:
                    raise
        except InputError as err:
            self._store_problem = f"annotations not opened: {err}"
            raise
        self._store_problem = None
        if store.unknown_crop_ids:
            show_info(
                f"{len(store.unknown_crop_ids)} annotated crop id(s) in {folder} are not in this crop set; "
                "they are kept in the file"
            )
        self.store = store
        self._finalizer = weakref.finalize(self, store.close)
        self._changed()

    def _require_store(self) -> AnnotationStore:
        if self.cells is None:
            raise InputError(NO_CELLS)
        if self.store is None:
            self._open_store()
        return self.store

    def _close_store(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def closeEvent(self, event: Any) -> None:
        self._close_store()
        super().closeEvent(event)

    # ----------------------------------------------------------------- classes

    def current_class(self) -> str:
        item = self.class_list.currentItem()
        if item is None:
            raise InputError("choose a class in the list first (or add one)")
        return item.text()

    def add_class(self, name: str, colour: str | None = None) -> None:
        self._require_store().add_class(name, colour)
        self.name_edit.clear()
        self._changed(select=name.strip())

    def rename_class(self, old_name: str, new_name: str) -> None:
        self._require_store().rename_class(old_name, new_name)
        self._changed(select=new_name.strip())

    def set_colour(self, name: str, colour: str) -> None:
        self._require_store().set_colour(name, colour)
        self._changed(select=name)

    def remove_class(self, name: str, reassign_to: str | None = None) -> None:
        self._require_store().remove_class(name, reassign_to=reassign_to)
        self._changed()

    def _rename_clicked(self) -> None:
        name = report_errors(self.current_class)()
        if name is None:
            return
        new, ok = QInputDialog.getText(self, "Rename class", f"New name for {name!r}:", text=name)
        if ok:
            report_errors(self.rename_class)(name, new)

    def _colour_clicked(self) -> None:
        name = report_errors(self.current_class)()
        if name is None:
            return
        colour = QColorDialog.getColor(QColor(self.store.colour_of(name)), self, f"Colour of {name}")
        if colour.isValid():
            report_errors(self.set_colour)(name, colour.name())

    def _remove_clicked(self) -> None:
        name = report_errors(self.current_class)()
        if name is None:
            return
        count = self.store.count(name)
        if count and not self._ask(f"{count} cell(s) are annotated {name!r}. Remove the class and clear them?"):
            return
        report_errors(self.remove_class)(name, "" if count else None)

    # ------------------------------------------------------------- assignments

    def assign(self, crop_ids: Iterable[int], class_name: str | None = None) -> int:
        """Give ``crop_ids`` the class ``class_name`` (default: the current class). Returns how many changed."""
        store = self._require_store()
        changed = store.assign(crop_ids, class_name or self.current_class())
        self._changed()
        return changed

    def clear(self, crop_ids: Iterable[int]) -> int:
        changed = self._require_store().clear(crop_ids)
        self._changed()
        return changed

    def selected_crop_ids(self) -> np.ndarray:
        """Crop ids of the cells selected now: the session's selection (scatter plot, or cells clicked in the image).

        A Labels layer's "selected label" is not a selection: napari sets it
        to 1 on every new layer, so taking it would annotate cell 1 whenever
        nothing was selected.
        """
        if not len(self.session.selection):
            raise InputError(
                "no cells are selected: select points in the Scatter plot (lasso, box or click), click cells in the "
                "image while the Scatter dock is open, or tick 'click a cell to annotate it'"
            )
        return self.session.selection

    def assign_selected(self) -> int:
        return self.assign(self.selected_crop_ids())

    def clear_selected(self) -> int:
        return self.clear(self.selected_crop_ids())

    def assign_named(self, name: str, class_name: str | None = None) -> int:
        """Give the cells of the named selection ``name`` the class ``class_name`` (default: the current class)."""
        selections = self.session.named_selections
        if name not in selections:
            raise InputError(
                f"no selection named {name!r}; keep one in the scatter plot first (select cells, name it, press Keep)"
            )
        return self.assign(selections[name], class_name)

    def _on_named_selections(self, selections: dict[str, tuple[int, ...]]) -> None:
        self.assign_panel.list_named(list(selections))

    def crop_ids_of(self, source: str, label_ids: Sequence[int], t: int | None = None) -> np.ndarray:
        """Crop ids of the cells ``label_ids`` of source layer ``source`` (frame ``t`` when given)."""
        rows = self._source_rows((source,))
        mask = rows["label_id"].isin(list(label_ids))
        if t is not None and "t" in rows.columns:
            mask &= rows["t"] == t
        return rows.loc[mask, "crop_id"].to_numpy(dtype=np.int64)

    def _source_rows(self, names: Sequence[str]) -> pd.DataFrame:
        """The session's cells cut from the source known by any of ``names`` (layer name, file)."""
        if self.cells is None or self.session.cells is None:
            raise InputError(NO_CELLS)
        return source_rows(self.session.cells, names)

    # ------------------------------------------------------------ click mode

    def set_click_mode(self, on: bool) -> None:
        """Turn click-to-annotate on (a click on a cell of a source layer assigns the current class) or off."""
        for layer in self._click_layers:
            if self._on_click in layer.mouse_drag_callbacks:
                layer.mouse_drag_callbacks.remove(self._on_click)
        self._click_layers = []
        if on and self.cells is not None:
            for layer in self._source_layers():
                layer.mouse_drag_callbacks.append(self._on_click)
                self._click_layers.append(layer)
        if bool(self.assign_panel.click_mode.value) != bool(on):
            self.assign_panel.click_mode.value = bool(on)

    def _on_click(self, layer: Labels, event: Any) -> None:
        if getattr(event, "type", "mouse_press") != "mouse_press" or self.session.cells is None:
            return
        crop_ids = clicked_cells(layer, event.position, self.session.cells)
        if len(crop_ids):
            report_errors(self.assign)(crop_ids)

    def _source_layers(self) -> list[Labels]:
        """The Labels layers the crops were cut from (by layer name or ``metadata["source"]``)."""
        return annotated_sources(self.viewer.layers, self.cells)

    # ----------------------------------------------------------- undo / redo

    def undo(self) -> str | None:
        description = self._require_store().undo()
        self._changed()
        return description

    def redo(self) -> str | None:
        description = self._require_store().redo()
        self._changed()
        return description

    def _undo_clicked(self) -> None:
        report_errors(self.undo)()

    def _redo_clicked(self) -> None:
        report_errors(self.redo)()

    # -------------------------------------------------------- showing changes

    def _changed(self, select: str | None = None) -> None:
        """After every change: the session's cells (hence the layers' features), the overlay, the class list."""
        if self.store is not None and self.cells is not None:
            self.session.annotation_classes = self.store.classes
            self.session.set_annotations(self.store.annotations)
            self._overlay.set_sources(self._source_layers())
        self._refresh(select)

    def _refresh(self, select: str | None = None) -> None:
        self.classes_box.show_classes(self.store.classes if self.store is not None else [], select)
        if self.store is None:
            waiting = self._store_problem or "choose an analysis folder"
            self.assign_panel.status.setText(NO_CELLS if self.cells is None else waiting)
        else:
            annotated = int((self.store.annotations != "").sum())
            unsaved = " — NOT SAVED" if self.store.unsaved else ""
            self.assign_panel.status.setText(
                f"{annotated} of {len(self.cells)} cells annotated; saved in {self.store.folder}{unsaved}"
            )
        self.assign_panel.undo_button.setEnabled(self.store is not None and self.store.can_undo)
        self.assign_panel.redo_button.setEnabled(self.store is not None and self.store.can_redo)

    def _render_overlay(self, layer: Labels, current: Any) -> tuple[np.ndarray, dict] | None:
        """The "annotations" overlay of the shown source: each cell's class code, coloured like its class."""
        if self.store is None or self.session.cells is None:
            return None
        return annotation_layer(layer, self.session.cells, self.store.classes)

    # --------------------------------------------------------------- export

    def export_crops(
        self,
        folder: str | Path,
        *,
        which: str = "per-class",
        file_format: str = "ome-tiff",
        crop_ids: Iterable[int] | None = None,
        overwrite: bool = False,
    ) -> list[Path]:
        """Write crops with :func:`core.project.export.export_crops` using the current annotations."""
        store = self._require_store()
        if self.crop_set is None:
            raise InputError(
                "these cells come from a feature table, which has no crops to export; export the table "
                "instead, or build crops of the same Labels layers in the Cells widget"
            )
        if which == "selected" and crop_ids is None:
            crop_ids = self.selected_crop_ids()
        return export_crops(
            self.crop_set,
            folder,
            which=which,
            crop_ids=crop_ids,
            annotations=store.annotations,
            format=file_format,
            overwrite=overwrite,
        )

    def export_table(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """The session's per-cell table (crops, latents, embeddings, clusters, annotations): .csv, .parquet or .h5ad."""
        self._require_store()
        table = self.session.cells
        if Path(path).suffix.lower() == ".h5ad":
            if self.session.latents is None:
                raise InputError("AnnData export needs latents; embed the cells first")
            return export_anndata(table[has_latents(table)], path, overwrite=overwrite)
        return export_table(table, path, overwrite=overwrite)
