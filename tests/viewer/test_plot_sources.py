"""The scatter plot's rows, colours and highlights without Qt: read from layers' features, linked back to the image."""

import numpy as np
import pandas as pd
import pytest
from napari.components import ViewerModel
from napari.utils._proxies import PublicOnlyProxy

from napari_morphospace.core.analysis.cell_table import left_out_note
from napari_morphospace.core.errors import InputError
from napari_morphospace.viewer.highlights import SELECTED_CELLS, SELECTED_POINTS, SelectionHighlights
from napari_morphospace.viewer.layers import focus_on
from napari_morphospace.viewer.plot_colors import DIMMED_ALPHA, dim_other_frames, point_colors
from napari_morphospace.viewer.plot_sources import PlotSources


def _cells(viewer):
    """Two 10×10 fields: 'a' with labels 1, 2 (label 2 without a latent), 'b' with label 5."""
    a = np.zeros((10, 10), np.int32)
    a[1:4, 1:4], a[6:9, 6:9] = 1, 2
    b = np.zeros((10, 10), np.int32)
    b[2:5, 5:8] = 5
    features_a = pd.DataFrame(
        {
            "label_id": [1, 2],
            "crop_id": [10, 11],
            "mu_0": [0.5, np.nan],
            "mu_1": [1.0, np.nan],
            "logvar_0": [0.0, 0.0],
            "logvar_1": [-4.0, -4.0],
            "group": ["x", "y"],
        }
    )
    features_b = pd.DataFrame(
        {
            "label_id": [5],
            "crop_id": [12],
            "mu_0": [3.0],
            "mu_1": [4.0],
            "logvar_0": [0.0],
            "logvar_1": [-4.0],
            "group": ["y"],
            "UMAP_0": [1.0],
        }
    )
    viewer.add_labels(a, name="a", features=features_a, translate=(100.0, 0.0))
    viewer.add_labels(b, name="b", features=features_b)
    return viewer


def test_rows_are_the_cells_with_a_latent_in_source_order_and_axes_put_the_informative_dimension_first():
    viewer = _cells(ViewerModel())
    sources = PlotSources(PublicOnlyProxy(viewer), ["a", viewer.layers["b"]])
    assert len(sources) == 2 and sources.notes == [left_out_note(1, "'a'")]
    assert sources.crop_ids().tolist() == [10, 12] and sources.column("mu_0").tolist() == [0.5, 3.0]
    # logvar_1 = -4 everywhere: dimension 1 carries more KL than dimension 0 (logvar 0), so it comes first
    assert sources.axis_columns() == ["mu_1", "mu_0"]  # UMAP_0 is not in every source
    assert sources.color_columns() == ["", "mu_0", "mu_1", "logvar_0", "logvar_1", "group"]
    assert sources.describe(1) == "b · t 0 · label 5"
    with pytest.raises(InputError, match="has no features"):
        PlotSources(viewer, [viewer.add_labels(np.zeros((4, 4), np.int32), name="bare")])


def test_a_click_in_the_image_finds_the_rows_of_the_topmost_cell_and_a_row_leads_back_to_its_cell():
    viewer = _cells(ViewerModel())
    sources = PlotSources(viewer, ["a", "b"])
    assert sources.rows_at((3.0, 6.0)).tolist() == [1]  # label 5 of 'b'
    assert sources.rows_at((102.0, 2.0)).tolist() == [0]  # label 1 of 'a', translated by 100 in y
    assert sources.rows_at((0.0, 0.0)).size == 0  # background
    layer, world = sources.cell_position(0)
    assert layer is viewer.layers["a"] and np.allclose(world, [102.0, 2.0])  # the centroid of label 1
    focus_on(viewer, layer, world)
    assert viewer.layers.selection.active is layer and np.allclose(viewer.camera.center[-2:], [102.0, 2.0])


def test_the_selected_cells_layer_shows_the_selection_of_the_field_looked_at():
    viewer = _cells(ViewerModel())
    viewer.layers["a"].translate = (0.0, 0.0)  # fields opened from files lie over each other
    sources = PlotSources(viewer, ["a", "b"])
    highlights = SelectionHighlights(viewer)
    highlights.show(sources, np.array([True, True]))
    mask = viewer.layers[SELECTED_CELLS]
    assert (np.asarray(mask.data) == (viewer.layers["b"].data == 5)).all()  # 'b' is on top
    viewer.layers.selection.active = viewer.layers["a"]
    assert (np.asarray(viewer.layers[SELECTED_CELLS].data) == (viewer.layers["a"].data == 1)).all()
    assert SELECTED_POINTS not in viewer.layers  # no Points source


def test_points_are_coloured_by_category_or_by_number_and_other_frames_fade():
    groups = point_colors(np.array(["b", "a", "b"], object), "group", opacity=0.5)
    assert (groups.colors[0] == groups.colors[2]).all() and not (groups.colors[0] == groups.colors[1]).all()
    assert groups.colors[:, 3].tolist() == [0.5, 0.5, 0.5] and groups.legend.index("a") < groups.legend.index("b")
    numbers = point_colors(np.array([0.0, np.nan, 10.0]), "size")
    assert numbers.legend == "size: 0 (left) … 10 (right)" and numbers.colorbar.shape == (10, 256, 3)
    assert numbers.colors[1].tolist() == [0.5, 0.5, 0.5, 1.0]  # NaN grey
    assert point_colors(None, n=2).colors.shape == (2, 4)
    faded = dim_other_frames(numbers.colors, np.array([True, True, False]))
    assert faded[2, 3] == pytest.approx(DIMMED_ALPHA) and faded[0, 3] == 1.0 and numbers.colors[2, 3] == 1.0
