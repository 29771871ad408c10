"""The "Classifier" widget: a fusion CNN that says how well, and from which channel, the classes can be told apart.

The organelle study trained one encoder per channel, fused them, and looked at
per-channel Grad-CAM to see which organelle drives each class; it compared
early, intermediate and late fusion (the ``fusion`` option, under the study's
names; the backbone here is a small CNN trained from scratch, not the study's
ImageNet ResNet50). This widget does that on the session's crop set: classes
from the crop table's ``group`` or ``annotation`` column (crops with an empty
label are left out and counted), k-fold cross-validation grouped by the
``source`` column (the crops of one image never sit on both sides of a split;
the folds offered are at most the fewest source images of any class), metrics
per fold, their mean ± SD and pooled, a confusion matrix and precision–recall
curves, each class's per-channel evidence, single-channel classifiers that
rank the channels, and per-channel Grad-CAM overlays on the source layers.

All computing is in :mod:`~napari_morphospace.core.classifier.fusion` and
:mod:`~napari_morphospace.core.classifier.report`, reached from a script with a
viewer through :mod:`~napari_morphospace.viewer.classifier` (crops read, Grad-CAM
layers on the fields); the results tabs are :mod:`._qt.classifier_results`. Training, ranking and Grad-CAM
run through the widget's :class:`~._qt.tasks.Tasks`, report typed messages
and never touch a widget. Everything the buttons do is a public method (``train``, ``stop``,
``rank``, ``show_gradcam``, ``export_metrics``), so it can be scripted and tested.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.cells.crop_set import CropSet
from ..core.classifier.fusion import (
    ChannelRanking,
    ClassifierResult,
    ClassifierSettings,
)
from ..core.classifier.report import (
    LABEL_COLUMNS,
    LabelSummary,
    check_folds,
    metrics_document,
    metrics_table,
    summarise_labels,
    write_metrics,
)
from ..core.errors import InputError
from ..viewer.classifier import (
    class_cells,
    crop_set_gradcam,
    rank_crop_set_channels,
    show_class_gradcam,
    train_on_crop_set,
)
from ..viewer.session import session_for
from .classifier_progress import ClassifierProgress
from .classifier_results import ClassifierResults, trained_text
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .forms import read_form, settings_form
from .tasks import Tasks

SETTINGS_OPTIONS = {
    "epochs": {"max": 10**5},
    "batch_size": {"max": 65536},
    "learning_rate": {"step": 1e-4, "max": 10.0},
    "folds": {"min": 2, "max": 100},
    "depth": {"max": 8},
    "base_channels": {"max": 512},
    "seed": {"max": 2**31 - 1},
}


class ClassifierWidget(QWidget):
    """Train a fusion classifier on the session's crops, read its cross-validated metrics, see which channel matters."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        #: Outcome of the last training: result, per-channel evidence, and the crops and labels it was trained on.
        self.result: ClassifierResult | None = None
        self.evidence: np.ndarray | None = None
        self.ranking: list[ChannelRanking] | None = None
        self.run_crop_set: CropSet | None = None
        self.run_summary: LabelSummary | None = None
        self._stop_event = threading.Event()
        self._build_form()
        self.session.crop_set_changed.connect(self._on_session_crop_set)
        self._on_session_crop_set(self.session.crop_set)

    # ------------------------------------------------------------------ form
    def _build_form(self) -> None:
        self.label_column = QComboBox()
        self.label_column.setToolTip(
            "The crop table column whose values are the classes; crops with an empty value are left out"
        )
        self.label_info = QLabel("No crop set: build or load one in the Cells widget.")
        self.label_info.setWordWrap(True)
        self.settings_form = settings_form(ClassifierSettings(), options=SETTINGS_OPTIONS)
        self.train_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress = ClassifierProgress()

        self.results = ClassifierResults()

        self.gradcam_class = QComboBox()
        self.gradcam_button = QPushButton("Show per-channel Grad-CAM")
        self.gradcam_button.setToolTip(
            "Grad-CAM of the chosen class at each channel's encoder, for every crop of that class, "
            "as one overlay per channel on the source layers"
        )
        self.export_button = QPushButton("Export metrics…")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.tasks = Tasks(
            "Classifier", status=self.status.setText, on_busy=lambda busy: self._set_running(busy), parent=self
        )

        self._lay_out()
        self._connect()
        self._set_running(False)

    def _lay_out(self) -> None:
        content = QWidget()
        layout = QVBoxLayout(content)
        crops = QGroupBox("Crops")
        form = QFormLayout(crops)
        form.addRow("classes from", self.label_column)
        form.addRow(self.label_info)
        layout.addWidget(crops)

        settings = QGroupBox("Classifier and cross-validation")
        box = QVBoxLayout(settings)
        box.addWidget(self.settings_form.native)
        row = QHBoxLayout()
        row.addWidget(self.train_button)
        row.addWidget(self.stop_button)
        box.addLayout(row)
        box.addWidget(self.progress)
        layout.addWidget(settings)

        layout.addWidget(self.results)

        overlays = QGroupBox("Grad-CAM and export")
        form = QFormLayout(overlays)
        row = QHBoxLayout()
        row.addWidget(self.gradcam_class)
        row.addWidget(self.gradcam_button)
        form.addRow("class", row)
        form.addRow(self.export_button)
        layout.addWidget(overlays)
        layout.addWidget(self.status)
        layout.addStretch()

        scroll_in_dock(self, content, min_width=520)

    def _connect(self) -> None:
        self.label_column.currentTextChanged.connect(lambda _: self._show_label_summary())
        self.train_button.clicked.connect(lambda: self.train())
        self.stop_button.clicked.connect(lambda: self.stop())
        self.results.rank_button.clicked.connect(lambda: self.rank())
        self.gradcam_button.clicked.connect(lambda: self.show_gradcam())
        self.export_button.clicked.connect(self._ask_export_path)

    # ------------------------------------------------------------------ crops and labels
    def _on_session_crop_set(self, crop_set: Any) -> None:
        current = self.label_column.currentText()
        columns = [] if crop_set is None else [c for c in LABEL_COLUMNS if c in crop_set.table.columns]
        self.label_column.blockSignals(True)
        self.label_column.clear()
        self.label_column.addItems(columns)
        if current in columns:
            self.label_column.setCurrentText(current)
        self.label_column.blockSignals(False)
        self._show_label_summary()

    def _show_label_summary(self) -> None:
        try:
            summary = self.label_summary()
        except InputError as err:
            self.label_info.setText(f"⚠ {err}")
            return
        self.label_info.setText(summary.text())
        self._offer_folds(summary)

    def _offer_folds(self, summary: LabelSummary) -> None:
        """Offer as many folds as the data allow: at most the fewest source images of any class.

        Folds are grouped by source, so a class from 4 images allows 4 folds;
        the value drops to that maximum when it was larger.
        """
        if len(summary.classes) < 2:
            return
        allowed = max(min(summary.sources_per_class.values()), 2)  # below 2 sources nothing works: check_folds says so
        folds = self.settings_form["folds"]
        folds.max = min(allowed, SETTINGS_OPTIONS["folds"]["max"])
        folds.tooltip = f"cross-validation folds grouped by source image; these classes allow at most {allowed}"
        folds.value = min(folds.value, folds.max)

    def label_summary(self) -> LabelSummary:
        """The crops of the session's crop set with a class in the chosen column, and their sources per class."""
        crop_set = self._require_crop_set()
        column = self.label_column.currentText()
        if not column:
            raise InputError("the crop table has neither a group nor an annotation column to take classes from")
        return summarise_labels(crop_set.table, column)

    def _require_crop_set(self) -> CropSet:
        if self.session.crop_set is None:
            raise InputError("there is no crop set: build one in the Cells widget or load a crop-set folder first")
        return self.session.crop_set

    def settings(self) -> ClassifierSettings:
        """The classifier settings shown in the form (checked like a config file)."""
        return read_form(self.settings_form, ClassifierSettings())

    def _prepare(self) -> tuple[CropSet, LabelSummary, ClassifierSettings]:
        crop_set = self._require_crop_set()
        settings = self.settings()
        summary = self.label_summary()
        check_folds(summary, settings.folds)
        return crop_set, summary, settings

    # ------------------------------------------------------------------ training
    @property
    def running(self) -> bool:
        """True while training, ranking or Grad-CAM runs."""
        return self.tasks.busy

    def train(self) -> Any:
        """Cross-validate the classifier and train the final model in a worker; returns it (None when refused)."""
        if self.running:
            return None
        try:
            crop_set, summary, settings = self._prepare()
        except InputError as err:
            self.tasks.report(err)
            return None
        self.result, self.evidence, self.ranking = None, None, None
        self.run_crop_set, self.run_summary = crop_set, summary
        self.results.clear()
        self.gradcam_class.clear()
        text = (
            f"Training on {len(summary.positions)} crops ({summary.n_left_out} left out): "
            f"{settings.folds} folds grouped by source, then the final model on all crops…"
        )
        return self._launch(
            train_on_crop_set,
            crop_set,
            summary,
            settings,
            on_done=self._on_trained,
            text=text,
            action="Training the classifier",
            total=settings.epochs * (settings.folds + 1),
        )

    def rank(self) -> Any:
        """Rank the channels by single-channel classifiers in a worker; returns it (None when refused)."""
        if self.running:
            return None
        try:
            crop_set, summary, settings = self._prepare()
        except InputError as err:
            self.tasks.report(err)
            return None
        n_channels = int(crop_set.images.shape[1])
        text = f"Ranking {n_channels} channels: one cross-validated classifier per channel…"
        return self._launch(
            rank_crop_set_channels,
            crop_set,
            summary,
            settings,
            on_done=self._on_ranked,
            text=text,
            action="Ranking the channels",
            total=n_channels * settings.epochs * settings.folds,
        )

    def stop(self) -> None:
        """Stop training or ranking within one step; finished folds (or channels) are kept."""
        self._stop_event.set()
        self.stop_button.setEnabled(False)
        self.status.setText("Stopping after this step…")

    def _launch(
        self,
        function: Any,
        crop_set: CropSet,
        summary: LabelSummary,
        settings: ClassifierSettings,
        *,
        on_done: Any,
        text: str,
        action: str,
        total: int,
    ) -> Any:
        """Run training or ranking (stoppable, its epochs counted in the progress bar)."""
        self.progress.start(total)
        self._stop_event = threading.Event()
        worker = self.tasks.start(
            function,
            crop_set,
            summary,
            settings,
            self._stop_event,
            on_done=on_done,
            action=action,
            busy_text=text,
            progress=action,
            on_message=lambda message: self.progress.show_update(message, settings),
        )
        self.stop_button.setEnabled(worker is not None)
        return worker

    def _on_trained(self, outcome: tuple[ClassifierResult, np.ndarray | None]) -> None:
        self.result, self.evidence = outcome
        result = self.result
        if result.pooled is not None:
            self.session.classifier_metrics = metrics_document(
                result,
                evidence=self.evidence,
                channel_names=list(self.run_crop_set.channel_names),
                label_column=self.run_summary.column,
            )
        table = metrics_table(result)
        self.results.show_trained(result, table, self.evidence, list(self.run_crop_set.channel_names))
        self.gradcam_class.clear()
        self.gradcam_class.addItems([str(c) for c in result.classes])
        text = trained_text(result, table)
        self.status.setText(text)
        show_info(text)

    def _on_ranked(self, ranking: list[ChannelRanking]) -> None:
        self.ranking = ranking
        self.results.show_ranking(ranking)
        if ranking:
            best = ranking[0]
            self.status.setText(
                "Most informative channel alone: "
                f"{best.name} (pooled balanced accuracy {best.metrics.balanced_accuracy:.3f})"
                + (" — stopped: channels not finished are missing" if self._stop_event.is_set() else "")
            )
        else:
            self.status.setText("Stopped before the first channel was ranked.")

    def _set_running(self, running: bool) -> None:
        """Buttons while a job runs (Stop is enabled by training and ranking, which can stop)."""
        self.train_button.setEnabled(not running)
        self.results.rank_button.setEnabled(not running)
        self.stop_button.setEnabled(False)
        self.settings_form.enabled = not running
        self.label_column.setEnabled(not running)
        trained = self.result is not None
        per_channel = trained and self.result.model is not None and self.result.settings.fusion != "early"
        self.gradcam_button.setEnabled(not running and per_channel)
        self.export_button.setEnabled(not running and trained and self.result.pooled is not None)

    # ------------------------------------------------------------------ Grad-CAM overlays
    def show_gradcam(self, class_name: str | None = None) -> Any:
        """Per-channel Grad-CAM of ``class_name`` on every crop of that class, as overlays on the source layers.

        One layer per channel (per source when the class's crops come from
        several), named ``"<channel> Grad-CAM (<class>)"`` (``" · <source>"``
        appended then), placed in the source layer's world coordinates. Maps are
        normalised per cell jointly over channels, so a dimmer channel gave
        less evidence. Returns the worker (None when refused).
        """
        try:
            if self.result is None:
                raise InputError(
                    "there is no trained classifier: press Train and let it finish (a stopped run has no final model)"
                )
            if self.running:
                raise InputError("wait until the running job has finished")
            class_name = self.gradcam_class.currentText() if class_name is None else str(class_name)
            positions, rows = class_cells(self.viewer, self.result, self.run_crop_set, self.run_summary, class_name)
        except InputError as err:
            self.tasks.report(err)
            return None
        return self.tasks.start(
            crop_set_gradcam,
            self.result.model,
            self.run_crop_set,
            positions,
            [str(c) for c in self.result.classes].index(class_name),
            on_done=lambda maps: self._show_gradcam_maps(maps, rows, class_name),
            action="Grad-CAM",
            busy_text=f"Grad-CAM of {class_name!r} on {len(positions)} crops, per channel…",
        )

    def _show_gradcam_maps(self, maps: np.ndarray, rows: pd.DataFrame, class_name: str) -> list[Image]:
        """One overlay per channel and source (and frame) of the class's crops, on the source layers."""
        channel_names = list(self.run_crop_set.channel_names)
        try:
            shown = show_class_gradcam(self.viewer, maps, rows, channel_names, class_name)
        except InputError as err:
            self.tasks.report(err)
            return []
        self.status.setText(
            f"Grad-CAM of {class_name!r}: {len(rows)} crops, {len(channel_names)} channel(s), {len(shown)} layer(s)"
        )
        return shown

    # ------------------------------------------------------------------ export
    def export_metrics(self, path: str | Path) -> Path | None:
        """Write the metrics to ``path`` (``.csv``: the metrics table; ``.json``: everything), atomically."""
        try:
            if self.result is None or self.result.pooled is None:
                raise InputError("there are no metrics yet: press Train and let at least one fold finish")
            written = write_metrics(
                self.result,
                path,
                evidence=self.evidence,
                channel_names=list(self.run_crop_set.channel_names),
                label_column=self.run_summary.column,
            )
        except InputError as err:
            self.tasks.report(err)
            return None
        except OSError as err:  # a folder that cannot be written: the user can choose another
            self.tasks.report(InputError(f"could not write the metrics to {path}: {err}"))
            return None
        show_info(f"Metrics written to {written}")
        self.status.setText(f"Metrics written to {written}")
        return written

    def _ask_export_path(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export metrics", "classifier-metrics.csv", "CSV (*.csv);;JSON (*.json)"
        )
        if not path:
            return
        if Path(path).suffix.lower() not in (".csv", ".json"):
            path += ".json" if "json" in chosen.lower() else ".csv"
        self.export_metrics(path)

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: Any) -> None:
        self._stop_event.set()
        self.tasks.stop()
        self.session.crop_set_changed.disconnect(self._on_session_crop_set)
        super().closeEvent(event)


__all__ = ["ClassifierWidget"]
