"""Crops map back to their source exactly; settings, filters and bad input behave as documented."""

from __future__ import annotations

import math
import shutil
import threading
import warnings

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_morphospace.core.cells import crops
from napari_morphospace.core.cells.crop_set import (
    bbox_columns,
    crop_set_folder,
    load_crop_set,
)
from napari_morphospace.core.cells.crops import (
    CropCancelled,
    CropSettings,
    CropSource,
    ObjectPreview,
    PatchSettings,
    build_crop_set,
    concat_crop_sets,
    crops_from_boxes,
    crops_from_labels,
    crops_from_points,
    patch_grid,
)
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.io.stacks import Stack

IDENTITY = dict(normalise="dtype", mask_neighbours=False, min_area=1)  # float input in [0, 1] comes out unchanged


def source_region(image: np.ndarray, row, ndim: int) -> np.ndarray:
    """``image[..., bbox]`` for a channel-first image, zero where the box leaves the image."""
    pad = 100
    padded = np.pad(image, [(0, 0)] + [(pad, pad)] * ndim)
    columns = bbox_columns(ndim)
    slices = tuple(slice(row[columns[2 * a]] + pad, row[columns[2 * a + 1]] + pad) for a in range(ndim))
    return padded[(slice(None),) + slices]


@pytest.fixture
def image_2d() -> np.ndarray:
    return np.random.default_rng(0).random((2, 40, 50)).astype(np.float32)


@pytest.fixture
def labels_2d() -> np.ndarray:
    labels = np.zeros((40, 50), np.uint16)
    labels[10:13, 20:23] = 1  # 3x3, centroid (11, 21)
    labels[0:6, 44:50] = 2  # touches the top-right corner
    labels[25:31, 5:11] = 3
    return labels


def test_fixed_crops_equal_source_region_pixel_for_pixel(image_2d, labels_2d):
    crop_set = crops_from_labels(image_2d, labels_2d, CropSettings(size=8, **IDENTITY), axes="CYX")
    assert crop_set.images.shape == (3, 2, 8, 8) and crop_set.images.dtype == np.float32
    assert list(crop_set.table["label_id"]) == [1, 2, 3]
    assert list(crop_set.table["crop_id"]) == [0, 1, 2]
    assert list(crop_set.table["area"]) == [9, 36, 36]
    first = crop_set.table.iloc[0]
    # hand-computed: centroid (11, 21), box of 8 starts 4 before it
    assert (first.y_start, first.y_stop, first.x_start, first.x_stop) == (7, 15, 17, 25)
    corner = crop_set.table.iloc[1]
    assert corner.y_start < 0 and corner.x_stop > 50  # padded past the border
    for index, row in crop_set.table.iterrows():
        np.testing.assert_array_equal(crop_set.images[index], source_region(image_2d, row, 2))


def test_crop_larger_than_image_is_padded_not_refused():
    image = np.random.default_rng(1).random((10, 12)).astype(np.float32)
    labels = np.zeros((10, 12), np.int32)
    labels[3:7, 4:9] = 5
    crop_set = crops_from_labels(image, labels, CropSettings(size=32, **IDENTITY))
    assert crop_set.images.shape == (1, 1, 32, 32)
    np.testing.assert_array_equal(crop_set.images[0], source_region(image[None], crop_set.table.iloc[0], 2))
    assert crop_set.images[0].sum() == pytest.approx(image.sum(), rel=1e-5)  # the whole image, once


def test_3d_crops_with_anisotropic_size_and_spacing_from_stack():
    rng = np.random.default_rng(2)
    image = rng.random((12, 30, 30)).astype(np.float32)
    labels = np.zeros((12, 30, 30), np.uint8)
    labels[2:6, 5:12, 5:12] = 1
    labels[8:12, 20:30, 18:26] = 2
    stack = Stack(image, "ZYX", scale={"Z": 0.5, "Y": 0.1, "X": 0.1}, channel_names=["dna"], source="cells.tif")
    crop_set = crops_from_labels(stack, labels, CropSettings(size=(6, 10, 10), **IDENTITY))
    assert crop_set.images.shape == (2, 1, 6, 10, 10)
    assert crop_set.spacing == pytest.approx((0.5, 0.1, 0.1))
    assert crop_set.channel_names == ["dna"] and set(crop_set.table["source"]) == {"cells.tif"}
    for index, row in crop_set.table.iterrows():
        np.testing.assert_array_equal(crop_set.images[index], source_region(image[None], row, 3))


