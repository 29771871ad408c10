"""Known-answer and property tests for core.cells.preprocess."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage import draw, measure

from napari_morphospace.core.cells import preprocess as pp
from napari_morphospace.core.errors import InputError


def tilted_ellipse(shape=(101, 101), angle_deg=30.0, radii=(10, 35)) -> np.ndarray:
    """Boolean ellipse centred in ``shape``, major axis ``angle_deg`` from X (counter-clockwise as displayed)."""
    mask = np.zeros(shape, bool)
    centre = [(s - 1) / 2 for s in shape]
    # skimage's rotation is measured from the row axis; major radius along columns at rotation 0.
    rr, cc = draw.ellipse(*centre, *radii, shape=shape, rotation=np.deg2rad(angle_deg))
    mask[rr, cc] = True
    return mask


def angle_from_x(mask: np.ndarray) -> float:
    """Angle in degrees between the major axis of ``mask`` and the X axis (0 = horizontal)."""
    orientation = measure.regionprops(mask.astype(np.uint8))[0].orientation  # from the row axis
    return 90.0 - abs(np.degrees(orientation))


# --------------------------------------------------------------------------- align


def test_tilted_ellipse_fixture_is_tilted():
    assert angle_from_x(tilted_ellipse()) == pytest.approx(30.0, abs=1.0)


@pytest.mark.parametrize("use_mask", [True, False])
def test_align_makes_2d_ellipse_horizontal(use_mask):
    mask = tilted_ellipse()
    image = np.stack([mask, np.zeros_like(mask)]).astype(np.float32)  # channel 1 empty: must not matter
    out = pp.align_major_axis(image, mask=mask if use_mask else None, reference_channel=0)
    assert out.shape == image.shape and out.dtype == np.float32
    assert angle_from_x(out[0] > 0.5) == pytest.approx(0.0, abs=3.0)
    assert out[0].sum() == pytest.approx(image[0].sum(), rel=0.02)  # rotated, not cropped


def test_align_rotates_3d_ellipsoid_about_z():
    plane = tilted_ellipse((64, 64), 30.0, (6, 22))
    volume = np.zeros((9, 64, 64), bool)
    volume[2:7] = plane
    out = pp.align_major_axis(volume[None].astype(np.uint8) * 255)
    assert out.shape == (1, 9, 64, 64)
    assert angle_from_x(out[0].max(axis=0) > 0.5) == pytest.approx(0.0, abs=3.0)
    assert not out[0, :2].any() and not out[0, 7:].any()  # no mixing across Z


def test_align_points_the_longer_tail_to_plus_x():
    # A disk with a thin tail towards the upper left: after alignment the tail must point right (+X).
    image = np.zeros((121, 121), np.float32)
    rr, cc = draw.disk((60, 60), 14)
    image[rr, cc] = 1
    tip = (60 - 40 * np.sin(np.deg2rad(135)), 60 + 40 * np.cos(np.deg2rad(135)))
    rr, cc = draw.line(60, 60, int(round(tip[0])), int(round(tip[1])))
    for d in (-1, 0, 1):
        image[rr + d, cc] = 1
    out = pp.align_major_axis(image[None])[0]
    ys, xs = np.nonzero(out > 0.5)
    assert angle_from_x(out > 0.5) == pytest.approx(0.0, abs=5.0)
    assert xs.max() - 60 > 60 - xs.min() + 15  # far tip on the +X side
    assert abs(ys.mean() - 60) < 2


def test_pipeline_moves_mask_with_the_rotation():
    # Uniform image, tilted mask: after align + mask_object only the rotated (horizontal) ellipse remains.
    mask = tilted_ellipse()
    image = np.full((1, *mask.shape), 0.5, np.float32)
    pipeline = pp.PreprocessPipeline([pp.PreprocessStep("align_major_axis"), pp.PreprocessStep("mask_object")])
    out = pp.apply_pipeline(image, pipeline, mask=mask)
    support = out[0] > 0
    assert angle_from_x(support) == pytest.approx(0.0, abs=3.0)
    assert abs(int(support.sum()) - int(mask.sum())) < 0.03 * mask.sum()
    assert np.allclose(out[0][support], 0.5)


# --------------------------------------------------------------------------- centre


def gaussian_blob(shape, centre, sigma=3.0) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return np.exp(-r2 / (2 * sigma**2)).astype(np.float32)


@pytest.mark.parametrize(("shape", "blob_at"), [((64, 64), (14.0, 45.3)), ((16, 40, 40), (5.0, 12.0, 27.5))])
def test_center_moves_reference_centre_of_mass_to_image_centre(shape, blob_at):
    reference = gaussian_blob(shape, blob_at)
    other = np.roll(reference, 3, axis=-1)  # a second channel, offset by 3 px in X
    out = pp.center_on_channel(np.stack([other, reference]), reference_channel=1)
    centre = (np.array(shape) - 1) / 2
    assert np.allclose(ndimage.center_of_mass(out[1]), centre, atol=0.5)
    # The other channel moved by the same shift: it keeps its 3 px offset.
    assert np.allclose(ndimage.center_of_mass(out[0]), centre + np.eye(len(shape))[-1] * 3, atol=0.5)


def test_pipeline_reference_channel_and_mask_travel_with_centring():
    reference = gaussian_blob((64, 64), (12.0, 48.0))
    mask = reference > 0.2
    pipeline = pp.PreprocessPipeline([pp.PreprocessStep("center_on_channel"), pp.PreprocessStep("mask_object")])
    out = pp.apply_pipeline(np.stack([np.zeros_like(reference), reference]), pipeline, mask=mask, reference_channel=1)
    assert np.allclose(ndimage.center_of_mass(out[1]), (31.5, 31.5), atol=0.5)
    # Had the mask stayed behind, mask_object would have erased the centred blob.
    assert out[1].sum() == pytest.approx((reference * mask).sum(), rel=0.05)


def test_center_leaves_all_zero_reference_unchanged():
    image = np.zeros((2, 8, 8), np.float32)
    image[1, 0, 0] = 1
    assert np.array_equal(pp.center_on_channel(image, reference_channel=0), image)


def test_statistical_cell_pipeline_end_to_end():
    # Cell (channel 0) tilted 30 degrees and off-centre on a 0.2 background; nucleus (channel 1) inside it.
    cell = np.roll(tilted_ellipse((121, 121), 30.0, (12, 30)), (-10, 8), axis=(0, 1))
    nucleus = gaussian_blob((121, 121), (50.0, 70.0), sigma=3.0)
    image = np.stack([0.2 + 0.6 * cell, 0.2 + 0.6 * nucleus]).astype(np.float32)
    out = pp.apply_pipeline(image, pp.statistical_cell_pipeline(), mask=cell, reference_channel=1)
    assert out.shape == image.shape
    assert angle_from_x(out[0] > 0.5) == pytest.approx(0.0, abs=3.0)
    assert np.allclose(ndimage.center_of_mass(out[1]), (60.0, 60.0), atol=0.5)
    # The 0.2 background (the mode) is subtracted: only the cell (with an interpolated rim) stays above 0.05.
    assert cell.sum() <= np.count_nonzero(out[0] > 0.05) < 1.3 * cell.sum()


# --------------------------------------------------------------------------- intensity steps


def test_subtract_mode_hand_computed_on_integer_levels():
    # Mode 5: x - 5 clipped at 0 -> [0,0,0,0,2,4,0,0], divided by the maximum 4.
    levels = np.array([[0, 5, 5, 5], [7, 9, 5, 5]])
    expected = np.array([[0, 0, 0, 0], [0.5, 1.0, 0, 0]], np.float32)
    assert np.allclose(pp.subtract_mode(levels[None].astype(np.uint8)), expected[None], atol=1e-6)
    assert np.allclose(pp.subtract_mode(levels[None].astype(np.float32)), expected[None], atol=1e-6)


def test_subtract_mode_uses_the_mean_of_the_fullest_bin():
    # bins=4 over [0.1, 0.9]: edges 0.1, 0.3, 0.5, 0.7, 0.9; 0.55 and 0.56 share the fullest bin -> mode 0.555.
    values = np.array([[[0.1, 0.45, 0.55, 0.56, 0.9]]], np.float32)
    expected = np.clip(values - 0.555, 0, None) / (0.9 - 0.555)
    assert np.allclose(pp.subtract_mode(values, bins=4), expected, atol=1e-5)


def test_subtract_mode_per_channel_and_constant_channel_is_zero():
    image = np.stack([np.full((4, 4), 0.7), np.tile(np.array([0.2, 0.2, 0.2, 0.6]), (4, 1))]).astype(np.float32)
    out = pp.subtract_mode(image)
    assert not out[0].any()
    assert np.allclose(out[1], np.tile([0, 0, 0, 1.0], (4, 1)))


def test_minmax_reaches_exactly_zero_and_one_per_channel():
    rng = np.random.default_rng(0)
    image = np.stack([rng.uniform(0.2, 0.3, (5, 6, 7)), rng.uniform(100, 4000, (5, 6, 7))])
    out = pp.normalize_minmax(image)
    for channel, source in zip(out, image, strict=True):
        assert channel.min() == 0.0 and channel.max() == 1.0
        assert channel.flat[source.argmin()] == 0.0 and channel.flat[source.argmax()] == 1.0
    assert not pp.normalize_minmax(np.full((1, 3, 3), 0.4)).any()


def test_percentile_on_a_ramp():
    ramp = np.arange(101, dtype=np.float32).reshape(1, 1, 101)  # -> 0.00 .. 1.00 after conversion
    out = pp.normalize_percentile(ramp, low=10, high=90)[0, 0]
    expected = np.clip((np.arange(101) / 100 - 0.1) / 0.8, 0, 1)
    assert np.allclose(out, expected, atol=1e-6)
    assert out[10] == 0 and out[50] == pytest.approx(0.5) and out[90] == pytest.approx(1.0)


def test_percentile_falls_back_to_minmax_when_percentiles_coincide():
    image = np.zeros((1, 10, 100), np.float32)
    image[0, 3, 7] = 0.25  # one bright pixel in 1000: 1st and 99.8th percentiles are both 0
    out = pp.normalize_percentile(image)
    assert out[0, 3, 7] == 1.0 and out.sum() == 1.0


def test_to_grayscale_weights_and_alpha():
    rgba = np.zeros((4, 2, 2), np.uint8)
    rgba[0, 0, 0] = 255  # pure red
    rgba[:3, 1, 1] = 255  # white
    rgba[3] = 77  # alpha must be ignored
    out = pp.to_grayscale(rgba)
    assert out.shape == (1, 2, 2)
    assert out[0, 0, 0] == pytest.approx(0.2125, abs=1e-6) and out[0, 1, 1] == pytest.approx(1.0)
    assert pp.to_grayscale(rgba[:3], weights=(1, 1, 0))[0, 0, 0] == pytest.approx(0.5)
    single = np.full((1, 3, 3), 0.3, np.float32)
    assert np.array_equal(pp.to_grayscale(single), single)


def test_clahe_per_channel_in_2d_and_3d():
    rng = np.random.default_rng(1)
    for spatial in [(32, 32), (8, 32, 32)]:
        dim = rng.uniform(0.40, 0.45, spatial)
        out = pp.clahe(np.stack([dim, np.full(spatial, 0.5)]))
        assert out.shape == (2, *spatial) and out.dtype == np.float32
        assert out[0].max() - out[0].min() > 0.9  # low contrast stretched
        assert np.corrcoef(out[0].ravel(), dim.ravel())[0, 1] > 0.8  # bright stays bright
        assert not out[1].any()  # a constant channel carries no contrast


def test_clahe_treats_a_volume_three_pixels_wide_as_a_volume_not_rgb():
    # skimage reads any 3D array whose last axis is 3 or 4 long as RGB(A); CLAHE is symmetric under
    # swapping axes (with the kernel swapped too), so the swapped computation is the known answer.
    volume = np.random.default_rng(2).random((1, 6, 9, 3)).astype(np.float32)
    out = pp.clahe(volume, kernel_size=(2, 3, 1))
    swapped = pp.clahe(volume.transpose(0, 3, 2, 1), kernel_size=(1, 3, 2)).transpose(0, 3, 2, 1)
    assert out.shape == volume.shape
    assert np.allclose(out, swapped)


def test_unsharp_mask_keeps_a_ramp_and_steepens_an_edge():
    ramp = np.tile(np.linspace(0.2, 0.8, 40, dtype=np.float32), (40, 1))[None]
    assert np.allclose(pp.unsharp_mask(ramp, radius=1.0)[0, 10:30, 10:30], ramp[0, 10:30, 10:30], atol=1e-4)
    edge = ndimage.gaussian_filter(np.repeat([[0.3] * 20 + [0.7] * 20], 40, axis=0), 2)[None]
    sharp = pp.unsharp_mask(edge, radius=2.0, amount=2.0)
    # Peak slope of f + a(f - f*g): blur sigma 2 then radius 2 -> 1 + a(1 - 2/sqrt(8)) = 1.586 times steeper.
    ratio = np.abs(np.diff(sharp[0], axis=1)).max() / np.abs(np.diff(edge[0], axis=1)).max()
    assert ratio == pytest.approx(1 + 2 * (1 - 2 / np.sqrt(8)), rel=0.05)


# --------------------------------------------------------------------------- resize


@pytest.mark.parametrize(
    ("shape", "new_shape"), [((64, 64), (16, 20)), ((64, 64), (100, 90)), ((12, 32, 32), (6, 16, 48))]
)
def test_resize_shape_and_mean_of_a_smooth_image(shape, new_shape):
    grids = np.meshgrid(*[np.linspace(0, 1, s) for s in shape], indexing="ij")
    smooth = (0.5 + 0.3 * np.sin(2 * np.pi * grids[-1]) * np.cos(np.pi * grids[-2])).astype(np.float32)
    out = pp.resize(np.stack([smooth, 1 - smooth]), shape=new_shape)
    assert out.shape == (2, *new_shape) and out.dtype == np.float32
    assert out[0].mean() == pytest.approx(smooth.mean(), abs=0.01)
    assert out[1].mean() == pytest.approx(1 - smooth.mean(), abs=0.01)


def test_pipeline_resizes_mask_with_nearest_neighbour():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    image = np.full((1, 20, 20), 0.8, np.float32)
    steps = [pp.PreprocessStep("resize", {"shape": (40, 40)}), pp.PreprocessStep("mask_object")]
    pipeline = pp.PreprocessPipeline(steps)
    out = pp.apply_pipeline(image, pipeline, mask=mask)
    assert out.shape == (1, 40, 40)
    assert np.count_nonzero(out) == 400 and np.allclose(out[out > 0], 0.8)


# --------------------------------------------------------------------------- input handling


def test_non_finite_pixels_are_replaced_per_channel():
    image = np.array([[[np.nan, 0.2], [0.8, np.inf]], [[-np.inf, 0.1], [0.3, 0.3]]], np.float32)
    out = pp.as_float_image(image)
    assert np.allclose(out, [[[0.2, 0.2], [0.8, 0.8]], [[0.1, 0.1], [0.3, 0.3]]])


def test_extreme_float_ranges_are_rescaled_without_overflow():
    image = np.array([[[-3e38, 3e38], [0.0, 1.5e38]]], np.float32)
    assert np.allclose(pp.as_float_image(image), [[[0, 1], [0.5, 0.75]]])
    huge = np.array([[[-1e300, 1e300], [0.0, np.nan]]])  # beyond float32: rescaled before the cast
    assert np.allclose(pp.as_float_image(huge), [[[0, 1], [0.5, 0]]])


def test_integer_images_are_scaled_by_dtype_maximum():
    assert pp.as_float_image(np.full((1, 2, 2), 65535, np.uint16)).max() == 1.0
    assert pp.as_float_image(np.full((1, 2, 2), 51, np.uint8))[0, 0, 0] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pp.normalize_minmax(np.zeros((8, 8))), "channel-first"),
        (lambda: pp.normalize_minmax(np.zeros((1, 2, 2, 2, 2))), "channel-first"),
        (lambda: pp.normalize_minmax(np.full((2, 3, 3), np.nan)), "no finite pixel"),
        (lambda: pp.to_grayscale(np.zeros((2, 3, 3))), "RGB"),
        (lambda: pp.resize(np.zeros((1, 4, 4)), shape=(2, 2, 2)), "2 positive integers"),
        (lambda: pp.center_on_channel(np.zeros((1, 4, 4)), reference_channel=2), "reference_channel 2"),
        (lambda: pp.mask_object(np.zeros((1, 4, 4)), mask=np.ones((3, 3))), "mask has shape"),
        (lambda: pp.normalize_percentile(np.zeros((1, 4, 4)), low=50, high=10), "low < high"),
        (lambda: pp.subtract_mode(np.zeros((1, 4, 4)), bins=1), "bins"),
        (lambda: pp.clahe(np.zeros((1, 4, 4)), kernel_size=(2, 2, 2)), "one per spatial axis"),
        (lambda: pp.clahe(np.zeros((1, 4, 4)), clip_limit="0.1"), "clip_limit must be a number"),
        (lambda: pp.to_grayscale(np.zeros((3, 4, 4)), weights=[1, "g", 1]), "must be a number"),
        (lambda: pp.center_on_channel(np.zeros((1, 4, 4)), reference_channel="0"), "an integer"),
    ],
)
def test_bad_input_is_refused_with_a_helpful_message(call, message):
    with pytest.raises(InputError, match=message):
        call()


# --------------------------------------------------------------------------- pipeline config


def test_pipeline_dict_form():
    pipeline = pp.macrophage_pipeline((128, 96))
    assert pipeline.to_dict() == {
        "steps": [
            {"name": "to_grayscale", "params": {}},
            {"name": "resize", "params": {"shape": [128, 96]}},  # the study's Methods resize first
            {"name": "clahe", "params": {}},
            {"name": "unsharp_mask", "params": {}},
            {"name": "normalize_minmax", "params": {}},
        ]
    }
    assert [s.name for s in pp.statistical_cell_pipeline().steps] == [
        "subtract_mode",
        "align_major_axis",
        "center_on_channel",
    ]


@pytest.mark.parametrize(
    "pipeline",
    [
        pp.macrophage_pipeline((48, 40)),
        pp.statistical_cell_pipeline(),
        pp.PreprocessPipeline(
            [
                pp.PreprocessStep("clahe", {"clip_limit": 0.02, "kernel_size": (8, 8)}),
                pp.PreprocessStep("unsharp_mask", {"radius": 2.0, "amount": 0.5}),
                pp.PreprocessStep("normalize_percentile", {"low": 2, "high": 98}),
                pp.PreprocessStep("align_major_axis", {"reference_channel": 0}),
                pp.PreprocessStep("mask_object"),
            ]
        ),
    ],
)
def test_json_round_trip_gives_identical_output(pipeline):
    rng = np.random.default_rng(3)
    image = (rng.random((3, 64, 64)) * 255).astype(np.uint8)
    mask = tilted_ellipse((64, 64), 30.0, (8, 24))
    image[:, mask] = 200
    restored = pp.PreprocessPipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())))
    assert restored.to_dict() == pipeline.to_dict()
    before = pp.apply_pipeline(image, pipeline, mask=mask)
    after = pp.apply_pipeline(image, restored, mask=mask)
    assert np.array_equal(before, after)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": [{"name": "sharpen"}]}, "unknown preprocessing step 'sharpen'; valid steps are: align_major_axis"),
        (
            {"steps": [{"name": "clahe", "params": {"clip": 0.1}}]},
            "no parameter.*clip; valid parameters are: clip_limit, kernel_size",
        ),
        ({"steps": [{"name": "mask_object", "params": {"mask": 1}}]}, "valid parameters are: none"),
        ({"steps": [{"name": "resize"}]}, "needs the parameter.*shape"),
        ({"steps": [{"name": "clahe", "order": 1}]}, "unknown setting"),
        ({"stages": []}, "unknown setting"),
    ],
)
def test_from_dict_refuses_bad_configs(data, message):
    with pytest.raises(InputError, match=message):
        pp.PreprocessPipeline.from_dict(data)


def test_apply_pipeline_checks_steps_and_mask():
    with pytest.raises(InputError, match="unknown preprocessing step"):
        pp.apply_pipeline(np.zeros((1, 4, 4)), pp.PreprocessPipeline([pp.PreprocessStep("blur")]))
    with pytest.raises(InputError, match="needs the object mask"):
        pp.apply_pipeline(np.zeros((1, 4, 4)), pp.PreprocessPipeline([pp.PreprocessStep("mask_object")]))


def test_step_parameter_overrides_pipeline_reference_channel():
    image = np.zeros((2, 32, 32), np.float32)
    image[0] = gaussian_blob((32, 32), (5, 5))
    image[1] = gaussian_blob((32, 32), (25, 20))
    step = pp.PreprocessStep("center_on_channel", {"reference_channel": 1})
    out = pp.apply_pipeline(image, pp.PreprocessPipeline([step]), reference_channel=0)
    assert np.allclose(ndimage.center_of_mass(out[1]), (15.5, 15.5), atol=0.5)


def test_default_pipeline_keeps_shape_and_channels():
    image = np.random.default_rng(0).random((2, 5, 16, 16))
    out = pp.apply_pipeline(image, pp.DEFAULT_PIPELINE)
    assert out.shape == image.shape and out.min() == 0.0 and out.max() == 1.0


# --------------------------------------------------------------------------- properties


@st.composite
def images(draw_, channels=st.integers(1, 3)):
    """Small channel-first images of any supported dtype, 2D or 3D, some constant, some with NaN/inf."""
    dtype = draw_(st.sampled_from([np.uint8, np.uint16, np.float32]))
    spatial = tuple(draw_(st.lists(st.integers(1, 6), min_size=2, max_size=3)))
    shape = (draw_(channels), *spatial)
    kind = draw_(st.sampled_from(["random", "constant", "zeros", "wide", "extreme"]))
    seed = draw_(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if kind == "random":
        image = rng.random(shape)
    elif kind == "constant":
        image = np.full(shape, rng.random())
    elif kind == "zeros":
        image = np.zeros(shape)
    elif kind == "wide":
        image = rng.normal(0, 1e4, shape)
    else:
        image = rng.uniform(-3e38, 3e38, shape)  # near the float32 limits: differences overflow
    if dtype is np.float32:
        image = image.astype(np.float32)
        if draw_(st.booleans()):
            bad = rng.random(shape) < 0.3
            bad.reshape(shape[0], -1)[:, 0] = False  # at least one finite pixel per channel
            image[bad] = rng.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
        return image
    info = np.iinfo(dtype)
    return np.clip(np.abs(image) * info.max / max(1.0, np.abs(image).max()), 0, info.max).astype(dtype)


def all_steps_pipeline(shape) -> pp.PreprocessPipeline:
    names = ["subtract_mode", "clahe", "unsharp_mask", "normalize_percentile", "align_major_axis", "center_on_channel"]
    steps = [pp.PreprocessStep(n) for n in names]
    steps.append(pp.PreprocessStep("resize", {"shape": list(shape)}))
    steps += [pp.PreprocessStep("mask_object"), pp.PreprocessStep("normalize_minmax")]
    return pp.PreprocessPipeline(steps)


def assert_valid_output(out, shape):
    assert out.dtype == np.float32
    assert out.shape == shape
    assert np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


@settings(max_examples=60, deadline=None)
@given(image=images(), data=st.data())
def test_every_step_pipeline_gives_finite_unit_float32(image, data):
    spatial = image.shape[1:]
    target = tuple(data.draw(st.integers(1, 5)) for _ in spatial)
    mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=image[0].size, max_size=image[0].size)))
    out = pp.apply_pipeline(image, all_steps_pipeline(target), mask=mask.reshape(spatial))
    assert_valid_output(out, (image.shape[0], *target))


@settings(max_examples=40, deadline=None)
@given(image=images(channels=st.sampled_from([1, 3])), side=st.integers(1, 6))
def test_published_pipelines_give_finite_unit_float32(image, side):
    target = (side,) * (image.ndim - 1)
    assert_valid_output(pp.apply_pipeline(image, pp.macrophage_pipeline(target)), (1, *target))
    assert_valid_output(pp.apply_pipeline(image, pp.statistical_cell_pipeline()), image.shape)


@settings(max_examples=40, deadline=None)
@given(image=images(), name=st.sampled_from(sorted(set(pp.STEPS) - {"to_grayscale", "resize", "mask_object"})))
def test_each_step_alone_gives_finite_unit_float32(image, name):
    assert_valid_output(pp.STEPS[name](image), image.shape)
