"""Decoded cells without Qt: channel layers, where they go, grids beside them, difference maps on them."""

import numpy as np
import pandas as pd
from napari.components import ViewerModel

from napari_morphospace.viewer.decoded import (
    ABS_DIFFERENCE,
    DECODED,
    GRID,
    SSIM_DIFFERENCE,
    beside_data,
    cell_box,
    place_decoded,
    show_decoded,
    show_difference,
    show_grid,
)


def test_a_decoded_cell_is_one_gray_layer_or_one_layer_per_channel_in_the_users_colours():
    viewer = ViewerModel()
    viewer.add_image(np.zeros((8, 8)), name="dna", colormap="blue")
    [gray] = show_decoded(viewer, np.full((1, 4, 4), 0.5, np.float32), spacing=(0.5, 0.5))
    assert gray.name == DECODED and gray.colormap.name == "gray" and tuple(gray.scale) == (0.5, 0.5)
    layers = show_decoded(viewer, np.ones((2, 4, 4), np.float32), ["dna", "actin"])
    assert [layer.name for layer in layers] == [f"{DECODED} dna", f"{DECODED} actin"]
    assert layers[0].colormap.name == "blue" and layers[1].colormap.name != "blue"
    again = show_decoded(viewer, np.zeros((2, 4, 4), np.float32), ["dna", "actin"])  # live decoding: in place
    assert again[0] is layers[0] and not again[0].data.any()


def test_the_decoded_cell_goes_beside_its_cell_or_left_of_all_data_when_the_view_is_unknown():
    viewer = ViewerModel()
    viewer.add_labels(np.zeros((40, 40), np.int32), name="cells", scale=(0.5, 0.5), translate=(10.0, 20.0))
    row = pd.Series({"source": "cells", "label_id": 1, "y_start": 4, "y_stop": 8, "x_start": 10, "x_stop": 20})
    low, high = cell_box(viewer, row)
    np.testing.assert_allclose(low, [10 + 0.5 * 3.5, 20 + 0.5 * 9.5])  # pixel edges, in world units
    np.testing.assert_allclose(high, [10 + 0.5 * 7.5, 20 + 0.5 * 19.5])
    assert cell_box(viewer, row.drop("x_stop")) is None
    [decoded] = show_decoded(viewer, np.zeros((1, 8, 8), np.float32))
    place_decoded(viewer, [decoded], (low, high))  # right of the cell, top edges aligned, a gap between
    np.testing.assert_allclose(decoded.translate, [low[0], high[1] + 0.1 * 8])
    viewer.dims.ndisplay = 3  # in 3D the view is unknown: left of all data
    place_decoded(viewer, [decoded], (low, high))
    np.testing.assert_allclose(decoded.translate, beside_data(viewer, decoded))
    np.testing.assert_allclose(decoded.translate, [10.0, 20.0 - 1.15 * 8])


def test_a_grid_lies_right_of_the_decoded_cell_and_difference_maps_on_it():
    viewer = ViewerModel()
    [decoded] = show_decoded(viewer, np.zeros((1, 10, 10), np.float32))
    decoded.translate = (5.0, 7.0)
    grid = show_grid(viewer, np.zeros((3, 5, 1, 10, 10), np.float32))
    assert grid.name == GRID and grid.axis_labels == ("dimension", "step", "channel", "y", "x")
    np.testing.assert_allclose(grid.translate[-2:], [5.0, 7.0 + 1.15 * 10])
    change = np.arange(100, dtype=np.float32).reshape(1, 10, 10)  # (C, Y, X): channels reduced by their maximum
    maps = {"abs": change, "dissimilarity": change / 100, "what": "dim 1: −3 vs +3"}
    absolute, dissimilarity = show_difference(viewer, maps, quantile=0.9)
    assert absolute.name == ABS_DIFFERENCE and dissimilarity.name == SSIM_DIFFERENCE
    assert tuple(absolute.translate) == (5.0, 7.0) and absolute.metadata["difference"] == "dim 1: −3 vs +3"
    assert np.count_nonzero(absolute.data) == 10 and absolute.data.max() == 99  # the top 10 % of the changes
    show_difference(viewer, {**maps, "dissimilarity": None}, quantile=0.0)  # no SSIM (thin volume): its layer goes
    assert SSIM_DIFFERENCE not in viewer.layers and np.count_nonzero(viewer.layers[ABS_DIFFERENCE].data) == 99
