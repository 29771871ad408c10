"""The "Train" widget: choose a crop set and settings, train a VAE, watch it learn, save the model.

All training is :func:`napari_morphospace.core.training.engine.train`, the engine of
``morphospace train``. This widget renders the core settings dataclasses as
forms, runs the engine in a napari generator worker and shows what its typed
messages say: a loss plot, per-dimension KL bars, progress with ETA and a
reconstruction preview layer. The worker never touches a widget.

The viewer stays responsive while training
(``benchmarks/bench_viewer_responsiveness.py``): what a run shows is
refreshed in one paint at most twice a second (:mod:`._qt.training_display`),
and:

- Training uses ``cpu_count - 1`` torch threads (at least 1), leaving a core
  to the viewer. Torch's thread count is process-wide, so it is set for the
  run and restored afterwards. On a 2-core machine that is 1 thread. Measured
  there with both (``--torch-threads``): 1 thread trained 144-160 epochs in
  12 s with p99 gaps of 25-29 ms; 2 threads trained only 3-72 epochs (its
  threads wait on the viewer's and the renderer's) with p99 32-50 ms.

Checkpoints go to ``TrainSettings.checkpoint_dir`` when it is set; otherwise
to a new ``run-<date>-<time>`` folder in ``<crop set folder>-checkpoints``
next to a crop set loaded from disk, or in ``~/morphospace-checkpoints`` for a
crop set handed over by the Cells widget. The folder is shown in the status
line, and Resume continues from its ``last.ckpt``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from magicgui.widgets import FileEdit, PushButton
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..core.cells.crop_set import CropSet, load_crop_set
from ..core.config import load_config, save_config
from ..core.errors import InputError
from ..core.models import ModelSettings
from ..core.training.bundle import load_bundle, save_bundle
from ..core.training.checkpoints import last_checkpoint_in
from ..core.training.engine import (
    TrainConfig,
    TrainResult,
    TrainSettings,
    trained_bundle,
)
from ..viewer.reconstructions import PREVIEW_LAYER
from ..viewer.session import session_for
from .docking import tab_with_other_docks
from .tasks import Tasks
from .train_settings import TrainSettingsForms
from .training_display import TrainingDisplay
from .training_run import (
    CLOSE_WAIT_S,
    RunHandle,
    default_checkpoint_dir,
    train_in_thread,
)


class TrainWidget(QWidget):
    """Train a VAE on the session's crop set (or one loaded from a folder), live, with Stop and Resume."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.crop_set: CropSet | None = None
        self.crop_folder: Path | None = None
        self.result: TrainResult | None = None
        self.run_dir: Path | None = None
        self._run_crop_set: CropSet | None = None
        self._run_crop_folder: Path | None = None
        self._run_train_settings: TrainSettings | None = None
        self._run = RunHandle()

        self.crop_info = QLabel("No crop set: build one in the Cells widget or choose a crop-set folder.")
        self.crop_info.setWordWrap(True)
        self.crop_folder_edit = FileEdit(mode="d", label="crop set folder", value="")
        self.forms = TrainSettingsForms()
        self.model_form, self.train_form, self.advanced_form = (
            self.forms.model_form,
            self.forms.train_form,
            self.forms.advanced_form,
        )
        self.save_config_button = PushButton(text="Save config…")
        self.load_config_button = PushButton(text="Load config…")
        self.sweep_button = PushButton(
            text="Sweep…",
            tooltip="train a grid of these settings (models, β, latent sizes, "
            "depths, blocks) and compare them on held-out crops",
        )
        self.sweep_dialog: Any = None
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume")
        self.display = TrainingDisplay(napari_viewer, parent=self)
        self.run_progress, self.plot = self.display.progress, self.display.plot
        self.progress_bar, self.progress_label = self.run_progress.bar, self.run_progress.label
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.save_bundle_button = PushButton(text="Save model bundle…", enabled=False)
        self.tasks = Tasks("Train", status=self.status.setText, on_busy=self._on_busy, parent=self)

        self._layout()
        self._connect()
        if self.session.crop_set is not None:
            self.set_crop_set(self.session.crop_set)
        # Deleting the widget (with its dock) must not leave training running; the handle outlives the widget.
        self.destroyed.connect(partial(RunHandle.stop_and_wait, self._run))

    # ----------------------------------------------------------------- layout and signals

    def _layout(self) -> None:
        """Crop set, then the run (Start/Stop, progress, loss plot) where the eye is, then the settings.

        The settings come last: the defaults train a sensible model, and the
        expert ones (cluster runs, optimiser details) stay folded in "Advanced".
        """
        data = QGroupBox("Crop set")
        box = QVBoxLayout(data)
        box.addWidget(self.crop_info)
        box.addWidget(self.crop_folder_edit.native)
        run = QGroupBox("Run")
        box = QVBoxLayout(run)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(button.native)
        box.addLayout(buttons)
        box.addWidget(self.run_progress)
        box.addWidget(self.status)
        box.addWidget(self.plot)
        box.addWidget(self.save_bundle_button.native)
        model, training, advanced = self.forms.model, self.forms.training, self.forms.advanced
        config = QHBoxLayout()
        config.addWidget(self.save_config_button.native)
        config.addWidget(self.load_config_button.native)
        config.addWidget(self.sweep_button.native)
        self.sections = {"run": run, "model": model, "training": training, "advanced": advanced}

        content = QWidget()
        column = QVBoxLayout(content)
        column.addWidget(data)
        column.addWidget(run)
        column.addWidget(model)
        column.addWidget(training)
        column.addLayout(config)
        column.addStretch()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setMinimumWidth(420)

    def _connect(self) -> None:
        self.session.crop_set_changed.connect(self._on_session_crop_set)
        self.crop_folder_edit.changed.connect(self._on_crop_folder)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.save_bundle_button.clicked.connect(self._ask_bundle_folder)
        self.save_config_button.clicked.connect(self._ask_config_to_save)
        self.load_config_button.clicked.connect(self._ask_config_to_load)
        self.sweep_button.clicked.connect(self.open_sweep)

    # ----------------------------------------------------------------- crop set

    def _on_session_crop_set(self, crop_set: CropSet | None) -> None:
        if crop_set is not None and crop_set is not self.crop_set:
            self.set_crop_set(crop_set)

    def _on_crop_folder(self, *_: Any) -> None:
        value = str(self.crop_folder_edit.value)
        if value in ("", "."):
            return
        try:
            self.set_crop_set(load_crop_set(value), folder=Path(value))
        except InputError as err:
            self.tasks.report(err)

    def set_crop_set(self, crop_set: CropSet, *, folder: Path | None = None) -> None:
        """Train on ``crop_set`` from now on (``folder``: where it was loaded from, for provenance)."""
        self.crop_set, self.crop_folder = crop_set, folder
        counts = crop_set.table["group"].astype(str).value_counts().sort_index()
        shape = "×".join(str(int(s)) for s in crop_set.images.shape[1:])
        axes = "C×Z×Y×X" if crop_set.spatial_ndim == 3 else "C×Y×X"
        origin = str(folder) if folder else "the Cells widget"
        self.crop_info.setText(
            f"{len(crop_set)} crops of {shape} ({axes}), channels {', '.join(map(str, crop_set.channel_names))}; "
            f"groups: {', '.join(f'{g} {n}' for g, n in counts.items())}. From {origin}."
        )

    # ----------------------------------------------------------------- settings

    def model_settings(self) -> ModelSettings:
        """The model settings shown in the form (InputError when a value is out of range)."""
        return self.forms.model_settings()

    def train_settings(self) -> TrainSettings:
        """The training settings shown in the Training and Advanced forms."""
        return self.forms.train_settings()

    def config(self) -> TrainConfig:
        return self.forms.config()

    def set_config(self, config: TrainConfig) -> None:
        """Show ``config`` in the forms."""
        self.forms.set_config(config)

    def save_config_to(self, path: str | os.PathLike) -> Path | None:
        """Write the forms as the YAML that ``morphospace train --config`` reads."""
        try:
            written = save_config(self.config(), path)
        except (InputError, OSError) as err:
            self.tasks.report(err)
            return None
        self.status.setText(
            f"Config saved to {written}; train headless with: morphospace train --config {written} "
            "--crops CROP_SET --out MODEL_DIR"
        )
        return written

    def load_config_from(self, path: str | os.PathLike) -> TrainConfig | None:
        try:
            config = load_config(path, TrainConfig)
        except InputError as err:
            self.tasks.report(err)
            return None
        self.set_config(config)
        self.status.setText(f"Settings loaded from {path}.")
        return config

    def open_sweep(self) -> Any:
        """Show the Sweep dialog: a grid of these settings, run in the background (see ``_qt/sweep_dialog.py``)."""
        from .sweep_dialog import SweepDialog

        if self.sweep_dialog is None:
            self.sweep_dialog = SweepDialog(self)
        self.sweep_dialog.show()
        self.sweep_dialog.raise_()
        return self.sweep_dialog

    def _ask_config_to_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save training config", "train-config.yaml", "YAML (*.yaml *.yml)")
        if path:
            self.save_config_to(path)

    def _ask_config_to_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load training config", "", "Config (*.yaml *.yml *.json)")
        if path:
            self.load_config_from(path)

    # ----------------------------------------------------------------- running

    @property
    def running(self) -> bool:
        return self.tasks.busy

    def start(self) -> None:
        """Train a new model from the forms' settings, in a background worker."""
        self._launch(resume=False)

    def resume(self) -> None:
        """Continue the last run (or the run in the checkpoint dir setting) from its ``last.ckpt``."""
        self._launch(resume=True)

    def stop(self) -> None:
        """Stop after the current optimisation step; the weights are kept in ``last.ckpt``."""
        self._run.stop_event.set()
        self.stop_button.enabled = False
        self.status.setText("Stopping after this step…")

    def _launch(self, *, resume: bool) -> Any:
        if self.running:
            return None
        try:
            crop_set = self._require_crop_set()
            model_settings = self.model_settings()
            train_settings = self.train_settings()
            if resume:
                run_dir = Path(train_settings.checkpoint_dir) if train_settings.checkpoint_dir else self.run_dir
                checkpoint = last_checkpoint_in(run_dir) if run_dir else None
                if checkpoint is None:
                    raise InputError(
                        "there is no checkpoint to resume from"
                        + (f" in {run_dir}" if run_dir else "")
                        + "; press Start, or set checkpoint dir to the folder of an earlier training"
                    )
            else:
                run_dir = (
                    Path(train_settings.checkpoint_dir)
                    if train_settings.checkpoint_dir
                    else default_checkpoint_dir(self.crop_folder)
                )
                checkpoint = None
            train_settings = replace(train_settings, checkpoint_dir=str(run_dir))
        except InputError as err:
            self.tasks.report(err)
            return None
        self.display.begin(crop_set.images.shape, resume=resume)
        self.run_dir = run_dir
        self.result = None
        self._run_crop_set, self._run_crop_folder, self._run_train_settings = crop_set, self.crop_folder, train_settings
        stop_event, done_event = self._run.begin()
        verb = "Resuming from " + str(checkpoint) if checkpoint else "Training"
        # napari registers the task with the viewer's window: closing the viewer asks first, then quits it (on_quit).
        return self.tasks.start(
            train_in_thread,
            crop_set,
            model_settings,
            train_settings,
            stop_event,
            done_event,
            checkpoint,
            on_done=self._on_result,
            on_message=self.display.record,
            action=f"Training (checkpoints in {run_dir})",
            busy_text=f"{verb}… checkpoints in {run_dir}",
            progress="Training a model",
            on_quit=self._run.stop_and_wait,
        )

    def _require_crop_set(self) -> CropSet:
        if self.crop_set is None:
            raise InputError(
                "there is no crop set to train on; build one in the Cells widget or choose a crop-set folder"
            )
        return self.crop_set

    def _set_running(self, running: bool) -> None:
        self.start_button.enabled = self.resume_button.enabled = not running
        self.stop_button.enabled = running
        self.forms.set_enabled(not running)
        self.crop_folder_edit.enabled = not running
        self.save_config_button.enabled = self.load_config_button.enabled = not running
        self.save_bundle_button.enabled = not running and self.result is not None

    # ----------------------------------------------------------------- the run's end

    def _on_result(self, result: TrainResult) -> None:
        self.result = result
        where = f"checkpoints in {result.checkpoint_dir}"
        best = (
            f"best validation loss {result.best_val_loss:.4g}"
            if result.best_val_loss is not None
            else "no validation yet"
        )
        if result.stopped_by_user:
            text = f"Stopped; {best}. Resume continues from {result.last_checkpoint}; {where}."
        elif result.stopped_early:
            text = f"Stopped early (validation loss no longer improved); {best}; {where}."
        else:
            text = f"Finished: {best}; {where}."
        if self._run_crop_set is not None:
            # The trained model is the session's model at once (Embed, Latent space...); Save model… writes it.
            self.session.bundle = trained_bundle(
                result,
                self._run_crop_set,
                train_settings=self._run_train_settings,
                crop_set_origin=self._crop_set_origin(),
            )
            text += " It is the session's model now (Save model… writes it as a bundle)."
        notes = " ".join(result.notes)
        learned = result.diagnostics
        summary = "" if learned is None else "\n" + "\n".join(learned.lines())
        self.status.setText(text + (f" Note: {notes}" if notes else "") + summary)
        if learned is not None and learned.warnings:
            show_warning("Check what the model learned: " + " ".join(learned.warnings))
        else:
            show_info(text)

    def _on_busy(self, busy: bool) -> None:
        if not busy:
            self.display.finish()
        self._set_running(busy)

    # ----------------------------------------------------------------- saving the model

    def save_bundle_to(self, directory: str | os.PathLike) -> Path | None:
        """Write the trained model as a bundle folder and make it the session's model."""
        result, crop_set = self.result, self._run_crop_set
        if result is None or crop_set is None:
            self.tasks.report(InputError("there is no trained model yet; press Start and wait until training ends"))
            return None
        try:
            bundle = trained_bundle(
                result, crop_set, train_settings=self._run_train_settings, crop_set_origin=self._crop_set_origin()
            )
            written = save_bundle(bundle, directory)
            self.session.bundle = load_bundle(written)
        except (InputError, OSError) as err:
            self.tasks.report(err)
            return None
        self.status.setText(f"Model bundle saved to {written}; it is now the session's model.")
        return written

    def _crop_set_origin(self) -> str:
        """Where the crops of this run live, for the bundle's provenance."""
        return str(self._run_crop_folder.resolve()) if self._run_crop_folder else "Cells widget (not saved)"

    def _ask_bundle_folder(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model bundle (a new folder)", "model-bundle")
        if path:
            self.save_bundle_to(path)

    # ----------------------------------------------------------------- closing

    def shutdown(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Stop training and wait until its last checkpoint is written; True when it ended in time.

        Called when the widget is closed or removed from its dock (napari
        quits the task itself when the viewer closes: ``on_quit``). The task
        is let go of, so nothing it sends later reaches a closed widget.
        """
        if not self.running:
            return True
        stopped = self._run.stop_and_wait(timeout_s=timeout_s)
        self.tasks.stop()
        return stopped

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)

    def event(self, event: Any) -> bool:
        # napari's dock "close" button removes the widget from its dock (parent becomes None) and deletes the dock.
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and hasattr(self, "tasks"):
            self.shutdown()
        return super().event(event)


__all__ = ["TrainWidget", "PREVIEW_LAYER", "default_checkpoint_dir", "last_checkpoint_in"]
