"""Grad-CAM on toy encoders and classifiers with known answers, and placement of maps in the source image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from napari_morphospace.core.analysis.gradcam import (
    gradcam,
    gradcam_classifier,
    gradcam_encoder,
    overlay_on_layer,
    paste_into_source,
    paste_maps,
    place_in_source,
)
from napari_morphospace.core.errors import InputError

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


class LeftHalf(nn.Module):
    """Zeroes the right half (along X) of the feature maps: the encoder only sees the left half."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(a)
        mask[..., : a.shape[-1] // 2] = 1.0
        return a * mask


class ToyEncoder(nn.Module):
    """conv → BatchNorm → ReLU (→ left-half mask) → pool; μ = linear map of the pooled features."""

    def __init__(self, ndim: int, left_only: bool = False, latent_dim: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers = [CONV[ndim](1, 6, 3, padding=1), NORM[ndim](6), nn.ReLU()]
        if left_only:
            layers.append(LeftHalf())
        self.features = nn.Sequential(*layers, POOL[ndim](2))
        self.head = nn.Linear(6, latent_dim)
        self.latent_dim = latent_dim

    def feature_layer(self) -> nn.Module:
        return self.features

    def encode(self, x: torch.Tensor, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.features(x).flatten(2).mean(dim=2)
        mu = self.head(pooled)
        return mu, torch.zeros_like(mu)


def _with_running_stats(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give BatchNorm non-trivial running statistics, as a trained model has."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model.encode(x * 2 + 0.3)
    return model


@pytest.mark.parametrize("shape", [(3, 1, 17, 23), (2, 1, 9, 12, 14)])
def test_map_has_the_input_spatial_shape_and_is_normalised(shape):
    torch.manual_seed(2)
    x = torch.rand(shape)
    model = _with_running_stats(ToyEncoder(len(shape) - 2), x)
    cams = gradcam_encoder(model, x, 1)
    assert cams.shape == (shape[0], *shape[2:]) and cams.dtype == np.float32
    assert cams.min() >= 0.0
    for cam in cams:
        assert cam.max() == pytest.approx(1.0) or cam.max() == 0.0
    assert model.training  # the mode the model had is restored


def test_a_sample_map_does_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(1)
    x = torch.rand(4, 1, 16, 16)
    model = _with_running_stats(ToyEncoder(2), x)
    first = gradcam_encoder(model, x, 0)
    other = torch.cat([x[:1], torch.rand(3, 1, 16, 16) * 5])
    second = gradcam_encoder(model, other, 0)
    np.testing.assert_allclose(first[0], second[0], atol=1e-6)
    np.testing.assert_allclose(first[0], gradcam_encoder(model, x[:1], 0)[0], atol=1e-6)
    chunked = gradcam(model, x, lambda batch: model.encode(batch)[0][:, 0], batch_size=3)  # a selection in chunks
    np.testing.assert_allclose(chunked, first, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 1, 16, 24), (2, 1, 8, 10, 32)])
def test_encoder_reading_only_the_left_half_puts_the_map_on_the_left(shape):
    torch.manual_seed(3)
    x = torch.rand(shape)
    model = _with_running_stats(ToyEncoder(len(shape) - 2, left_only=True), x)
    for dim in range(3):
        for sign in (1, -1):
            cams = gradcam_encoder(model, x, dim, sign=sign)
            half = shape[-1] // 2
            total = cams.sum(axis=tuple(range(1, cams.ndim)))
            left = cams[..., :half].sum(axis=tuple(range(1, cams.ndim)))
            assert np.all((total == 0) | (left > 0.9 * total))
    assert gradcam_encoder(model, x, 0, sign=1).sum() + gradcam_encoder(model, x, 0, sign=-1).sum() > 0


class SumEncoder(nn.Module):
    """μ_0 = Σ x·m with the input itself as the feature layer: the Grad-CAM weight is mean(m),
    the map ReLU(mean(m)·x)."""

    def __init__(self, m: torch.Tensor) -> None:
        super().__init__()
        self.identity = nn.Identity()
        self.register_buffer("m", m)

    def feature_layer(self) -> nn.Module:
        return self.identity

    def encode(self, x: torch.Tensor, cond=None):
        mu = (self.identity(x) * self.m).flatten(1).sum(dim=1, keepdim=True)
        return mu, torch.zeros_like(mu)


def test_known_answer_and_both_signs():
    torch.manual_seed(4)
    m = torch.zeros(1, 6, 6)
    m[0, :, :3] = 1.0  # mean(m) = 0.5 > 0
    x = torch.rand(2, 1, 6, 6) + 0.1
    positive = gradcam_encoder(SumEncoder(m), x, 0, sign=1)
    expected = (x[:, 0] / x[:, 0].flatten(1).amax(dim=1)[:, None, None]).numpy()
    np.testing.assert_allclose(positive, expected, rtol=1e-6)
    negative = gradcam_encoder(SumEncoder(m), x, 0, sign=-1)  # no evidence against: all-zero, no NaN
    np.testing.assert_array_equal(negative, 0.0)
    raw = gradcam_encoder(SumEncoder(m), x, 0, normalize=False)
    np.testing.assert_allclose(raw, 0.5 * x[:, 0].numpy(), rtol=1e-6)


def test_bad_requests_are_refused():
    x = torch.rand(1, 1, 8, 8)
    model = ToyEncoder(2)
    with pytest.raises(InputError, match="sign"):
        gradcam_encoder(model, x, 0, sign=2)
    with pytest.raises(InputError, match="dimensions 0 to 2"):
        gradcam_encoder(model, x, 3)
    with pytest.raises(InputError, match="batch"):
        gradcam_encoder(model, x[0], 0)
    with pytest.raises(InputError, match="was not used"):
        gradcam(model, x, lambda batch: model.encode(batch)[0][:, 0], layer=nn.Conv2d(1, 1, 1))


class ToyClassifier(nn.Module):
    """Class 1's logit is the mean brightness of the bottom half; class 0's is its negative."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()

    def feature_layer(self) -> nn.Module:
        return self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottom = self.features(x)[..., x.shape[-2] // 2 :, :].mean(dim=(1, 2, 3))
        return torch.stack([-bottom, bottom], dim=1)


def test_classifier_map_targets_the_class_logit():
    torch.manual_seed(5)
    x = torch.rand(2, 1, 10, 10) + 0.1
    cam = gradcam_classifier(ToyClassifier(), x, 1)
    assert cam.shape == (2, 10, 10) and cam.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(gradcam_classifier(ToyClassifier(), x, 0), 0.0)
    with pytest.raises(InputError, match="classes 0 to 1"):
        gradcam_classifier(ToyClassifier(), x, 2)


def test_placement_in_source_coordinates_2d():
    cam = np.zeros((4, 4), dtype=np.float32)
    cam[1, 2] = 1.0
    row = pd.Series({"y_start": 10, "y_stop": 18, "x_start": 20, "x_stop": 28})  # each crop pixel = 2×2 source pixels
    translate, scale = place_in_source(cam, row)
    assert scale == (2.0, 2.0)
    # crop pixel (1, 2) covers source rows 12-13 and columns 24-25: its centre sits between those pixel centres
    assert tuple(t + s * i for t, s, i in zip(translate, scale, (1, 2), strict=True)) == (12.5, 24.5)

    pasted = paste_into_source(cam, row, (32, 40), order=0)
    expected = np.zeros((32, 40), dtype=np.float32)
    expected[12:14, 24:26] = 1.0
    np.testing.assert_array_equal(pasted, expected)
    assert np.unravel_index(paste_into_source(cam, row, (32, 40)).argmax(), (32, 40))[0] in (12, 13)


def test_placement_3d_with_unequal_scales_and_a_box_past_the_edge():
    cam = np.zeros((2, 4, 4), dtype=np.float32)
    cam[1, 0, 3] = 1.0
    row = {"z_start": 3, "z_stop": 7, "y_start": -4, "y_stop": 4, "x_start": 30, "x_stop": 34}
    translate, scale = place_in_source(cam, row)
    assert scale == (2.0, 2.0, 1.0)
    assert translate == (3.5, -3.5, 30.0)
    pasted = paste_into_source(cam, row, (10, 12, 32), order=0)
    expected = np.zeros((10, 12, 32), dtype=np.float32)
    # crop voxel (1, 0, 3) → z 5-6, y -4..-3 (outside the image, dropped), x 33 (outside) → nothing visible
    np.testing.assert_array_equal(pasted, expected)
    cam[1, 2, 1] = 0.5  # → z 5-6, y 0-1, x 31
    expected[5:7, 0:2, 31] = 0.5
    np.testing.assert_array_equal(paste_into_source(cam, row, (10, 12, 32), order=0), expected)


def test_placement_needs_the_bounding_box():
    with pytest.raises(InputError, match="z_start"):
        place_in_source(np.zeros((2, 4, 4)), {"y_start": 0, "y_stop": 4, "x_start": 0, "x_stop": 4})
    with pytest.raises(InputError, match="empty"):
        place_in_source(np.zeros((4, 4)), {"y_start": 4, "y_stop": 4, "x_start": 0, "x_stop": 4})


@pytest.mark.parametrize(
    "model_name, shape", [("beta-vae", (1, 28, 20)), ("beta-vae", (2, 10, 16, 12)), ("me-vae", (1, 24, 24))]
)
def test_real_models_give_batch_independent_maps_of_the_input_shape(model_name, shape):
    from napari_morphospace.core.models import ModelSettings, build_model

    torch.manual_seed(0)
    model = build_model(ModelSettings(model=model_name, latent_dim=4, base_channels=4, depth=2), shape)
    x = torch.rand(3, *shape)
    model.train()
    with torch.no_grad():
        model(x)  # BatchNorm running statistics differ from their initial values
    both = [gradcam_encoder(model, x, 2, sign=s) for s in (1, -1)]
    assert both[0].shape == (3, *shape[1:])
    assert all(np.isfinite(cam).all() for cam in both) and max(cam.max() for cam in both) == pytest.approx(1.0)
    alone = gradcam_encoder(model, x[2:], 2)
    np.testing.assert_allclose(both[0][2], alone[0], atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 6),
    factor=st.integers(1, 4),
    start=st.tuples(st.integers(-5, 20), st.integers(-5, 20)),
    hot=st.tuples(st.integers(0, 5), st.integers(0, 5)),
)
def test_paste_and_place_agree_on_where_a_crop_pixel_lands(n, factor, start, hot):
    hot = tuple(min(h, n - 1) for h in hot)
    cam = np.zeros((n, n), dtype=np.float32)
    cam[hot] = 1.0
    row = {"y_start": start[0], "y_stop": start[0] + n * factor, "x_start": start[1], "x_stop": start[1] + n * factor}
    translate, scale = place_in_source(cam, row)
    centre = np.array(translate) + np.array(scale) * np.array(hot)  # napari world coordinate of the crop pixel
    pasted = paste_into_source(cam, row, (40, 40), order=0)
    covered = np.argwhere(pasted > 0)
    expected = [
        (y, x)
        for y in range(start[0] + hot[0] * factor, start[0] + (hot[0] + 1) * factor)
        for x in range(start[1] + hot[1] * factor, start[1] + (hot[1] + 1) * factor)
        if 0 <= y < 40 and 0 <= x < 40
    ]
    assert sorted(map(tuple, covered)) == expected
    if len(expected) == factor * factor:  # fully inside: the block's centre is where napari draws the pixel
        np.testing.assert_allclose(covered.mean(axis=0), centre)


def test_overlay_lands_on_the_hand_computed_world_pixels():
    # A 32×32 map of a crop that showed source pixels y 100..163, x 50..113 (2 source pixels per map pixel),
    # on a source layer with scale 0.5 and translate (10, 20).
    cam = np.zeros((32, 32), np.float32)
    row = {"y_start": 100, "y_stop": 164, "x_start": 50, "x_stop": 114}
    data, translate, scale = overlay_on_layer(cam, row, layer_scale=(0.5, 0.5), layer_translate=(10.0, 20.0))
    assert data.shape == (32, 32)
    np.testing.assert_allclose(scale, (1.0, 1.0))
    # centre of map pixel (0, 0): source pixel 100.5, 50.5 -> world 10 + 0.5·100.5, 20 + 0.5·50.5
    np.testing.assert_allclose(translate, (60.25, 45.25))
    first_edge = np.array(translate) - np.array(scale) / 2
    last_edge = np.array(translate) + np.array(scale) * 31 + np.array(scale) / 2
    # the source box covers pixels 100..163: world edges 10 + 0.5·99.5 = 59.75 and 10 + 0.5·163.5 = 91.75
    np.testing.assert_allclose(first_edge, (59.75, 44.75))
    np.testing.assert_allclose(last_edge, (91.75, 76.75))


def test_overlay_on_a_time_lapse_and_a_volume():
    cam = np.zeros((4, 8, 8), np.float32)
    row = {"z_start": 2, "z_stop": 6, "y_start": 0, "y_stop": 16, "x_start": 8, "x_stop": 16}
    data, translate, scale = overlay_on_layer(
        cam, row, layer_scale=(5.0, 2.0, 0.5, 0.5), layer_translate=(1.0, 0.0, 0.0, 100.0), leading_index=(7,)
    )
    assert data.shape == (1, 4, 8, 8)
    np.testing.assert_allclose(scale, (5.0, 2.0, 1.0, 0.5))
    np.testing.assert_allclose(translate, (1.0 + 5.0 * 7, 2.0 * 2.0, 0.5 * 0.5, 100.0 + 0.5 * 8.0))
    with pytest.raises(InputError, match="one index for each"):
        overlay_on_layer(cam, row, layer_scale=(1, 1, 1, 1), layer_translate=(0, 0, 0, 0))


def test_paste_maps_keeps_the_larger_value_where_boxes_overlap():
    rows = [
        {"y_start": 0, "y_stop": 4, "x_start": 0, "x_stop": 4},
        {"y_start": 2, "y_stop": 6, "x_start": 2, "x_stop": 6},
    ]
    cams = [np.full((4, 4), 0.25, np.float32), np.full((4, 4), 1.0, np.float32)]
    pasted = paste_maps(cams, rows, (8, 8))
    expected = np.zeros((8, 8), np.float32)
    expected[0:4, 0:4] = 0.25
    expected[2:6, 2:6] = 1.0
    np.testing.assert_array_equal(pasted, expected)
