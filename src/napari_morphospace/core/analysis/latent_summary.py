"""Everything the Statistics panel shows about a latent table, computed in one call.

Combines the functions of :mod:`core.analysis.statistics` for one table and two chosen
groups: per-dimension KL and the count of active units, the empirical KL of
the latent means to N(0, I), Cohen's d with 95 % confidence intervals ranked
by |d|, and a cross-validated linear probe. Works the same on a latent table
and on a Labels layer's features; :func:`~napari_morphospace.core.figures.statistics.summary_figures`
draws the panel's figures of a :class:`LatentSummary`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import InputError
from . import statistics
from .cell_table import (
    is_measured_feature,
    latent_columns,
    mu_columns,
    original_name,
    require_mu_columns,
    rows_with_latents,
)

#: Columns offered for choosing the groups to compare.
GROUP_COLUMNS = ("group", "annotation", "cluster")


@dataclass
class LatentSummary:
    """The statistics of one latent table, and of two of its groups: a ``condition`` against a ``reference``.

    Cohen's d is ``(mean of condition − mean of reference) / pooled SD``
    (ddof 1, sign kept, per dimension): d > 0 means the dimension is higher in
    the condition. The Statistics panel, the HTML report and the demo all
    compare this way. With one group (exploring one condition) ``condition``
    and ``effects`` are None and the dimensions are ranked by their KL to the
    prior instead.
    """

    names: list[str]
    group_column: str
    condition: Any
    reference: Any
    n_condition: int
    n_reference: int
    n_cells: int
    effects: statistics.EffectSizes | None
    ranking: list[int]
    ranked_by: str
    active_units: int
    empirical_kl: float | None
    #: Posterior means of every cell with latents (table order), and each cell's group.
    mu: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0)))
    groups: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    logvar: np.ndarray | None = field(repr=False, default=None)
    kl: np.ndarray | None = None
    probe: dict | None = None
    notes: list[str] = field(default_factory=list)
    #: The columns are features measured elsewhere (``feature:*``), not a model's latents.
    measured: bool = False

    @property
    def group_names(self) -> list[Any]:
        """The compared groups, reference first (one name with one group)."""
        return [self.reference] if self.condition is None else [self.reference, self.condition]

    def require_two_groups(self) -> statistics.EffectSizes:
        """The effect sizes of the two compared groups; refused (with what to do) when the cells form one group."""
        if self.condition is None or self.effects is None:
            raise InputError(
                f"the cells form one group ({self.reference!r}); Cohen's d compares two groups. "
                "Give the images of each condition their own group (--group, or a group per layer in the Cells widget)"
            )
        return self.effects

    @property
    def constant_names(self) -> list[str]:
        """Dimensions where d is undefined (zero variance in both groups)."""
        if self.effects is None:
            return []
        return [n for n, c in zip(self.names, self.effects.constant, strict=True) if c]

    def top(self, count: int) -> list[int]:
        """The ``count`` first dimensions of :attr:`ranking` (largest |d|, defined ones only; or largest KL)."""
        return self.ranking[:count]

    def overview_text(self) -> str:
        """Active units and empirical KL, as lines for the panel (for measured features: only what applies)."""
        if self.measured:  # in their own units, not a posterior: no prior to compare with
            return "\n".join(
                [
                    f"{self.n_cells} cells, {len(self.names)} measured features (from a table; "
                    "KL and active units apply to a model's latents only)"
                ]
                + self.notes
            )
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
        e = self.require_two_groups()
        lines = [
            (
                f"{self.condition!r} ({self.n_condition} cells) vs {self.reference!r} ({self.n_reference} cells), "
                f"by {self.group_column!r}; d > 0: higher in {self.condition!r}"
            )
        ]
        for i in self.top(count):
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
            f"Linear probe ({folds}-fold cross-validated logistic regression on μ, {how}, "
            f"{self.condition!r} vs {self.reference!r}):\n"
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
            "the table has no mu_* columns; embed the cells with a model bundle first (Embed widget or "
            "'morphospace embed'), "
            "or open a table of measured features (Analysis widget, Open feature table…)"
        )
    logvar = mu_columns(table, "logvar_")
    if len(logvar) != len(mu):
        logvar = []
    rows, left_out = rows_with_latents(table)
    statistics.require_finite(rows[mu + logvar].to_numpy(dtype=float), mu + logvar)
    return rows, mu, logvar, left_out


def default_groups(table: pd.DataFrame, group_column: str) -> tuple[Any, Any]:
    """``(condition, reference)`` to compare when the user chose none: the second and first group in table order.

    The first group in the table is the one whose images were added first,
    usually the control; with one group the condition is None.
    """
    if group_column not in table.columns:
        return None, "all cells"
    values = list(pd.unique(table[group_column].dropna()))
    if not values:
        raise InputError(f"column {group_column!r} has no values; give the cells a group to compare")
    return (values[1] if len(values) > 1 else None), values[0]


def summarise_latents(
    table: pd.DataFrame,
    group_column: str = "group",
    condition: Any = None,
    reference: Any = None,
    *,
    folds: int = 5,
    seed: int = 0,
) -> LatentSummary:
    """Every statistic of the latent table, comparing ``condition`` against ``reference`` of ``group_column``.

    Without groups named, the second group in table order is compared with
    the first (:func:`default_groups`); with one group, only the statistics
    that need no comparison are computed. KL per dimension, active units and
    the empirical KL use all cells; Cohen's d (condition − reference) and the
    probe use the cells of the two groups. The probe runs with ``folds`` folds,
    fewer when a group is smaller, and is skipped below 2.

    Raises
    ------
    InputError
        No ``mu_*`` columns, NaN/inf values (the columns are named), the same
        group twice, a group with fewer than 2 cells.
    """
    if condition is None and reference is None:
        condition, reference = default_groups(table, group_column)
    elif condition == reference:
        raise InputError(f"choose two different groups to compare (both are {condition!r})")
    rows, mu, logvar, left_out = latent_rows(table)
    notes = [f"{left_out} object(s) without latents left out"] if left_out else []
    means = rows[mu].to_numpy(dtype=float)
    log_variances = rows[logvar].to_numpy(dtype=float) if logvar else None
    groups = (
        rows[group_column].to_numpy() if group_column in rows.columns else np.full(len(rows), reference, dtype=object)
    )
    kl = statistics.kl_per_dimension(means, log_variances) if log_variances is not None else None
    empirical = statistics.empirical_kl_to_standard_normal(means) if len(means) > len(mu) else None
    common: dict[str, Any] = {
        "names": [original_name(c) for c in mu],
        "group_column": group_column,
        "n_cells": len(rows),
        "active_units": statistics.active_units(means),
        "empirical_kl": empirical,
        "mu": means,
        "groups": groups,
        "logvar": log_variances,
        "kl": kl,
        "notes": notes,
        "measured": is_measured_feature(mu[0]),
    }
    if condition is None:  # one group: rank by what the model uses
        if common["measured"]:
            ranked_by = "column order (a feature table has no posterior to rank by KL)"
        else:
            ranked_by = "KL to the prior" if kl is not None else "index (the table has no logvar_* columns for the KL)"
        ranking = [int(i) for i in statistics.order_dimensions(means, log_variances)]
        return LatentSummary(
            condition=None,
            reference=reference,
            n_condition=0,
            n_reference=len(rows),
            effects=None,
            ranking=ranking,
            ranked_by=ranked_by,
            **common,
        )
    values_condition, values_reference = statistics.group_arrays(rows, mu, group_column, [condition, reference])
    effects = statistics.cohens_d(values_condition, values_reference, names=mu)
    ranking = [int(i) for i in statistics.rank_dimensions(effects.d) if not effects.constant[i]]
    probe_folds = min(folds, len(values_condition), len(values_reference))
    probe = None
    if probe_folds >= 2:
        x = np.concatenate([values_condition, values_reference])
        y = np.array([1] * len(values_condition) + [0] * len(values_reference))
        sources = None
        if "source" in rows.columns:
            sources = np.concatenate(
                [rows.loc[(rows[group_column] == g).to_numpy(), "source"].to_numpy() for g in (condition, reference)]
            )
        probe = statistics.linear_probe(x, y, folds=probe_folds, seed=seed, sources=sources)
    return LatentSummary(
        condition=condition,
        reference=reference,
        n_condition=len(values_condition),
        n_reference=len(values_reference),
        effects=effects,
        ranking=ranking,
        ranked_by="|Cohen's d|",
        probe=probe,
        **common,
    )


# --------------------------------------------------------------------------- ranking dimensions for sliders

RankBy = Literal["kl", "cohens_d", "index"]


def ranked_dimensions(
    latent_table: pd.DataFrame,
    *,
    by: RankBy = "kl",
    groups: Sequence[Any] = (),
    group_column: str = "group",
) -> tuple[np.ndarray, np.ndarray]:
    """All latent dimensions, most informative first, with the score they were ranked by.

    Parameters
    ----------
    latent_table : pandas.DataFrame
        ``mu_0..mu_{D-1}`` (and ``logvar_*`` for ``by="kl"``), one row per cell.
    by : {"kl", "cohens_d", "index"}
        ``"kl"``: decreasing mean KL(q(z_k|x) ‖ N(0, 1)) (needs the log-variances);
        ``"cohens_d"``: decreasing |Cohen's d| between ``groups[0]`` and ``groups[1]``
        of ``group_column`` (undefined d last); ``"index"``: natural order.

    Returns
    -------
    order : np.ndarray of int
        Dimension indices, best first.
    score : np.ndarray of float
        The score of every dimension in dimension order (KL in nats, Cohen's d
        with its sign, or NaN for ``"index"``).
    """
    mu_cols = require_mu_columns(latent_table)
    if by == "index":
        return np.arange(len(mu_cols)), np.full(len(mu_cols), np.nan)
    if by == "kl":
        lv_cols = mu_columns(latent_table, "logvar_")
        if len(lv_cols) != len(mu_cols):
            raise InputError(
                "ranking by KL needs logvar_0, logvar_1, ... next to the mu columns; "
                "embed the crops with the model again, or rank by Cohen's d between two groups"
            )
        kl = statistics.kl_per_dimension(latent_table[mu_cols].to_numpy(float), latent_table[lv_cols].to_numpy(float))
        return np.argsort(-kl, kind="stable"), kl
    if by == "cohens_d":
        if len(groups) != 2:
            raise InputError(f"ranking by Cohen's d needs two groups to compare; got {list(groups)}")
        a, b = statistics.group_arrays(latent_table, mu_cols, group_column, list(groups))
        d = statistics.cohens_d(a, b, names=mu_cols).d
        return statistics.rank_dimensions(d), d
    raise InputError(f"unknown ranking {by!r}; choose 'kl', 'cohens_d' or 'index'")


def top_dimensions(latent_table: pd.DataFrame, k: int | None, **ranking: Any) -> np.ndarray:
    """The ``k`` best dimensions of :func:`ranked_dimensions` (all of them when ``k`` is None)."""
    order, _ = ranked_dimensions(latent_table, **ranking)
    if k is not None and k < 1:
        raise InputError(f"show at least one dimension (got k={k})")
    return order if k is None else order[:k]


__all__ = [
    "RankBy",
    "ranked_dimensions",
    "top_dimensions",
    "GROUP_COLUMNS",
    "LatentSummary",
    "default_groups",
    "group_choices",
    "latent_rows",
    "summarise_latents",
]
