"""Annotations drawn over their source layer and cells found by a click, without Qt."""

import numpy as np
import pandas as pd
from napari.components import ViewerModel

from napari_morphospace.core.project.annotations import AnnotationClass
from napari_morphospace.viewer.annotations import (
    annotated_sources,
    annotation_layer,
    clicked_cells,
)


def _movie():
    labels = np.zeros((2, 6, 6), np.int32)
    labels[:, 1:3, 1:3] = 1
    labels[:, 4:6, 4:6] = 2
    cells = pd.DataFrame(
        {
            "crop_id": [10, 11, 12, 13],
            "source": "movie",
            "label_id": [1, 2, 1, 2],
            "t": [0, 0, 1, 1],
            "annotation": ["round", "", "", "long"],
            "y_start": 0,
            "y_stop": 3,
            "x_start": 0,
            "x_stop": 3,
        }
    )
    return labels, cells


def test_each_cell_gets_its_class_code_in_its_own_frame_coloured_like_its_class():
    labels, cells = _movie()
    viewer = ViewerModel()
    layer = viewer.add_labels(labels, name="movie", scale=(1, 2, 2))
    viewer.add_labels(labels, name="unrelated")
    assert annotated_sources(viewer.layers, cells) == [layer]
    classes = [AnnotationClass("round", "#ff0000"), AnnotationClass("long", "#0000ff")]
    data, placement = annotation_layer(layer, cells, classes)
    assert data[0, 1, 1] == 1 and data[0, 4, 4] == 0  # frame 0: cell 1 round, cell 2 not annotated
    assert data[1, 1, 1] == 0 and data[1, 4, 4] == 2  # frame 1: cell 2 long
    assert tuple(placement["scale"]) == (1, 2, 2)
    np.testing.assert_allclose(placement["colormap"].color_dict[2], (0, 0, 1, 1))


def test_a_click_finds_the_cell_of_the_frame_shown():
    labels, cells = _movie()
    viewer = ViewerModel()
    layer = viewer.add_labels(labels, name="movie", scale=(1, 2, 2))
    np.testing.assert_array_equal(clicked_cells(layer, (1, 9, 9), cells), [13])  # world (t, y, x): label 2 at t=1
    np.testing.assert_array_equal(clicked_cells(layer, (0, 3, 3), cells), [10])
    assert len(clicked_cells(layer, (0, 6, 6), cells)) == 0  # background
