"""Everything the Statistics panel shows about a latent table, computed in one call.

Combines the functions of :mod:`core.analysis.statistics` for one table and two chosen
groups: per-dimension KL and the count of active units, the empirical KL of
the latent means to N(0, I), Cohen's d with 95 % confidence intervals ranked
by |d|, and a cross-validated linear probe; then makes the figures (plain
matplotlib ``Figure`` objects) and writes them as PNG and SVG. Works the same
on a latent table and on a Labels layer's features.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..errors import InputError
from . import statistics
from .cell_table import (
    is_measured_feature,
    latent_columns,
    mu_columns,
    original_name,
    rows_with_latents,
)

#: Columns offered for choosing the groups to compare.
GROUP_COLUMNS = ("group", "annotation", "cluster")


@dataclass
class LatentSummary:
    """The statistics of one latent table for two groups ``a`` and ``b`` (d > 0: ``a`` is higher)."""

    names: list[str]
    group_column: str
    a: Any
    b: Any
    n_a: int
    n_b: int
    n_cells: int
    effects: statistics.EffectSizes
    ranking: list[int]
    active_units: int
    empirical_kl: float | None
    kl: np.ndarray | None = None
    probe: dict | None = None
    notes: list[str] = field(default_factory=list)
    #: The columns are features measured elsewhere (``feature:*``), not a model's latents.
    measured: bool = False

    @property
    def constant_names(self) -> list[str]:
        return [n for n, c in zip(self.names, self.effects.constant) if c]

    def top(self, count: int) -> list[int]:
        """The ``count`` dimensions with the largest |d| (defined ones only)."""
        return self.ranking[:count]

    def overview_text(self) -> str:
        """Active units and empirical KL, as lines for the panel (for measured features: only what applies)."""
        if self.measured:  # in their own units, not a posterior: no prior to compare with
            return "\n".join([f"{self.n_cells} cells, {len(self.names)} measured features (from a table; "
                               "KL and active units apply to a model's latents only)"] + self.notes)  # fmt: skip
        lines = [f"{self.n_cells} cells, {len(self.names)} latent dimensions"]
        lines.append(f"Active units (Var of μ > 0.01): {self.active_units} of {len(self.names)}")
        if self.empirical_kl is None:
            lines.append("Empirical KL to N(0, I): not computed (needs more cells than dimensions)")
        elif math.isinf(self.empirical_kl):
            lines.append("Empirical KL to N(0, I): ∞ (a constant dimension makes the fitted covariance singular)")
        else:
            lines.append(f"Empirical KL to N(0, I): {self.empirical_kl:.3g} nats")
        if self.kl is None:
            lines.append("Per-dimension KL: needs logvar_* columns (embed with a model to get them)")
        return "\n".join(lines + self.notes)

    def effect_text(self, count: int = 5) -> str:
        """The groups, the largest effects and the dimensions where d is undefined."""
        lines = [f"{self.a!r} ({self.n_a} cells) vs {self.b!r} ({self.n_b} cells), by {self.group_column!r}; d > 0: {self.a!r} higher"]
        for i in self.top(count):
            e = self.effects
            lines.append(f"{self.names[i]}: d = {e.d[i]:+.3f} [{e.ci_low[i]:+.3f}, {e.ci_high[i]:+.3f}]")
        if self.constant_names:
            lines.append(f"d undefined (zero variance in both groups), left out: {', '.join(self.constant_names)}")
        return "\n".join(lines)

    def probe_text(self) -> str:
        if self.probe is None:
            return "Linear probe: not computed (each group needs at least 2 cells per fold, 2 folds)"
        folds = len(self.probe["per_fold"]["balanced_accuracy"])
        how = "folds grouped by source image" if self.probe.get("grouped") else "random folds"
        text = (
            f"Linear probe ({folds}-fold cross-validated logistic regression on μ, {how}, {self.a!r} vs {self.b!r}):\n"
            f"balanced accuracy {self.probe['balanced_accuracy']:.3f} (chance 0.5), "
            f"AUROC {self.probe['auroc']:.3f}"
        )
        return text + (f"\nNote: {self.probe['note']}" if self.probe.get("note") else "")


def group_choices(table: pd.DataFrame, column: str) -> list[Any]:
    """The distinct non-missing values of ``column`` (sorted as text), for the group combo boxes."""
    if column not in table.columns:
        return []
    values = pd.unique(table[column].dropna())
    return sorted(values, key=str)


def latent_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str], int]:
    """The rows with latents, the latent (``mu_*`` or ``feature:*``) and ``logvar_*`` names, and how many rows had none.

    Rows where every latent column is missing are objects that were never
    embedded (a Labels layer's features list every label); they are left out.
    Any other missing or infinite value is refused, naming the columns.
    """
    mu = latent_columns(table)
    if not mu:
        raise InputError(
            "the table has no mu_* columns; embed the cells with a model bundle first (Embed widget or 'morphospace embed'), "
            "or open a table of measured features (Analysis widget, Open feature table…)"
        )
    logvar = mu_columns(table, "logvar_")
    if len(logvar) != len(mu):
        logvar = []
    rows, left_out = rows_with_latents(table)
    statistics.require_finite(rows[mu + logvar].to_numpy(dtype=float), mu + logvar)
    return rows, mu, logvar, left_out


def summarise_latents(
    table: pd.DataFrame, group_column: str, a: Any, b: Any, *, folds: int = 5, seed: int = 0
) -> LatentSummary:
    """Compute every statistic of the panel for groups ``a`` and ``b`` of ``group_column``.

    KL per dimension, active units and the empirical KL use all cells; Cohen's
    d and the probe use the cells of the two groups. The probe runs with
    ``folds`` folds, fewer when a group is smaller, and is skipped below 2.

    Raises
    ------
    InputError
        No ``mu_*`` columns, NaN/inf values (the columns are named), the same
        group twice, a group with fewer than 2 cells.
    """
    if a == b:
        raise InputError(f"choose two different groups to compare (both are {a!r})")
    rows, mu, logvar, left_out = latent_rows(table)
    notes = [f"{left_out} object(s) without latents left out"] if left_out else []
    values_a, values_b = statistics.group_arrays(rows, mu, group_column, [a, b])
    effects = statistics.cohens_d(values_a, values_b, names=mu)
    ranking = [int(i) for i in statistics.rank_dimensions(effects.d) if not effects.constant[i]]
    means = rows[mu].to_numpy(dtype=float)
    kl = statistics.kl_per_dimension(means, rows[logvar].to_numpy(dtype=float)) if logvar else None
    empirical = statistics.empirical_kl_to_standard_normal(means) if len(means) > len(mu) else None
    probe_folds = min(folds, len(values_a), len(values_b))
    probe = None
    if probe_folds >= 2:
        x = np.concatenate([values_a, values_b])
        y = np.array([0] * len(values_a) + [1] * len(values_b))
        sources = None
        if "source" in rows.columns:
            sources = np.concatenate([rows.loc[(rows[group_column] == g).to_numpy(), "source"].to_numpy() for g in (a, b)])
        probe = statistics.linear_probe(x, y, folds=probe_folds, seed=seed, sources=sources)
    return LatentSummary(
        names=[original_name(c) for c in mu], group_column=group_column, a=a, b=b, n_a=len(values_a), n_b=len(values_b), n_cells=len(rows),
        effects=effects, ranking=ranking, active_units=statistics.active_units(means), empirical_kl=empirical,
        kl=kl, probe=probe, notes=notes, measured=is_measured_feature(mu[0]),
    )  # fmt: skip


def summary_figures(summary: LatentSummary, table: pd.DataFrame, *, top: int = 3) -> dict[str, Figure | str]:
    """The panel's figures by name: ``kl``, ``forest``, ``kde``, ``violin``.

    A figure that cannot be drawn (no log-variances; a group without spread in
    a top dimension) is replaced by the message saying why, so the others still show.
    """
    rows, mu, _, _ = latent_rows(table)
    pair = rows[rows[summary.group_column].isin([summary.a, summary.b])]
    values = pair[mu].to_numpy(dtype=float)
    groups = pair[summary.group_column].to_numpy()
    order = np.argsort(groups != summary.a, kind="stable")  # group a first: same colours in every figure
    values, groups = values[order], groups[order]
    dims = summary.top(top)
    figures: dict[str, Figure | str] = {}
    figures["kl"] = (
        statistics.kl_bar_figure(summary.kl, summary.names)
        if summary.kl is not None
        else "Measured features have no posterior: the per-dimension KL applies to a model's latents only."
        if summary.measured
        else "Per-dimension KL needs logvar_* columns; embed the cells with a model bundle to get them."
    )
    figures["forest"] = (
        statistics.forest_figure(summary.effects, summary.names)
        if summary.ranking
        else "Every dimension has zero variance in both groups: Cohen's d is undefined."
    )
    for name, make in (("kde", statistics.kde_figure), ("violin", statistics.violin_figure)):
        if not dims:
            figures[name] = "No dimension with a defined effect size to plot."
            continue
        try:
            figures[name] = make(values, groups, dims if name == "kde" else dims[:3], summary.names)
        except InputError as err:
            figures[name] = f"Cannot draw the {name.upper()} plot: {err}"
    return figures


def export_figures(figures: dict[str, Figure | str], folder: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Save every figure of ``figures`` as ``<name>.png`` and ``<name>.svg`` in ``folder``; returns the paths.

    Messages standing in for figures are skipped. Existing files are refused
    unless ``overwrite``, before anything is written.
    """
    folder = Path(folder)
    targets = [(figure, folder / f"{name}.{kind}") for name, figure in figures.items()
               if isinstance(figure, Figure) for kind in ("png", "svg")]  # fmt: skip
    if not targets:
        raise InputError("there are no figures to export; compute the statistics first")
    existing = [p.name for _, p in targets if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{folder} already has {', '.join(existing)}; choose another folder or confirm overwriting")
    folder.mkdir(parents=True, exist_ok=True)
    for figure, path in targets:
        figure.savefig(path, dpi=150 if path.suffix == ".png" else None)
    return [p for _, p in targets]


__all__ = ["GROUP_COLUMNS", "LatentSummary", "group_choices", "latent_rows", "summarise_latents", "summary_figures", "export_figures"]
