"""Figures of a latent space's statistics: per-dimension KL, Cohen's d forest plot, KDE and violin plots.

The numbers come from :mod:`~napari_morphospace.core.analysis.statistics` and
:mod:`~napari_morphospace.core.analysis.latent_summary`. Figures are plain
``matplotlib.figure.Figure`` objects (no pyplot global state), so they can be
shown in a dock widget or saved as PNG/SVG from a script.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from ..analysis.latent_summary import LatentSummary
from ..analysis.statistics import EffectSizes, kde_curves, rank_dimensions
from ..errors import InputError


def _dimension_names(count: int, names: Sequence[str] | None) -> list[str]:
    return list(names) if names is not None else [f"dim {i}" for i in range(count)]


def _columns(values: ArrayLike) -> np.ndarray:
    """``values`` as (samples, dimensions); one dimension for a 1D array."""
    array = np.asarray(values, dtype=float)
    return array[:, None] if array.ndim == 1 else array


def kl_bar_figure(kl: np.ndarray, names: Sequence[str] | None = None) -> Figure:
    """Bar chart of the per-dimension KL, sorted from most to least informative."""
    kl = np.asarray(kl, dtype=float)
    labels = _dimension_names(len(kl), names)
    order = np.argsort(-kl, kind="stable")
    fig = Figure(figsize=(max(4.0, 0.3 * len(kl)), 3.0), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(kl)), kl[order], color="tab:blue")
    ax.set_xticks(range(len(kl)), [labels[i] for i in order], rotation=90)
    ax.set_ylabel("KL to N(0, 1) [nats]")
    ax.set_title("Per-dimension KL (sorted)")
    return fig


def forest_figure(effects: EffectSizes, names: Sequence[str] | None = None, top: int | None = None) -> Figure:
    """Forest plot of Cohen's d with 95 % CIs, largest |d| on top; undefined dimensions are left out."""
    labels = _dimension_names(len(effects.d), names)
    order = [i for i in rank_dimensions(effects.d) if not effects.constant[i]][:top]
    fig = Figure(figsize=(4.5, max(2.0, 0.28 * len(order) + 1)), layout="constrained")
    ax = fig.add_subplot()
    rows = np.arange(len(order))[::-1]
    d = effects.d[order]
    ax.errorbar(
        d, rows, xerr=[d - effects.ci_low[order], effects.ci_high[order] - d], fmt="o", color="black", capsize=3
    )
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(rows, [labels[i] for i in order])
    ax.set_xlabel("Cohen's d (95 % CI)")
    ax.set_title("Effect size per dimension, ranked by |d|")
    return fig


def kde_figure(values: ArrayLike, groups: ArrayLike, dims: Sequence[int], names: Sequence[str] | None = None) -> Figure:
    """One panel per dimension in ``dims`` with the KDE curve of every group (:func:`kde_curves`)."""
    values = _columns(values)
    labels = _dimension_names(values.shape[1], names)
    fig = Figure(figsize=(3.0 * len(dims), 2.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(dims), squeeze=False).ravel())
    for ax, dim in zip(axes, dims, strict=True):
        grid, densities = kde_curves(values[:, dim], groups)
        for group, density in densities.items():
            ax.plot(grid, density, label=str(group))
            ax.fill_between(grid, density, alpha=0.2)
        ax.set_title(labels[dim])
        ax.set_xlabel("value")
    axes[0].set_ylabel("density")
    axes[0].legend(frameon=False)
    return fig


def violin_figure(
    values: ArrayLike, groups: ArrayLike, dims: Sequence[int], names: Sequence[str] | None = None
) -> Figure:
    """Violin plots per group for each dimension in ``dims`` (the macrophage study shows the top three)."""
    values = _columns(values)
    labels = _dimension_names(values.shape[1], names)
    groups = np.asarray(groups)
    group_names = list(pd.unique(groups))
    fig = Figure(figsize=(3.0 * len(dims), 2.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(dims), squeeze=False).ravel())
    for ax, dim in zip(axes, dims, strict=True):
        ax.violinplot([values[groups == g, dim] for g in group_names], showmedians=True)
        ax.set_xticks(range(1, len(group_names) + 1), [str(g) for g in group_names])
        ax.set_title(labels[dim])
    return fig


def summary_figures(summary: LatentSummary, *, top: int = 3) -> dict[str, Figure | str]:
    """The Statistics panel's figures of a :class:`LatentSummary` by name: ``kl``, ``forest``, ``kde``, ``violin``.

    The KDE and violin plots show the cells of the two compared groups,
    reference first (the same colours in every figure), in the ``top``
    dimensions of the summary's ranking. A figure that cannot be drawn (no
    log-variances; a group without spread in a top dimension) is replaced by
    the message saying why, so the others still show.
    """
    summary.require_two_groups()
    pair = np.flatnonzero(np.isin(summary.groups, summary.group_names))
    pair = pair[np.argsort(summary.groups[pair] != summary.reference, kind="stable")]
    values, groups = summary.mu[pair], summary.groups[pair]
    dims = summary.top(top)
    figures: dict[str, Figure | str] = {}
    figures["kl"] = (
        kl_bar_figure(summary.kl, summary.names)
        if summary.kl is not None
        else "Measured features have no posterior: the per-dimension KL applies to a model's latents only."
        if summary.measured
        else "Per-dimension KL needs logvar_* columns; embed the cells with a model bundle to get them."
    )
    figures["forest"] = (
        forest_figure(summary.effects, summary.names)
        if summary.effects is not None and summary.ranking
        else "Every dimension has zero variance in both groups: Cohen's d is undefined."
    )
    for name, make in (("kde", kde_figure), ("violin", violin_figure)):
        if not dims:
            figures[name] = "No dimension with a defined effect size to plot."
            continue
        try:
            figures[name] = make(values, groups, dims if name == "kde" else dims[:3], summary.names)
        except InputError as err:
            figures[name] = f"Cannot draw the {name.upper()} plot: {err}"
    return figures


__all__ = ["forest_figure", "kde_figure", "kl_bar_figure", "summary_figures", "violin_figure"]
