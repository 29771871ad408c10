"""Inference between two conditions in a latent space: is a difference real, and how large is it?

Effect sizes (``core.analysis.statistics``) say how far two groups of cells lie apart;
this module says how sure we can be:

- a **permutation test per dimension** of the difference of the means, with
  the two-sided p-value; the condition labels are shuffled between the units
  (cells, or whole images), so the test assumes nothing about the shape of
  the distributions. Its p-value is the same as that of Cohen's d: with the
  pooled data fixed, |d| is a monotone function of |mean difference| (the
  total sum of squares is the within-group plus the between-group part);
- **Benjamini–Hochberg** adjusted p-values (q) across the dimensions, so that
  among the dimensions called significant the expected share of false ones is
  at most the chosen level;
- **bootstrap confidence intervals** (BCa, ``scipy.stats.bootstrap``) of the
  mean difference and of Cohen's d, resampling the units within each group;
- a **distance between the two distributions in the whole latent space**
  (energy distance, or MMD with a Gaussian kernel of median-heuristic
  bandwidth) with a permutation p-value: it also sees differences that no
  single dimension shows (a change of spread, of correlation, of shape).

Cells of one image are not independent: they share the preparation, the
staining, the focus and the illumination of their field. A per-cell test
then takes image-to-image variation for an effect of the condition and its
p-values are too small. With several images per condition, test **per
image**: the condition labels are permuted between whole images and the
bootstrap resamples whole images, while the statistics (cell means, Cohen's
d over cells) stay the same numbers. The test is refused when a condition has
too few images for any p-value to reach the chosen level.

Everything is numpy/scipy, vectorised over permutations and chunked so that
large tables fit in memory; one ``seed`` makes the result reproducible.

References: Phipson & Smyth (2010) for ``(1 + b) / (1 + P)`` p-values;
Benjamini & Hochberg (1995); Efron & Tibshirani (1993) for BCa; Székely &
Rizzo (2004) for the energy distance; Gretton et al. (2012) for MMD.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import pdist, squareform

from ..config import to_dict
from ..errors import InputError
from . import statistics

#: Elements of the largest temporary array a chunk of permutations or resamples may hold (16 MiB of float64).
CHUNK_ELEMENTS = 2**21
#: Above this many units the bootstrap uses percentile intervals: BCa's jackknife grows with the square of the units.
BCA_MAX_UNITS = 5000
DISTANCES = ("energy", "mmd")


@dataclass
class InferenceSettings:
    """How the two conditions are compared.

    ``permutations``: random relabellings per test (all of them, exactly, when
    there are no more distinct ones than this). ``resamples``: bootstrap
    resamples. ``fdr``: the level q of the Benjamini–Hochberg control, also the
    level at which a dimension is called significant. ``confidence``: of the
    bootstrap intervals. ``distance``: ``"energy"`` or ``"mmd"`` for the
    whole-space test, on at most ``distance_cells`` cells per condition (a
    random subsample above that: the distance matrix grows with the square).
    ``by_image``: treat whole images (the values of ``image_column``) as the
    independent units instead of cells. ``seed``: of every random choice.
    """

    permutations: int = 2000
    resamples: int = 2000
    fdr: float = 0.05
    confidence: float = 0.95
    distance: Literal["energy", "mmd"] = "energy"
    distance_cells: int = 500
    by_image: bool = False
    image_column: str = "source"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.permutations < 100:
            raise InputError(f"permutations is {self.permutations}; use at least 100 (the default is 2000)")
        if self.resamples < 100:
            raise InputError(
                f"resamples is {self.resamples}; use at least 100 bootstrap resamples (the default is 2000)"
            )
        for name in ("fdr", "confidence"):
            if not 0 < getattr(self, name) < 1:
                raise InputError(f"{name} is {getattr(self, name)}; use a level between 0 and 1, e.g. 0.05 or 0.95")
        if self.distance not in DISTANCES:
            raise InputError(f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}")
        if self.distance_cells < 10:
            raise InputError(f"distance_cells is {self.distance_cells}; use at least 10 cells per condition")


@dataclass
class DimensionTests:
    """Per latent dimension: the effects of group a against group b, their intervals, p and q.

    ``d`` is NaN (and ``constant`` True) where both groups have zero variance.
    ``significant`` is ``q <= fdr``.
    """

    names: list[str]
    mean_difference: np.ndarray
    mean_difference_low: np.ndarray
    mean_difference_high: np.ndarray
    d: np.ndarray
    d_low: np.ndarray
    d_high: np.ndarray
    p: np.ndarray
    q: np.ndarray
    significant: np.ndarray
    constant: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per dimension, in dimension order (the CSV the command line writes)."""
        return pd.DataFrame(
            {
                "dimension": self.names,
                "mean_difference": self.mean_difference,
                "mean_difference_low": self.mean_difference_low,
                "mean_difference_high": self.mean_difference_high,
                "d": self.d,
                "d_low": self.d_low,
                "d_high": self.d_high,
                "p": self.p,
                "q": self.q,
                "significant": self.significant,
            }
        )

    def ranking(self) -> list[int]:
        """Dimensions by increasing p, ties by decreasing |d|."""
        magnitude = np.nan_to_num(np.abs(self.d), nan=-1.0)
        return [int(i) for i in np.lexsort((-magnitude, self.p))]


