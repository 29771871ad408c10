"""Difference maps: absolute difference, SSIM against scikit-image and an independent formula, thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity
from torch import nn

from napari_morphospace.core.analysis.difference import (
    absolute_difference,
    compare_images,
    dissimilarity_map,
    group_difference,
    ssim_map,
    ssim_window_size,
    threshold_map,
    traversal_difference,
)
from napari_morphospace.core.errors import InputError


def _smooth_random(shape: tuple[int, ...], seed: int) -> np.ndarray:
    image = gaussian_filter(np.random.default_rng(seed).random(shape), 1.0)
    return ((image - image.min()) / np.ptp(image)).astype(np.float64)


def _wang_ssim_interior(a: np.ndarray, b: np.ndarray, sigma: float, data_range: float) -> np.ndarray:
    """SSIM of Wang et al. 2004 written out (Gaussian window, population covariance), for the interior only."""
    blur = lambda image: gaussian_filter(image, sigma, truncate=3.5, mode="constant")  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


@pytest.mark.parametrize("shape", [(40, 48), (24, 28, 32)])
def test_ssim_map_matches_scikit_image_and_the_formula_in_the_interior(shape):
    a = _smooth_random(shape, 0)
    b = np.clip(a + 0.2 * _smooth_random(shape, 1) - 0.1, 0, 1)
    ours = ssim_map(a, b, data_range=1.0)
    _, reference = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True
    )
    pad = (ssim_window_size(1.5) - 1) // 2
    interior = tuple(slice(pad, n - pad) for n in shape)
    assert ours.shape == shape
    np.testing.assert_allclose(ours[interior], reference[interior], atol=1e-10)
    np.testing.assert_allclose(ours[interior], _wang_ssim_interior(a, b, 1.5, 1.0)[interior], atol=1e-10)
    assert ours[interior].min() < 0.99  # the images differ, so the check above is not comparing ones


def test_window_size_follows_scikit_image_truncation():
    assert ssim_window_size(1.5) == 11
    assert ssim_window_size(1.0) == 9
    assert ssim_window_size(0.5) == 5


def test_identical_images_give_zero_difference_and_ssim_one():
    a = _smooth_random((3, 16, 16), 2).astype(np.float32)
    np.testing.assert_array_equal(absolute_difference(a, a), 0.0)
    np.testing.assert_allclose(ssim_map(a, a, data_range=1.0, channel_axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(dissimilarity_map(a, a, data_range=1.0, channel_axis=0), 0.0, atol=1e-6)


def test_per_channel_maps_equal_single_channel_maps():
    a = _smooth_random((2, 14, 15), 3)
    b = _smooth_random((2, 14, 15), 4)
    both = ssim_map(a, b, data_range=1.0, channel_axis=0)
    np.testing.assert_allclose(both[1], ssim_map(a[1], b[1], data_range=1.0))


def test_absolute_difference_known_values():
    np.testing.assert_array_equal(absolute_difference([[0.0, 0.5]], [[1.0, 0.25]]), [[1.0, 0.25]])


def test_data_range_is_required_and_positive():
    a = np.zeros((16, 16))
    with pytest.raises(TypeError):
        ssim_map(a, a)  # no silent guess from the data
    with pytest.raises(InputError, match="data_range must be positive"):
        ssim_map(a, a, data_range=0)


def test_thin_volume_is_refused_with_the_axis_and_a_way_out():
    thin = np.zeros((8, 32, 32))
    with pytest.raises(InputError, match=r"8 pixels along Z.*11-pixel SSIM window.*slice-wise 2D"):
        ssim_map(thin, thin, data_range=1.0)
    narrow = np.zeros((2, 32, 10))
    with pytest.raises(InputError, match="10 pixels along X"):
        ssim_map(narrow, narrow, data_range=1.0, channel_axis=0)
    ssim_map(thin[0], thin[0], data_range=1.0)  # the suggested slice-wise map works


def test_mismatched_shapes_are_refused():
    with pytest.raises(InputError, match="same shape"):
        absolute_difference(np.zeros((4, 4)), np.zeros((4, 5)))


def test_threshold_keeps_only_the_top_values():
    values = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(threshold_map(values, quantile=0.9), [0] * 9 + [9])
    np.testing.assert_array_equal(threshold_map(values, quantile=0.5), [0] * 5 + [5, 6, 7, 8, 9])
    with pytest.raises(InputError, match="between 0 and 1"):
        threshold_map(values, quantile=90)


class BlobDecoder(nn.Module):
    """Dimension 0 brightens a square in the top-left corner; dimension 1 is inactive (ignored)."""

    def __init__(self, spatial: tuple[int, ...]) -> None:
        super().__init__()
        self.latent_dim = 2
        mask = torch.zeros(spatial)
        mask[tuple(slice(2, 8) for _ in spatial)] = 1.0
        self.register_buffer("mask", mask)

    def decode(self, z: torch.Tensor, cond=None) -> torch.Tensor:
        image = torch.sigmoid(z[:, 0].reshape(-1, *[1] * self.mask.ndim) * self.mask - 2.0)
        return image[:, None]


@pytest.mark.parametrize("spatial", [(20, 24), (12, 16, 16)])
def test_traversal_difference_active_and_inactive_dimensions(spatial):
    model = BlobDecoder(spatial)
    inactive = traversal_difference(model, 1, start=[0.5, 0.0])
    assert inactive["abs"].max() < 1e-6
    assert np.abs(inactive["dissimilarity"]).max() < 1e-5

    active = traversal_difference(model, 0)
    assert active["low"].shape == active["abs"].shape == active["dissimilarity"].shape == (1, *spatial)
    inside = (slice(None),) + tuple(slice(2, 8) for _ in spatial)
    expected = 1 / (1 + np.exp(-1.0)) - 1 / (1 + np.exp(5.0))  # sigmoid(3 - 2) - sigmoid(-3 - 2)
    np.testing.assert_allclose(active["abs"][inside], expected, rtol=1e-5)
    assert active["abs"].sum() == pytest.approx(active["abs"][inside].sum())
    assert active["dissimilarity"].max() > 0.1


def test_group_difference_between_means():
    model = BlobDecoder((16, 16))
    table = pd.DataFrame({"mu_0": [1.0, 1.0, -2.0, 2.0], "mu_1": [0.0, 5.0, 0.0, 0.0], "group": ["a", "b", "c", "d"]})
    same = group_difference(model, table, "b", "a")  # differ only in the inactive dimension
    assert same["abs"].max() < 1e-6
    different = group_difference(model, table, "d", "c")
    assert different["abs"][0, 4, 4] == pytest.approx(0.5 - 1 / (1 + np.exp(4.0)), rel=1e-5)  # sigmoid(0) - sigmoid(-4)
    assert different["abs"][0, 12, 12] == 0.0
    np.testing.assert_allclose(different["reference"][0, 4, 4], 1 / (1 + np.exp(4.0)), rtol=1e-5)
    assert different["what"] == "d − c"


def test_compare_images_of_identical_and_changed_decodes_per_channel():
    rng = np.random.default_rng(0)
    image = rng.random((2, 16, 16)).astype(np.float32)
    same = compare_images(image, image)
    assert same["abs"].shape == (2, 16, 16) and not same["abs"].any() and same["ssim_message"] is None
    np.testing.assert_allclose(same["dissimilarity"], 0.0, atol=1e-6)
    changed = image.copy()
    changed[1, 4, 5] += 0.5
    maps = compare_images(image, changed)
    assert np.unravel_index(np.argmax(maps["abs"]), (2, 16, 16)) == (1, 4, 5)
    assert maps["abs"][1, 4, 5] == pytest.approx(0.5) and not maps["abs"][0].any()


def test_thin_volume_gives_a_message_instead_of_ssim():
    volume = np.zeros((1, 4, 16, 16), np.float32)
    maps = compare_images(volume, volume + 0.1)
    assert maps["dissimilarity"] is None
    assert "4 pixels along Z" in maps["ssim_message"]
    np.testing.assert_allclose(maps["abs"], 0.1, rtol=1e-6)


class _RampDecoder(torch.nn.Module):
    """Decodes z to one 16×16 channel: column j is sigmoid(z_0 · j / 15) (known, easy to hand-compute)."""

    latent_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("latent_scale", torch.tensor([0.5, 1.0]))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0, 1, 16)
        return torch.sigmoid(z[:, :1, None, None] * ramp[None, None, None, :]).expand(-1, 1, 16, 16)


def test_traversal_difference_compares_the_decodes_at_minus_and_plus_three_latent_scales():
    maps = traversal_difference(_RampDecoder(), 0, start=np.zeros(2, np.float32))
    ramp = np.linspace(0, 1, 16)
    expected = np.abs(1 / (1 + np.exp(-1.5 * ramp)) - 1 / (1 + np.exp(1.5 * ramp)))  # z_0 = ±3 · 0.5
    np.testing.assert_allclose(maps["abs"][0], np.tile(expected, (16, 1)), atol=1e-6)
    assert maps["what"] == "dim 0: −3 vs +3" and maps["dissimilarity"].shape == (1, 16, 16)
    assert not traversal_difference(_RampDecoder(), 1, start=np.zeros(2, np.float32))[
        "abs"
    ].any()  # dim 1 changes nothing


def test_group_difference_decodes_the_two_group_means_and_refuses_one_group_twice():
    table = pd.DataFrame({"mu_0": [1.0, 3.0, -2.0], "mu_1": [0.0, 0.0, 5.0], "group": ["a", "a", "b"]})
    maps = group_difference(_RampDecoder(), table, "a", "b")
    ramp = np.linspace(0, 1, 16)
    expected = np.abs(1 / (1 + np.exp(-2.0 * ramp)) - 1 / (1 + np.exp(2.0 * ramp)))  # mean μ_0 of a: 2, of b: −2
    np.testing.assert_allclose(maps["abs"][0, 0], expected, atol=1e-6)
    assert maps["what"] == "a − b"  # condition − reference, as Statistics and the report say
    with pytest.raises(InputError, match="two different groups"):
        group_difference(_RampDecoder(), table, "a", "a")
    with pytest.raises(InputError, match="got condition 'a' and reference 'c'"):
        group_difference(_RampDecoder(), table, "a", "c")
