"""The Train widget's progress: a step bar and a line with the epoch, step, loss, elapsed time and ETA."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from ..core.training.engine import TrainUpdate


def format_seconds(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RunProgress(QWidget):
    """How far the run is: steps done of all, and the latest :class:`TrainUpdate` in words."""

    def __init__(self) -> None:
        super().__init__()
        self.bar = QProgressBar()
        self.bar.setFormat("%v / %m steps")
        self.label = QLabel("")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.label)

    def starting(self) -> None:
        """A busy bar until the first step is reported."""
        self.bar.setRange(0, 0)

    def show_update(self, update: TrainUpdate) -> None:
        # QProgressBar.setValue paints at once; held back, the bar is painted with the label in one pass.
        self.bar.setUpdatesEnabled(False)
        self.bar.setRange(0, max(update.total_steps, 1))
        self.bar.setValue(min(update.step, update.total_steps))
        self.bar.setUpdatesEnabled(True)
        stage = "" if update.stage == "model" else f"{update.stage} model, "
        eta = format_seconds(update.eta_s) if update.eta_s is not None else "…"
        loss = update.train_losses.get("loss")
        loss_text = f", loss {loss:.4g}" if loss is not None else ""
        self.label.setText(
            f"{stage}epoch {update.epoch + 1}, step {update.step}/{update.total_steps}{loss_text}; "
            f"elapsed {format_seconds(update.elapsed_s)}, ETA {eta}"
        )
