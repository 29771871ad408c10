"""Known-answer tests of the latent-space statistics."""

import io

import numpy as np
import pandas as pd
import pytest

from napari_morphospace.core.analysis.statistics import (
    active_units,
    cohens_d,
    empirical_kl_to_standard_normal,
    group_arrays,
    kde_curves,
    kl_per_dimension,
    linear_probe,
    order_dimensions,
    rank_dimensions,
)
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.figures.statistics import forest_figure, kde_figure, kl_bar_figure, violin_figure


def test_cohens_d_matches_hand_computation():
    a = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0]])
    b = np.array([[2.0, 5.0], [4.0, 5.0], [6.0, 5.0]])
    result = cohens_d(a, b)
    # means 2.5 and 4; variances (ddof 1) 5/3 and 4; pooled = (3*5/3 + 2*4) / 5 = 13/5
    d = (2.5 - 4.0) / np.sqrt(13 / 5)
    se = np.sqrt(7 / 12 + d**2 / 14)
    assert result.d[0] == pytest.approx(d)
    assert result.d[0] < 0  # sign kept: a is lower
    assert result.ci_low[0] == pytest.approx(d - 1.959964 * se, rel=1e-5)
    assert result.ci_high[0] == pytest.approx(d + 1.959964 * se, rel=1e-5)
    # the constant dimension is flagged, not crashed on
    assert result.constant.tolist() == [False, True]
    assert np.isnan(result.d[1]) and np.isnan(result.ci_low[1])


def test_rank_dimensions_by_magnitude_nan_last():
    assert rank_dimensions(np.array([0.1, np.nan, -2.0, 1.0])).tolist() == [2, 3, 0, 1]


def test_cohens_d_refuses_bad_input():
    with pytest.raises(InputError, match="at least 2"):
        cohens_d(np.ones((1, 2)), np.ones((3, 2)))
    with pytest.raises(InputError, match=r"mu_1 \(1 of 3 rows\)"):
        cohens_d(np.array([[0, 1], [1, np.nan], [2, 2]]), np.ones((3, 2)), names=["mu_0", "mu_1"])


def test_group_arrays_refuses_single_group_and_small_groups():
    table = pd.DataFrame({"mu_0": [0.0, 1.0, 2.0, 3.0], "group": ["a", "a", "a", "b"]})
    with pytest.raises(InputError, match="two different groups"):
        group_arrays(table, ["mu_0"], "group", ["a", "a"])
    with pytest.raises(InputError, match="'b' has 1 row"):
        group_arrays(table, ["mu_0"], "group", ["a", "b"])
    (a,) = group_arrays(table.assign(group=["a", "a", "b", "b"]), ["mu_0"], "group", ["a", "b"])[:1]
    assert a.ravel().tolist() == [0.0, 1.0]


def test_kl_per_dimension_closed_form():
    mu = np.array([[0.0, 1.0], [0.0, -1.0]])
    logvar = np.array([[0.0, np.log(2.0)], [0.0, np.log(2.0)]])
    expected = 0.5 * (1 + 2 - np.log(2) - 1)
    assert kl_per_dimension(mu, logvar) == pytest.approx([0.0, expected])


def test_active_units_counts_variances_above_threshold():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((20000, 3)) * np.sqrt([1.0, 0.5, 0.001])
    assert active_units(mu) == 2


def test_empirical_kl_of_standard_normal_is_zero_and_of_shifted_gaussian_closed_form():
    rng = np.random.default_rng(1)
    assert empirical_kl_to_standard_normal(rng.standard_normal((50000, 3))) == pytest.approx(0.0, abs=5e-3)
    mean, sd = np.array([1.0, -2.0]), np.array([2.0, 0.5])
    samples = rng.standard_normal((100000, 2)) * sd + mean
    expected = 0.5 * (np.sum(sd**2) + mean @ mean - 2 - np.sum(np.log(sd**2)))
    assert empirical_kl_to_standard_normal(samples) == pytest.approx(expected, rel=1e-2)
    assert empirical_kl_to_standard_normal(np.c_[samples, np.zeros(len(samples))]) == np.inf


