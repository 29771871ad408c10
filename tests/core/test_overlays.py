"""core.analysis.overlays: dimension ranking, start points, slider units, overlays in source coordinates."""

import numpy as np
import pandas as pd
import pytest

from napari_morphospace.core.analysis.overlays import (
    channel_colormaps,
    find_cell,
    latent_from_sliders,
    overlay_on_layer,
    paste_maps,
    ranked_dimensions,
    slider_values,
    start_vector,
    top_dimensions,
)
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.figures.traversal import group_traversal_figure


def kl_table() -> pd.DataFrame:
    """Three dimensions with hand-computed KL: logvar 0 everywhere, so KL_k = 0.5·mean(mu_k²)."""
    return pd.DataFrame(
        {
            "crop_id": [0, 1, 2, 3],
            "mu_0": [0.0, 0.0, 0.0, 0.0],  # KL 0
            "mu_1": [2.0, -2.0, 2.0, -2.0],  # KL 2
            "mu_2": [1.0, -1.0, 1.0, -1.0],  # KL 0.5
            "logvar_0": 0.0,
            "logvar_1": 0.0,
            "logvar_2": 0.0,
            "source": ["a", "a", "b", "b"],
            "label_id": [1, 2, 1, 2],
            "t": [0, 0, 0, 1],
            "group": ["ctrl", "ctrl", "drug", "drug"],
        }
    )


def test_dimensions_ranked_by_kl_match_the_hand_computed_values():
    order, kl = ranked_dimensions(kl_table(), by="kl")
    np.testing.assert_allclose(kl, [0.0, 2.0, 0.5])
    assert order.tolist() == [1, 2, 0]
    assert top_dimensions(kl_table(), 2, by="kl").tolist() == [1, 2]
    assert top_dimensions(kl_table(), None, by="kl").tolist() == [1, 2, 0]


def test_dimensions_ranked_by_cohens_d_between_two_groups():
    table = pd.DataFrame(
        {
            "mu_0": [0.0, 1.0, 0.0, 1.0],  # same in both groups: d = 0
            "mu_1": [0.0, 1.0, 3.0, 4.0],  # shifted by 3 with pooled SD 0.707: |d| = 4.24
            "group": ["ctrl", "ctrl", "drug", "drug"],
        }
    )
    order, d = ranked_dimensions(table, by="cohens_d", groups=("ctrl", "drug"))
    assert order.tolist() == [1, 0]
    np.testing.assert_allclose(d, [0.0, -3.0 / np.sqrt(0.5)])
    with pytest.raises(InputError, match="logvar"):
        ranked_dimensions(table, by="kl")
    with pytest.raises(InputError, match="two groups"):
        ranked_dimensions(table, by="cohens_d", groups=("ctrl",))


def test_start_points_and_cell_lookup():
    table = kl_table()
    assert find_cell(table, "b", 2, t=1) == 3
    assert find_cell(table, "b", 1) == 2
    with pytest.raises(InputError, match="label 2 of 'b' at t=0"):
        find_cell(table, "b", 2, t=0)
    np.testing.assert_array_equal(start_vector(table, 3), [0, 0, 0])
    np.testing.assert_array_equal(start_vector(table, 3, kind="group mean", group="ctrl"), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(start_vector(table, 3, kind="cell", row=2), [0.0, 2.0, 1.0])
    with pytest.raises(InputError, match="model has 4"):
        start_vector(table, 4, kind="cell", row=0)


def test_slider_values_are_in_units_of_the_latent_scale():
    start = np.array([0.5, -1.0, 2.0], np.float32)
    scale = np.array([1.0, 2.0, 0.5], np.float32)
    z = latent_from_sliders(start, [1, 2], [3.0, -3.0], scale)
    np.testing.assert_array_equal(z, [0.5, 6.0, -1.5])
    np.testing.assert_array_equal(start, [0.5, -1.0, 2.0])  # the start is not modified
    np.testing.assert_array_equal(slider_values(z, [0, 1, 2], scale), [0.5, 3.0, -3.0])


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


def test_channel_colormaps_follow_the_shown_layers():
    known = {"control membrane": "green", "control nucleus": "cyan"}
    assert channel_colormaps(["membrane", "nucleus", "granules"], known) == ["green", "cyan", "cyan"]
    assert channel_colormaps(["phase"], {}) == ["gray"]


def test_group_traversal_figure_labels_rows_with_groups():
    traversals = {"ctrl": np.zeros((3, 1, 8, 8), np.float32), "drug": np.ones((3, 1, 8, 8), np.float32)}
    figure = group_traversal_figure(traversals)
    assert [figure.axes[i].get_ylabel() for i in (0, 3)] == ["ctrl", "drug"]
    assert len(figure.axes) == 6
