"""The "Train" widget: choose a crop set and settings, train a VAE, watch it learn, save the model.

All training is :func:`napari_morphospace.core.training.train`, the engine of
``morphospace train``. This widget renders the core settings dataclasses as
forms, runs the engine in a napari generator worker and shows what its typed
messages say: a loss plot, per-dimension KL bars, progress with ETA and a
reconstruction preview layer. The worker never touches a widget.

Checkpoints go to ``TrainSettings.checkpoint_dir`` when it is set; otherwise
to a new ``run-<date>-<time>`` folder in ``<crop set folder>-checkpoints``
next to a crop set loaded from disk, or in ``~/morphospace-checkpoints`` for a
crop set handed over by the Cells widget. The folder is shown in the status
line, and Resume continues from its ``last.ckpt``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from magicgui.widgets import Container, FileEdit, LineEdit, PushButton
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..core.bundle import load_bundle, save_bundle
from ..core.config import load_config, save_config
from ..core.data import CropSet, load_crop_set
from ..core.errors import InputError
from ..core.gallery import crop_montage
from ..core.models import ModelSettings
from ..core.training import (
    ReconstructionPreview,
    TrainConfig,
    TrainFailed,
    TrainFinished,
    TrainResult,
    TrainSettings,
    TrainUpdate,
    train,
)
from .forms import read_form, settings_form
from .session import session_for
from .workers import messages_from

PREVIEW_LAYER = "reconstruction preview"
#: Loss terms drawn in the plot, when the model reports them (MI/TC/dwKL: β-TCVAE).
PLOTTED_TERMS = ("rec", "kl", "mi", "tc", "dwkl")
TERM_COLOURS = {"rec": "tab:blue", "kl": "tab:orange", "mi": "tab:green", "tc": "tab:red", "dwkl": "tab:purple"}
#: The plot is redrawn at most this often: a matplotlib redraw costs 50-500 ms of GUI time on a busy CPU.
PLOT_REDRAW_INTERVAL_MS = 2000
#: How long closing the widget or the viewer waits for training to stop and write its checkpoint.
CLOSE_WAIT_S = 30.0
STAGE_ORDER = {"reference": 0, "target": 1, "model": 2}

#: Settings of the model form shown only for one model type.
MODEL_SPECIFIC = {
    "beta-tcvae": ("tc_alpha", "tc_beta", "tc_gamma", "tc_estimator"),
    "me-vae": ("me_views", "me_combine"),
    "cond-vae": ("cond_reference_channels", "cond_num_labels"),
}
#: Training settings in the collapsed "Advanced" section (cluster runs, reproducibility, optimiser details).
ADVANCED_TRAINING = ("weight_decay", "gradient_clip_val", "seed", "num_nodes", "strategy", "num_workers")
MODEL_OPTIONS = {
    "beta": {"step": 0.001, "max": 1e4}, "tc_alpha": {"step": 0.1, "max": 1e4}, "tc_beta": {"step": 0.1, "max": 1e4},
    "tc_gamma": {"step": 0.1, "max": 1e4}, "kl_warmup_steps": {"max": 10**8}, "capacity_steps": {"max": 10**8},
    "capacity_gamma": {"max": 1e6}, "free_bits": {"step": 0.01}, "latent_dim": {"max": 512},
}  # fmt: skip
TRAIN_OPTIONS = {
    "epochs": {"max": 10**6}, "batch_size": {"max": 65536}, "learning_rate": {"step": 1e-5, "max": 10.0},
    "weight_decay": {"step": 1e-6, "max": 10.0}, "val_fraction": {"step": 0.05, "max": 0.99},
    "seed": {"max": 2**31 - 1}, "preview_every_n_epochs": {"max": 10**6}, "early_stopping_patience": {"max": 10**6},
}  # fmt: skip


def default_checkpoint_dir(crop_folder: Path | None, *, now: datetime | None = None) -> Path:
    """A new run folder: next to a crop set loaded from disk, else under the home folder."""
    parent = crop_folder.parent / f"{crop_folder.name}-checkpoints" if crop_folder else Path.home() / "morphospace-checkpoints"
    return parent / f"run-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def last_checkpoint_in(directory: Path) -> Path | None:
    """The ``last.ckpt`` to resume a run in ``directory`` from (the later stage first for cond-vae)."""
    for candidate in (directory / "target" / "last.ckpt", directory / "reference" / "last.ckpt", directory / "last.ckpt"):
        if candidate.is_file():
            return candidate
    return None


def parse_devices(text: str) -> int | list[int] | str:
    """``"auto"`` -> "auto", ``"2"`` -> 2, ``"0, 2"`` -> [0, 2]; other text is left for the settings check."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        return text.strip()
    if not values:
        return "auto"
    return values if len(values) > 1 or "," in text else values[0]


