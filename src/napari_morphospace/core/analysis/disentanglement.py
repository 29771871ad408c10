"""Disentanglement metrics for latents with known generative factors: MIG and DCI.

Both need ground-truth factors (the synthetic sample data provides them; user
annotations can stand in). Latents are the encoder means μ ``(N, D)``, factors
are one column per factor ``(N, K)``.

Discrete vs continuous factors: a factor column whose values are all whole
numbers is used as it is (each distinct value is a class); any other column is
discretised into ``n_bins`` equal-width bins (``np.histogram`` edges), the same
rule that discretises the latents for MIG. This keeps both metrics on the
classification footing of the reference implementation (disentanglement_lib).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import entropy
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import mutual_info_score
from sklearn.model_selection import train_test_split

from ..errors import InputError


def discretize(values: Any, n_bins: int = 20) -> np.ndarray:
    """Equal-width bin index (0 .. n_bins−1) of each value, from ``np.histogram`` bin edges of the column."""
    values = np.asarray(values, dtype=np.float64)
    edges = np.histogram_bin_edges(values, bins=n_bins)
    return np.digitize(values, edges[1:-1])


def _as_classes(column: np.ndarray, n_bins: int) -> np.ndarray:
    """Whole-number factors keep their values (as class indices); continuous ones are binned."""
    column = np.asarray(column, dtype=np.float64)
    if np.all(np.mod(column, 1) == 0):
        return np.unique(column, return_inverse=True)[1]
    return discretize(column, n_bins)


def _check_inputs(latents: Any, factors: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    latents = np.asarray(latents, dtype=np.float64)
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if latents.ndim != 2 or factors.ndim != 2 or latents.shape[0] != factors.shape[0]:
        raise InputError(
            f"expected latents (N, D) and factors (N, K) with the same N; got {latents.shape} and {factors.shape}"
        )
    if not np.all(np.isfinite(latents)):
        raise InputError(
            "the latents contain NaN or infinite values: re-embed the crops with a model that trained without errors"
        )
    classes = np.stack([_as_classes(factors[:, k], n_bins) for k in range(factors.shape[1])], axis=1)
    constant = [k for k in range(classes.shape[1]) if np.unique(classes[:, k]).size < 2]
    if constant:
        raise InputError(f"factor column(s) {constant} take a single value and carry no information: leave them out")
    return latents, classes


@dataclass
class MIGResult:
    """Mutual information gap: ``score`` (mean over factors), ``gap_per_factor`` (K,),
    ``mutual_information`` (D, K) in nats."""

    score: float
    gap_per_factor: np.ndarray
    mutual_information: np.ndarray


def mutual_information_gap(latents: Any, factors: Any, *, n_bins: int = 20) -> MIGResult:
    """MIG (Chen et al. 2018): for each factor, the gap between the two latents most informative about it.

    Each latent dimension is discretised into ``n_bins`` equal-width bins; the
    mutual information with each (integer) factor is
    ``sklearn.metrics.mutual_info_score``; the gap (top1 − top2) is divided by
    the factor's entropy H(factor), and the score is the mean over factors.
    1 means every factor is captured by exactly one dimension.
    """
    latents, classes = _check_inputs(latents, factors, n_bins)
    if latents.shape[1] < 2:
        raise InputError("MIG compares the two most informative latent dimensions: it needs at least 2")
    binned = [discretize(latents[:, d], n_bins) for d in range(latents.shape[1])]
    mi = np.array([[mutual_info_score(classes[:, k], b) for k in range(classes.shape[1])] for b in binned])
    factor_entropy = np.array([mutual_info_score(classes[:, k], classes[:, k]) for k in range(classes.shape[1])])
    top = np.sort(mi, axis=0)[::-1]
    gaps = (top[0] - top[1]) / factor_entropy
    return MIGResult(score=float(gaps.mean()), gap_per_factor=gaps, mutual_information=mi)


@dataclass
class DCIResult:
    """DCI (Eastwood & Williams 2018): ``disentanglement``, ``completeness``, ``informativeness`` (mean test accuracy),
    ``importance`` (D, K), ``accuracy_per_factor`` (K,)."""

    disentanglement: float
    completeness: float
    informativeness: float
    importance: np.ndarray
    accuracy_per_factor: np.ndarray


def _weighted_entropy_score(importance: np.ndarray) -> float:
    """Σ_rows ρ_row (1 − H(P_row)), entropy with base = number of columns; rows with no importance weigh nothing."""
    row_totals = importance.sum(axis=1)
    rho = row_totals / importance.sum()
    scores = np.zeros(importance.shape[0])
    for i in np.flatnonzero(row_totals > 0):
        scores[i] = 1.0 - entropy(importance[i] / row_totals[i], base=importance.shape[1])
    return float(np.sum(rho * scores))


def dci(
    latents: Any,
    factors: Any,
    *,
    test_fraction: float = 0.3,
    n_repeats: int = 5,
    n_bins: int = 20,
    seed: int = 0,
) -> DCIResult:
    """DCI disentanglement, completeness and informativeness from one gradient-boosted classifier per factor.

    For each factor a ``GradientBoostingClassifier`` (scikit-learn defaults, as
    in disentanglement_lib; single-threaded, so it does not compete with the
    viewer for cores) predicts the factor's class from the latents (train
    split); the importance of latent d for factor
    k is its permutation importance on the held-out split (drop in accuracy,
    negative values set to 0), giving the matrix R (D × K). With
    P_d = R[d, :] / Σ_k R[d, k] and ρ_d = Σ_k R[d, k] / Σ R:
    disentanglement = Σ_d ρ_d (1 − H_K(P_d)), and completeness is the same on
    the columns: Σ_k ρ_k (1 − H_D(P_k)). Informativeness is the mean held-out
    accuracy. Permutation importance (instead of the impurity importance of the
    original paper) is measured on held-out data and is not inflated for
    latents the trees split on by chance.
    """
    latents, classes = _check_inputs(latents, factors, n_bins)
    n_dims, n_factors = latents.shape[1], classes.shape[1]
    if n_dims < 2 or n_factors < 2:
        raise InputError(f"DCI needs at least 2 latent dimensions and 2 factors; got {n_dims} and {n_factors}")
    importance = np.zeros((n_dims, n_factors))
    accuracy = np.zeros(n_factors)
    for k in range(n_factors):
        x_train, x_test, y_train, y_test = train_test_split(
            latents, classes[:, k], test_size=test_fraction, random_state=seed
        )
        model = GradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
        accuracy[k] = model.score(x_test, y_test)
        result = permutation_importance(
            model, x_test, y_test, n_repeats=n_repeats, random_state=seed, scoring="accuracy"
        )
        importance[:, k] = np.clip(result.importances_mean, 0.0, None)
    if importance.sum() == 0:
        raise InputError(
            "no latent dimension predicts any factor better than chance: DCI is undefined for these latents"
        )
    return DCIResult(
        disentanglement=_weighted_entropy_score(importance),
        completeness=_weighted_entropy_score(importance.T),
        informativeness=float(accuracy.mean()),
        importance=importance,
        accuracy_per_factor=accuracy,
    )
