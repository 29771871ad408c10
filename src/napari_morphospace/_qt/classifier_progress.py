"""How far the Classifier dock's training or channel ranking has come: epochs done of all, and the latest in words."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from ..core.classifier.fusion import ClassifierSettings, ClassifierUpdate


class ClassifierProgress(QWidget):
    """A bar of the epochs done (``updates_seen`` of all) and a line with the fold, epoch and loss of the latest."""

    def __init__(self) -> None:
        super().__init__()
        self.bar = QProgressBar()
        self.bar.setFormat("%v / %m epochs")
        self.label = QLabel("")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.label)
        self.updates_seen = 0
        self._total = 1

    def start(self, total: int) -> None:
        """A job of ``total`` epochs (over all folds, or all channels) starts."""
        self.updates_seen, self._total = 0, max(total, 1)
        self.bar.setRange(0, self._total)
        self.bar.setValue(0)
        self.label.setText("")

    def show_update(self, update: Any, settings: ClassifierSettings) -> None:
        """Count a :class:`ClassifierUpdate` (one epoch) and say where the job is; other messages are ignored."""
        if not isinstance(update, ClassifierUpdate):
            return
        self.updates_seen += 1
        self.bar.setValue(min(self.updates_seen, self._total))
        where = "final model on all crops" if update.fold is None else f"fold {update.fold + 1}/{settings.folds}"
        self.label.setText(f"{where}, epoch {update.epoch + 1}/{settings.epochs}, loss {update.loss:.3g}")
