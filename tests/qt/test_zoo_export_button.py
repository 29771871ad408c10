"""The Analysis widget's "Export to BioImage Model Zoo…" button, docked as from the Plugins menu."""

import numpy as np
import pandas as pd
import pytest
import torch
from qtpy.QtWidgets import QFileDialog, QInputDialog

from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project.zoo import import_zoo_packages
from napari_morphospace.core.training.bundle import load_bundle, new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings

pytest.importorskip("bioimageio.core", reason="the zoo extra is part of the testing extra")
WAIT_MS = 240000  # two bioimageio.core test-runs on a busy CI machine


def session_parts(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "crop_id": np.arange(6),
            "source": "a.tif",
            "label_id": np.arange(1, 7),
            "t": 0,
            "group": "control",
            "annotation": "",
        }
    )
    crop_set = CropSet(rng.random((6, 1, 16, 16), dtype=np.float32), table, ["dna"], (1.0, 1.0))
    settings = ModelSettings(latent_dim=2, base_channels=4)
    torch.manual_seed(0)
    folder = save_bundle(
        new_bundle(
            build_model(settings, (1, 16, 16)).eval(),
            model_settings=settings,
            input_shape=(1, 16, 16),
            channel_names=["dna"],
            preprocess=None,
            train_settings=TrainSettings(epochs=1),
            provenance={},
            history=[],
        ),
        tmp_path / "my model",
    )
    return load_bundle(folder), crop_set


def test_the_button_exports_the_sessions_model_as_two_test_run_packages(
    make_napari_viewer, dock, qtbot, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Analysis")
    widget.session.bundle, widget.session.crop_set = session_parts(tmp_path)
    target = tmp_path / "zoo"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("Ada Lovelace, Alan Turing", True)))
    widget.zoo_button.native.click()
    assert widget.tasks.busy and not widget.zoo_button.enabled  # busy while it runs
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=WAIT_MS)
    assert sorted(p.name for p in target.iterdir()) == ["decoder.zip", "encoder.zip"]
    assert "validated and test-run with bioimageio.core" in widget.status.text() and widget.zoo_button.enabled
    imported = load_bundle(import_zoo_packages([target], tmp_path / "imported"))
    assert imported.config["model_settings"] == widget.session.bundle.config["model_settings"]


def test_without_a_model_the_button_says_what_is_missing(make_napari_viewer, dock, napari_hooks, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Analysis")
    widget.zoo_button.native.click()
    assert napari_hooks.take_errors() == [
        "export needs the session's model and its crops: train or load a model, and make or open the crops first"
    ]
    widget.session.bundle, widget.session.crop_set = session_parts(tmp_path)
    assert widget.export_to_zoo(tmp_path / "zoo.zip", ["Ada"]) is not None
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=WAIT_MS)
    errors = napari_hooks.take_errors()
    assert len(errors) == 1 and "folder holding encoder.zip and decoder.zip" in errors[0]
    assert errors[0] in widget.status.text() and not (tmp_path / "zoo.zip").exists()
