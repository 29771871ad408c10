"""The sample data opens in a real viewer through the npe2 manifest."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels


def test_sample_opens_as_images_and_labels_with_features(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-morphospace", "cells-2d-fluorescence")
    images = [layer.name for layer in viewer.layers if isinstance(layer, Image)]
    labels = {layer.name: layer for layer in viewer.layers if isinstance(layer, Labels)}
    channels = ("membrane", "nucleus", "granules")
    assert sorted(images) == sorted(f"{group} {channel}" for group in ("control", "treated") for channel in channels)
    assert set(labels) == {"control cells", "treated cells"}
    treated = labels["treated cells"]
    assert treated.metadata == {"group": "treated", "source": "synthetic-treated"}
    np.testing.assert_array_equal(treated.features["index"], np.arange(1, treated.data.max() + 1))
    np.testing.assert_allclose(viewer.layers["treated membrane"].scale, treated.scale)
    # The treated field sits to the right of the control field, without overlapping it.
    assert treated.extent.world[0][-1] > labels["control cells"].extent.world[1][-1]
