"""The results tabs of the Classifier dock: metrics per fold, confusion and precision–recall,
channel evidence and ranking.

Display only: it shows the tables of :mod:`~napari_morphospace.core.classifier.report`
and the figures of :mod:`~napari_morphospace.core.figures.classifier` it is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from qtpy.QtWidgets import QLabel, QPushButton, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget

from ..core.classifier.fusion import ChannelRanking, ClassifierResult
from ..core.classifier.report import METRIC_TITLES, evidence_table, ranking_table
from ..core.figures.classifier import evidence_figure, results_figure

CHANNELS_TAB = 2


def trained_text(result: ClassifierResult, table: pd.DataFrame) -> str:
    """What a training run achieved, in one paragraph: pooled metrics, fold mean ± SD,
    what a stop or early fusion lacks."""
    if result.pooled is None:
        return "Stopped before the first fold finished: no metrics."
    pooled = table.loc["pooled"]
    text = (
        f"Pooled over {len(result.folds)} fold(s), {int(pooled['n_crops'])} crops: balanced accuracy "
        f"{pooled['balanced_accuracy']:.3f}, macro-F1 {pooled['macro_f1']:.3f}, MCC {pooled['mcc']:.3f}, "
        f"AUROC {pooled['auroc']:.3f}."
    )
    if {"mean", "SD"} <= set(table.index):
        text += (
            f" Fold mean ± SD of balanced accuracy {table.loc['mean', 'balanced_accuracy']:.3f} "
            f"± {table.loc['SD', 'balanced_accuracy']:.3f}."
        )
    if result.settings.fusion == "early" and not result.stopped:
        text += " Early fusion has one encoder for all channels: no per-channel evidence or Grad-CAM."
    if result.stopped:
        text = (
            f"Stopped after {len(result.folds)} of {result.settings.folds} folds; no final model, "
            "so no channel evidence or Grad-CAM. " + text
        )
    return text


def fill_table(widget: QTableWidget, table: pd.DataFrame, *, percent: bool = False) -> None:
    """Show a DataFrame: index as row headers, floats with 3 decimals (or as percentages), NaN as "n/a"."""
    widget.clear()
    widget.setRowCount(len(table))
    widget.setColumnCount(len(table.columns))
    widget.setHorizontalHeaderLabels([METRIC_TITLES.get(str(c), str(c)) for c in table.columns])
    widget.setVerticalHeaderLabels([str(i) for i in table.index])
    for r in range(len(table)):
        for c in range(len(table.columns)):
            value = table.iat[r, c]  # keeps each column's dtype (iterrows would turn counts into floats)
            if value is pd.NA:  # an empty cell of a whole-number column (crops tested by "mean" and "SD")
                text = ""
            elif isinstance(value, (float, np.floating)):
                text = "n/a" if not np.isfinite(value) else (f"{100 * value:.0f} %" if percent else f"{value:.3f}")
            else:
                text = str(value)
            widget.setItem(r, c, QTableWidgetItem(text))
    widget.resizeColumnsToContents()


class ClassifierResults(QTabWidget):
    """Tabs "Metrics", "Confusion, PR" and "Channels" (evidence, the Rank channels button, the ranking)."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics_view = QTableWidget()
        self.metrics_view.setMinimumHeight(130)
        self.figure_page = QVBoxLayout()
        self.evidence_view = QTableWidget()
        self.evidence_view.setMaximumHeight(110)
        self.evidence_page = QVBoxLayout()
        self.rank_button = QPushButton("Rank channels")
        self.rank_button.setToolTip(
            "Cross-validate one classifier per channel alone (same settings and folds); best first"
        )
        self.ranking_view = QTableWidget()
        self.ranking_view.setMaximumHeight(130)
        self.addTab(self.metrics_view, "Metrics")
        page = QWidget()
        page.setLayout(self.figure_page)
        self.addTab(page, "Confusion, PR")
        page = QWidget()
        channels = QVBoxLayout(page)
        channels.addWidget(QLabel("Share of Grad-CAM evidence per channel, for each class:"))
        channels.addWidget(self.evidence_view)
        channels.addLayout(self.evidence_page)
        channels.addWidget(self.rank_button)
        channels.addWidget(self.ranking_view)
        self.addTab(page, "Channels")
        self.setMinimumHeight(380)

    def show_trained(
        self, result: ClassifierResult, table: pd.DataFrame, evidence: np.ndarray | None, channel_names: list[str]
    ) -> None:
        """The metrics ``table``, the pooled confusion matrix and PR curves, and each class's per-channel evidence."""
        fill_table(self.metrics_view, table)
        if result.pooled is not None:
            canvas = FigureCanvasQTAgg(results_figure(result.pooled, result.classes))
            canvas.setFixedHeight(280)  # the figure's own aspect, not the tab's
            self.figure_page.addWidget(canvas)
        if evidence is not None:
            shares = evidence_table(evidence, result.classes, channel_names)
            fill_table(self.evidence_view, shares, percent=True)
            canvas = FigureCanvasQTAgg(evidence_figure(shares))
            canvas.setFixedHeight(220)
            self.evidence_page.addWidget(canvas)

    def show_ranking(self, ranking: list[ChannelRanking]) -> None:
        """The channels ranked by single-channel classifiers, best first, on the Channels tab."""
        fill_table(self.ranking_view, ranking_table(ranking).set_index("rank"))
        self.setCurrentIndex(CHANNELS_TAB)

    def clear(self) -> None:
        """Empty every table and figure (a new training starts)."""
        for view in (self.metrics_view, self.evidence_view):
            view.clear()
            view.setRowCount(0)
            view.setColumnCount(0)
        for page in (self.figure_page, self.evidence_page):
            while page.count():
                item = page.takeAt(0)
                if item.widget() is not None:
                    item.widget().deleteLater()
