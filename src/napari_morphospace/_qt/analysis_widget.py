"""The "Analysis" widget: save the session as an analysis folder, reopen one, write its HTML report.

All reading and writing is in :mod:`napari_morphospace.core.project.analysis_folder`,
:mod:`napari_morphospace._analysis_reader` and :mod:`napari_morphospace.core.project.report`;
this widget collects what the session holds, runs the core functions in
background workers and shows the outcome. Saving writes the session's
per-cell table (latents, 2D embeddings, clusters), its annotations and
classes, the named selections, and which docks were open with what the
Scatter plot showed. Opening a folder adds its layers (source images, and
Labels whose ``features`` hold the cells' columns, named as File > Open names
them), restores the session's crop set, model bundle, per-cell table and
named selections, so the other widgets (Train, Embed, Statistics, Latent
space, Annotate, Scatter) pick them up through their session signals, and
docks the widgets that were open. Nothing in an analysis folder is ever executed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from magicgui.widgets import FileEdit, PushButton
from napari.utils.notifications import (
    Notification,
    NotificationSeverity,
    notification_manager,
    show_error,
)
from npe2 import PluginManager
from qtpy.QtCore import QUrl
from qtpy.QtGui import QDesktopServices
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from ..core.analysis.external_table import (
    ExternalCells,
    TableSettings,
    open_external_table,
)
from ..core.cells.crop_set import CropSet
from ..core.errors import InputError
from ..core.project.analysis_folder import (
    REPORT_HTML,
    Analysis,
    AnalysisFolder,
    external_references,
    is_analysis_folder,
    open_analysis,
)
from ..core.project.report import SECTIONS, write_report
from ..core.project.zoo import ZooExport, ZooSettings, export_zoo_packages
from ..core.training.bundle import Bundle
from ..viewer.analysis import (
    OpenedAnalysis,
    open_with_layers,
    save_session,
    session_save_plan,
    show_opened,
)
from ..viewer.external_table import match_targets
from ..viewer.session import session_for
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .forms import read_form, settings_form
from .tasks import Tasks
from .workers import Progress

if TYPE_CHECKING:
    import napari

ANALYSIS_FOLDER_NAME = "analysis"  # the Annotate widget's default: a sibling of the crop-set folder
PLUGIN = "napari-morphospace"
SCATTER = "Scatter"  # its plot settings are saved with the analysis


def widget_names() -> list[str]:
    """The display names of this plugin's widgets (the Plugins menu entries), from its manifest."""
    manifest = PluginManager.instance().get_manifest(PLUGIN)
    return [widget.display_name for widget in manifest.contributions.widgets or []]


def open_docks(viewer: Any) -> dict[str, Any]:
    """This plugin's widgets docked in ``viewer`` now: display name -> widget."""
    docked = viewer.window.dock_widgets
    return {name: docked[f"{name} ({PLUGIN})"] for name in widget_names() if f"{name} ({PLUGIN})" in docked}


# --------------------------------------------------------------------------- what the tasks run


def run_zoo_export(
    send: Callable[[Any], None], bundle: Bundle, crop_set: CropSet, folder: Path, settings: ZooSettings
) -> ZooExport:
    """Export and test-run the zoo packages off the GUI thread; each step's name is sent as it starts."""
    return export_zoo_packages(bundle, crop_set, folder, settings=settings, on_step=send)


def write_analysis_report(send: Callable[[Any], None], folder: Path, allow_external: bool) -> Path:
    """Write ``report.html`` of the analysis in ``folder``, sending a :class:`Progress` per section."""
    sections = itertools.count(1)
    return write_report(
        open_analysis(folder, allow_external=allow_external),
        folder / REPORT_HTML,
        overwrite=True,
        on_step=lambda text: send(Progress(text, next(sections), len(SECTIONS))),
    )


# --------------------------------------------------------------------------- widget


