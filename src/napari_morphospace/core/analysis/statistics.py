"""Statistics of a latent space: effect sizes between groups, KL, active units, a linear probe, densities.

The methods follow the studies summarised in ``model-notes.md``: Cohen's d per
latent dimension between two groups with a pooled, ddof=1 standard deviation
and its sign kept (the macrophage study), the per-dimension KL to the prior and
the count of active units (Statistical Cell), and the empirical KL of the
latent distribution to N(0, I) (the adaptable-VAE thesis). The figures of
these numbers are drawn by :mod:`~napari_morphospace.core.figures.statistics`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    StratifiedGroupKFold,
    StratifiedKFold,
    cross_validate,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import InputError

Z_95 = float(stats.norm.ppf(0.975))


class EffectSizes(NamedTuple):
    """Cohen's d per dimension with its 95 % confidence interval.

    ``constant`` marks dimensions whose pooled standard deviation is zero: d is
    undefined there, so ``d``, ``ci_low`` and ``ci_high`` hold NaN.
    """

    d: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    constant: np.ndarray


def require_finite(values: np.ndarray, names: Sequence[str] | None = None, *, what: str = "features") -> None:
    """Refuse NaN/inf values, naming the affected columns and how many rows hold them.

    Raises
    ------
    InputError
        When any value is not finite.
    """
    values = np.asarray(values, dtype=float)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    bad2d = bad.reshape(len(values), -1)
    columns = np.flatnonzero(bad2d.any(axis=0))
    labels = [names[c] for c in columns.tolist()] if names is not None else [f"column {c}" for c in columns]
    rows = int(bad2d.any(axis=1).sum())
    raise InputError(
        f"{what} contain NaN or infinite values in {', '.join(map(str, labels[:10]))}"
        f"{' …' if len(labels) > 10 else ''} ({rows} of {len(values)} rows); "
        "drop or fill those rows (e.g. re-run the embedding) before computing statistics"
    )


def _as_samples(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise InputError(f"{name} must be a (samples, dimensions) array, got shape {array.shape}")
    return array


def group_arrays(
    table: pd.DataFrame, columns: Sequence[str], group_column: str, groups: Sequence[object]
) -> list[np.ndarray]:
    """Split the rows of ``table`` into one ``(n_g, len(columns))`` array per requested group.

    Raises
    ------
    InputError
        When fewer than two distinct groups are requested, a group has fewer
        than two rows, a column is missing or the values are not finite.
    """
    if len(set(groups)) < 2:
        raise InputError(f"choose two different groups to compare (got {list(groups)}); effect sizes need two groups")
    missing = [c for c in [group_column, *columns] if c not in table.columns]
    if missing:
        raise InputError(
            f"the table has no column(s) {', '.join(missing)}; run the embedding first or pick other columns"
        )
    values = table[list(columns)].to_numpy(dtype=float)
    require_finite(values, list(columns))
    out = []
    for group in groups:
        rows = (table[group_column] == group).to_numpy()
        if rows.sum() < 2:
            raise InputError(
                f"group {group!r} has {int(rows.sum())} row(s) in column {group_column!r}; at least 2 are needed"
            )
        out.append(values[rows])
    return out


def cohens_d(a: np.ndarray, b: np.ndarray, *, names: Sequence[str] | None = None) -> EffectSizes:
    """Cohen's d of ``a`` against ``b`` per dimension, with 95 % confidence intervals.

    Parameters
    ----------
    a, b : array, shape (n_a, D) and (n_b, D)
        Samples of the two groups (e.g. latent means of control and treated cells).
    names : sequence of str, optional
        Column names, used only in error messages.

    Returns
    -------
    EffectSizes
        ``d = (mean(a) - mean(b)) / s_pooled`` with
        ``s_pooled = sqrt(((n_a - 1) var_a + (n_b - 1) var_b) / (n_a + n_b - 2))``
        (ddof=1, sign kept: positive means ``a`` is higher), and
        ``d ± 1.96 SE`` with the large-sample standard error of Hedges & Olkin
        (1985), ``SE = sqrt((n_a + n_b) / (n_a n_b) + d² / (2 (n_a + n_b)))``.
        Dimensions with zero pooled variance are NaN and flagged in ``constant``.

    Raises
    ------
    InputError
        When a group has fewer than two samples, the dimensions differ, or
        values are not finite.
    """
    a = _as_samples(a, "group a")
    b = _as_samples(b, "group b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"the groups have {a.shape[1]} and {b.shape[1]} dimensions; they must match")
    for label, group in (("a", a), ("b", b)):
        if len(group) < 2:
            raise InputError(f"group {label} has {len(group)} sample(s); Cohen's d needs at least 2 per group")
        require_finite(group, names)
    n_a, n_b = len(a), len(b)
    pooled_var = ((n_a - 1) * a.var(axis=0, ddof=1) + (n_b - 1) * b.var(axis=0, ddof=1)) / (n_a + n_b - 2)
    constant = pooled_var <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (a.mean(axis=0) - b.mean(axis=0)) / np.sqrt(pooled_var)
    d[constant] = np.nan
    se = np.sqrt((n_a + n_b) / (n_a * n_b) + d**2 / (2 * (n_a + n_b)))
    return EffectSizes(d=d, ci_low=d - Z_95 * se, ci_high=d + Z_95 * se, constant=constant)


def rank_dimensions(d: np.ndarray) -> np.ndarray:
    """Indices of the dimensions ordered by decreasing ``|d|``; undefined (NaN) dimensions come last."""
    magnitude = np.abs(np.asarray(d, dtype=float))
    magnitude = np.where(np.isnan(magnitude), -np.inf, magnitude)
    return np.argsort(-magnitude, kind="stable")


def order_dimensions(mu: np.ndarray, logvar: np.ndarray | None = None, groups: ArrayLike | None = None) -> np.ndarray:
    """Latent dimensions, most informative first, for choosing plot axes.

    By decreasing KL to the prior when the log-variances are known, else by
    decreasing |Cohen's d| between the first two groups when there are two or
    more groups with at least two cells each, else in their natural order.
    """
    mu = _as_samples(mu, "mu")
    if logvar is not None:
        return np.argsort(-kl_per_dimension(mu, logvar), kind="stable")
    if groups is not None:
        groups = np.asarray(groups)
        names, counts = np.unique(groups, return_counts=True)
        if len(names) >= 2 and counts[:2].min() >= 2:
            return rank_dimensions(cohens_d(mu[groups == names[0]], mu[groups == names[1]]).d)
    return np.arange(mu.shape[1])


def kl_per_dimension(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(q(z_k | x) || N(0, 1)) per latent dimension, averaged over the samples.

    ``0.5 (mu² + exp(logvar) - logvar - 1)`` is the closed form per sample;
    dimensions with a KL near zero carry no information (posterior collapse).
    """
    mu = _as_samples(mu, "mu")
    logvar = _as_samples(logvar, "logvar")
    if mu.shape != logvar.shape:
        raise InputError(f"mu has shape {mu.shape} but logvar has {logvar.shape}; they must match")
    require_finite(mu, what="latent means")
    require_finite(logvar, what="latent log-variances")
    return 0.5 * np.mean(mu**2 + np.exp(logvar) - logvar - 1.0, axis=0)


