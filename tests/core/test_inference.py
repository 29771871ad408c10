"""Inference between conditions: hand-computed p-values and distances, and calibration on synthetic populations.

The calibration tests are small, seeded versions of
``benchmarks/bench_inference_calibration.py``: known shifts must be found
(power), no shift must give the nominal false-positive rate, Benjamini–Hochberg
must keep the FDR, and with an image random effect only the per-image test
keeps its level.
"""

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from napari_morphospace.core.analysis import inference
from napari_morphospace.core.analysis.inference import (
    InferenceSettings,
    bootstrap_intervals,
    compare_arrays,
    compare_groups,
    distance_test,
    make_units,
    permutation_p_values,
    simulate_conditions,
    smallest_p_value,
)
from napari_morphospace.core.analysis.statistics import cohens_d
from napari_morphospace.core.errors import InputError


def _units(a, b, images_a=None, images_b=None):
    values = np.concatenate([a, b])
    in_a = np.arange(len(values)) < len(a)
    ids = None if images_a is None else np.concatenate([images_a, images_b]).astype(str)
    return values, in_a, make_units(values, in_a, ids)


# ---------------------------------------------------------------- known answers


def test_exact_permutation_p_value_of_separated_groups_is_two_in_twenty():
    a = np.array([[1.0], [2.0], [3.0]])
    b = np.array([[4.0], [5.0], [6.0]])
    _, _, units = _units(a, b)
    p, arrangements, exact = permutation_p_values(units, 100, np.random.default_rng(0))
    # C(6, 3) = 20 labellings; only the observed one and its mirror reach |mean difference| = 3
    assert exact and arrangements == 20
    assert p[0] == pytest.approx(2 / 20)


def test_the_p_value_of_cohens_d_equals_that_of_the_mean_difference():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.6, 1.0, (5, 2)), rng.normal(0.0, 2.0, (6, 2))
    values, _, units = _units(a, b)
    p, arrangements, exact = permutation_p_values(units, 1000, rng)
    assert exact and arrangements == math.comb(11, 5)
    observed = np.abs(cohens_d(a, b).d)
    extreme = np.zeros(2)
    for chosen in itertools.combinations(range(11), 5):  # brute force over every labelling, with d itself
        mask = np.isin(np.arange(11), chosen)
        extreme += np.abs(cohens_d(values[mask], values[~mask]).d) >= observed - 1e-12
    np.testing.assert_allclose(p, extreme / arrangements)


def test_random_permutations_agree_with_the_t_test_on_normal_data():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.25, 1.0, (100, 3)), rng.normal(0.0, 1.0, (100, 3))
    _, _, units = _units(a, b)
    p, arrangements, exact = permutation_p_values(units, 4000, rng)
    expected = stats.ttest_ind(a, b).pvalue
    assert not exact and arrangements == 4000
    assert (np.abs(p - expected) <= 3 * np.sqrt(expected * (1 - expected) / 4000) + 1e-3).all()
    assert 0.01 < expected.max() and expected.min() < 0.2  # the comparison covers p-values that matter


def test_energy_distance_is_the_square_of_scipys_and_mmd_matches_the_hand_sum():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(0.7, 1.0, size=9)
    values, in_a = np.r_[x, y][:, None], np.arange(21) < 12
    energy = distance_test(values, in_a, "energy", 200, rng, cells_per_group=100)
    assert energy.value == pytest.approx(stats.energy_distance(x, y) ** 2, rel=1e-12)
    assert (energy.cells_a, energy.cells_b, energy.bandwidth) == (12, 9, None)

    mmd = distance_test(values, in_a, "mmd", 200, rng, cells_per_group=100)
    sigma = np.median([abs(u - v) for u, v in itertools.combinations(np.r_[x, y], 2)])
    k = lambda u, v: np.exp(-((u - v) ** 2) / (2 * sigma**2))  # noqa: E731
    hand = (
        np.mean([[k(u, v) for v in x] for u in x])
        + np.mean([[k(u, v) for v in y] for u in y])
        - 2 * np.mean([[k(u, v) for v in y] for u in x])
    )
    assert mmd.bandwidth == pytest.approx(sigma) and mmd.value == pytest.approx(hand, rel=1e-10)


def test_the_whole_space_distance_sees_a_change_of_spread_that_no_mean_test_sees():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.0, 1.0, (150, 3)), rng.normal(0.0, 2.0, (150, 3))
    result = compare_arrays(a, b, InferenceSettings(permutations=500, resamples=200))
    assert not result.dimensions.significant.any()
    assert result.distance.p < 0.01