@dataclass
class DistanceTest:
    """The distance between the two conditions' distributions in the whole latent space, and its p-value.

    ``value``: the energy distance 2 E|X − Y| − E|X − X'| − E|Y − Y'| or the
    squared MMD, both as V-statistics over the cells used (``cells_a``,
    ``cells_b``). ``bandwidth``: the Gaussian kernel's σ (MMD only).
    """

    kind: str
    value: float
    p: float
    cells_a: int
    cells_b: int
    bandwidth: float | None = None


@dataclass
class GroupComparison:
    """The inference between group ``a`` and group ``b`` of ``group_column`` (effects > 0: ``a`` is higher).

    ``unit`` is ``"cell"`` or ``"image"``: what was permuted and resampled.
    ``units_a``/``units_b`` count those units, ``cells_a``/``cells_b`` the cells.
    ``arrangements`` is the number of relabellings each p-value is based on,
    all possible ones when ``exact``.
    """

    group_column: str
    a: Any
    b: Any
    unit: str
    cells_a: int
    cells_b: int
    units_a: int
    units_b: int
    arrangements: int
    exact: bool
    ci_method: str
    dimensions: DimensionTests
    distance: DistanceTest
    settings: InferenceSettings
    notes: list[str] = field(default_factory=list)

    def significant_names(self) -> list[str]:
        return [self.dimensions.names[i] for i in self.dimensions.ranking() if self.dimensions.significant[i]]

    def summary_lines(self) -> list[str]:
        """What was tested, what was found, and what the result assumes, as plain lines."""
        s = self.settings
        units = (
            f"{self.units_a} vs {self.units_b} images ({self.cells_a} vs {self.cells_b} cells)"
            if self.unit == "image"
            else f"{self.cells_a} vs {self.cells_b} cells"
        )
        kind = "all" if self.exact else "random"
        significant = self.significant_names()
        distance = self.distance
        name = (
            "energy distance" if distance.kind == "energy" else f"MMD² (Gaussian kernel, σ = {distance.bandwidth:.3g})"
        )
        return [
            f"{self.a!r} vs {self.b!r} by {self.group_column!r}, per {self.unit}: {units}; effects > 0: "
            f"{self.a!r} higher",
            f"Permutation tests ({self.arrangements} {kind} relabellings of the {self.unit}s), "
            f"Benjamini–Hochberg q ≤ {s.fdr}: {len(significant)} of {len(self.dimensions.names)} dimensions significant"
            + (f" ({', '.join(significant[:8])}{' …' if len(significant) > 8 else ''})" if significant else ""),
            f"Whole latent space: {name} {distance.value:.4g}, permutation p = {distance.p:.3g} "
            f"({distance.cells_a} vs {distance.cells_b} cells)",
            f"{s.confidence:.0%} {self.ci_method} bootstrap intervals ({s.resamples} resamples of {self.unit}s); "
            f"seed {s.seed}",
            *self.notes,
        ]

    def to_json(self) -> dict[str, Any]:
        """Everything as JSON-ready builtins (NaN stays NaN)."""
        table = self.dimensions.to_frame()
        return {
            "group_column": self.group_column,
            "a": _builtin(self.a),
            "b": _builtin(self.b),
            "unit": self.unit,
            "cells": {"a": self.cells_a, "b": self.cells_b},
            "units": {"a": self.units_a, "b": self.units_b},
            "arrangements": self.arrangements,
            "exact": self.exact,
            "ci_method": self.ci_method,
            "settings": to_dict(self.settings),
            "distance": {
                "kind": self.distance.kind,
                "value": self.distance.value,
                "p": self.distance.p,
                "cells_a": self.distance.cells_a,
                "cells_b": self.distance.cells_b,
                "bandwidth": self.distance.bandwidth,
            },
            "dimensions": [{k: _builtin(v) for k, v in row.items()} for row in table.to_dict(orient="records")],
            "notes": list(self.notes),
        }