def test_time_lapse_gives_one_crop_per_object_and_time_point():
    rng = np.random.default_rng(3)
    image = rng.random((3, 2, 20, 20)).astype(np.float32)  # T, C, Y, X
    labels = np.zeros((3, 20, 20), np.uint16)
    for t in range(3):
        labels[t, 2 + 4 * t : 6 + 4 * t, 3:7] = 1  # moving cell
    labels[1, 14:18, 14:18] = 2  # appears only at t=1
    crop_set = crops_from_labels(image, labels, CropSettings(size=6, **IDENTITY), axes="TCYX")
    assert list(zip(crop_set.table["t"], crop_set.table["label_id"], strict=True)) == [(0, 1), (1, 1), (1, 2), (2, 1)]
    for index, row in crop_set.table.iterrows():
        np.testing.assert_array_equal(crop_set.images[index], source_region(image[row.t], row, 2))


def test_axes_in_any_order_and_dask_images_give_the_same_crops(image_2d, labels_2d):
    settings = CropSettings(size=8, **IDENTITY)
    expected = crops_from_labels(image_2d, labels_2d, settings, axes="CYX")
    yxc = crops_from_labels(np.moveaxis(image_2d, 0, -1), labels_2d, settings, axes="YXC")
    lazy = crops_from_labels(da.from_array(image_2d, chunks=(1, 16, 16)), labels_2d, settings, axes="CYX")
    np.testing.assert_array_equal(yxc.images, expected.images)
    np.testing.assert_array_equal(lazy.images, expected.images)


def test_percentile_normalisation_is_global_so_brightness_differences_survive():
    image = np.zeros((30, 30), np.uint16)
    labels = np.zeros((30, 30), np.uint8)
    image[5:10, 5:10], labels[5:10, 5:10] = 100, 1
    image[20:25, 20:25], labels[20:25, 20:25] = 200, 2
    crop_set = crops_from_labels(image, labels, CropSettings(size=8, percentiles=(0, 100)))
    assert crop_set.images[0].max() == pytest.approx(0.5) and crop_set.images[1].max() == pytest.approx(1.0)
    assert crop_set.images.min() == 0.0


def test_dtype_normalisation_divides_by_the_integer_range(labels_2d):
    image = np.random.default_rng(4).integers(0, 256, (40, 50), dtype=np.uint8)
    crop_set = crops_from_labels(image, labels_2d, CropSettings(size=8, **IDENTITY))
    row = crop_set.table.iloc[0]
    np.testing.assert_allclose(crop_set.images[0], source_region(image[None] / 255.0, row, 2), rtol=1e-6)


def test_mask_neighbours_zeros_exactly_the_other_labels_and_keeps_background():
    image = np.full((20, 20), 0.5, np.float32)
    labels = np.zeros((20, 20), np.int64)
    labels[5:10, 5:10] = 1
    labels[5:10, 10:13] = 2  # touching neighbour
    crop_set = crops_from_labels(image, labels, CropSettings(size=12, normalise="dtype", min_area=1))
    row = crop_set.table.iloc[0]
    neighbour = source_region(labels[None], row, 2)[0] == 2
    assert neighbour.sum() == 15
    np.testing.assert_array_equal(crop_set.images[0, 0], np.where(neighbour, 0, 0.5))


def test_mask_background_keeps_only_the_object():
    image = np.full((20, 20), 0.5, np.float32)
    labels = np.zeros((20, 20), np.int64)
    labels[5:10, 5:10] = 1
    labels[5:10, 10:13] = 2
    crop_set = crops_from_labels(image, labels, CropSettings(size=12, normalise="dtype", mask_background=True))
    own = source_region(labels[None], crop_set.table.iloc[0], 2)[0] == 1
    np.testing.assert_array_equal(crop_set.images[0, 0], np.where(own, 0.5, 0))