def fill_form(form: Container, settings: Any) -> None:
    """Show the values of ``settings`` in a form made by ``settings_form`` (the inverse of ``read_form``)."""
    for widget in form:
        value = getattr(settings, widget.name)
        if isinstance(widget, Container) and "enabled" in [w.name for w in widget]:  # optional: on/off and value
            widget["enabled"].value = value is not None
            if value is not None:
                widget["value"].value = value
        else:
            widget.value = value


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _RunHandle:
    """The stop and done events of the current run, shared with shutdown paths that outlive the widget."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.done_event = threading.Event()
        self.done_event.set()

    def begin(self) -> tuple[threading.Event, threading.Event]:
        """Fresh events for a new run: (stop, done)."""
        self.stop_event, self.done_event = threading.Event(), threading.Event()
        return self.stop_event, self.done_event

    def stop_and_wait(self, *_: Any, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Ask the engine to stop after its current step; wait until it has written its checkpoint."""
        self.stop_event.set()
        return self.done_event.wait(timeout_s)


class LossPlot(FigureCanvasQTAgg):
    """Loss terms per epoch (train solid, validation dashed) and the latest per-dimension KL, sorted."""

    def __init__(self) -> None:
        # A fixed layout: constrained layout would be recomputed on every redraw.
        self.figure = Figure(figsize=(4.2, 4.4))
        super().__init__(self.figure)
        self.loss_axes, self.kl_axes = self.figure.subplots(2, 1, height_ratios=[3, 2])
        self.figure.subplots_adjust(left=0.17, right=0.97, top=0.94, bottom=0.1, hspace=0.38)
        self.lines: dict[tuple[str, str], Any] = {}
        self.rows: dict[tuple[int, int], dict[str, float]] = {}
        self.kl_per_dim: list[float] | None = None
        self.setMinimumHeight(380)
        self.clear()

    def clear(self) -> None:
        self.rows.clear()
        self.kl_per_dim = None
        self.lines.clear()
        self.loss_axes.clear()
        self.loss_axes.set_yscale("log")
        self.loss_axes.set_xlabel("epoch", fontsize=8)
        self.loss_axes.set_ylabel("loss per crop (nats)", fontsize=8)
        self.loss_axes.tick_params(labelsize=7)
        self.loss_axes.set_title("train — / validation - -", fontsize=8)
        self._draw_kl()
        self.draw_idle()

    def add_epoch(self, update: TrainUpdate) -> None:
        """Record the epoch-end losses of ``update`` (a resumed epoch replaces its earlier values)."""
        row = {f"train_{k}": v for k, v in update.train_losses.items()}
        row.update({f"val_{k}": v for k, v in (update.val_losses or {}).items()})
        row["epoch"], row["stage"] = update.epoch, update.stage
        self.rows[(STAGE_ORDER.get(update.stage, 2), update.epoch)] = row
        if update.kl_per_dim is not None:
            self.kl_per_dim = list(update.kl_per_dim)

    def history(self) -> list[dict[str, Any]]:
        """The plotted epochs in order: one dict per epoch with ``train_<term>`` / ``val_<term>``."""
        return [self.rows[key] for key in sorted(self.rows)]

    def series(self, split: str, term: str) -> np.ndarray:
        """The plotted values of ``<split>_<term>`` (e.g. "val", "rec"), in epoch order."""
        return np.array([row.get(f"{split}_{term}", np.nan) for row in self.history()], dtype=float)

    def redraw(self) -> None:
        history = self.history()
        x = np.arange(1, len(history) + 1)
        for term in PLOTTED_TERMS:
            for split, style in (("train", "-"), ("val", "--")):
                y = self.series(split, term)
                if not np.isfinite(y).any():
                    continue
                key = (split, term)
                if key not in self.lines:
                    label = term if split == "train" else None
                    (self.lines[key],) = self.loss_axes.plot([], [], style, color=TERM_COLOURS[term], label=label,
                                                             marker=".", markersize=3, linewidth=1)
                # Non-positive terms (an MI estimate can dip below 0) cannot sit on a log axis.
                self.lines[key].set_data(x, np.where(y > 0, y, np.nan))
        if self.lines:
            self.loss_axes.relim()
            self.loss_axes.autoscale_view()
            self.loss_axes.legend(fontsize=7, loc="upper right")
        self._draw_kl()
        self.draw_idle()

    def _draw_kl(self) -> None:
        ax = self.kl_axes
        ax.clear()
        ax.set_xlabel("latent dimension (sorted)", fontsize=8)
        ax.set_ylabel("KL (nats)", fontsize=8)
        ax.tick_params(labelsize=7)
        if self.kl_per_dim:
            values = np.sort(np.asarray(self.kl_per_dim))[::-1]
            ax.bar(np.arange(len(values)), values, color="tab:orange", width=0.8)