def test_bootstrap_interval_of_d_contains_the_estimate_and_covers_the_truth():
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(60):
        a, b = rng.normal(0.5, 1.0, (40, 1)), rng.normal(0.0, 1.0, (40, 1))
        _, _, units = _units(a, b)
        low, high, method = bootstrap_intervals(units, 300, 0.95, rng)
        d = cohens_d(a, b).d[0]
        assert method == "BCa" and low[1, 0] < d < high[1, 0]
        assert low[0, 0] < a.mean() - b.mean() < high[0, 0]
        covered += low[1, 0] <= 0.5 <= high[1, 0]
    assert 50 <= covered <= 60  # 95 % nominal: 57 expected; binomial 99.9 % range of 60 draws


def test_per_image_bootstrap_resamples_images_and_gives_wider_intervals():
    rng = np.random.default_rng(4)
    a, b, images_a, images_b = simulate_conditions(rng, images=8, cells_per_image=30, dims=2, image_sd=0.7)
    per_cell = compare_arrays(a, b, InferenceSettings(permutations=200, resamples=500))
    per_image = compare_arrays(
        a, b, InferenceSettings(permutations=200, resamples=500, by_image=True), images_a=images_a, images_b=images_b
    )
    np.testing.assert_allclose(per_image.dimensions.d, per_cell.dimensions.d)  # same estimates, other uncertainty
    width = lambda r: r.dimensions.d_high - r.dimensions.d_low  # noqa: E731
    assert (width(per_image) > 1.5 * width(per_cell)).all()  # design effect 1 + 29 · 0.33: about 3 times wider
    assert (per_image.unit, per_image.units_a, per_image.cells_a, per_image.exact) == ("image", 8, 240, False)


def test_results_are_reproducible_with_a_seed_and_independent_of_the_chunk_size(monkeypatch):
    rng = np.random.default_rng(0)
    a, b, images_a, images_b = simulate_conditions(rng, images=5, cells_per_image=20, dims=3, shift=[0.5])
    settings = InferenceSettings(permutations=300, resamples=200, by_image=True)
    first = compare_arrays(a, b, settings, images_a=images_a, images_b=images_b)
    again = compare_arrays(a, b, settings, images_a=images_a, images_b=images_b)
    pd.testing.assert_frame_equal(first.dimensions.to_frame(), again.dimensions.to_frame())
    monkeypatch.setattr(inference, "CHUNK_ELEMENTS", 7)  # one labelling (or less) per chunk
    chunked = compare_arrays(a, b, settings, images_a=images_a, images_b=images_b)
    assert first.exact and first.arrangements == 252
    np.testing.assert_allclose(chunked.dimensions.p, first.dimensions.p)
    assert chunked.distance.p == pytest.approx(first.distance.p)
    other = compare_arrays(a, b, InferenceSettings(permutations=300, resamples=200, seed=1))
    seeded = compare_arrays(a, b, InferenceSettings(permutations=300, resamples=200, seed=0))
    assert not np.array_equal(other.dimensions.p, seeded.dimensions.p)


def test_a_constant_dimension_gets_p_one_and_no_effect_size():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    a[:, 1] = b[:, 1] = 3.0
    result = compare_arrays(a, b, InferenceSettings(permutations=200, resamples=200))
    dims = result.dimensions
    assert dims.p[1] == 1.0 and dims.q[1] == 1.0 and not dims.significant[1]
    assert dims.constant[1] and np.isnan(dims.d[1]) and np.isnan(dims.d_low[1])
    json.dumps(result.to_json())  # NaN is written as NaN, nothing raises


# ---------------------------------------------------------------- refusals and notes


def test_too_few_images_are_refused_saying_how_many_permutations_exist():
    rng = np.random.default_rng(0)
    a, b, images_a, images_b = simulate_conditions(rng, images=3, cells_per_image=10, dims=2)
    with pytest.raises(InputError, match=r"only 20 ways .* smallest possible p-value is 0\.1, above the level 0\.05"):
        compare_arrays(a, b, InferenceSettings(by_image=True), images_a=images_a, images_b=images_b)
    assert smallest_p_value(4, 4) == pytest.approx(2 / 70) and smallest_p_value(1, 30) == pytest.approx(1 / 31)
    with pytest.raises(InputError, match="at least 4 fields per condition"):
        compare_arrays(a, b, InferenceSettings(by_image=True), images_a=images_a, images_b=images_b)


def test_images_in_both_conditions_and_missing_image_names_are_refused():
    rng = np.random.default_rng(0)
    a, b, images_a, images_b = simulate_conditions(rng, images=5, cells_per_image=4, dims=2)
    with pytest.raises(InputError, match="'a0' hold cells of both conditions"):
        compare_arrays(
            a,
            b,
            InferenceSettings(by_image=True),
            images_a=images_a,
            images_b=np.where(images_b == "b1", "a0", images_b),
        )
    with pytest.raises(InputError, match="needs the image of every cell"):
        compare_arrays(a, b, InferenceSettings(by_image=True))


