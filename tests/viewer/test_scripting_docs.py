"""docs/scripting.md runs: every code block of the page, in order, against a window-less viewer (no Qt)."""

import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from napari.components import ViewerModel

from napari_morphospace.core.cells.crop_set import CropSet, save_crop_set
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.training.bundle import new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings

PAGE = Path(__file__).parents[2] / "docs" / "scripting.md"
CROP = 16


def code_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.fixture
def user_files(tmp_path):
    """What the page assumes: a viewer with 4 fields' Labels layers, their crop set, and a model bundle."""
    rng = np.random.default_rng(0)
    viewer = ViewerModel()
    images, rows = [], []
    for field in range(4):
        group = ["control", "treated"][field % 2]
        labels = np.zeros((2 * CROP + 8, 3 * CROP + 8), np.int32)
        for k in range(6):
            y0, x0 = 4 + CROP * (k // 3), 4 + CROP * (k % 3)
            labels[y0 + 2 : y0 + CROP - 2, x0 + 2 : x0 + CROP - 2] = k + 1
            crop = 0.1 * rng.random((2, CROP, CROP))
            crop[1, 4:12, 4:12] += 0.8 if group == "treated" else 0.1
            images.append(crop)
            rows.append(
                {
                    "source": f"field {field}",
                    "label_id": k + 1,
                    "t": 0,
                    "group": group,
                    "annotation": "",
                    "y_start": y0,
                    "y_stop": y0 + CROP,
                    "x_start": x0,
                    "x_stop": x0 + CROP,
                }
            )
        viewer.add_labels(labels, name=f"field {field}", translate=(0.0, 70.0 * field))
    table = pd.DataFrame(rows)
    table.insert(0, "crop_id", np.arange(len(table)))
    crop_set = CropSet(images=np.asarray(images, np.float32), table=table, channel_names=["ER", "mito"])
    crops = save_crop_set(crop_set, tmp_path / "crops")
    torch.manual_seed(0)
    settings = ModelSettings(latent_dim=4, base_channels=4)
    bundle = save_bundle(
        new_bundle(
            build_model(settings, (2, CROP, CROP)),
            model_settings=settings,
            input_shape=(2, CROP, CROP),
            channel_names=["ER", "mito"],
            preprocess=None,
            train_settings=TrainSettings(epochs=1),
            provenance={},
            history=[],
        ),
        tmp_path / "model",
    )
    return viewer, crops, bundle


def test_every_snippet_of_the_scripting_page_runs_and_does_what_it_says(user_files):
    matplotlib.use("Agg")
    viewer, crops, bundle = user_files
    blocks = code_blocks(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) == 5  # embed, scatter, latent space, statistics, classifier
    namespace = {"viewer": viewer, "crop_set_folder": crops, "bundle_folder": bundle}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)
    names = [layer.name for layer in viewer.layers]
    assert {"mu_0", "PCA_0", "cluster"} <= set(viewer.layers["field 0"].features.columns)  # embed
    assert "selected cells" in names and len(namespace["session"].selection) > 0  # scatter
    assert set(namespace["session"].named_selections["cluster 0"]) == set(namespace["session"].selection)
    assert {"decoded cell ER", "decoded cell mito", "traversal grid", "difference |Δ|", "Grad-CAM"} <= set(
        names
    )  # latent space
    assert viewer.layers["Grad-CAM"].metadata["source"] in {"field 1", "field 3"}  # a treated field
    assert (namespace["summary"].condition, namespace["summary"].reference) == ("treated", "control") and namespace[
        "comparison"
    ] is not None  # statistics
    assert {"mito Grad-CAM (treated) · field 1", "ER Grad-CAM (treated) · field 3"} <= set(names)  # classifier
    matplotlib.pyplot.close("all")
