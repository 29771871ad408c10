"""The fusion classifier's figures: confusion matrix, precision–recall curves and per-channel evidence.

The numbers come from :mod:`~napari_morphospace.core.classifier.fusion` and
:mod:`~napari_morphospace.core.classifier.report`. No pyplot: the figures
render with Agg or on a Qt canvas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..classifier.fusion import ClassificationMetrics
from ..classifier.report import average_precision


def results_figure(
    metrics: ClassificationMetrics, classes: Sequence[Any], *, title: str = "pooled over folds"
) -> Figure:
    """Confusion matrix (counts, rows: true class) and one-vs-rest precision–recall curves, side by side."""
    names = [str(c) for c in classes]
    figure = Figure(figsize=(5.0, 2.6), layout="constrained")
    ax_cm, ax_pr = figure.subplots(1, 2)
    confusion = np.asarray(metrics.confusion)
    ax_cm.imshow(confusion, cmap="Blues", vmin=0)
    peak = max(int(confusion.max()), 1)
    for (i, j), count in np.ndenumerate(confusion):
        ax_cm.text(j, i, str(int(count)), ha="center", va="center", color="white" if count > peak / 2 else "black")
    ax_cm.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true")
    ax_cm.set_xticklabels(names, rotation=30, ha="right")
    ax_cm.set_yticklabels(names)
    ax_cm.set_title(f"confusion matrix ({title})", fontsize=9)
    for k, (precision, recall) in sorted(metrics.pr_curves.items()):
        ax_pr.step(recall, precision, where="post", label=f"{names[k]} (AP {average_precision(precision, recall):.2f})")
    ax_pr.set(xlim=(0, 1.02), ylim=(0, 1.05), xlabel="recall", ylabel="precision")
    ax_pr.set_title("precision–recall, class vs rest", fontsize=9)
    ax_pr.legend(fontsize=8, loc="lower left")
    return figure


def evidence_figure(table: pd.DataFrame) -> Figure:
    """Grouped bars: for each class (x), the share of Grad-CAM evidence from each channel (one colour per channel).

    ``table`` is :func:`~napari_morphospace.core.classifier.report.evidence_table`.
    """
    figure = Figure(figsize=(5.0, 2.2), layout="constrained")
    ax = figure.subplots()
    n_classes, n_channels = table.shape
    width = 0.8 / max(n_channels, 1)
    x = np.arange(n_classes)
    for c, channel in enumerate(table.columns):
        ax.bar(x + (c - (n_channels - 1) / 2) * width, table[channel].to_numpy(), width, label=str(channel))
    ax.set_xticks(x)
    ax.set_xticklabels(list(table.index))
    ax.set(ylim=(0, 1), ylabel="share of Grad-CAM")
    ax.set_title("which channel drives each class", fontsize=9)
    ax.legend(fontsize=8, ncols=min(n_channels, 4))
    return figure


__all__ = ["evidence_figure", "results_figure"]