def test_fit_mode_squares_the_padded_bounding_box_and_resizes():
    image = np.random.default_rng(5).random((40, 40)).astype(np.float32)
    labels = np.zeros((40, 40), np.uint8)
    labels[10:14, 10:20] = 1  # 4 x 10, padded by 2 -> rows 8..16, cols 8..22 -> square 14
    exact = crops_from_labels(image, labels, CropSettings(size=14, mode="fit", padding=2, **IDENTITY))
    row = exact.table.iloc[0]
    assert (row.y_start, row.y_stop, row.x_start, row.x_stop) == (5, 19, 8, 22)
    np.testing.assert_array_equal(exact.images[0], source_region(image[None], row, 2))
    assert exact.spacing == ()  # every crop has its own scale
    resized = crops_from_labels(image, labels, CropSettings(size=7, mode="fit", padding=2, **IDENTITY))
    assert resized.images.shape == (1, 1, 7, 7)
    assert resized.table.iloc[0].y_start == 5  # the bbox is the region before resize
    assert resized.images.mean() == pytest.approx(exact.images.mean(), abs=0.02)


def test_min_area_and_exclude_border_skip_and_warn(labels_2d):
    image = np.zeros((40, 50), np.float32)
    with pytest.warns(UserWarning, match="1 of 3 objects were smaller than min_area"):
        crop_set = crops_from_labels(image, labels_2d, CropSettings(size=8, min_area=10))
    assert list(crop_set.table["label_id"]) == [2, 3]
    with pytest.warns(UserWarning, match="1 of 3 objects touched the image border"):
        crop_set = crops_from_labels(image, labels_2d, CropSettings(size=8, min_area=1, exclude_border=True))
    assert list(crop_set.table["label_id"]) == [1, 3]
    with pytest.raises(InputError, match="no crops were made"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crops_from_labels(image, labels_2d, CropSettings(size=8, min_area=1000))


def test_objects_larger_than_a_fixed_crop_are_cut_with_a_warning(labels_2d):
    with pytest.warns(UserWarning, match="2 of 3 objects were larger than the crop"):
        crops_from_labels(np.zeros((40, 50)), labels_2d, CropSettings(size=4, min_area=1))


def test_uint16_labels_near_the_top_of_the_range():
    labels = np.zeros((20, 20), np.uint16)
    labels[2:6, 2:6] = 65534
    labels[10:15, 10:15] = 65535
    crop_set = crops_from_labels(np.ones((20, 20), np.float32), labels, CropSettings(size=6, normalise="dtype"))
    assert list(crop_set.table["label_id"]) == [65534, 65535]
    assert list(crop_set.table["area"]) == [16, 25]


def test_huge_label_ids_keep_their_values():
    labels = np.zeros((20, 20), np.int64)
    labels[2:6, 2:6] = 3_000_000_000
    labels[10:15, 10:15] = 7
    crop_set = crops_from_labels(np.ones((20, 20), np.float32), labels, CropSettings(size=6, normalise="dtype"))
    assert list(crop_set.table["label_id"]) == [7, 3_000_000_000]


def test_channel_selection_and_names():
    image = np.stack([np.full((20, 20), v, np.float32) for v in (0.1, 0.2, 0.3)])
    labels = np.zeros((20, 20), np.uint8)
    labels[5:15, 5:15] = 1
    stack = Stack(image, "CYX", channel_names=["dna", "membrane", "actin"])
    crop_set = crops_from_labels(stack, labels, CropSettings(size=10, channels=[2, 0], normalise="dtype"))
    assert crop_set.channel_names == ["actin", "dna"]
    np.testing.assert_allclose(crop_set.images[0, :, 5, 5], [0.3, 0.1])


def test_nan_pixels_become_zero_with_a_warning_and_an_all_nan_crop_is_refused():
    image = np.full((20, 20), 0.5, np.float32)
    image[7, 7] = np.nan
    labels = np.zeros((20, 20), np.uint8)
    labels[5:10, 5:10] = 1
    with pytest.warns(UserWarning, match="1 NaN or inf pixels"):
        crop_set = crops_from_labels(image, labels, CropSettings(size=6, normalise="dtype"))
    assert np.isfinite(crop_set.images).all() and crop_set.images.min() == 0.0
    image[:, :12] = np.inf
    with pytest.raises(InputError, match="no finite pixel"):
        crops_from_labels(image, labels, CropSettings(size=6))


def test_progress_is_reported_per_batch_and_stop_cancels(tmp_path, labels_2d, monkeypatch):
    calls = []
    crops_from_labels(
        np.zeros((40, 50)),
        labels_2d,
        CropSettings(size=8, min_area=1),
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(3, 3)]  # three small crops: one batch
    monkeypatch.setattr(crops, "_BATCH_BYTES", 2 * 8 * 8 * 4)  # two crops per batch
    calls.clear()
    crops_from_labels(
        np.zeros((40, 50)),
        labels_2d,
        CropSettings(size=8, min_area=1),
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(2, 3), (3, 3)]
    calls.clear()
    crops_from_labels(
        np.zeros((40, 50)),
        labels_2d,
        CropSettings(size=8, min_area=10),  # object 1 (9 px) skipped
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(3, 3)]
    stop = threading.Event()
    stop.set()
    with pytest.raises(CropCancelled):
        crops_from_labels(
            np.zeros((40, 50)), labels_2d, CropSettings(size=8, min_area=1), output=tmp_path / "set", stop_event=stop
        )
    assert list(tmp_path.iterdir()) == []


def test_streaming_to_disk_gives_the_same_crop_set(tmp_path):
    rng = np.random.default_rng(6)
    image = rng.random((2, 70, 100)).astype(np.float32)
    labels = np.zeros((70, 100), np.uint16)
    for i in range(7):
        for j in range(10):
            labels[10 * i + 2 : 10 * i + 7, 10 * j + 2 : 10 * j + 7] = 10 * i + j + 1  # 70 objects: > one batch
    settings = CropSettings(size=8, normalise="dtype")
    in_memory = crops_from_labels(image, labels, settings, axes="CYX", group="ctrl")
    on_disk = crops_from_labels(image, labels, settings, axes="CYX", group="ctrl", output=tmp_path / "set")
    assert len(on_disk) == 70
    np.testing.assert_array_equal(np.asarray(on_disk.images), in_memory.images)
    assert on_disk.table.equals(load_crop_set(tmp_path / "set").table)
    np.testing.assert_array_equal(on_disk.table["label_id"], in_memory.table["label_id"])
    assert list(on_disk.table.columns) == list(in_memory.table.columns)
    assert on_disk.preprocess == in_memory.preprocess


def test_pipeline_runs_on_each_crop_and_is_recorded():
    from napari_morphospace.core.cells.preprocess import (
        PreprocessPipeline,
        PreprocessStep,
    )

    image = np.random.default_rng(7).random((30, 30)).astype(np.float32)
    labels = np.zeros((30, 30), np.uint8)
    labels[10:20, 10:20] = 1
    pipeline = PreprocessPipeline([PreprocessStep("resize", {"shape": [8, 8]})])
    stack = Stack(image, "YX", scale={"Y": 0.2, "X": 0.2})
    crop_set = crops_from_labels(stack, labels, CropSettings(size=16, normalise="dtype"), pipeline=pipeline)
    assert crop_set.images.shape == (1, 1, 8, 8)
    assert crop_set.spacing == pytest.approx((0.4, 0.4))
    assert crop_set.preprocess["pipeline"] == pipeline.to_dict()
    assert crop_set.preprocess["crops"]["size"] == 16


def test_points_give_fixed_boxes_centred_on_each_point():
    image = np.random.default_rng(8).random((3, 20, 20)).astype(np.float32)  # T, Y, X
    points = np.array([[0, 5.2, 6.7], [2, 19.0, 0.0]])
    crop_set = crops_from_points(image, points, CropSettings(size=6, normalise="dtype"), axes="TYX")
    first, second = crop_set.table.iloc[0], crop_set.table.iloc[1]
    assert (first.t, first.y_start, first.x_start) == (0, 2, 4)  # round(5.2)=5, round(6.7)=7, minus 3
    assert (second.t, second.label_id, second.y_stop) == (2, 2, 22)
    for index, row in crop_set.table.iterrows():
        np.testing.assert_array_equal(crop_set.images[index], source_region(image[row.t][None], row, 2))
    with pytest.raises(InputError, match="outside the image"):
        crops_from_points(image, [[0, 25, 5]], CropSettings(size=6), axes="TYX")
    with pytest.raises(InputError, match=r"expected \(N, 3\)"):
        crops_from_points(image, [[5, 5]], CropSettings(size=6), axes="TYX")


def test_boxes_are_squared_around_their_centre_and_resized():
    image = np.random.default_rng(9).random((2, 30, 30)).astype(np.float32)
    boxes = [[[14, 20], [4, 10]], [[0, 0], [10, 10]]]  # corners in any order; first is 10 x 10
    exact = crops_from_boxes(image, boxes, CropSettings(size=10, normalise="dtype"), axes="CYX")
    first = exact.table.iloc[0]
    assert (first.y_start, first.y_stop, first.x_start, first.x_stop, first.label_id) == (4, 14, 10, 20, 1)
    for index, row in exact.table.iterrows():
        np.testing.assert_array_equal(exact.images[index], source_region(image, row, 2))
    wide = crops_from_boxes(image, [[[10, 5], [12, 15]]], CropSettings(size=5, normalise="dtype"), axes="CYX")
    row = wide.table.iloc[0]  # 2 x 10 widened to 10 x 10 around rows 10..12
    assert (row.y_start, row.y_stop, row.x_start, row.x_stop) == (6, 16, 5, 15)
    assert wide.images.shape == (1, 2, 5, 5)
    with pytest.raises(InputError, match="zero size along Y"):
        crops_from_boxes(image, [[[3, 3], [3, 9]]], CropSettings(size=5), axes="CYX")
    with pytest.raises(InputError, match="outside the image"):
        crops_from_boxes(image, [[[40, 40], [50, 50]]], CropSettings(size=5), axes="CYX")


def test_patch_grid_keeps_exactly_the_patches_above_the_foreground_fraction():
    image = np.zeros((2, 40, 40), np.float32)  # Z, Y, X; patches of 10 -> 4 x 4 per slice
    image[0, 0:5, 0:10] = 1.0  # 50 % of patch (0, 0)
    image[0, 10:11, 10:15] = 1.0  # 5 % of patch (1, 1): dropped at 10 %
    image[0, 30:40, 30:40] = 1.0  # 100 % of patch (3, 3)
    image[1, 20:22, 0:10] = 1.0  # 20 % of patch (2, 0) in slice 1
    with pytest.warns(UserWarning, match="29 of 32 patches had less foreground"):
        crop_set = patch_grid(image, PatchSettings(patch_size=10, min_foreground=0.1, normalise="dtype"), axes="ZYX")
    table = crop_set.table
    assert list(zip(table["z"], table["y_start"], table["x_start"], strict=True)) == [
        (0, 0, 0),
        (0, 30, 30),
        (1, 20, 0),
    ]
    assert list(table["label_id"]) == [1, 2, 3]
    assert list(table["z_start"]) == [0, 0, 1] and list(table["z_stop"]) == [1, 1, 2]
    np.testing.assert_allclose(table["foreground"], [0.5, 1.0, 0.2])
    assert crop_set.images.shape == (3, 1, 10, 10)
    np.testing.assert_array_equal(crop_set.images[2, 0], image[1, 20:30, 0:10])


def test_patch_grid_with_overlap_on_a_2d_image():
    image = np.zeros((20, 20), np.uint8)
    image[0:10, 0:10] = 255
    with pytest.warns(UserWarning, match="6 of 9 patches"):
        crop_set = patch_grid(image, PatchSettings(patch_size=10, patch_stride=5, min_foreground=0.5))
    # 3 x 3 origins at 0, 5, 10; >= 50 % foreground: (0,0) 100 %, (0,5) and (5,0) 50 %
    assert list(zip(crop_set.table["y_start"], crop_set.table["x_start"], strict=True)) == [(0, 0), (0, 5), (5, 0)]
    assert set(crop_set.table["z"]) == {0}
    with pytest.raises(InputError, match="larger than the image"):
        patch_grid(image, PatchSettings(patch_size=30))


def test_concat_renumbers_crop_ids_and_keeps_groups(image_2d, labels_2d):
    settings = CropSettings(size=8, min_area=1)
    control = crops_from_labels(image_2d, labels_2d, settings, axes="CYX", group="control", source="a.tif")
    treated = crops_from_labels(image_2d, labels_2d, settings, axes="CYX", group="treated", source="b.tif")
    joined = concat_crop_sets([control, treated])
    assert list(joined.table["crop_id"]) == list(range(6))
    assert list(joined.table["group"]) == ["control"] * 3 + ["treated"] * 3
    assert list(joined.table["source"]) == ["a.tif"] * 3 + ["b.tif"] * 3
    np.testing.assert_array_equal(joined.images[3:], treated.images)
    other = crops_from_labels(image_2d, labels_2d, CropSettings(size=8, min_area=1, channels=[0]), axes="CYX")
    with pytest.raises(InputError, match="shape"):
        concat_crop_sets([control, other])


def test_sources_of_another_format_are_refused_naming_both(image_2d, labels_2d):
    """Building from several sources checks them as joining crop sets does, naming the two sources."""
    wide = CropSource(image_2d, labels_2d, settings=CropSettings(size=8, min_area=1), axes="CYX", source="a.tif")
    narrow = CropSource(
        image_2d, labels_2d, settings=CropSettings(size=8, min_area=1, channels=[0]), axes="CYX", source="b.tif"
    )
    with pytest.raises(InputError, match=r"b.tif has crops of shape \(1, 8, 8\) but a.tif has \(2, 8, 8\)"):
        build_crop_set([wide, narrow])


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((40, 50), np.uint16), "no objects"),
        (np.ones((40, 49), np.uint16), r"shape \(40, 49\).*\(40, 50\)"),
        (np.ones((40, 50), np.float32), "must be integers"),
        (np.full((40, 50), -1, np.int32), "must not be negative"),
    ],
)
def test_bad_labels_are_refused_with_what_to_do(image_2d, labels, match):
    with pytest.raises(InputError, match=match):
        crops_from_labels(image_2d, labels, CropSettings(size=8), axes="CYX")


