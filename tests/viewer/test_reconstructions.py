"""The reconstruction preview layer of a training, without Qt: placed beside the images, written in place."""

import numpy as np
from napari.components import ViewerModel

from napari_morphospace.core.training.engine import PREVIEW_CROPS, ReconstructionPreview
from napari_morphospace.viewer.reconstructions import (
    PREVIEW_LAYER,
    add_preview_layer,
    show_reconstructions,
)


def test_the_preview_sits_right_of_the_images_and_each_epoch_is_written_into_the_same_array():
    viewer = ViewerModel()
    viewer.add_image(np.zeros((100, 200), np.float32), name="field")
    add_preview_layer(viewer, (16, 1, 12, 12), resume=False)
    layer = viewer.layers[PREVIEW_LAYER]
    data = layer.data
    assert layer.rgb and layer.metadata["description"] == "waiting for the first reconstructions"
    (top, left), (bottom, _right) = layer.extent.world[:, -2:]
    assert left >= 200 and abs(top) < 1 and abs((bottom - top) - 50) < 3  # beside the field, about half its height

    crops = np.full((PREVIEW_CROPS, 1, 12, 12), 0.5, np.float32)
    shown = show_reconstructions(viewer, ReconstructionPreview(4, crops, 1 - crops))
    assert shown is layer and layer.data is data and "epoch 5" in layer.metadata["description"]
    assert data[6, 6, 0] in (127, 128)  # the first original (0.5 of 255), in the array napari already shows

    add_preview_layer(viewer, (16, 1, 12, 12), resume=False)  # a new run keeps the layer, marked as old
    assert viewer.layers[PREVIEW_LAYER].metadata["description"] == "from the previous run"
    assert len(viewer.layers) == 2
