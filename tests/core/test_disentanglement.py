"""MIG and DCI on synthetic latents whose relation to the factors is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from napari_morphospace.core.analysis.disentanglement import (
    _weighted_entropy_score,
    dci,
    discretize,
    mutual_information_gap,
)
from napari_morphospace.core.errors import InputError


def _factors(n: int = 800, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 5, size=(n, 2))


def _aligned(factors: np.ndarray, seed: int = 1) -> np.ndarray:
    """Latent d = factor d (+ small noise), plus one pure-noise dimension."""
    rng = np.random.default_rng(seed)
    signal = factors + 0.05 * rng.standard_normal(factors.shape)
    return np.column_stack([signal, rng.standard_normal(len(factors))])


def _rotated(factors: np.ndarray, seed: int = 1) -> np.ndarray:
    """The same information, mixed by a 45° rotation: each latent carries both factors."""
    latents = _aligned(factors, seed)
    c = np.cos(np.pi / 4)
    latents[:, :2] = latents[:, :2] @ np.array([[c, -c], [c, c]])
    return latents


def test_discretize_uses_histogram_edges():
    np.testing.assert_array_equal(discretize([0.0, 0.24, 0.26, 0.5, 0.99, 1.0], n_bins=4), [0, 0, 1, 2, 3, 3])


def test_mig_is_one_for_aligned_and_low_for_rotated_latents():
    factors = _factors()
    aligned = mutual_information_gap(_aligned(factors), factors)
    rotated = mutual_information_gap(_rotated(factors), factors)
    assert aligned.score > 0.9
    assert rotated.score < 0.5
    assert aligned.mutual_information.shape == (3, 2)
    assert np.argmax(aligned.mutual_information[:, 1]) == 1


def test_mig_known_answer_for_a_copied_factor():
    factors = np.repeat([[0, 1], [1, 0], [2, 1], [3, 0]], 25, axis=0)
    latents = np.column_stack([factors[:, 0], np.zeros(100), factors[:, 1]])
    result = mutual_information_gap(latents, factors)
    # factor 0 is copied by latent 0 (MI = H) and the constant latent 1 has MI 0, latent 2 shares MI(f0, f1)
    h0 = mutual_info_score(factors[:, 0], factors[:, 0])
    expected_gap0 = (h0 - mutual_info_score(factors[:, 0], factors[:, 1])) / h0
    assert result.gap_per_factor[0] == pytest.approx(expected_gap0)
    assert result.gap_per_factor[1] == pytest.approx(0.0)  # latents 0 and 2 both determine factor 1 fully


def test_continuous_factors_are_binned():
    rng = np.random.default_rng(2)
    factors = rng.random((600, 2))  # continuous
    latents = np.column_stack([factors[:, 0], factors[:, 1], rng.standard_normal(600)])
    assert mutual_information_gap(latents, factors).score > 0.85


def test_weighted_entropy_score_extremes():
    assert _weighted_entropy_score(np.eye(3)) == pytest.approx(1.0)
    assert _weighted_entropy_score(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-12)
    # one row importance spread evenly over 2 of 2 columns, the other only in one: weights 2/3 and 1/3
    assert _weighted_entropy_score(np.array([[1.0, 1.0], [0.0, 1.0]])) == pytest.approx(1 / 3)


def test_dci_is_near_one_for_aligned_and_lower_for_rotated_latents():
    factors = _factors()
    aligned = dci(_aligned(factors), factors, n_repeats=3)
    rotated = dci(_rotated(factors), factors, n_repeats=3)
    assert aligned.disentanglement > 0.9 and aligned.completeness > 0.9
    assert aligned.informativeness > 0.95
    assert rotated.disentanglement < aligned.disentanglement - 0.3
    assert rotated.completeness < aligned.completeness - 0.3
    assert aligned.importance.shape == (3, 2)


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="same N"):
        mutual_information_gap(np.zeros((10, 2)), np.zeros((9, 1)))
    with pytest.raises(InputError, match="single value"):
        mutual_information_gap(np.random.default_rng(0).random((10, 2)), np.zeros((10, 1)))
    with pytest.raises(InputError, match="NaN"):
        dci(np.full((10, 2), np.nan), np.arange(20).reshape(10, 2) % 2)