def active_units(mu: np.ndarray, threshold: float = 0.01) -> int:
    """Number of latent dimensions whose posterior mean varies across the data by more than ``threshold``.

    The activity of a unit is ``Var_x(mu_k(x))`` (population variance over the
    data set, Burda et al. 2016); inactive units encode nothing about the input.
    """
    mu = _as_samples(mu, "mu")
    require_finite(mu, what="latent means")
    return int(np.sum(mu.var(axis=0) > threshold))


def empirical_kl_to_standard_normal(mu: np.ndarray) -> float:
    """KL(N(m, S) || N(0, I)) of a Gaussian fitted to the latent means, in nats.

    ``0.5 (tr S + m·m - D - ln det S)`` with the sample mean ``m`` and the
    sample covariance ``S`` (ddof=1). It measures how far the aggregate latent
    distribution is from the prior; a collapsed (constant) dimension makes the
    fitted covariance singular and the KL infinite.
    """
    mu = _as_samples(mu, "mu")
    require_finite(mu, what="latent means")
    n, dims = mu.shape
    if n <= dims:
        raise InputError(f"{n} samples cannot fit a {dims}-dimensional Gaussian; use more cells than latent dimensions")
    mean = mu.mean(axis=0)
    cov = np.atleast_2d(np.cov(mu, rowvar=False))
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.trace(cov) + mean @ mean - dims - logdet))