@pytest.mark.parametrize(
    "field, value, message",
    [("permutations", 10, "at least 100"), ("fdr", 1.5, "between 0 and 1"), ("distance", "kl", "energy, mmd")],
)
def test_bad_settings_are_refused_naming_the_setting(field, value, message):
    with pytest.raises(InputError, match=message):
        InferenceSettings(**{field: value})


def test_a_latent_table_is_compared_with_a_note_on_independent_cells():
    rng = np.random.default_rng(7)
    a, b, images_a, images_b = simulate_conditions(rng, images=4, cells_per_image=25, dims=3, shift=[1.0])
    table = pd.DataFrame(np.concatenate([a, b]), columns=["mu_0", "mu_1", "mu_2"])
    table["group"] = ["treated"] * 100 + ["control"] * 100
    table["source"] = np.concatenate([images_a, images_b])
    table.loc[len(table)] = [np.nan, np.nan, np.nan, "control", "b0"]  # an object never embedded
    settings = InferenceSettings(permutations=300, resamples=200)
    result = compare_groups(table, "group", "treated", "control", settings)
    assert result.significant_names() == ["mu_0"] and result.dimensions.d[0] > 0.5
    text = "\n".join(result.summary_lines())
    assert "4 image(s) of 'treated' and 4 of 'control': test per image" in text
    assert "1 object(s) without latents left out" in text
    per_image = compare_groups(
        table, "group", "treated", "control", InferenceSettings(permutations=300, resamples=200, by_image=True)
    )
    assert per_image.unit == "image" and per_image.arrangements == 70 and per_image.exact
    assert per_image.dimensions.p[0] == pytest.approx(2 / 70)  # the most extreme of 70: all treated images highest
    with pytest.raises(InputError, match="no 'source' column naming their image"):
        compare_groups(table.drop(columns="source"), "group", "treated", "control", InferenceSettings(by_image=True))


# ---------------------------------------------------------------- calibration (small versions of the benchmark)


def _rejections(rng, reps, *, dims, shift=(), images=1, cells_per_image=100, image_sd=0.0, by_image=False):
    """Per repetition, the raw p-values of the per-dimension permutation test."""
    out = []
    for _ in range(reps):
        a, b, images_a, images_b = simulate_conditions(
            rng, images=images, cells_per_image=cells_per_image, dims=dims, shift=shift, image_sd=image_sd
        )
        _, _, units = _units(a, b, *((images_a, images_b) if by_image else ()))
        out.append(permutation_p_values(units, 200, rng)[0])
    return np.array(out)


def test_no_shift_gives_the_nominal_false_positive_rate():
    p = _rejections(np.random.default_rng(100), 200, dims=5)
    rate = float((p <= 0.05).mean())
    assert 0.05 - 3.3 * np.sqrt(0.05 * 0.95 / p.size) <= rate <= 0.05 + 3.3 * np.sqrt(0.05 * 0.95 / p.size)


def test_a_shift_of_half_a_standard_deviation_is_found_with_200_cells_per_group():
    p = _rejections(np.random.default_rng(101), 40, dims=4, shift=[0.5], cells_per_image=200)
    found = [stats.false_discovery_control(row, method="bh")[0] <= 0.05 for row in p]
    assert np.mean(found) >= 0.9


def test_benjamini_hochberg_keeps_the_false_discovery_rate():
    p = _rejections(np.random.default_rng(102), 100, dims=20, shift=[0.5] * 5, cells_per_image=100)
    q = stats.false_discovery_control(p, method="bh", axis=1)
    rejected = q <= 0.1
    false = rejected[:, 5:].sum(axis=1)
    fdp = false / np.maximum(rejected.sum(axis=1), 1)
    assert fdp.mean() <= 0.1 and rejected[:, :5].mean() > 0.5  # FDR ≤ q (expected 0.1 · 15/20) with real power


def test_with_an_image_random_effect_only_the_per_image_test_keeps_its_level():
    settings = dict(dims=2, images=6, cells_per_image=30, image_sd=0.5)
    per_cell = _rejections(np.random.default_rng(103), 60, **settings)
    per_image = _rejections(np.random.default_rng(103), 60, by_image=True, **settings)
    assert (per_cell <= 0.05).mean() > 0.3  # design effect 1 + 29 · 0.2 ≈ 6.8: far above 5 %
    assert (per_image <= 0.05).mean() <= 0.05 + 3.3 * np.sqrt(0.05 * 0.95 / per_image.size)