class AnalysisWidget(QWidget):
    """Dockable panel: Save analysis, Open analysis…, Write report, Open feature table…;
    every button is a public method."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        #: The analysis last opened here (its sources are kept when saving) and its bundle's folder.
        self.opened: Analysis | None = None
        self.last_report: Path | None = None
        #: Folders whose references outside themselves the user agreed to read in this session.
        self._trusted: set[Path] = set()
        self._build_form()
        self.session.crop_set_changed.connect(self._on_session_crop_set)
        self._on_session_crop_set(self.session.crop_set)

    def _build_form(self) -> None:
        content = QWidget()
        layout = QVBoxLayout(content)
        intro = QLabel("Analysis folder: crop set, model, latents, annotations and report in one place")
        intro.setWordWrap(True)  # an unwrapped line made the dock wider than a 1400 px window leaves it
        layout.addWidget(intro)
        self.folder_edit = FileEdit(mode="d", label="analysis folder", value="")
        layout.addWidget(self.folder_edit.native)
        row = QHBoxLayout()
        self.save_button = PushButton(text="Save analysis")
        self.open_button = PushButton(text="Open analysis…")
        self.report_button = PushButton(text="Write report")
        for button in (self.save_button, self.open_button, self.report_button):
            row.addWidget(button.native)
        layout.addLayout(row)
        self.zoo_button = PushButton(text="Export to BioImage Model Zoo…")
        layout.addWidget(self.zoo_button.native)
        # Features measured elsewhere: opened here, beside the analysis, because such users have no crops or model.
        table_intro = QLabel("Features measured elsewhere (CellProfiler, DINO, another model), one row per object:")
        table_intro.setWordWrap(True)  # a long row would widen the dock past the window
        layout.addWidget(table_intro)
        self.table_form = settings_form(TableSettings(), hide=("image_table",))
        self.table_form[
            "features"
        ].tooltip = "names or patterns separated by commas (AreaShape_*, Intensity_*); empty: every measurement"
        self.table_form[
            "group_column"
        ].tooltip = "column with each cell's condition; empty: group, condition, Metadata_Condition…"
        layout.addWidget(self.table_form.native)
        self.table_button = PushButton(text="Open feature table…")
        layout.addWidget(self.table_button.native)
        self.status = QLabel("Save the session's crop set, model and latents, or open a saved analysis.")
        self.status.setWordWrap(True)
        self.tasks = Tasks("Analysis", status=self.status.setText, on_busy=self._set_busy, parent=self)
        layout.addWidget(self.status)
        layout.addStretch(1)
        scroll_in_dock(self, content, min_height=160)
        self.save_button.clicked.connect(lambda: self.save())
        self.open_button.clicked.connect(self._choose_and_open)
        self.report_button.clicked.connect(lambda: self.write_report())
        self.table_button.clicked.connect(self._choose_and_open_table)
        self.zoo_button.clicked.connect(self._choose_and_export_to_zoo)

    def _on_session_crop_set(self, _crop_set: Any) -> None:
        """Default folder: the ``analysis`` sibling of the crop-set folder, where the Annotate widget autosaves."""
        if self.folder() is None and self.session.crop_set_folder is not None:
            self.folder_edit.value = Path(self.session.crop_set_folder).parent / ANALYSIS_FOLDER_NAME

    def folder(self) -> Path | None:
        value = str(self.folder_edit.value)
        return Path(value) if value not in ("", ".") else None

    def _ask(self, question: str) -> bool:
        """Yes/no question to the user (tests replace this method)."""
        return QMessageBox.question(self, "Morphospace", question) == QMessageBox.StandardButton.Yes

    def _required_folder(self, folder: str | Path | None) -> Path:
        if folder is not None:
            self.folder_edit.value = Path(folder)
        chosen = self.folder()
        if chosen is None:
            raise InputError(
                "choose an analysis folder first (a new or empty folder to save into, or a saved analysis)"
            )
        return chosen

    def _set_busy(self, busy: bool) -> None:
        for button in (self.save_button, self.open_button, self.report_button, self.zoo_button, self.table_button):
            button.enabled = not busy

    # ----------------------------------------------------------------- save

    def save(self, folder: str | Path | None = None) -> Any:
        """Save the session (crop set, model, latents, named selections, source references) in a worker;
        returns the worker."""
        try:
            plan = session_save_plan(self.viewer, self._required_folder(folder), self.opened, self.plot_settings())
        except InputError as err:
            self.tasks.report(err)
            return None
        if (
            is_analysis_folder(plan.folder)
            and not self._is_own(plan.folder)
            and not self._ask(
                f"{plan.folder} already holds an analysis. Replace its parts with this session's "
                "(parts this session does not have are kept)?"
            )
        ):
            self.status.setText("Not saved: the folder holds another analysis.")
            return None
        return self.tasks.start(
            save_session,
            plan,
            on_done=self._on_saved,
            action="Saving the analysis",
            busy_text=f"Saving the analysis to {plan.folder}…",
        )

    def _is_own(self, folder: Path) -> bool:
        return self.opened is not None and self.opened.folder.resolve() == folder.resolve()

    def plot_settings(self) -> dict[str, Any]:
        """The docks open now and what the Scatter plot shows, for ``analysis.json``."""
        docks = open_docks(self.viewer)
        settings: dict[str, Any] = {"docks": list(docks)}
        if SCATTER in docks:
            settings["scatter"] = docks[SCATTER].settings()
        return settings

    def _on_saved(self, manifest: AnalysisFolder) -> None:
        self.session.analysis_folder = manifest.folder
        parts = [
            name.replace("_", " ")
            for name in ("crop_set", "model", "latents", "annotations", "selections")
            if getattr(manifest, name) is not None
        ]
        text = (
            f"Analysis saved to {manifest.folder}: {', '.join(parts) or 'no parts'}, "
            f"{len(manifest.sources)} source image(s)."
        )
        self.status.setText(text)
        notification_manager.dispatch(Notification(text, severity=NotificationSeverity.INFO))

    # ----------------------------------------------------------------- open

    def _choose_and_open(self) -> None:
        start = str(self.folder() or Path.home())
        path = QFileDialog.getExistingDirectory(self, "Open analysis folder", start)
        if path:
            self.open(path)

    def open(self, folder: str | Path | None = None) -> Any:
        """Open an analysis folder in a worker: add its layers and restore the session; returns the worker.

        When the folder refers to files outside itself, the user is asked first
        whether to read them; without a Yes only the folder's own contents open.
        """
        try:
            chosen = self._required_folder(folder)
            allow_external = self._allow_external(chosen)
        except InputError as err:
            self.tasks.report(err)
            return None
        return self.tasks.start(
            open_with_layers,
            chosen,
            allow_external=allow_external,
            on_done=self._on_opened,
            action="Opening the analysis",
            busy_text=f"Opening {chosen}…",
        )

    def _allow_external(self, folder: Path) -> bool:
        """Whether to read what ``folder`` refers to outside itself: asked once per folder and session."""
        key = folder.resolve()
        if key in self._trusted:
            return True
        external = external_references(folder)
        if not external:
            return False
        listed = "\n".join(f"• {item}" for item in external[:8]) + ("\n…" if len(external) > 8 else "")
        if self._ask(
            f"{folder} refers to {len(external)} file(s) or folder(s) outside itself:\n{listed}\n\n"
            "Read them? Answer Yes only for an analysis you trust (No opens only the folder's own contents)."
        ):
            self._trusted.add(key)
            return True
        return False

    def _on_opened(self, opened: OpenedAnalysis) -> None:
        analysis = opened.analysis
        self.opened = analysis
        added = show_opened(self.viewer, opened)
        self._restore_docks(analysis.manifest.plot_settings)
        restored = [
            name
            for name, part in (
                ("crop set", analysis.crop_set),
                ("model", analysis.bundle),
                ("latents", analysis.latents),
            )
            if part is not None
        ]
        if analysis.selections:
            restored.append(f"{len(analysis.selections)} named selection(s)")
        summary = (
            f"Opened {analysis.folder}: {added} layer(s); {', '.join(restored) or 'nothing'} restored in the session."
        )
        messages = [*analysis.problems, *opened.warnings, *analysis.notes]
        learned = getattr(analysis.bundle, "diagnostics", None)  # what the model learned: shown, not a problem here
        shown = [*messages, *(f"model: {w}" for w in (learned.warnings if learned is not None else []))]
        self.status.setText("\n".join([summary, *(f"⚠ {m}" for m in shown)]))
        if messages:
            text = f"{summary} Opened with {len(messages)} problem(s):\n" + "\n".join(f"• {m}" for m in messages)
            notification_manager.dispatch(Notification(text, severity=NotificationSeverity.WARNING))
        else:
            notification_manager.dispatch(Notification(summary, severity=NotificationSeverity.INFO))

    def _restore_docks(self, settings: dict[str, Any]) -> None:
        """Dock the widgets that were open when the analysis was saved, and show the saved Scatter plot."""
        docks = open_docks(self.viewer)
        for name in settings.get("docks", []):
            if name in widget_names() and name not in docks:
                _dock, docks[name] = self.viewer.window.add_plugin_dock_widget(PLUGIN, name)
        if SCATTER in docks and isinstance(settings.get("scatter"), dict):
            try:
                docks[SCATTER].apply_settings(settings["scatter"])
            except InputError as err:
                show_error(f"the saved scatter plot could not be shown again: {err}")

    # ----------------------------------------------------------------- a feature table

    def _choose_and_open_table(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open feature table", str(self.folder() or Path.home()), "Tables (*.csv *.tsv *.txt *.parquet *.h5ad)"
        )
        if path:
            self.open_table(path)

    def open_table(self, path: str | Path, settings: TableSettings | None = None) -> Any:
        """Open a table of features measured elsewhere as the session's cells, in a worker; returns the worker.

        Its rows are matched to the open Labels layers (and to the crops of
        the session's crop set, when there is one); Scatter, Statistics and
        Annotate then work on the features as on a model's latents.
        """
        try:
            settings = settings or read_form(self.table_form, TableSettings())
            layers, cells = match_targets(self.viewer)
        except InputError as err:
            self.tasks.report(err)
            return None
        return self.tasks.start(
            open_external_table,
            Path(path),
            settings,
            layers=layers,
            cells=cells,
            on_done=lambda result: self._on_table_opened(Path(path), result),
            action="Opening the feature table",
            busy_text=f"Reading {Path(path).name}…",
        )

    def _on_table_opened(self, path: Path, result: ExternalCells) -> None:
        self.session.open_table(result.table)
        layers = pd.unique(result.table["source"])
        summary = (
            f"{path.name}: {len(result.table)} cells of {len(layers)} Labels layer(s) with "
            f"{len(result.feature_columns)} features; explore them in Scatter and Statistics."
        )
        self.status.setText("\n".join([summary, *(f"⚠ {note}" for note in result.notes)]))
        if result.notes:
            text = f"{summary} Left out:\n" + "\n".join(f"• {note}" for note in result.notes)
            notification_manager.dispatch(Notification(text, severity=NotificationSeverity.WARNING))
        else:
            notification_manager.dispatch(Notification(summary, severity=NotificationSeverity.INFO))

    # ----------------------------------------------------------------- report

    def write_report(self, folder: str | Path | None = None) -> Any:
        """Write ``report.html`` into the analysis folder in a worker, with progress; returns the worker."""
        try:
            chosen = self._required_folder(folder)
            if not is_analysis_folder(chosen):
                raise InputError(
                    f"{chosen} is not an analysis folder yet; press Save analysis first, then Write report"
                )
        except InputError as err:
            self.tasks.report(err)
            return None
        try:
            allow_external = self._allow_external(chosen)
        except InputError as err:
            self.tasks.report(err)
            return None
        return self.tasks.start(
            write_analysis_report,
            chosen,
            allow_external,
            on_done=self._on_report_written,
            action="Writing the report",
            busy_text=f"Writing the report of {chosen}…",
            progress="Writing the report",
        )

    def _on_report_written(self, path: Path) -> None:
        self.last_report = Path(path)
        text = f"Report written to {path}"
        self.status.setText(text)
        notification_manager.dispatch(
            Notification(
                text, severity=NotificationSeverity.INFO, actions=[("Open in browser", lambda _: self.open_report())]
            )
        )

    def open_report(self) -> bool:
        """Show the last written report in the system's browser."""
        if self.last_report is None:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.last_report.resolve())))

    # ----------------------------------------------------------------- BioImage Model Zoo

    def _zoo_parts(self) -> tuple[Bundle, CropSet]:
        if self.session.bundle is None or self.session.crop_set is None:
            raise InputError(
                "export needs the session's model and its crops: train or load a model, "
                "and make or open the crops first"
            )
        return self.session.bundle, self.session.crop_set

    def _choose_and_export_to_zoo(self) -> None:
        try:
            self._zoo_parts()
        except InputError as err:
            self.tasks.report(err)
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export to BioImage Model Zoo (a new folder)", "zoo-packages")
        if not path:
            return
        authors, ok = QInputDialog.getText(
            self, "BioImage Model Zoo", "Authors (who trained the model), comma-separated:"
        )
        if ok:
            self.export_to_zoo(path, authors.split(","))

    def export_to_zoo(self, folder: str | Path, authors: list[str]) -> Any:
        """Write the session's model as encoder.zip + decoder.zip (validated, test-run) in a worker; returns it."""
        try:
            bundle, crop_set = self._zoo_parts()
        except InputError as err:
            self.tasks.report(err)
            return None
        return self.tasks.start(
            run_zoo_export,
            bundle,
            crop_set,
            Path(folder),
            ZooSettings(authors=authors),
            on_done=self._on_zoo_exported,
            action="Exporting to the BioImage Model Zoo",
            busy_text=f"Exporting the model to {folder}…",
            progress="Exporting to the model zoo",
            on_message=lambda text: self.status.setText(f"{text}…"),
        )

    def _on_zoo_exported(self, written: ZooExport) -> None:
        text = (
            f"Exported to {written.folder}: {written.encoder.name} and {written.decoder.name}, validated and "
            "test-run with bioimageio.core; upload them at bioimage.io."
        )
        self.status.setText(text)
        notification_manager.dispatch(Notification(text, severity=NotificationSeverity.INFO))
