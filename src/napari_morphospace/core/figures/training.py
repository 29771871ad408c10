"""Training curves: the loss terms per epoch of a model bundle's history."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator


def training_curves_figure(history: Sequence[dict[str, float]]) -> Figure:
    """Loss per epoch (training and validation), one panel per loss term (loss, rec, kl, ...).

    A panel whose values are all positive has a log axis, so the late epochs
    are not flattened by the first one.
    """
    frame = pd.DataFrame(list(history))
    terms = [c[len("train_") :] for c in frame.columns if c.startswith("train_")]
    terms = sorted(terms, key=lambda t: (t != "loss", t))[:4]
    epochs = frame["epoch"].to_numpy() + 1 if "epoch" in frame else np.arange(1, len(frame) + 1)
    figure = Figure(figsize=(3.2 * len(terms), 2.8), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(terms), squeeze=False).ravel())
    for ax, term in zip(axes, terms, strict=True):
        values = []
        for split, style in (("train", "-"), ("val", "--")):
            if f"{split}_{term}" in frame:
                ax.plot(epochs, frame[f"{split}_{term}"], style, marker="o", markersize=3, label=split)
                values.append(frame[f"{split}_{term}"].to_numpy(dtype=float))
        finite = np.concatenate(values) if values else np.zeros(0)
        finite = finite[np.isfinite(finite)]
        if finite.size and (finite > 0).all():  # losses fall by orders of magnitude; estimated TC terms can be < 0
            ax.set_yscale("log")
            for axis_ticks in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis_ticks(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(frameon=False)
    return figure


__all__ = ["training_curves_figure"]
