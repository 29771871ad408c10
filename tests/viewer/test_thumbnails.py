"""Crops of plotted cells as pictures: matched by crop id, read one at a time (also from disk), placed at the cursor."""

import numpy as np
import pandas as pd
import zarr

from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.viewer.thumbnails import (
    KEPT_PICTURES,
    CropPictures,
    thumbnail_place,
)


def _crop_set(images) -> CropSet:
    table = pd.DataFrame({"crop_id": [30, 10, 20], "source": "cells", "label_id": [3, 1, 2], "t": 0})
    return CropSet(images, table, [f"c{i}" for i in range(images.shape[1])])


def test_rows_find_their_crop_by_id_and_rows_without_one_have_none():
    images = np.random.default_rng(0).random((3, 1, 4, 5)).astype(np.float32)
    pictures = CropPictures(_crop_set(images), np.array([10, 99, 30]))  # plot rows in another order; 99 has no crop
    assert pictures.positions.tolist() == [1, -1, 0]
    assert pictures.picture(1) is None and pictures.position(1) is None
    grey = (images[1, 0] * 255).astype(np.uint8)
    assert np.array_equal(pictures.picture(0), np.repeat(grey[..., None], 3, axis=-1))


def test_two_channels_make_a_green_magenta_composite_and_3d_its_maximum_projection():
    crop = np.zeros((1, 2, 3, 4, 4), np.float32)
    crop[0, 0, 1, 0, 0] = 1.0  # channel 0 bright in z = 1 at (0, 0): green
    crop[0, 1, 2, 3, 3] = 0.5  # channel 1 at z = 2, (3, 3): half magenta
    table = pd.DataFrame({"crop_id": [7], "source": "cells", "label_id": [1], "t": 0})
    picture = CropPictures(CropSet(crop, table, ["a", "b"]), np.array([7])).picture(0)
    assert picture.shape == (4, 4, 3)
    assert picture[0, 0].tolist() == [0, 255, 0] and picture[3, 3].tolist() == [127, 0, 127]
    assert picture.sum() == 255 + 2 * 127  # nothing else lit


def test_crops_on_disk_are_read_one_at_a_time_and_kept(tmp_path):
    images = np.random.default_rng(1).random((3, 1, 6, 6)).astype(np.float32)
    on_disk = zarr.create_array(tmp_path / "images.zarr", shape=images.shape, chunks=(1, 1, 6, 6), dtype="float32")
    on_disk[:] = images
    reads = []

    class Counting:
        """The zarr array, counting the crops read from it."""

        shape, ndim, dtype = on_disk.shape, on_disk.ndim, on_disk.dtype

        def __getitem__(self, index):
            reads.append(index)
            return on_disk[index]

    pictures = CropPictures(_crop_set(Counting()), np.array([20, 30, 10]))
    first = pictures.picture(0)
    assert reads == [2]  # only the hovered crop is read, by its position in the set
    assert np.array_equal(first, np.repeat((images[2, 0] * 255).astype(np.uint8)[..., None], 3, axis=-1))
    assert pictures.picture(0) is first and reads == [2]  # kept: the cursor coming back reads nothing
    for row in range(3):
        pictures.picture(row)
    assert reads == [2, 0, 1] and KEPT_PICTURES >= 3


def test_thumbnail_sits_below_right_of_the_cursor_and_flips_at_the_edges():
    assert thumbnail_place((10, 20), (96, 72), (400, 300)) == (22, 32)
    assert thumbnail_place((350, 20), (96, 72), (400, 300)) == (242, 32)  # no room on the right: left of the cursor
    assert thumbnail_place((10, 280), (96, 72), (400, 300)) == (22, 196)  # no room below: above it
    assert thumbnail_place((50, 50), (96, 72), (80, 60)) == (0, 0)  # a plot smaller than the picture: its corner