class TrainWidget(QWidget):
    """Train a VAE on the session's crop set (or one loaded from a folder), live, with Stop and Resume."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.crop_set: CropSet | None = None
        self.crop_folder: Path | None = None
        self.result: TrainResult | None = None
        self.last_finished: TrainFinished | None = None
        self.run_dir: Path | None = None
        self._run_crop_set: CropSet | None = None
        self._run_crop_folder: Path | None = None
        self._run_train_settings: TrainSettings | None = None
        self._worker: Any = None
        self._run = _RunHandle()
        self._failure_shown = False
        self._task_id: Any = None

        self.crop_info = QLabel("No crop set: build one in the Cells widget or choose a crop-set folder.")
        self.crop_info.setWordWrap(True)
        self.crop_folder_edit = FileEdit(mode="d", label="crop set folder", value="")
        self.model_form = settings_form(ModelSettings(), options=MODEL_OPTIONS)
        self.train_form = settings_form(TrainSettings(), hide=("devices", *ADVANCED_TRAINING), options=TRAIN_OPTIONS)
        self.devices = LineEdit(value="auto", label="devices",
                                tooltip="'auto', a device count (e.g. 2) or device ids (e.g. 0, 2)")
        shown = {f.name for f in TrainSettings.__dataclass_fields__.values()} - set(ADVANCED_TRAINING)
        self.advanced_form = settings_form(TrainSettings(), hide=tuple(shown), options=TRAIN_OPTIONS)
        self.device_info = QLabel(self._available_devices())
        self.save_config_button = PushButton(text="Save config…")
        self.load_config_button = PushButton(text="Load config…")
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume")
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m steps")
        self.progress_label = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = LossPlot()
        self.save_bundle_button = PushButton(text="Save model bundle…", enabled=False)

        self._plot_timer = QTimer(self)
        self._plot_timer.setSingleShot(True)
        self._plot_timer.setInterval(PLOT_REDRAW_INTERVAL_MS)
        self._plot_timer.timeout.connect(self.plot.redraw)
        self._layout()
        self._connect()
        self._show_model_fields()
        if self.session.crop_set is not None:
            self.set_crop_set(self.session.crop_set)
        # Deleting the widget (with its dock) must not leave training running; the handle outlives the widget.
        self.destroyed.connect(partial(_RunHandle.stop_and_wait, self._run))

    # ----------------------------------------------------------------- layout and signals

    def _layout(self) -> None:
        data = QGroupBox("Crop set")
        box = QVBoxLayout(data)
        box.addWidget(self.crop_info)
        box.addWidget(self.crop_folder_edit.native)
        model = QCollapsible("Model")
        model.addWidget(self.model_form.native)
        model.expand(animate=False)
        training = QCollapsible("Training")
        training.addWidget(self.train_form.native)
        training.addWidget(self.devices.native)
        training.addWidget(self.device_info)
        advanced = QCollapsible("Advanced")
        advanced.addWidget(self.advanced_form.native)
        training.addWidget(advanced)
        training.expand(animate=False)
        self.sections = {"model": model, "training": training, "advanced": advanced}
        config = QHBoxLayout()
        config.addWidget(self.save_config_button.native)
        config.addWidget(self.load_config_button.native)
        run = QGroupBox("Run")
        box = QVBoxLayout(run)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(button.native)
        box.addLayout(buttons)
        box.addWidget(self.progress_bar)
        box.addWidget(self.progress_label)
        box.addWidget(self.status)
        box.addWidget(self.plot)
        box.addWidget(self.save_bundle_button.native)

        content = QWidget()
        column = QVBoxLayout(content)
        column.addWidget(data)
        column.addWidget(model)
        column.addWidget(training)
        column.addLayout(config)
        column.addWidget(run)
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
        self.model_form.model.changed.connect(self._show_model_fields)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.save_bundle_button.clicked.connect(self._ask_bundle_folder)
        self.save_config_button.clicked.connect(self._ask_config_to_save)
        self.load_config_button.clicked.connect(self._ask_config_to_load)

    def _show_model_fields(self, *_: Any) -> None:
        """Show the settings of the chosen model type only (all are still read and saved)."""
        chosen = self.model_form.model.value
        for model, names in MODEL_SPECIFIC.items():
            for name in names:
                self.model_form[name].visible = model == chosen

    @staticmethod
    def _available_devices() -> str:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        mps = torch.backends.mps.is_available()
        found = ["cpu"] + [f"cuda:{i}" for i in range(gpus)] + (["mps"] if mps else [])
        return f"available here: {', '.join(found)}"

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
            self._refuse(err)

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
        return read_form(self.model_form, ModelSettings())

    def train_settings(self) -> TrainSettings:
        """The training settings shown in the forms and the devices field."""
        devices = parse_devices(str(self.devices.value))
        if isinstance(devices, str) and devices != "auto":
            raise InputError(f"training.devices is {devices!r}; use 'auto', a device count or device ids like 0, 2")
        base = replace(TrainSettings(), devices=devices)
        return read_form(self.train_form, read_form(self.advanced_form, base))

    def config(self) -> TrainConfig:
        return TrainConfig(model=self.model_settings(), training=self.train_settings())

    def set_config(self, config: TrainConfig) -> None:
        """Show ``config`` in the forms."""
        fill_form(self.model_form, config.model)
        fill_form(self.train_form, config.training)
        fill_form(self.advanced_form, config.training)
        devices = config.training.devices
        self.devices.value = ", ".join(map(str, devices)) if isinstance(devices, list) else str(devices)

    def save_config_to(self, path: str | os.PathLike) -> Path | None:
        """Write the forms as the YAML that ``morphospace train --config`` reads."""
        try:
            written = save_config(self.config(), path)
        except (InputError, OSError) as err:
            self._refuse(err)
            return None
        self.status.setText(f"Config saved to {written}; train headless with: morphospace train --config {written} "
                            "--crops CROP_SET --out MODEL_DIR")
        return written

    def load_config_from(self, path: str | os.PathLike) -> TrainConfig | None:
        try:
            config = load_config(path, TrainConfig)
        except InputError as err:
            self._refuse(err)
            return None
        self.set_config(config)
        self.status.setText(f"Settings loaded from {path}.")
        return config

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
        return self._worker is not None

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

    def _launch(self, *, resume: bool) -> None:
        if self.running:
            return
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
                run_dir = (Path(train_settings.checkpoint_dir) if train_settings.checkpoint_dir
                           else default_checkpoint_dir(self.crop_folder))
                checkpoint = None
            train_settings = replace(train_settings, checkpoint_dir=str(run_dir))
        except InputError as err:
            self._refuse(err)
            return
        if not resume:
            self.plot.clear()
            self._remove_stale_preview()
        self.run_dir = run_dir
        self.result, self.last_finished, self._failure_shown = None, None, False
        self._run_crop_set, self._run_crop_folder, self._run_train_settings = crop_set, self.crop_folder, train_settings
        stop_event, done_event = self._run.begin()
        self._set_running(True)
        self.progress_bar.setRange(0, 0)
        verb = "Resuming from " + str(checkpoint) if checkpoint else "Training"
        self.status.setText(f"{verb}… checkpoints in {run_dir}")
        worker = _train_worker(crop_set, model_settings, train_settings, stop_event, done_event, checkpoint)
        worker.yielded.connect(self._on_message)
        worker.returned.connect(self._on_result)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._register_task()
        worker.start()

    def _require_crop_set(self) -> CropSet:
        if self.crop_set is None:
            raise InputError("there is no crop set to train on; build one in the Cells widget or choose a crop-set folder")
        return self.crop_set

    def _set_running(self, running: bool) -> None:
        self.start_button.enabled = self.resume_button.enabled = not running
        self.stop_button.enabled = running
        for form in (self.model_form, self.train_form, self.advanced_form, self.devices):
            form.enabled = not running
        self.crop_folder_edit.enabled = not running
        self.save_config_button.enabled = self.load_config_button.enabled = not running
        self.save_bundle_button.enabled = not running and self.result is not None

    def _refuse(self, err: Exception) -> None:
        self.status.setText(f"⚠ {err}")
        show_error(str(err))

    # ----------------------------------------------------------------- messages from the worker

    def _on_message(self, message: Any) -> None:
        if isinstance(message, TrainUpdate):
            self._show_progress(message)
            if message.val_losses is not None:
                self.plot.add_epoch(message)
                if not self._plot_timer.isActive():
                    self._plot_timer.start()
        elif isinstance(message, ReconstructionPreview):
            self._show_preview(message)
        elif isinstance(message, TrainFinished):
            self.last_finished = message
        elif isinstance(message, TrainFailed):
            self._failure_shown = True
            self.status.setText(f"⚠ {message.message}")
            show_error(message.message)

    def _show_progress(self, update: TrainUpdate) -> None:
        self.progress_bar.setRange(0, max(update.total_steps, 1))
        self.progress_bar.setValue(min(update.step, update.total_steps))
        stage = "" if update.stage == "model" else f"{update.stage} model, "
        eta = _format_seconds(update.eta_s) if update.eta_s is not None else "…"
        loss = update.train_losses.get("loss")
        loss_text = f", loss {loss:.4g}" if loss is not None else ""
        self.progress_label.setText(
            f"{stage}epoch {update.epoch + 1}, step {update.step}/{update.total_steps}{loss_text}; "
            f"elapsed {_format_seconds(update.elapsed_s)}, ETA {eta}"
        )

    def _show_preview(self, preview: ReconstructionPreview) -> None:
        """Validation crops (top row) over their reconstructions (bottom row), one RGB layer updated in place."""
        picture = crop_montage(np.concatenate([preview.originals, preview.reconstructions]),
                               n_columns=len(preview.originals))
        if PREVIEW_LAYER in self.viewer.layers:
            layer = self.viewer.layers[PREVIEW_LAYER]
            layer.data = picture
        else:
            layer = self.viewer.add_image(picture, name=PREVIEW_LAYER, rgb=True, **self._preview_placement(picture))
        stage = "" if preview.stage == "model" else f" ({preview.stage} model)"
        layer.metadata["description"] = f"top: validation crops, bottom: reconstructions, epoch {preview.epoch + 1}{stage}"

    def _preview_placement(self, picture: np.ndarray) -> dict[str, Any]:
        """Scale and place the preview to the right of the other layers, about half their height."""
        others = [layer for layer in self.viewer.layers if layer.ndim >= 2]
        if not others:
            return {}
        extent = np.asarray(self.viewer.layers.extent.world)[:, -2:]
        height = float(extent[1, 0] - extent[0, 0])
        width = float(extent[1, 1] - extent[0, 1])
        if not (height > 0 and width > 0):
            return {}
        scale = 0.5 * height / picture.shape[0]
        return {"scale": (scale, scale), "translate": (float(extent[0, 0]), float(extent[1, 1] + 0.05 * width))}

    def _remove_stale_preview(self) -> None:
        if PREVIEW_LAYER in self.viewer.layers:
            self.viewer.layers[PREVIEW_LAYER].metadata["description"] = "from the previous run"

    def _on_result(self, result: TrainResult) -> None:
        self.result = result
        if self.plot.rows:
            self.plot.redraw()
        where = f"checkpoints in {result.checkpoint_dir}"
        best = f"best validation loss {result.best_val_loss:.4g}" if result.best_val_loss is not None else "no validation yet"
        if result.stopped_by_user:
            text = f"Stopped; {best}. Resume continues from {result.last_checkpoint}; {where}."
        elif result.stopped_early:
            text = f"Stopped early (validation loss no longer improved); {best}; {where}."
        else:
            text = f"Finished: {best}; {where}."
        notes = " ".join(result.notes)
        self.status.setText(text + (f" Note: {notes}" if notes else ""))
        show_info(text)

    def _on_error(self, error: Exception) -> None:
        if isinstance(error, InputError):
            if not self._failure_shown:
                self._refuse(error)
        else:
            self._refuse(RuntimeError(f"training failed unexpectedly: {error!r}; the last checkpoint is in {self.run_dir}"))

    def _on_finished(self) -> None:
        self._worker = None
        self._finish_task()
        self._set_running(False)

    # ----------------------------------------------------------------- saving the model

    def save_bundle_to(self, directory: str | os.PathLike) -> Path | None:
        """Write the trained model as a bundle folder and make it the session's model."""
        result, crop_set = self.result, self._run_crop_set
        if result is None or crop_set is None:
            self._refuse(InputError("there is no trained model yet; press Start and wait until training ends"))
            return None
        table = crop_set.table
        provenance = {
            "crop_set": str(self._run_crop_folder.resolve()) if self._run_crop_folder else "Cells widget (not saved)",
            "n_crops": len(table),
            "groups": sorted(map(str, table["group"].unique())),
            "sources": sorted(map(str, table["source"].unique())),
            "train_crops": result.train_size,
            "val_crops": result.val_size,
            "best_checkpoint": result.best_checkpoint,
        }
        try:
            written = save_bundle(
                result.model, directory, model_settings=result.model_settings,
                input_shape=tuple(int(n) for n in crop_set.images.shape[1:]),
                channel_names=list(crop_set.channel_names), preprocess=crop_set.preprocess,
                train_settings=self._run_train_settings, provenance=provenance, history=result.history,
                label_classes=result.label_classes,
            )  # fmt: skip
            self.session.bundle = load_bundle(written)
        except (InputError, OSError) as err:
            self._refuse(err)
            return None
        self.status.setText(f"Model bundle saved to {written}; it is now the session's model.")
        return written

    def _ask_bundle_folder(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model bundle (a new folder)", "model-bundle")
        if path:
            self.save_bundle_to(path)

    # ----------------------------------------------------------------- closing

    def shutdown(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Stop training and wait until its last checkpoint is written; True when it ended in time.

        Called when the widget is closed or removed from its dock and when the
        viewer closes (napari cancels registered tasks then). The worker is
        disconnected first, so nothing it sends later reaches a closed widget.
        """
        worker = self._worker
        if worker is None:
            return True
        for signal, slot in ((worker.yielded, self._on_message), (worker.returned, self._on_result),
                             (worker.errored, self._on_error), (worker.finished, self._on_finished)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        stopped = self._run.stop_and_wait(timeout_s=timeout_s)
        worker.quit()
        self._worker = None
        self._finish_task()
        return stopped

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)

    def event(self, event: Any) -> bool:
        # napari's dock "close" button removes the widget from its dock (parent becomes None) and deletes the dock.
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and getattr(self, "_worker", None):
            self.shutdown()
        return super().event(event)

    def _register_task(self) -> None:
        """Tell napari a training is running, so closing the viewer asks first and then stops it."""
        register = getattr(getattr(self.viewer, "window", None), "_register_task_status", None)
        if register is None:
            return
        from napari.utils.task_status import Status

        self._task_id = register("napari-morphospace", Status.BUSY, "training a model (Train widget)",
                                 cancel_callback=self.shutdown)

    def _finish_task(self) -> None:
        update = getattr(getattr(self.viewer, "window", None), "_update_task_status", None)
        if self._task_id is None or update is None:
            return
        from napari.utils.task_status import Status

        update(self._task_id, Status.COMPLETED)
        self._task_id = None


def _train_in_thread(crop_set: CropSet, model_settings: ModelSettings, train_settings: TrainSettings,
                     stop_event: threading.Event, done_event: threading.Event, resume_from: Path | None,
                     send: Callable[[Any], None]) -> TrainResult:
    """Run the engine with one CPU core left for the viewer; set ``done_event`` when it has ended."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 2) - 1)))
    try:
        return train(crop_set, model_settings, train_settings, on_update=send, stop_event=stop_event,
                     resume_from=resume_from)
    finally:
        torch.set_num_threads(threads)
        done_event.set()


@thread_worker(ignore_errors=True)  # errors reach _on_error as notifications, not re-raised
def _train_worker(crop_set: CropSet, model_settings: ModelSettings, train_settings: TrainSettings,
                  stop_event: threading.Event, done_event: threading.Event, resume_from: Path | None):
    """Yield the engine's typed messages; return its :class:`TrainResult`."""
    return (yield from messages_from(lambda send: _train_in_thread(
        crop_set, model_settings, train_settings, stop_event, done_event, resume_from, send)))


__all__ = ["TrainWidget", "LossPlot", "default_checkpoint_dir", "last_checkpoint_in", "parse_devices", "fill_form"]
