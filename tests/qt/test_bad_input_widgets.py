"""Bad input reaching the widgets as users arrive: docked from the Plugins menu, napari's notification hooks on.

A model meets crops made differently (Embed, Grad-CAM), and an analysis
folder refers to files outside itself (File > Open Folder).
"""

import numpy as np
import pandas as pd
import pytest
import torch

from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project.analysis_folder import (
    create_analysis,
    save_analysis,
)
from napari_morphospace.core.training.bundle import load_bundle, new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings
from napari_morphospace.viewer.session import session_for

TRAINED_ON = {
    "crops": {"size": 16, "mode": "fixed", "mask_neighbours": True, "normalise": "percentiles", "min_area": 10},
    "pipeline": None,
}
MADE_WITH = {
    "crops": {"size": 16, "mode": "fixed", "mask_neighbours": False, "normalise": "dtype", "min_area": 3},
    "pipeline": None,
}


@pytest.fixture
def bundle(tmp_path):
    settings = ModelSettings(latent_dim=3, base_channels=4)
    torch.manual_seed(0)
    model = build_model(settings, (1, 16, 16)).eval()
    folder = save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=(1, 16, 16),
            channel_names=["membrane"],
            preprocess=TRAINED_ON,
            train_settings=TrainSettings(epochs=1),
            provenance={},
            history=[],
        ),
        tmp_path / "model",
    )
    return load_bundle(folder)


def crops(preprocess) -> CropSet:
    table = pd.DataFrame(
        {
            "crop_id": np.arange(4),
            "source": "cells",
            "label_id": np.arange(1, 5),
            "t": 0,
            "group": ["a", "a", "b", "b"],
            "annotation": "",
            "y_start": 0,
            "y_stop": 16,
            "x_start": 16 * np.arange(4),
            "x_stop": 16 * np.arange(4) + 16,
        }
    )
    images = np.random.default_rng(0).random((4, 1, 16, 16), dtype=np.float32)
    return CropSet(images, table, ["membrane"], (1.0, 1.0), preprocess)


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    labels = np.zeros((16, 64), np.int32)
    for i in range(4):
        labels[4:12, 16 * i + 4 : 16 * i + 12] = i + 1
    viewer.add_labels(labels, name="cells")
    return viewer


def test_embed_refuses_crops_made_differently_until_the_user_accepts(viewer, bundle, dock, napari_hooks, qtbot):
    session = session_for(viewer)
    session.bundle, session.crop_set = bundle, crops(MADE_WITH)
    widget = dock(viewer, "Embed")
    assert widget.embed() is None
    [error] = napari_hooks.take_errors()
    assert "made differently from the model's training crops" in error
    assert (
        'crops.mask_neighbours: model true, crops false; crops.normalise: model "percentiles", crops "dtype"' in error
    )
    assert "min_area" not in error  # which objects were cropped is not preprocessing
    assert "'accept other preprocessing' in the Embed widget" in error and session.latents is None

    widget.allow_mismatch.value = True
    worker = widget.embed()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=60000)
    assert len(session.latents) == 4 and "mu_0" in viewer.layers["cells"].features
    warned = [str(n.message) for n in napari_hooks.notifications("warning")]
    assert any("embedded crops made differently" in w and "crops.normalise" in w for w in warned), warned


def test_same_preprocessing_embeds_without_a_question(viewer, bundle, dock, napari_hooks, qtbot):
    session = session_for(viewer)
    session.bundle = bundle
    session.crop_set = crops({**TRAINED_ON, "crops": {**TRAINED_ON["crops"], "min_area": 50}})  # selection only
    widget = dock(viewer, "Embed")
    assert widget.embed() is not None
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=60000)
    assert session.latents is not None and len(session.latents) == 4


def test_gradcam_refuses_crops_made_differently(viewer, bundle, dock, napari_hooks, qtbot):
    session = session_for(viewer)
    session.bundle, session.crop_set = bundle, crops(MADE_WITH)
    widget = dock(viewer, "Latent space")
    qtbot.waitUntil(lambda: widget.model is not None, timeout=20000)
    qtbot.waitUntil(lambda: not widget.busy, timeout=20000)
    widget.show_gradcam(dim=0, sign=1, cells="all cells")
    [error] = napari_hooks.take_errors()
    assert "made differently from the model's training crops" in error
    assert not any(layer.name.startswith("Grad-CAM") for layer in viewer.layers)


def test_open_folder_reads_nothing_outside_the_analysis_folder(make_napari_viewer, napari_hooks, tmp_path, sources):
    """File > Open Folder cannot ask: images outside the folder are skipped, and the warning says how to allow them."""
    images, labels = sources
    folder = tmp_path / "analysis"
    manifest = create_analysis(folder, images=images, labels=labels, groups=["control", "treated"])
    save_analysis(manifest, crop_set=crops(TRAINED_ON))
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as raised:  # napari shows a reader's error as an error notification
        viewer.open(str(folder), plugin="napari-morphospace")
    messages = [str(raised.value), str(raised.value.__cause__)]
    assert any(
        "every image it shows lies outside the analysis folder" in m and "--allow-external" in m for m in messages
    ), messages
    assert len(viewer.layers) == 0
    warned = [str(n.message) for n in napari_hooks.notifications("warning")]
    assert any("4 source or label image(s) lie outside the analysis folder" in w for w in warned), warned
