"""The Train widget's loss plot: loss terms per epoch over the latest KL per latent dimension.

Painted with QPainter (:mod:`.line_plot`), about 1 ms a refresh, where a
matplotlib redraw took 50-700 ms next to napari's canvas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..core.training.engine import TrainUpdate
from .line_plot import BarPlot, Line, LinePlot

#: Loss terms drawn in the plot, when the model reports them (MI/TC/dwKL: β-TCVAE).
PLOTTED_TERMS = ("rec", "kl", "mi", "tc", "dwkl")
#: matplotlib's tab10 colours, as the loss plot had when it was drawn with matplotlib.
TERM_COLOURS = {"rec": "#1f77b4", "kl": "#ff7f0e", "mi": "#2ca02c", "tc": "#d62728", "dwkl": "#9467bd"}
STAGE_ORDER = {"reference": 0, "target": 1, "model": 2}


class LossPlot(QWidget):
    """Loss terms per epoch (train solid, validation dashed) over the latest KL per dimension, sorted.

    The loss axis is logarithmic while the reconstruction term is positive, linear when it is not.

    :meth:`add_epoch` only records; :meth:`refresh` hands the new epochs to the
    plots, which paint on the next pass of the event loop.
    """

    def __init__(self) -> None:
        super().__init__()
        self.losses = LinePlot(
            x_label="epoch", y_label="loss per crop (nats)", title="train — / validation - -", log_y=True
        )
        self.kl = BarPlot(x_label="latent dimension (sorted)", y_label="KL (nats)", colour=TERM_COLOURS["kl"])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.losses, 3)
        layout.addWidget(self.kl, 2)
        self.rows: dict[tuple[int, int], dict[str, Any]] = {}
        self.kl_per_dim: list[float] | None = None
        self._changed = False
        self.setMinimumHeight(380)

    @property
    def series(self) -> dict[str, list[float]]:
        """The plotted loss values by line name (``"train rec"``, ``"val rec"``, ...), in epoch order."""
        return self.losses.series

    def clear(self) -> None:
        self.rows.clear()
        self.kl_per_dim = None
        self._changed = True
        self.refresh()

    def add_epoch(self, update: TrainUpdate) -> None:
        """Record the epoch-end losses of ``update`` (a resumed epoch replaces its earlier values)."""
        row = {f"train_{k}": v for k, v in update.train_losses.items()}
        row.update({f"val_{k}": v for k, v in (update.val_losses or {}).items()})
        row["epoch"], row["stage"] = update.epoch, update.stage
        self.rows[(STAGE_ORDER.get(update.stage, 2), update.epoch)] = row
        if update.kl_per_dim is not None:
            self.kl_per_dim = list(update.kl_per_dim)
        self._changed = True

    def history(self) -> list[dict[str, Any]]:
        """The recorded epochs in order: one dict per epoch with ``train_<term>`` / ``val_<term>``."""
        return [self.rows[key] for key in sorted(self.rows)]

    def refresh(self) -> None:
        """Plot the recorded epochs, when they changed since the last refresh."""
        if not self._changed:
            return
        self._changed = False
        history = self.history()
        lines = {}
        for term in PLOTTED_TERMS:
            for split in ("train", "val"):
                values = [float(row.get(f"{split}_{term}", np.nan)) for row in history]
                if np.isfinite(values).any():
                    lines[f"{split} {term}"] = Line(
                        values, TERM_COLOURS[term], dashed=split == "val", legend=term if split == "train" else None
                    )
        # A log axis, unless the reconstruction term goes negative ('calibrated-gaussian': a density's NLL).
        rec = [v for name, line in lines.items() if name.endswith(" rec") for v in line.values if np.isfinite(v)]
        self.losses.log_y = all(v > 0 for v in rec)
        self.losses.set_lines(lines)
        self.kl.set_values(sorted(self.kl_per_dim or [], reverse=True))
