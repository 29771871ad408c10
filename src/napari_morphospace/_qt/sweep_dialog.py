"""The Train widget's "Sweep…" dialog: a grid of the Train widget's settings, run in the background.

The base settings are the Train widget's model and training forms; the dialog
adds the grid axes (values separated by commas), the test fraction and the
output folder, i.e. a :class:`~napari_morphospace.core.project.sweep.SweepSettings`.
Save/Load write and read the same YAML as ``morphospace sweep --config`` (Load
also fills the Train widget's forms with the sweep's base settings). Run calls
:func:`~napari_morphospace.core.project.sweep.run_sweep` in a napari worker that
yields typed :class:`~napari_morphospace.core.project.sweep.SweepProgress` messages;
Stop ends the running training within a step and leaves the remaining grid
points for the next Run into the same folder.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from magicgui.widgets import FileEdit
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ..core.cells.crop_set import CropSet
from ..core.config import from_dict, save_config
from ..core.errors import InputError
from ..core.project.sweep import (
    SweepGrid,
    SweepProgress,
    SweepSettings,
    grid_points,
    load_sweep_settings,
    run_sweep,
)
from ..core.training.engine import TrainConfig
from .tasks import Tasks
from .training_run import one_core_for_the_viewer

if TYPE_CHECKING:
    from .train_widget import TrainWidget

#: Grid axes as the dialog shows them: (setting, label, example).
AXES = (
    ("model", "models", "beta-vae, beta-tcvae, me-vae"),
    ("beta", "β values", "0.5, 1, 4"),
    ("latent_dim", "latent sizes", "2, 20"),
    ("depth", "depths", "auto, 2, 3, 4"),
    ("block", "blocks", "maxpool, strided"),
)


def _parse_axis(name: str, text: str) -> list[Any]:
    """``"0.5, 1"`` -> ``[0.5, 1]``: numbers as numbers, ``auto`` as the adaptive depth (None), the rest as text."""
    values: list[Any] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if name == "depth" and item.lower() == "auto":
            values.append(None)
            continue
        for kind in (int, float):
            try:
                values.append(kind(item))
                break
            except ValueError:
                pass
        else:
            values.append(item)
    return values


def _format_axis(values: list[Any]) -> str:
    return ", ".join("auto" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in values)


class SweepDialog(QDialog):
    """Edit, save, load and run a sweep of the Train widget's settings."""

    def __init__(self, train_widget: TrainWidget) -> None:
        super().__init__(train_widget)
        self.setWindowTitle("Sweep: a grid of training runs")
        self.train_widget = train_widget
        self.table: pd.DataFrame | None = None
        self.updates_seen = 0
        self._stop_event = threading.Event()
        self._hidden = (
            SweepSettings()
        )  # settings without a field here (elbo_samples, probe_columns) keep a loaded file's values
        self.axis_edits = {name: QLineEdit() for name, _, _ in AXES}
        self.test_fraction = QDoubleSpinBox()
        self.test_fraction.setRange(0.05, 0.9)
        self.test_fraction.setSingleStep(0.05)
        self.test_fraction.setValue(self._hidden.test_fraction)
        self.folder_edit = FileEdit(mode="d", value="")
        self.grid_info = QLabel("")
        self.grid_info.setWordWrap(True)
        self.load_button, self.save_button = QPushButton("Load…"), QPushButton("Save…")
        self.run_button, self.stop_button = QPushButton("Run"), QPushButton("Stop")
        self.progress_bar = QProgressBar()
        self.progress_label = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.tasks = Tasks("Sweep", status=self.status.setText, on_busy=self._set_running, parent=self)
        self._layout()
        self._show_grid()

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow(
            QLabel(
                "Base settings: the Train widget's model and training forms. Grid values are separated "
                "by commas; an empty axis keeps the base value."
            )
        )
        for name, label, example in AXES:
            self.axis_edits[name].setPlaceholderText(f"e.g. {example}")
            self.axis_edits[name].textChanged.connect(self._show_grid)
            form.addRow(label, self.axis_edits[name])
        self.test_fraction.setToolTip("share of the crops held out by whole source images; every run is scored on them")
        form.addRow("test fraction", self.test_fraction)
        form.addRow("output folder", self.folder_edit.native)
        buttons = QHBoxLayout()
        for button in (self.load_button, self.save_button, self.run_button, self.stop_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.grid_info)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.status)
        self.load_button.clicked.connect(self._ask_load)
        self.save_button.clicked.connect(self._ask_save)
        self.run_button.clicked.connect(lambda: self.run())
        self.stop_button.clicked.connect(self.stop)
        self.setMinimumWidth(460)
        self._set_running(False)

    # ------------------------------------------------------------------ settings

    def settings(self) -> SweepSettings:
        """The sweep shown: the Train widget's settings as base, the grid axes and the test fraction (checked)."""
        grid = from_dict(
            SweepGrid, {name: _parse_axis(name, edit.text()) for name, edit in self.axis_edits.items()}, where="grid"
        )
        return SweepSettings(
            model=self.train_widget.model_settings(),
            training=self.train_widget.train_settings(),
            grid=grid,
            test_fraction=round(self.test_fraction.value(), 4),
            elbo_samples=self._hidden.elbo_samples,
            probe_columns=self._hidden.probe_columns,
        )

    def set_settings(self, settings: SweepSettings) -> None:
        """Show ``settings``: its base in the Train widget's forms, its grid and test fraction here."""
        self.train_widget.set_config(TrainConfig(model=settings.model, training=settings.training))
        for name, edit in self.axis_edits.items():
            edit.setText(_format_axis(getattr(settings.grid, name)))
        self.test_fraction.setValue(settings.test_fraction)
        self._hidden = settings

    def _show_grid(self, *_: Any) -> None:
        try:
            points = grid_points(self.settings())
        except InputError as err:
            self.grid_info.setText(f"⚠ {err}")
            return
        shown = ", ".join(p.name for p in points[:6]) + (", …" if len(points) > 6 else "")
        self.grid_info.setText(f"{len(points)} run(s): {shown}")

    def save_to(self, path: str | os.PathLike) -> Path | None:
        """Write the sweep as the YAML that ``morphospace sweep --config`` reads."""
        try:
            written = save_config(self.settings(), path)
        except (InputError, OSError) as err:
            self.tasks.report(err)
            return None
        self.status.setText(
            f"Sweep saved to {written}; run it headless with: morphospace sweep --config {written} "
            "--crops CROP_SET --out SWEEP_FOLDER (one grid point per cluster job: --index K)"
        )
        return written

    def load_from(self, path: str | os.PathLike) -> SweepSettings | None:
        try:
            settings = load_sweep_settings(path)
        except InputError as err:
            self.tasks.report(err)
            return None
        self.set_settings(settings)
        self.status.setText(f"Sweep loaded from {path}; its base settings are in the Train widget's forms.")
        return settings

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save sweep", "sweep.yaml", "YAML (*.yaml *.yml)")
        if path:
            self.save_to(path)

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load sweep", "", "Sweep config (*.yaml *.yml *.json)")
        if path:
            self.load_from(path)

    # ------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return self.tasks.busy

    def run(self, folder: str | os.PathLike | None = None) -> Any:
        """Run the sweep into ``folder`` (default: the output folder field) in a worker;
        returns it (None when refused)."""
        if self.running:
            return None
        try:
            settings = self.settings()
            crop_set = self.train_widget._require_crop_set()
            text = str(folder if folder is not None else self.folder_edit.value)
            if text in ("", "."):
                raise InputError("choose an output folder for the sweep (a new or empty folder, or an earlier sweep's)")
        except InputError as err:
            self.tasks.report(err)
            return None
        total = len(grid_points(settings))
        self.progress_bar.setRange(0, total * settings.training.epochs)
        self.progress_bar.setValue(0)
        self.updates_seen, self.table = 0, None
        self._stop_event = threading.Event()
        self.destroyed.connect(self._stop_event.set)  # closing the viewer deletes the dialog: stop the sweep too
        origin = str(self.train_widget.crop_folder) if self.train_widget.crop_folder else "crop set of the Cells widget"
        return self.tasks.start(
            run_sweep_in_thread,
            crop_set,
            settings,
            Path(text),
            origin,
            self._stop_event,
            on_done=lambda table: self._on_done(table, Path(text)),
            on_message=lambda message: self._on_progress(message, settings.training.epochs),
            action="The sweep",
            busy_text=f"Running {total} training run(s) into {text}…",
            progress="Sweep",
            on_quit=self._stop_event.set,
        )

    def stop(self) -> None:
        """Stop the running training within a step; the remaining grid points run on the next Run into the same
        folder."""
        self._stop_event.set()
        self.stop_button.setEnabled(False)
        self.status.setText("Stopping after this step…")

    def _on_progress(self, message: SweepProgress, epochs: int) -> None:
        if not isinstance(message, SweepProgress):
            return
        self.updates_seen += 1
        done = message.index * epochs + ((message.epoch or 0) if message.status == "training" else epochs)
        self.progress_bar.setValue(min(done, self.progress_bar.maximum()))
        where = f"[{message.index + 1}/{message.total}] {message.name}"
        if message.status == "training":
            self.progress_label.setText(f"{where}: epoch {message.epoch}/{message.epochs}")
        else:
            self.progress_label.setText(
                f"{where}: {message.status}" + (f" ({message.message})" if message.message else "")
            )

    def _on_done(self, table: pd.DataFrame, folder: Path) -> None:
        self.table = table
        finished = int((table["status"] == "ok").sum())
        failed = table[table["status"] == "failed"]
        text = (
            f"{finished} of {len(table)} runs finished; "
            f"comparison table, figures and report in {folder / 'report.html'}."
        )
        if len(failed):
            text += " Failed: " + "; ".join(f"{r.name}: {r.message}" for r in failed.itertuples())
        warned = table[(table["status"] == "ok") & (table["warnings"] != "")]
        if len(warned):
            text += (
                " Diagnostics: "
                + "; ".join(f"{r.name}: {r.warnings}" for r in warned.itertuples())
                + " (what to try: the report)."
            )
        if self._stop_event.is_set():
            text = "Stopped. " + text + " Run again into the same folder to finish the rest."
        self.status.setText(text)
        show_info(text)

    def _set_running(self, running: bool) -> None:
        for widget in (*self.axis_edits.values(), self.test_fraction, self.load_button, self.run_button):
            widget.setEnabled(not running)
        self.folder_edit.enabled = not running
        self.stop_button.setEnabled(running)

    def closeEvent(self, event: Any) -> None:
        self._stop_event.set()
        super().closeEvent(event)


def run_sweep_in_thread(
    send: Callable[[Any], None],
    crop_set: CropSet,
    settings: SweepSettings,
    folder: Path,
    origin: str,
    stop_event: threading.Event,
) -> pd.DataFrame | None:
    """Run the sweep off the GUI thread with one CPU left to the viewer, as the Train widget trains."""
    with one_core_for_the_viewer():
        return run_sweep(crop_set, settings, folder, crop_set_origin=origin, on_update=send, stop_event=stop_event)


__all__ = ["SweepDialog"]
