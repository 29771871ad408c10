"""Where the Latent space sliders start, without Qt: origin, a group's mean, a clicked or picked cell, its box."""

import numpy as np
import pandas as pd
import pytest
from napari.components import ViewerModel

from napari_morphospace.core.errors import InputError
from napari_morphospace.viewer.latent_start import StartPoint
from napari_morphospace.viewer.session import session_for


def _start():
    """A field with cells 1, 2, 3 (crop ids 10, 11, 12) in groups 1, 1, 2 (numbers), translated by (100, 0)."""
    viewer = ViewerModel()
    viewer.add_labels(np.zeros((30, 30), np.int32), name="field", translate=(100.0, 0.0))
    latents = pd.DataFrame(
        {
            "crop_id": [10, 11, 12],
            "source": "field",
            "label_id": [1, 2, 3],
            "group": [1, 1, 2],
            "mu_0": [1.0, 3.0, 5.0],
            "mu_1": [0.0, 2.0, -2.0],
            "y_start": [0, 10, 20],
            "y_stop": [8, 18, 28],
            "x_start": [0, 10, 20],
            "x_stop": [8, 18, 28],
        }
    )
    start = StartPoint(viewer)
    start.use(latents)
    return viewer, start


def test_origin_and_group_mean_with_groups_named_by_their_text():
    _, start = _start()
    np.testing.assert_array_equal(start.vector("origin", 2), [0.0, 0.0])
    np.testing.assert_array_equal(start.vector("group mean", 2, "1"), [2.0, 1.0])  # mean of cells 1 and 2
    with pytest.raises(InputError, match="starting from the origin instead"):
        start.vector("group mean", 2, "7")
    with pytest.raises(InputError, match="unknown start 'middle'"):
        start.vector("middle", 2)


def test_a_cell_start_waits_for_a_cell_then_follows_the_session_selection_and_lies_on_its_box():
    viewer, start = _start()
    assert start.vector("cell", 2) is None and start.cell_box() is None  # nothing chosen yet
    session_for(viewer).selection = [11]  # a click in the Scatter plot
    np.testing.assert_array_equal(start.vector("cell", 2), [3.0, 2.0])
    assert not start.follow_selection()  # the same cell
    session_for(viewer).selection = [12]
    assert start.follow_selection() and start.row == 2
    low, high = start.cell_box()
    np.testing.assert_allclose(low, [119.5, 19.5])  # the box in the field's world coordinates
    np.testing.assert_allclose(high, [127.5, 27.5])


def test_picking_a_label_makes_it_the_start_cell():
    viewer, start = _start()
    viewer.layers["field"].selected_label = 2
    assert start.pick_cell(2) == ("field", 2, None) and start.row == 1
    np.testing.assert_array_equal(start.vector("cell", 2), [3.0, 2.0])
    start.use(None)
    with pytest.raises(InputError, match="needs the latent table"):
        start.pick_cell(2)