def _builtin(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------- units: cells or whole images


@dataclass
class Units:
    """The independent units of a comparison and the sufficient statistics of their cells.

    ``counts[u]`` cells, ``sums[u]`` and ``squares[u]`` (per dimension) of the
    values centred on the mean of all cells (for numerical stability), ``in_a[u]``
    whether the unit belongs to group a, ``of_cell[i]`` the unit of cell i.
    """

    counts: np.ndarray
    sums: np.ndarray
    squares: np.ndarray
    in_a: np.ndarray
    of_cell: np.ndarray

    @property
    def count_a(self) -> int:
        return int(self.in_a.sum())

    @property
    def count_b(self) -> int:
        return int((~self.in_a).sum())


def make_units(values: np.ndarray, in_a: np.ndarray, unit_ids: np.ndarray | None = None) -> Units:
    """Group the cells (rows of ``values``) into units: one per cell, or one per distinct ``unit_ids`` value.

    Raises
    ------
    InputError
        When a unit holds cells of both groups.
    """
    values = np.asarray(values, dtype=float)
    in_a = np.asarray(in_a, dtype=bool)
    centred = values - values.mean(axis=0)
    if unit_ids is None:
        of_cell = np.arange(len(values))
    else:
        names, of_cell = np.unique(np.asarray(unit_ids).astype(str), return_inverse=True)
        share_a = np.bincount(of_cell, weights=in_a, minlength=len(names)) / np.bincount(of_cell, minlength=len(names))
        mixed = names[(share_a > 0) & (share_a < 1)]
        if len(mixed):
            raise InputError(
                f"image(s) {', '.join(map(repr, mixed[:5].tolist()))} hold cells of both conditions; the per-image "
                "test needs every image in one condition (check the image column, or test per cell)"
            )
    count = int(of_cell.max()) + 1 if len(of_cell) else 0
    sums = np.zeros((count, values.shape[1]))
    squares = np.zeros_like(sums)
    np.add.at(sums, of_cell, centred)
    np.add.at(squares, of_cell, centred**2)
    unit_in_a = np.zeros(count, dtype=bool)
    unit_in_a[of_cell[in_a]] = True
    return Units(np.bincount(of_cell, minlength=count).astype(float), sums, squares, unit_in_a, of_cell)


def arrangement_count(units_a: int, units_b: int) -> int:
    """The number of distinct ways to give ``units_a`` of ``units_a + units_b`` units the label a."""
    return math.comb(units_a + units_b, units_a)


def smallest_p_value(units_a: int, units_b: int) -> float:
    """The smallest two-sided p-value an exact permutation test can give.

    The observed arrangement is one of ``arrangement_count`` equally likely
    ones; with as many units in both groups, swapping the labels gives the
    same |statistic|, so at least two arrangements are as extreme.
    """
    return (2 if units_a == units_b else 1) / arrangement_count(units_a, units_b)


def require_enough_units(units_a: int, units_b: int, level: float, *, unit: str, a: Any, b: Any) -> None:
    """Refuse a comparison whose exact permutation test could not give any p-value at or below ``level``."""
    smallest = smallest_p_value(units_a, units_b)
    if smallest <= level:
        return
    more = next(k for k in itertools.count(2) if smallest_p_value(k, k) <= level)
    advice = (
        f"image at least {more} fields per condition, or test per cell (which treats the cells of one image "
        "as independent)"
        if unit == "image"
        else f"use at least {more} cells per condition"
    )
    raise InputError(
        f"{a!r} has {units_a} {unit}(s) and {b!r} has {units_b}: there are only "
        f"{arrangement_count(units_a, units_b)} ways to assign the condition labels to the {unit}s, so the smallest "
        f"possible p-value is {smallest:.3g}, above the level {level}; no difference could be found. To test, {advice}"
    )


def arrangements(units: Units, permutations: int, rng: np.random.Generator) -> tuple[Iterator[np.ndarray], int, bool]:
    """Relabellings of the units, as chunks of 0/1 rows (1: group a), their number and whether they are all.

    All ``arrangement_count`` of them in order when there are at most
    ``permutations``; else ``permutations`` random ones (the observed labels
    shuffled). Chunks hold at most :data:`CHUNK_ELEMENTS` numbers.
    """
    m, m_a = len(units.in_a), units.count_a
    chunk = max(1, CHUNK_ELEMENTS // max(m, 1))
    total = arrangement_count(m_a, m - m_a)
    if total <= permutations:

        def exact() -> Iterator[np.ndarray]:
            combinations = itertools.combinations(range(m), m_a)
            while batch := list(itertools.islice(combinations, chunk)):
                rows = np.zeros((len(batch), m))
                rows[np.arange(len(batch))[:, None], np.asarray(batch, dtype=int).reshape(len(batch), m_a)] = 1.0
                yield rows

        return exact(), total, True

    def shuffled() -> Iterator[np.ndarray]:
        observed = units.in_a.astype(float)
        for start in range(0, permutations, chunk):
            yield rng.permuted(np.tile(observed, (min(chunk, permutations - start), 1)), axis=1)

    return shuffled(), permutations, False


def _p_values(extreme: np.ndarray, total: int, exact: bool) -> np.ndarray:
    """Two-sided p from the count of relabellings at least as extreme; exact sets count the observed one."""
    return extreme / total if exact else (extreme + 1.0) / (total + 1.0)


def _at_least_as_extreme(null: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Count per column of |null| >= |observed|, with a relative tolerance for rounding of equal arrangements."""
    return (np.abs(null) >= np.abs(observed) * (1 - 1e-9)).sum(axis=0)


# ---------------------------------------------------------------- per-dimension tests and intervals


def mean_differences(rows: np.ndarray, units: Units) -> np.ndarray:
    """Difference of the cell means (a − b) per dimension for each 0/1 labelling row of the units."""
    n_a = rows @ units.counts
    sum_a = rows @ units.sums
    n_b = units.counts.sum() - n_a
    sum_b = units.sums.sum(axis=0) - sum_a
    return sum_a / n_a[:, None] - sum_b / n_b[:, None]


def permutation_p_values(units: Units, permutations: int, rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    """Two-sided permutation p-value of the mean difference per dimension; the number of relabellings; exact?

    Dimensions constant over all cells get p = 1 (the statistic is zero under every labelling).
    """
    observed = mean_differences(units.in_a[None].astype(float), units)[0]
    chunks, total, exact = arrangements(units, permutations, rng)
    extreme = np.zeros(len(observed))
    for rows in chunks:
        extreme += _at_least_as_extreme(mean_differences(rows, units), observed)
    p = _p_values(extreme, total, exact)
    p[units.squares.sum(axis=0) == 0] = 1.0
    return p, total, exact


def bootstrap_intervals(
    units: Units, resamples: int, confidence: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, str]:
    """Bootstrap intervals of the mean difference and Cohen's d, resampling units within each group.

    Returns
    -------
    low, high : array, shape (2, D)
        Row 0: mean difference (a − b); row 1: Cohen's d (pooled SD over
        cells, ddof=1). NaN where the resamples are degenerate (a constant dimension).
    method : str
        ``"BCa"``, or ``"percentile"`` above :data:`BCA_MAX_UNITS` units.
    """
    dims = units.sums.shape[1]
    table = np.column_stack([units.counts, units.sums, units.squares])  # what a resample adds up, per unit
    m = len(table)

    def totals(index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells, sums and sums of squares of each resample (rows of unit indices), as a weights @ table product."""
        flat = index.reshape(-1, index.shape[-1])
        offsets = (flat + m * np.arange(len(flat))[:, None]).ravel()
        weights = np.bincount(offsets, minlength=len(flat) * m).reshape(len(flat), m).astype(float)
        summed = (weights @ table).reshape(*index.shape[:-1], table.shape[1])
        return summed[..., :1], summed[..., 1 : 1 + dims], summed[..., 1 + dims :]

    def statistic(index_a: np.ndarray, index_b: np.ndarray, axis: int = -1) -> np.ndarray:
        sides = []
        for index in (index_a, index_b):
            n, total, squares = totals(index)
            sides.append((n, total / n, squares - total**2 / n))
        (n_a, mean_a, ss_a), (n_b, mean_b, ss_b) = sides
        difference = mean_a - mean_b
        pooled = (ss_a + ss_b) / (n_a + n_b - 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(pooled > 0, difference / np.sqrt(np.where(pooled > 0, pooled, 1.0)), np.nan)
        return np.moveaxis(np.concatenate([difference, d], axis=-1), -1, 0)

    method = "BCa" if len(units.in_a) <= BCA_MAX_UNITS else "percentile"
    batch = max(1, CHUNK_ELEMENTS // m)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (np.flatnonzero(units.in_a), np.flatnonzero(~units.in_a)),
            statistic,
            n_resamples=resamples,
            batch=batch,
            vectorized=True,
            axis=-1,
            confidence_level=confidence,
            method=method,
            rng=rng,
        )
    interval = result.confidence_interval
    return interval.low.reshape(2, dims), interval.high.reshape(2, dims), method


# ---------------------------------------------------------------- the whole latent space


def _kernel_matrix(values: np.ndarray, kind: str) -> tuple[np.ndarray, float | None]:
    """The matrix the distance is a contrast of: −|x − y| (energy), or the Gaussian kernel (MMD) and its σ."""
    distances = pdist(values)
    if kind == "energy":
        return -squareform(distances), None
    sigma = float(np.median(distances)) if len(distances) else 0.0
    if sigma <= 0:
        sigma = 1.0  # more than half the pairs coincide: any bandwidth separates only the rest
    return squareform(np.exp(-(distances**2) / (2 * sigma**2)), checks=False) + np.eye(len(values)), sigma


def _contrast(
    rows: np.ndarray, kernel: np.ndarray, row_sums: np.ndarray, total: float, counts: np.ndarray
) -> np.ndarray:
    """MMD² = mean k(a, a') + mean k(b, b') − 2 mean k(a, b) (V-statistics) for each 0/1 row labelling the cells."""
    n_a = rows @ counts
    n_b = counts.sum() - n_a
    within_a = np.einsum("ij,ij->i", rows @ kernel, rows)
    between = rows @ row_sums - within_a
    within_b = total - within_a - 2 * between
    return within_a / n_a**2 + within_b / n_b**2 - 2 * between / (n_a * n_b)


def distance_cells(
    in_a: np.ndarray, unit_ids: np.ndarray | None, cells_per_group: int, rng: np.random.Generator
) -> np.ndarray:
    """The cells (sorted indices) that enter the distance matrix: at most about ``cells_per_group`` per group.

    Per cell: a random ``cells_per_group`` of each larger group. Per image:
    the same share of every image (at least one cell), so the choice depends on
    the images' sizes and never on their condition, and whole images stay exchangeable.
    """
    groups = [np.flatnonzero(in_a), np.flatnonzero(~in_a)]
    if unit_ids is None:
        chosen = [rng.choice(g, cells_per_group, replace=False) if len(g) > cells_per_group else g for g in groups]
        return np.sort(np.concatenate(chosen))
    share = min(1.0, cells_per_group / max(len(g) for g in groups))
    chosen = []
    for image in np.unique(unit_ids):
        cells = np.flatnonzero(unit_ids == image)
        chosen.append(rng.choice(cells, max(1, round(share * len(cells))), replace=False))
    return np.sort(np.concatenate(chosen))


def distance_test(
    values: np.ndarray,
    in_a: np.ndarray,
    kind: str,
    permutations: int,
    rng: np.random.Generator,
    *,
    cells_per_group: int,
    unit_ids: np.ndarray | None = None,
) -> DistanceTest:
    """The energy distance or MMD² between the groups' cells and its permutation p-value.

    The energy distance is the MMD² of the kernel −|x − y|, so one contrast
    serves both. The cells of :func:`distance_cells` enter the distance
    matrix; the permutations relabel cells, or whole images when ``unit_ids``
    names the image of every cell, as the per-dimension tests do.
    """
    values = np.asarray(values, dtype=float)
    in_a = np.asarray(in_a, dtype=bool)
    cells = distance_cells(in_a, unit_ids, cells_per_group, rng)
    units = make_units(values[cells], in_a[cells], None if unit_ids is None else unit_ids[cells])
    kernel, bandwidth = _kernel_matrix(values[cells], kind)
    counts = np.ones(len(cells))
    row_sums, total = kernel.sum(axis=1), float(kernel.sum())
    observed = float(_contrast(in_a[cells][None].astype(float), kernel, row_sums, total, counts)[0])
    chunks, relabellings, exact = arrangements(units, permutations, rng)
    rows_per_part = max(1, CHUNK_ELEMENTS // len(cells))
    extreme = 0
    for rows in chunks:
        for start in range(0, len(rows), rows_per_part):
            part = rows[start : start + rows_per_part][:, units.of_cell]
            null = _contrast(part, kernel, row_sums, total, counts)
            extreme += int((null >= observed - 1e-9 * abs(observed)).sum())
    p = _p_values(np.asarray(extreme, dtype=float), relabellings, exact)
    in_a_chosen = in_a[cells]
    return DistanceTest(kind, observed, float(p), int(in_a_chosen.sum()), int((~in_a_chosen).sum()), bandwidth)


# ---------------------------------------------------------------- the comparison


def compare_arrays(
    values_a: np.ndarray,
    values_b: np.ndarray,
    settings: InferenceSettings | None = None,
    *,
    images_a: Sequence[Any] | None = None,
    images_b: Sequence[Any] | None = None,
    names: Sequence[str] | None = None,
    a: Any = "a",
    b: Any = "b",
    group_column: str = "group",
) -> GroupComparison:
    """Compare the cells ``values_a`` (n_a, D) with ``values_b`` (n_b, D): tests, intervals, whole-space distance.

    With ``settings.by_image`` the units are the images named by
    ``images_a``/``images_b`` (one name per cell), else the cells.

    Raises
    ------
    InputError
        Mismatched shapes, NaN/inf values, fewer than 2 cells in a group, no
        image names for a per-image test, an image in both groups, or too few
        units for the test to reach the level ``settings.fdr``.
    """
    settings = settings or InferenceSettings()
    effects = statistics.cohens_d(values_a, values_b, names=names)
    values = np.concatenate(
        [
            np.asarray(values_a, dtype=float).reshape(len(values_a), -1),
            np.asarray(values_b, dtype=float).reshape(len(values_b), -1),
        ]
    )
    in_a = np.arange(len(values)) < len(values_a)
    names = list(names) if names is not None else [f"dim {i}" for i in range(values.shape[1])]
    notes = []
    if settings.by_image:
        if images_a is None or images_b is None:
            raise InputError(f"the per-image test needs the image of every cell (a {settings.image_column!r} column)")
        images = np.concatenate([np.asarray(images_a).astype(str), np.asarray(images_b).astype(str)])
        units = make_units(values, in_a, images)
        unit = "image"
        if min(units.count_a, units.count_b) < 10:
            notes.append(
                f"Bootstrap intervals from {units.count_a} and {units.count_b} images are rough; "
                "10 or more images per condition give reliable ones."
            )
    else:
        images = None
        units = make_units(values, in_a)
        unit = "cell"
        notes.append(independence_note(images_a, images_b, a, b))
    require_enough_units(units.count_a, units.count_b, settings.fdr, unit=unit, a=a, b=b)

    rng = np.random.default_rng(settings.seed)
    p, relabellings, exact = permutation_p_values(units, settings.permutations, rng)
    q = stats.false_discovery_control(p, method="bh")  # calling q <= level significant controls the FDR
    low, high, method = bootstrap_intervals(units, settings.resamples, settings.confidence, rng)
    if method == "percentile":
        notes.append(f"Percentile bootstrap intervals: BCa's jackknife is too slow above {BCA_MAX_UNITS} {unit}s.")
    distance = distance_test(
        values,
        in_a,
        settings.distance,
        settings.permutations,
        rng,
        cells_per_group=settings.distance_cells,
        unit_ids=images,
    )
    if distance.cells_a < len(values_a) or distance.cells_b < len(values_b):
        notes.append(
            f"The whole-space distance uses {distance.cells_a} and {distance.cells_b} random cells "
            f"(at most {settings.distance_cells} per condition)."
        )
    dimensions = DimensionTests(
        names=names,
        mean_difference=values[in_a].mean(axis=0) - values[~in_a].mean(axis=0),
        mean_difference_low=low[0],
        mean_difference_high=high[0],
        d=effects.d,
        d_low=low[1],
        d_high=high[1],
        p=p,
        q=q,
        significant=q <= settings.fdr,
        constant=effects.constant,
    )
    return GroupComparison(
        group_column=group_column,
        a=a,
        b=b,
        unit=unit,
        cells_a=len(values_a),
        cells_b=len(values_b),
        units_a=units.count_a,
        units_b=units.count_b,
        arrangements=relabellings,
        exact=exact,
        ci_method=method,
        dimensions=dimensions,
        distance=distance,
        settings=settings,
        notes=notes,
    )


def independence_note(images_a: Sequence[Any] | None, images_b: Sequence[Any] | None, a: Any, b: Any) -> str:
    """Why per-cell p-values assume too much, with the image counts when they are known."""
    base = (
        "Each cell is treated as an independent sample. Cells of one image share its preparation, staining and "
        "imaging, so where images differ these p-values are too small."
    )
    if images_a is None or images_b is None:
        return base + " With several images per condition, test per image."
    count_a, count_b = len(set(map(str, images_a))), len(set(map(str, images_b)))
    if count_a == 1 and count_b == 1:
        return base + (
            f" {a!r} and {b!r} are one image each: a difference between the conditions cannot be told "
            "apart from a difference between the two images."
        )
    return base + f" The cells come from {count_a} image(s) of {a!r} and {count_b} of {b!r}: test per image."


def compare_groups(
    table: pd.DataFrame, group_column: str, a: Any, b: Any, settings: InferenceSettings | None = None
) -> GroupComparison:
    """Compare the cells of groups ``a`` and ``b`` of ``group_column`` in a latent table (its ``mu_*`` columns).

    Rows without latents (objects never embedded) are left out and counted in
    the notes; the image of each cell is read from ``settings.image_column``.
    """
    from .cell_table import original_name
    from .latent_summary import latent_rows

    settings = settings or InferenceSettings()
    if a == b:
        raise InputError(f"choose two different groups to compare (both are {a!r})")
    rows, mu, _, left_out = latent_rows(table)
    values_a, values_b = statistics.group_arrays(rows, mu, group_column, [a, b])
    images: list[Any] = [None, None]
    if settings.image_column in rows.columns:
        images = [rows.loc[rows[group_column] == g, settings.image_column].to_numpy() for g in (a, b)]
    elif settings.by_image:
        raise InputError(
            f"the cells have no {settings.image_column!r} column naming their image; the per-image test needs it "
            "(latent tables from 'morphospace embed' have 'source'), or test per cell"
        )
    names = [original_name(c) for c in mu]  # measured features under the user's names
    result = compare_arrays(
        values_a,
        values_b,
        settings,
        images_a=images[0],
        images_b=images[1],
        names=names,
        a=a,
        b=b,
        group_column=group_column,
    )
    if left_out:
        result.notes.append(f"{left_out} object(s) without latents left out")
    return result


def simulate_conditions(
    rng: np.random.Generator,
    *,
    images: int,
    cells_per_image: int,
    dims: int,
    shift: Sequence[float] = (),
    image_sd: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two conditions of synthetic latents with a known answer, for calibrating the tests.

    Every cell is N(0, 1) in each of ``dims`` dimensions, plus its image's
    offset N(0, ``image_sd``²) per dimension (shared by the cells of the image:
    an image random effect, making cells of one image correlated), plus, in
    condition a only, ``shift[k]`` in dimension k (a shift of s is a Cohen's d
    of s / sqrt(1 + image_sd²)). ``images`` images per condition.

    Returns
    -------
    values_a, values_b : array, shape (images * cells_per_image, dims)
    images_a, images_b : array of str, the image of every cell
    """
    out = []
    for condition in ("a", "b"):
        offsets = rng.normal(0.0, image_sd, (images, dims)) if image_sd > 0 else np.zeros((images, dims))
        values = rng.standard_normal((images * cells_per_image, dims)) + np.repeat(offsets, cells_per_image, axis=0)
        if condition == "a":
            values[:, : len(shift)] += np.asarray(shift, dtype=float)
        out.append((values, np.repeat([f"{condition}{i}" for i in range(images)], cells_per_image)))
    (values_a, images_a), (values_b, images_b) = out
    return values_a, values_b, images_a, images_b


__all__ = [
    "BCA_MAX_UNITS",
    "CHUNK_ELEMENTS",
    "DimensionTests",
    "DistanceTest",
    "GroupComparison",
    "InferenceSettings",
    "Units",
    "arrangement_count",
    "arrangements",
    "bootstrap_intervals",
    "compare_arrays",
    "compare_groups",
    "distance_cells",
    "distance_test",
    "independence_note",
    "make_units",
    "mean_differences",
    "permutation_p_values",
    "require_enough_units",
    "simulate_conditions",
    "smallest_p_value",
]
