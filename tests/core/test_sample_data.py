"""Synthetic sample data: the rendered cells must measure as their factors say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.stats import mannwhitneyu, spearmanr
from skimage.filters import threshold_otsu
from skimage.measure import regionprops_table

from napari_morphospace._sample_data import (
    sample_2d_fluorescence,
    sample_2d_phase,
    sample_3d_fluorescence,
    sample_layer_data,
)
from napari_morphospace.core.cells.sample_data import (
    FACTOR_NAMES,
    TREATED_SHIFTS,
    Z_ASPECT,
    SampleSettings,
    make_sample_data,
)
from napari_morphospace.core.config import from_dict, to_dict
from napari_morphospace.core.errors import InputError

MEASURED = ("label", "area", "orientation", "axis_major_length", "axis_minor_length", "centroid", "bbox", "solidity")


@pytest.fixture(scope="module")
def sample_2d():
    return make_sample_data(SampleSettings(n_cells=100, seed=0))


@pytest.fixture(scope="module")
def sample_3d():
    return make_sample_data(SampleSettings(n_cells=12, ndim=3, seed=3))


def group_factors(sample, index: int) -> pd.DataFrame:
    return sample.factors[sample.factors["source"] == sample.images[index].source].reset_index(drop=True)


def measure(sample, index: int) -> pd.DataFrame:
    return pd.DataFrame(regionprops_table(sample.labels[index], properties=MEASURED))


def test_same_seed_gives_identical_arrays_and_another_seed_differs():
    first = make_sample_data(SampleSettings(n_cells=15, seed=7))
    again = make_sample_data(SampleSettings(n_cells=15, seed=7))
    other = make_sample_data(SampleSettings(n_cells=15, seed=8))
    for a, b, c in zip(first.images, again.images, other.images, strict=True):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.data.shape != c.data.shape or not np.array_equal(a.data, c.data)
    for a, b in zip(first.labels, again.labels, strict=True):
        np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(first.factors, again.factors)
    assert not np.allclose(first.factors["size"], other.factors["size"])


def test_images_are_uint16_cyx_with_named_channels_and_physical_scale(sample_2d):
    assert [s.source for s in sample_2d.images] == ["synthetic-control", "synthetic-treated"]
    for stack, labels in zip(sample_2d.images, sample_2d.labels, strict=True):
        assert stack.axes == "CYX"
        assert stack.data.dtype == np.uint16 and labels.dtype == np.uint16
        assert stack.data.shape[0] == 3 and stack.data.shape[1:] == labels.shape
        assert stack.channel_names == ["membrane", "nucleus", "granules"]
        assert stack.scale == {"Y": 0.65, "X": 0.65}
        # Camera offset plus signal: background near the offset, cells well above it.
        membrane = stack.data[0]
        assert np.median(membrane[labels == 0]) == pytest.approx(100, abs=15)
        assert np.median(membrane[labels > 0]) > 400


@pytest.mark.parametrize("n_channels, names", [(1, ["membrane"]), (2, ["membrane", "nucleus"])])
def test_fewer_channels(n_channels, names):
    sample = make_sample_data(SampleSettings(n_cells=5, n_channels=n_channels))
    assert sample.images[0].channel_names == names
    assert sample.images[0].data.shape[0] == n_channels


def test_label_ids_are_one_to_n_and_match_factor_rows(sample_2d):
    for index in range(2):
        factors = group_factors(sample_2d, index)
        measured = measure(sample_2d, index)
        np.testing.assert_array_equal(factors["label_id"], np.arange(1, 101))
        np.testing.assert_array_equal(measured["label"], np.arange(1, 101))
        # Row i is label i + 1: the measured centroid sits at the factor centre.
        distance = np.hypot(
            measured["centroid-0"] - factors["centroid_y"], measured["centroid-1"] - factors["centroid_x"]
        )
        assert distance.max() < 3
    assert list(sample_2d.factors.columns[:3]) == ["group", "source", "label_id"]
    assert set(FACTOR_NAMES) <= set(sample_2d.factors.columns)
    assert sample_2d.factors.groupby("group").size().to_dict() == {"control": 100, "treated": 100}


def test_cells_do_not_touch_and_are_each_one_piece(sample_2d):
    for labels in sample_2d.labels:
        for axis in range(2):
            a = np.take(labels, range(labels.shape[axis] - 1), axis=axis)
            b = np.take(labels, range(1, labels.shape[axis]), axis=axis)
            assert not np.any((a > 0) & (b > 0) & (a != b))
        assert ndimage.label(labels > 0)[1] == labels.max()


def test_measured_area_is_the_factor_area(sample_2d):
    for index in range(2):
        relative_error = measure(sample_2d, index)["area"] / (np.pi * group_factors(sample_2d, index)["size"] ** 2) - 1
        assert np.abs(relative_error).max() < 0.04


def test_measured_orientation_and_elongation_follow_the_factors(sample_2d):
    for index in range(2):
        factors, measured = group_factors(sample_2d, index), measure(sample_2d, index)
        elongated = factors["elongation"] > 1.3
        # Both follow skimage's convention; axes are unsigned, so compare modulo pi.
        error = np.abs((measured["orientation"] - factors["orientation"] + np.pi / 2) % np.pi - np.pi / 2)[elongated]
        assert error.median() < 0.1 and error.max() < 0.4
        ratio = measured["axis_major_length"] / measured["axis_minor_length"]
        assert spearmanr(ratio, factors["elongation"]).statistic > 0.8


def test_every_cell_fits_a_64_px_box_away_from_the_border(sample_2d):
    for index, labels in enumerate(sample_2d.labels):
        measured = measure(sample_2d, index)
        extent = np.maximum(measured["bbox-2"] - measured["bbox-0"], measured["bbox-3"] - measured["bbox-1"])
        assert extent.max() <= 62
        centres = group_factors(sample_2d, index)[["centroid_y", "centroid_x"]].to_numpy()
        assert centres.min() >= 32 and centres.max() <= labels.shape[0] - 33


def test_each_cell_holds_exactly_one_nucleus(sample_2d):
    for stack, labels in zip(sample_2d.images, sample_2d.labels, strict=True):
        dna = ndimage.gaussian_filter(stack.data[1].astype(float), 1)
        nuclei, count = ndimage.label(dna > threshold_otsu(dna))
        assert count == labels.max()
        # Every nucleus lies inside a cell, and each cell has a different one.
        cell_of_nucleus = ndimage.maximum(labels, nuclei, range(1, count + 1))
        assert ndimage.minimum(labels, nuclei, range(1, count + 1)).min() > 0
        assert sorted(cell_of_nucleus) == list(range(1, count + 1))


def test_treated_group_differs_in_the_shifted_factors_only(sample_2d):
    control, treated = group_factors(sample_2d, 0), group_factors(sample_2d, 1)
    for name in FACTOR_NAMES:
        p_value = mannwhitneyu(control[name], treated[name]).pvalue
        if name in TREATED_SHIFTS:
            assert p_value < 1e-6 and treated[name].mean() > control[name].mean(), name
        else:
            assert p_value > 0.01, name
    # Measured: 30 % more area and rougher (less solid) outlines.
    area_ratio = measure(sample_2d, 1)["area"].mean() / measure(sample_2d, 0)["area"].mean()
    assert area_ratio == pytest.approx(1.3, abs=0.1)
    assert measure(sample_2d, 1)["solidity"].median() < measure(sample_2d, 0)["solidity"].median()


def test_granule_density_follows_texture(sample_2d):
    densities, textures = [], []
    for index, (stack, labels) in enumerate(zip(sample_2d.images, sample_2d.labels, strict=True)):
        granules = stack.data[2].astype(float)
        spots = (granules == ndimage.maximum_filter(granules, 3)) & (granules > 500) & (labels > 0)
        densities.append(ndimage.sum(spots, labels, range(1, labels.max() + 1)) / np.bincount(labels.ravel())[1:])
        textures.append(group_factors(sample_2d, index)["texture"])
    assert densities[1].mean() > 1.3 * densities[0].mean()
    assert spearmanr(np.concatenate(densities), np.concatenate(textures)).statistic > 0.5


def test_no_shifts_gives_alike_groups():
    sample = make_sample_data(SampleSettings(n_cells=60, treated_shifts={}))
    control, treated = group_factors(sample, 0), group_factors(sample, 1)
    assert mannwhitneyu(control["size"], treated["size"]).pvalue > 0.01


def test_3d_volume_shape_scale_and_cell_volume(sample_3d):
    for index, (stack, labels) in enumerate(zip(sample_3d.images, sample_3d.labels, strict=True)):
        assert stack.axes == "CZYX" and stack.data.shape[:2] == (3, 24)
        assert stack.data.shape[1:] == labels.shape and stack.data.dtype == np.uint16
        assert stack.scale == {"Z": 1.0, "Y": 0.5, "X": 0.5}
        factors = group_factors(sample_3d, index)
        measured = pd.DataFrame(regionprops_table(labels, properties=("label", "area", "bbox")))
        np.testing.assert_array_equal(measured["label"], factors["label_id"])
        # Equator area pi * size^2 (px), height semi-axis Z_ASPECT * size / 2 slices (Z step = 2 px).
        semi_height = Z_ASPECT * factors["size"] / 2
        volume = 4 / 3 * np.pi * factors["size"] ** 2 * semi_height
        assert np.abs(measured["area"] / volume - 1).max() < 0.04
        widest = np.array([np.count_nonzero((labels == i).any(axis=0)) for i in factors["label_id"]])
        assert np.abs(widest / (np.pi * factors["size"] ** 2) - 1).max() < 0.04
        assert np.all(np.abs(measured["bbox-3"] - measured["bbox-0"] - 2 * semi_height) <= 2)


def test_phase_contrast_has_dark_cells_with_a_bright_halo():
    sample = make_sample_data(SampleSettings(n_cells=20, modality="phase", n_channels=1))
    stack, labels = sample.images[0], sample.labels[0]
    assert stack.channel_names == ["phase"] and stack.data.shape == (1, *labels.shape)
    image = stack.data[0].astype(float)
    distance = ndimage.distance_transform_edt(labels == 0)
    background = np.median(image[distance > 10])
    assert background == pytest.approx(2000, rel=0.05)
    assert np.median(image[ndimage.binary_erosion(labels > 0, iterations=3)]) < background - 200
    assert np.median(image[(distance >= 1) & (distance <= 2)]) > background + 200


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(n_cells=0), "at least 1"),
        (dict(ndim=4), "choose 2"),
        (dict(modality="phase"), "n_channels=1"),
        (dict(modality="phase", n_channels=1, ndim=3), "ndim=2"),
        (dict(n_channels=4), "1 to 3"),
        (dict(groups=("a", "a")), "two different names"),
        (dict(treated_shifts={"colour": 2.0}), "shiftable factors"),
        (dict(treated_shifts={"orientation": 2.0}), "shiftable factors"),
        (dict(treated_shifts={"size": -1.0}), "positive"),
        (dict(treated_shifts={"elongation": 0.8}), "1 or more"),
        (dict(treated_shifts={"nucleus_size": 2.0}), "outside cells"),
    ],
)
def test_bad_settings_say_what_to_do(settings, message):
    with pytest.raises(InputError, match=message):
        SampleSettings(**settings)


def test_settings_round_trip_through_a_config_dict():
    settings = SampleSettings(n_cells=7, ndim=3, groups=("wild type", "mutant"), treated_shifts={"elongation": 1.2})
    assert from_dict(SampleSettings, to_dict(settings)) == settings


@pytest.mark.parametrize(
    "settings, message",
    [(dict(n_cells=50, image_size=200), "larger image_size"), (dict(ndim=3, z_size=8), "at least")],
)
def test_space_too_small_says_how_big(settings, message):
    with pytest.raises(InputError, match=message):
        make_sample_data(SampleSettings(**settings))


def test_layer_data_puts_groups_side_by_side_with_features():
    sample = make_sample_data(SampleSettings(n_cells=8, seed=2))
    layers = sample_layer_data(sample)
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels", "image", "labels"]
    control_image, control_labels, treated_image, treated_labels = layers
    assert control_image[1]["channel_axis"] == 0
    assert control_image[1]["name"] == ["control membrane", "control nucleus", "control granules"]
    assert len(control_image[1]["colormap"]) == 3
    assert control_labels[1]["name"] == "control cells"
    assert treated_labels[1]["metadata"] == {"group": "treated", "source": "synthetic-treated"}
    width = sample.labels[0].shape[1]
    assert control_image[1]["translate"] == (0.0, 0.0)
    assert treated_image[1]["translate"][1] == pytest.approx((width + 20) * 0.65)
    assert treated_labels[1]["translate"] == treated_image[1]["translate"]
    assert treated_labels[1]["scale"] == (0.65, 0.65)
    features = treated_labels[1]["features"]
    np.testing.assert_array_equal(features["index"], np.arange(1, 9))
    assert (features["group"] == "treated").all()
    np.testing.assert_array_equal(features["size"], group_factors(sample, 1)["size"])
    assert treated_labels[0] is sample.labels[1]


@pytest.mark.parametrize(
    "make_layers, n_image_channels, n_spatial",
    [(sample_2d_fluorescence, 3, 2), (sample_2d_phase, 1, 2), (sample_3d_fluorescence, 3, 3)],
)
def test_npe2_sample_commands_return_layer_tuples(make_layers, n_image_channels, n_spatial):
    layers = make_layers()
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels"] * 2
    for data, kwargs, layer_type in layers:
        assert len(kwargs["scale"]) == len(kwargs["translate"]) == n_spatial
        if layer_type == "image":
            assert data.ndim == n_spatial + 1 and data.shape[0] == n_image_channels == len(kwargs["name"])
        else:
            assert data.ndim == n_spatial and len(kwargs["features"]) == data.max()