@pytest.mark.parametrize(
    ("image", "axes", "match"),
    [
        (np.zeros((4, 40, 50)), None, "say which axis is which"),
        (np.zeros((2, 40, 50)), "YX", "name 2 axes but the image has 3"),
        (np.zeros((2, 40, 50)), "QYX", "distinct letters"),
        (np.zeros((40, 50, 3)), "YX", "looks like RGB"),
        (np.zeros((40, 50, 3)), "ZYX", "looks like RGB"),
    ],
)
def test_bad_axes_are_refused_with_what_to_do(image, axes, match):
    with pytest.raises(InputError, match=match):
        crops_from_labels(image, np.ones((40, 50), np.uint8), CropSettings(size=8), axes=axes)


@pytest.mark.parametrize(
    "kwargs", [{"size": 0}, {"size": (8, 8, 8, 8)}, {"mode": "stretch"}, {"padding": -1}, {"percentiles": (50, 10)}]
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(InputError):
        CropSettings(**kwargs)


def test_size_tuple_must_match_the_spatial_axes(image_2d, labels_2d):
    with pytest.raises(InputError, match="3 values but the image has 2 spatial axes"):
        crops_from_labels(image_2d, labels_2d, CropSettings(size=(4, 8, 8)), axes="CYX")


def test_dtype_normalisation_refuses_floats_outside_unit_range(labels_2d):
    with pytest.raises(InputError, match="normalise='percentiles'"):
        crops_from_labels(np.full((40, 50), 3.0), labels_2d, CropSettings(size=8, normalise="dtype"))


def test_object_preview_gives_the_crops_of_a_full_run():
    """The preview cuts each object exactly as the full run does, for labels, points and boxes."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 4000, size=(2, 80, 90)).astype(np.uint16)
    labels = np.zeros((80, 90), np.uint16)
    labels[10:20, 12:30] = 1
    labels[50:70, 60:75] = 2
    labels[40:42, 5:6] = 3  # 2 pixels: below min_area, skipped by a run
    settings = CropSettings(size=24, min_area=5)
    full = crops_from_labels(image, labels, settings, axes="CYX")
    preview = ObjectPreview(image, labels, "labels", settings, axes="CYX")
    assert len(preview) == 3 and preview.crop(2) is None
    for index in range(2):
        crop, mask, row = preview.crop(index)
        np.testing.assert_array_equal(crop, full.images[index])
        assert row["label_id"] == full.table["label_id"][index] and mask.sum() == full.table["area"][index]

    points = np.array([[15.0, 20.0], [60.0, 66.5]])
    full = crops_from_points(image, points, settings, axes="CYX")
    np.testing.assert_array_equal(
        ObjectPreview(image, points, "points", settings, axes="CYX").crop(1)[0], full.images[1]
    )
    boxes = np.array([[[5, 5], [30, 40]], [[40, 50], [79, 89]]], dtype=float)
    full = crops_from_boxes(image, boxes, settings, axes="CYX")
    np.testing.assert_array_equal(ObjectPreview(image, boxes, "boxes", settings, axes="CYX").crop(0)[0], full.images[0])


def test_object_preview_refuses_empty_objects():
    with pytest.raises(InputError, match="no labels to preview"):
        ObjectPreview(np.zeros((10, 10)), np.zeros((10, 10), np.uint8), "labels", CropSettings(size=4))


class CountingReads:
    """An array that counts reads per chunk, to see what a lazy (dask) source is asked for."""

    def __init__(self, array: np.ndarray, chunks: tuple[int, ...]) -> None:
        self.array, self.chunks, self.reads = array, chunks, {}
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key):
        if all(s.stop > s.start for s in key):  # dask asks for an empty slice once to learn the dtype
            chunk = tuple(s.start // c for s, c in zip(key, self.chunks, strict=True))
            self.reads[chunk] = self.reads.get(chunk, 0) + 1
        return self.array[key]


def many_cells(t: int = 2, size: int = 256, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """``(image (T, 2, Y, X) uint16, labels (T, Y, X))`` with 64 square cells per time point."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 4000, (t, 2, size, size)).astype(np.uint16)
    labels = np.zeros((t, size, size), np.uint16)
    for k in range(t):
        for i, (y, x) in enumerate(np.ndindex(8, 8), start=1):
            labels[k, 32 * y + 5 + k : 32 * y + 17 + k, 32 * x + 3 : 32 * x + 20] = i
    return image, labels


@pytest.mark.parametrize("chunks, region_bytes", [((1, 1, 256, 256), 2**27), ((1, 1, 64, 64), 2 * 2 * 96 * 96)])
def test_lazy_crops_read_each_chunk_about_once_and_equal_the_eager_ones(chunks, region_bytes, monkeypatch):
    """A TIFF page is one chunk: cutting crop by crop decoded the whole page of every channel per crop."""
    monkeypatch.setattr(crops, "_REGION_BYTES", region_bytes)  # the second case reads blocks of one chunk
    image, labels = many_cells()
    settings = CropSettings(size=24)
    eager = crops_from_labels(image, labels, settings, axes="TCYX")
    counting = CountingReads(image, chunks)
    lazy = crops_from_labels(da.from_array(counting, chunks=chunks), labels, settings, axes="TCYX")
    np.testing.assert_array_equal(lazy.images, eager.images)
    pd.testing.assert_frame_equal(lazy.table, eager.table)
    n_chunks = math.prod(-(-s // c) for s, c in zip(image.shape, chunks, strict=True))
    assert len(counting.reads) == n_chunks
    if chunks[-1] == 256:  # one chunk per page: read once for the intensity range, once for all its crops
        assert set(counting.reads.values()) == {2}
    else:  # crops overhang into the next block's chunks, which are read again: a few reads, not one per crop
        per_crop = (
            sum(
                len(range(r.y_start // 64, (r.y_stop - 1) // 64 + 1))
                * len(range(r.x_start // 64, (r.x_stop - 1) // 64 + 1))
                for r in eager.table.itertuples()
            )
            * 2
        )
        assert max(counting.reads.values()) <= 1 + 4 and sum(counting.reads.values()) < per_crop / 2  # 4: 2D neighbours


def test_percentiles_from_a_histogram_equal_numpys():
    rng = np.random.default_rng(12)
    for dtype, high in ((np.uint8, 256), (np.uint16, 65536)):
        for n in (1, 2, 999, 100_001):
            values = rng.integers(0, high, n).astype(dtype)
            for q in ((0.1, 99.9), (0, 100), (50, 50.5), (1 / 3, 100 - 1 / 7)):
                np.testing.assert_array_equal(crops._percentiles(values, q), np.percentile(values, q))


def test_a_set_too_large_for_memory_streams_to_a_temporary_folder(monkeypatch):
    """Without an output folder crops stay in memory only while they fit the in-memory limit."""
    from napari_morphospace.core.cells import crop_set as data

    image, labels = many_cells(t=1)
    in_memory = crops_from_labels(image, labels, CropSettings(size=24), axes="TCYX")
    assert isinstance(in_memory.images, np.ndarray)
    monkeypatch.setattr(data, "IN_MEMORY_LIMIT_BYTES", 10 * 2 * 24 * 24 * 4)  # room for 10 crops
    monkeypatch.setattr(crops, "_BATCH_BYTES", 8 * 2 * 24 * 24 * 4)  # batches of 8: two in memory, then disk
    spilled = crops_from_labels(image, labels, CropSettings(size=24), axes="TCYX")
    assert not isinstance(spilled.images, np.ndarray)  # a zarr array in a temporary crop-set folder
    folder = crop_set_folder(spilled)  # .../morphospace-crops-*/crops
    assert folder.parent.name.startswith("morphospace-crops-") and crop_set_folder(in_memory) is None
    np.testing.assert_array_equal(np.asarray(spilled.images), in_memory.images)
    pd.testing.assert_frame_equal(spilled.table, in_memory.table)
    assert load_crop_set(folder).table.equals(in_memory.table)
    shutil.rmtree(folder.parent)


def test_an_existing_output_folder_is_refused_before_any_work(tmp_path, labels_2d, monkeypatch):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "notes.txt").write_text("mine")
    monkeypatch.setattr(crops, "_set_intensity_range", lambda *a: pytest.fail("work started"))
    with pytest.raises(InputError, match="already exists"):
        crops_from_labels(np.zeros((40, 50)), labels_2d, CropSettings(size=8), output=tmp_path / "set")


# ----------------------------------------------------------------- object masks kept with the crops


def test_crops_from_labels_keep_each_objects_mask_pixel_for_pixel(image_2d, labels_2d):
    crop_set = crops_from_labels(image_2d, labels_2d, CropSettings(size=8, **IDENTITY), axes="CYX")
    assert crop_set.masks.shape == (3, 8, 8) and crop_set.masks.dtype == bool
    for index, row in crop_set.table.iterrows():
        region = source_region(labels_2d[None].astype(np.int64), row, 2)[0]
        np.testing.assert_array_equal(crop_set.masks[index], region == row["label_id"])
    assert list(crop_set.masks.sum(axis=(1, 2))) == [9, 36, 36]  # the whole object lies inside each crop


def test_masks_follow_the_pipeline_resize_and_the_crop_set_to_disk_and_back(tmp_path):
    from napari_morphospace.core.cells.preprocess import PreprocessPipeline, PreprocessStep

    image = np.random.default_rng(7).random((30, 30)).astype(np.float32)
    labels = np.zeros((30, 30), np.uint8)
    labels[10:20, 12:16] = 1  # 10 x 4, in a 16 x 16 crop; halved by the resize: 5 x 2
    pipeline = PreprocessPipeline([PreprocessStep("resize", {"shape": [8, 8]})])
    crop_set = crops_from_labels(
        image, labels, CropSettings(size=16, normalise="dtype"), pipeline=pipeline, output=tmp_path / "set"
    )
    assert crop_set.masks.shape == (1, 8, 8)
    mask = np.asarray(crop_set.masks[0])
    rows, cols = np.nonzero(mask)
    assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == (5, 2)
    loaded = load_crop_set(tmp_path / "set", in_memory=True)
    np.testing.assert_array_equal(loaded.masks, mask[None])
    assert load_crop_set(tmp_path / "set", in_memory=False).subset([0]).masks.compute()[0].sum() == mask.sum()


def test_masks_survive_streaming_subset_and_concat_but_not_a_join_with_maskless_crops(tmp_path, image_2d, labels_2d):
    settings = CropSettings(size=8, **IDENTITY)
    in_memory = crops_from_labels(image_2d, labels_2d, settings, axes="CYX")
    on_disk = crops_from_labels(image_2d, labels_2d, settings, axes="CYX", output=tmp_path / "a")
    np.testing.assert_array_equal(np.asarray(on_disk.masks), in_memory.masks)
    np.testing.assert_array_equal(in_memory.subset([2, 0]).masks, in_memory.masks[[2, 0]])
    joined = concat_crop_sets([in_memory, on_disk])
    np.testing.assert_array_equal(np.asarray(joined.masks), np.concatenate([in_memory.masks] * 2))
    concat_crop_sets([in_memory, on_disk], output=tmp_path / "joined")
    np.testing.assert_array_equal(np.asarray(load_crop_set(tmp_path / "joined").masks), np.asarray(joined.masks))
    points = crops_from_points(image_2d, np.array([[20.0, 25.0]]), settings, axes="CYX")
    assert points.masks is None
    assert concat_crop_sets([in_memory, points]).masks is None
    mixed = concat_crop_sets([in_memory, points], output=tmp_path / "mixed")
    assert mixed.masks is None and not (tmp_path / "mixed" / "masks.zarr").exists()
