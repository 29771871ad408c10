"""The session of a viewer, its per-cell table and the one writer of layer.features (no Qt needed)."""

import gc

import numpy as np
import pandas as pd
from napari.components import ViewerModel
from napari.utils._proxies import PublicOnlyProxy

from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.viewer.session import session_for


def _crop_set():
    """Crops of labels 1, 2 of 'a' and label 1 of 'b' (label 3 of 'a' was skipped when cropping)."""
    table = pd.DataFrame(
        {
            "crop_id": [0, 1, 2],
            "source": ["a", "a", "b"],
            "label_id": [1, 2, 1],
            "t": 0,
            "group": ["x", "x", "y"],
            "y_start": 0,
            "y_stop": 4,
            "x_start": 0,
            "x_stop": 4,
        }
    )
    return CropSet(np.zeros((3, 1, 4, 4), np.float32), table, ["dna"], (1.0, 1.0))


def _viewer():
    viewer = ViewerModel()
    labels = np.zeros((8, 8), np.int32)
    labels[0:2, 0:2], labels[3:5, 3:5], labels[6:8, 6:8] = 1, 2, 3
    viewer.add_labels(labels, name="a")
    return viewer


def test_the_session_is_the_viewers_whichever_proxy_asked_first():
    viewer = ViewerModel()
    proxy = PublicOnlyProxy(viewer)  # what napari hands a plugin widget
    session = session_for(proxy)
    session.crop_set = _crop_set()
    del proxy  # the widget was closed, and its proxy went with it
    gc.collect()
    assert session_for(viewer) is session and session_for(PublicOnlyProxy(viewer)).crop_set is not None


def test_features_are_written_from_the_cell_table_one_row_per_embedded_cell():
    viewer = _viewer()
    session = session_for(viewer)
    session.crop_set = _crop_set()
    assert viewer.layers["a"].features.empty  # nothing to write before an embedding
    session.latents = pd.DataFrame({"crop_id": [0, 1, 2], "mu_0": [0.5, 1.5, 2.5], "logvar_0": 0.0})
    features = viewer.layers["a"].features
    assert features["index"].tolist() == [1, 2] and features["mu_0"].tolist() == [0.5, 1.5]  # no row for label 3
    assert features["group"].tolist() == ["x", "x"] and features["annotation"].tolist() == ["", ""]

    session.set_columns([0, 1, 2], {"cluster": [4, 5, 6]})
    session.set_annotations(pd.Series({1: "round"}))
    assert viewer.layers["a"].features[["cluster", "annotation"]].values.tolist() == [[4, ""], [5, "round"]]
    assert session.cells["annotation"].tolist() == ["", "round", ""]

    viewer.add_labels(np.ones((4, 4), np.int32), name="b")  # a source opened after the embedding
    assert viewer.layers["b"].features[["index", "mu_0", "cluster"]].values.tolist() == [[1, 2.5, 6]]
    viewer.add_labels(np.ones((4, 4), np.int32), name="b overlay", metadata={"morphospace_overlay": "x", "source": "b"})
    assert viewer.layers["b overlay"].features.empty  # the plugin's own overlays are never sources


def test_a_new_crop_set_clears_the_last_models_results():
    viewer = _viewer()
    session = session_for(viewer)
    session.crop_set = _crop_set()
    session.latents = pd.DataFrame({"crop_id": [0, 1], "mu_0": [0.5, np.nan]})
    assert session.latents["crop_id"].tolist() == [0]  # a cell without a latent is not a latent row
    heard = []
    session.latents_changed.connect(heard.append)
    session.crop_set = _crop_set()
    assert session.latents is None and heard == [None] and "mu_0" not in session.cells
