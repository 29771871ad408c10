"""The Embed widget in a real viewer: latents land in the source layers' features, cancel, bad input, saving."""

import numpy as np
import pandas as pd
import pytest
import torch

from napari_morphospace._qt import embed_widget
from napari_morphospace._qt.embed_widget import EmbedWidget
from napari_morphospace.core.analysis.embed import embed
from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.training.bundle import load_bundle, new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings
from napari_morphospace.viewer.session import session_for


@pytest.fixture
def bundle_dir(tmp_path):
    settings = ModelSettings(model="beta-vae", latent_dim=3, base_channels=4)
    torch.manual_seed(0)
    model = build_model(settings, (1, 16, 16)).eval()
    return save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=(1, 16, 16),
            channel_names=["membrane"],
            preprocess=None,
            train_settings=TrainSettings(epochs=1),
            provenance={},
            history=[],
        ),
        tmp_path / "bundle",
    )


def crop_set():
    """Crops of a 2D layer (source 'ctrl.tif' = the layer's metadata) and of a two-frame time-lapse layer 'movie'."""
    rows = [
        (0, "ctrl.tif", 1, 0, "control"),
        (1, "ctrl.tif", 3, 0, "control"),
        (2, "movie", 1, 0, "treated"),
        (3, "movie", 1, 1, "treated"),
        (4, "movie", 2, 1, "treated"),
        (5, "elsewhere.tif", 1, 0, "control"),
    ]
    table = pd.DataFrame(rows, columns=["crop_id", "source", "label_id", "t", "group"])
    table["annotation"] = ""
    table[["y_start", "y_stop", "x_start", "x_stop"]] = [0, 16, 0, 16]
    images = np.random.default_rng(0).random((len(table), 1, 16, 16), dtype=np.float32)
    return CropSet(images, table, ["membrane"], (1.0, 1.0))


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    still = np.zeros((32, 32), np.int32)
    still[2:6, 2:6], still[10:14, 10:14], still[20:24, 20:24] = 1, 2, 3
    viewer.add_labels(
        still,
        name="control cells",
        metadata={"source": "ctrl.tif"},
        features=pd.DataFrame({"index": [1, 2, 3], "area": [16.0, 16.0, 16.0]}),
    )
    movie = np.zeros((2, 32, 32), np.int32)
    movie[0, 2:6, 2:6] = 1
    movie[1, 2:6, 2:6], movie[1, 20:24, 2:6] = 1, 2
    viewer.add_labels(movie, name="movie")
    return viewer


def _run(qtbot, widget):
    worker = widget.embed()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=60000)


def test_features_hold_the_latents_of_embed_for_the_same_crops(viewer, bundle_dir, qtbot, tmp_path):
    crops = crop_set()
    session_for(viewer).crop_set = crops
    widget = EmbedWidget(viewer)
    qtbot.addWidget(widget)
    widget.bundle_folder.value = bundle_dir
    widget.clustering.value = "kmeans"
    widget.n_clusters.value = 2
    widget.embedding.value = "PCA"
    _run(qtbot, widget)
    expected = embed(load_bundle(bundle_dir), crops)
    latents = session_for(viewer).latents
    assert latents["crop_id"].tolist() == widget.latents["crop_id"].tolist() == list(range(6))
    np.testing.assert_allclose(latents[["mu_0", "mu_1", "mu_2"]], expected[["mu_0", "mu_1", "mu_2"]], rtol=1e-6)
    assert {"PCA_0", "PCA_1", "cluster"} <= set(latents.columns)

    still = viewer.layers["control cells"].features
    assert still["index"].tolist() == [1, 2, 3] and still["area"].tolist() == [16.0] * 3
    mu = expected[[f"mu_{i}" for i in range(3)]].to_numpy()
    np.testing.assert_allclose(still.loc[[0, 2], ["mu_0", "mu_1", "mu_2"]], mu[[0, 1]], rtol=1e-6)
    assert still.loc[1, ["mu_0", "logvar_0", "PCA_0"]].isna().all()  # label 2 was not cropped
    assert still["group"].tolist()[0] == "control" and still["cluster"].notna().sum() == 2

    movie = viewer.layers["movie"].features
    assert movie[["frame", "index"]].values.tolist() == [[0, 1], [1, 1], [1, 2]] and movie["t"].tolist() == [0, 1, 1]
    np.testing.assert_allclose(movie[["mu_0", "mu_1", "mu_2"]], mu[[2, 3, 4]], rtol=1e-6)
    np.testing.assert_allclose(movie["logvar_1"], expected["logvar_1"][2:5], rtol=1e-6)
    assert "'elsewhere.tif' come from a source that is no Labels layer" in widget.status.text()

    saved = widget.save_latent_table(tmp_path / "latents.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(saved), widget.latents)
    assert widget.save_latent_table(saved) is None and "already exist" in widget.status.text()


def test_wrong_channels_are_refused_before_any_work(viewer, bundle_dir, qtbot):
    crops = crop_set()
    session = session_for(viewer)
    session.bundle = load_bundle(bundle_dir)
    session.crop_set = CropSet(np.concatenate([crops.images] * 2, axis=1), crops.table, ["membrane", "dna"], (1.0, 1.0))
    widget = EmbedWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.embed() is None and not widget.tasks.busy
    assert "does not fit the model" in widget.status.text() and "['membrane', 'dna'] (2)" in widget.status.text()
    assert "features" not in viewer.layers["movie"].features and session.latents is None


def test_missing_model_and_bad_bundle_folder_are_explained(viewer, qtbot, tmp_path):
    session_for(viewer).crop_set = crop_set()
    widget = EmbedWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.embed() is None and "no model" in widget.status.text()
    widget.bundle_folder.value = tmp_path
    _run(qtbot, widget)  # the folder is read in the worker; its error comes back as a message
    assert "is not a model bundle" in widget.status.text() and widget.embed_button.enabled


def test_cancel_writes_nothing(viewer, bundle_dir, qtbot, monkeypatch):
    session_for(viewer).crop_set = crop_set()
    widget = EmbedWidget(viewer)
    qtbot.addWidget(widget)
    widget.bundle_folder.value = bundle_dir

    def load_then_cancel(path):  # the user presses Cancel while the model loads
        bundle = load_bundle(path)
        widget.cancel()
        return bundle

    monkeypatch.setattr(embed_widget, "load_bundle", load_then_cancel)
    _run(qtbot, widget)
    assert "Cancelled" in widget.status.text() and widget.embed_button.enabled
    assert session_for(viewer).latents is None and "mu_0" not in viewer.layers["control cells"].features