def test_linear_probe_separable_and_identical_groups():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 4))
    groups = np.repeat(["control", "treated"], 100)
    separable = x + np.where(groups == "treated", 5.0, 0.0)[:, None] * np.array([1, 0, 0, 0])
    result = linear_probe(separable, groups)
    assert result["balanced_accuracy"] > 0.97 and result["auroc"] > 0.99
    assert len(result["per_fold"]["balanced_accuracy"]) == 5
    chance = linear_probe(x, groups)
    assert 0.3 < chance["balanced_accuracy"] < 0.7
    with pytest.raises(InputError, match="two groups"):
        linear_probe(x, ["a"] * 200)


def test_linear_probe_keeps_each_source_image_in_one_fold():
    """Each image has its own offset (illumination) and the groups differ only by image: random folds
    learn the images and look accurate; folds grouped by image show there is nothing about the cells."""
    rng = np.random.default_rng(4)
    sources = np.repeat([f"field{i}.tif" for i in range(12)], 20)
    groups = np.where(np.arange(240) < 120, "control", "treated")  # fields 0-5 control, 6-11 treated
    image_offset = {s: rng.normal(size=4) * 3 for s in np.unique(sources)}
    x = rng.standard_normal((240, 4)) * 0.3 + np.array([image_offset[s] for s in sources])
    random_folds = linear_probe(x, groups)
    by_image = linear_probe(x, groups, sources=sources)
    assert not random_folds["grouped"]
    assert by_image["grouped"] and by_image["note"] is None and len(by_image["per_fold"]["auroc"]) == 5
    assert by_image["balanced_accuracy"] < 0.7 < 0.8 < random_folds["balanced_accuracy"]
    one_image_each = linear_probe(x, groups, sources=np.where(groups == "control", "a.tif", "b.tif"))
    assert not one_image_each["grouped"] and "one image" in one_image_each["note"]


def test_kde_curves_integrate_to_one_and_peak_at_group_means():
    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(-3, 0.5, 500), rng.normal(3, 0.5, 500)]
    groups = np.repeat(["a", "b"], 500)
    grid, densities = kde_curves(values, groups)
    step = grid[1] - grid[0]
    for group, centre in (("a", -3), ("b", 3)):
        assert densities[group].sum() * step == pytest.approx(1.0, abs=0.02)
        assert grid[np.argmax(densities[group])] == pytest.approx(centre, abs=0.3)
    with pytest.raises(InputError, match="no spread"):
        kde_curves(np.r_[values[:10], np.ones(5)], np.repeat(["a", "b"], [10, 5]))


def test_figures_have_expected_content_and_save_as_png_and_svg():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((50, 4))
    b = rng.standard_normal((50, 4)) + [0, 2, 0, -1]
    effects = cohens_d(a, b)
    forest = forest_figure(effects, names=[f"mu_{i}" for i in range(4)])
    ax = forest.axes[0]
    by_height = dict(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True))
    assert [by_height[y] for y in sorted(by_height, reverse=True)][:2] == ["mu_1", "mu_3"]  # largest |d| on top
    kl = kl_bar_figure(np.array([0.1, 2.0, 0.5]), names=["a", "b", "c"])
    assert [t.get_text() for t in kl.axes[0].get_xticklabels()] == ["b", "c", "a"]
    values, groups = np.r_[a, b], np.repeat(["control", "treated"], 50)
    top = rank_dimensions(effects.d)[:3]
    assert len(kde_figure(values, groups, top).axes) == 3
    violin = violin_figure(values, groups, top)
    assert len(violin.axes) == 3
    for fmt, magic in (("png", b"\x89PNG"), ("svg", b"<?xml")):
        buffer = io.BytesIO()
        violin.savefig(buffer, format=fmt)
        assert buffer.getvalue().startswith(magic)


def test_order_dimensions_by_kl_then_by_effect_size():
    rng = np.random.default_rng(5)
    mu = rng.standard_normal((40, 3)) * [0.1, 1.0, 0.5]
    logvar = np.zeros_like(mu)
    assert order_dimensions(mu, logvar).tolist() == [1, 2, 0]
    groups = np.repeat(["a", "b"], 20)
    shifted = rng.standard_normal((40, 3)) + np.where(groups == "b", 1.0, 0.0)[:, None] * [0.0, 0.0, 3.0]
    assert order_dimensions(shifted, groups=groups)[0] == 2
    assert order_dimensions(shifted).tolist() == [0, 1, 2]