def linear_probe(
    latents: np.ndarray,
    groups: ArrayLike,
    folds: int = 5,
    seed: int = 0,
    *,
    sources: ArrayLike | None = None,
) -> dict:
    """How well a linear classifier separates the groups from the latents (cross-validated).

    A standardised logistic regression in stratified ``folds``-fold cross
    validation; balanced accuracy is 0.5 (two groups) when the latents carry no
    group information and 1.0 when the groups are linearly separable.

    With ``sources`` (the source image of every cell) the folds keep every
    image on one side (stratified group folds): cells of one image share
    illumination, focus and neighbours, so random folds let the probe
    recognise the image instead of the cells and flatter it. The folds are
    reduced to the number of images of the group with fewest images; when a
    group has a single image the folds cannot be grouped, are random, and
    ``note`` says so.

    Returns
    -------
    dict
        ``balanced_accuracy`` and ``auroc`` (means over folds; one-vs-rest
        AUROC for more than two groups), ``per_fold`` with both lists,
        ``grouped`` (folds by source image) and ``note`` (why not, or None).
    """
    x = _as_samples(latents, "latents")
    require_finite(x, what="latents")
    y = np.asarray(groups)
    if len(y) != len(x):
        raise InputError(f"{len(x)} latent rows but {len(y)} group labels; they must match")
    labels, counts = np.unique(y, return_counts=True)
    if len(labels) < 2:
        raise InputError(f"the probe needs at least two groups, got only {labels.tolist()}")
    splitter, source_groups, note = _probe_splitter(y, labels, folds, seed, sources)
    n_folds = splitter.get_n_splits()
    if counts.min() < n_folds:
        raise InputError(
            f"group {labels[counts.argmin()]!r} has {counts.min()} cells, fewer than the {n_folds} folds; "
            "use fewer folds or more cells"
        )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    auroc = "roc_auc" if len(labels) == 2 else "roc_auc_ovr"
    scores = cross_validate(
        model,
        x,
        y,
        cv=splitter,
        groups=source_groups,
        scoring={"balanced_accuracy": "balanced_accuracy", "auroc": auroc},
    )
    per_fold = {
        "balanced_accuracy": scores["test_balanced_accuracy"].tolist(),
        "auroc": scores["test_auroc"].tolist(),
    }
    return {
        "balanced_accuracy": float(np.mean(per_fold["balanced_accuracy"])),
        "auroc": float(np.mean(per_fold["auroc"])),
        "per_fold": per_fold,
        "grouped": source_groups is not None,
        "note": note,
    }


def _probe_splitter(
    y: np.ndarray, labels: np.ndarray, folds: int, seed: int, sources: ArrayLike | None
) -> tuple[StratifiedKFold | StratifiedGroupKFold, np.ndarray | None, str | None]:
    """Stratified folds grouped by source image where every group has 2+ images, else stratified random folds."""
    if sources is None:
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed), None, None
    images = np.asarray(sources).astype(str)
    if len(images) != len(y):
        raise InputError(f"{len(y)} cells but {len(images)} source names; they must match")
    per_group = {label: len(np.unique(images[y == label])) for label in labels}
    fewest = min(per_group, key=per_group.__getitem__)
    if per_group[fewest] >= 2:
        splitter = StratifiedGroupKFold(n_splits=min(folds, per_group[fewest]), shuffle=True, random_state=seed)
        return splitter, images, None
    note = (
        f"group {fewest!r} has all its cells in one image, so the folds could not keep images apart: the "
        "probe may partly recognise the image rather than the cells"
    )
    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed), None, note


def kde_curves(values: np.ndarray, groups: ArrayLike, points: int = 200) -> tuple[np.ndarray, dict]:
    """Gaussian kernel density of one dimension per group, on a shared grid.

    Returns
    -------
    grid : array, shape (points,)
        Spans the data range padded by 10 %.
    densities : dict
        Group -> density array on ``grid`` (each integrates to ~1).
    """
    values = np.asarray(values, dtype=float).ravel()
    require_finite(values, what="values")
    groups = np.asarray(groups)
    low, high = values.min(), values.max()
    pad = 0.1 * (high - low) if high > low else 1.0
    grid = np.linspace(low - pad, high + pad, points)
    densities = {}
    for group in pd.unique(groups):
        sample = values[groups == group]
        if len(sample) < 2 or np.ptp(sample) == 0:
            raise InputError(f"group {group!r} has no spread in this dimension; a density cannot be estimated")
        densities[group] = stats.gaussian_kde(sample)(grid)
    return grid, densities


__all__ = [
    "EffectSizes",
    "require_finite",
    "group_arrays",
    "cohens_d",
    "rank_dimensions",
    "order_dimensions",
    "kl_per_dimension",
    "active_units",
    "empirical_kl_to_standard_normal",
    "linear_probe",
    "kde_curves",
]
