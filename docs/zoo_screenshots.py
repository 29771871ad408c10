"""Make the pictures of docs/zoo.md: a model of real nuclei exported from the Analysis widget.

Run under a virtual display (a few minutes: it crops and trains first):

    xvfb-run -a -s "-screen 0 1600x1100x24" python docs/zoo_screenshots.py

Real data: four BBBC007 fields (Drosophila Kc167 nuclei, two conditions) fetched by
``tests/real_data.py``. The user path is the one in docs/zoo.md: open the analysis,
press Export to BioImage Model Zoo…, give a folder and the authors.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

import napari
import yaml
from qtpy.QtWidgets import QFileDialog, QInputDialog

from napari_morphospace.cli import main
from napari_morphospace.core.analysis.embed import embed
from napari_morphospace.core.cells.crop_set import load_crop_set
from napari_morphospace.core.project.analysis_folder import create_analysis, save_analysis
from napari_morphospace.core.training.bundle import load_bundle

DOCS = Path(__file__).parent
sys.path[:0] = [str(DOCS), str(DOCS.parent / "tests")]
from real_data import bbbc007_fields  # noqa: E402
from screenshots import IMAGES, settle  # noqa: E402


def analysis_of_real_nuclei(work: Path) -> Path:
    """Crops (per-crop percentile normalisation last) and a 15-epoch β-VAE, saved as an analysis."""
    fields = [f for f in bbbc007_fields() if f[0] in ("A9", "f9620")]
    fields = [f for f in fields if f[0] == "A9"][:2] + [f for f in fields if f[0] == "f9620"][:2]
    config = work / "crops.yaml"
    config.write_text(yaml.safe_dump({
        "images": [str(f[1]) for f in fields], "labels": [str(f[2]) for f in fields], "groups": [f[0] for f in fields],
        "crop": {"size": 32}, "preprocess": {"steps": [{"name": "normalize_percentile", "params": {"low": 1.0, "high": 99.8}}]},
    }))  # fmt: skip
    crops, model = work / "crops", work / "nuclei model"
    assert main(["crops", "--config", str(config), "--out", str(crops)]) == 0
    train = work / "train.yaml"
    train.write_text(yaml.safe_dump({"model": {"latent_dim": 8, "base_channels": 16, "reconstruction": "bce"},
                                     "training": {"epochs": 15, "batch_size": 32, "accelerator": "cpu"}}))
    assert main(["train", "--crops", str(crops), "--config", str(train), "--out", str(model),
                 "--checkpoint-dir", str(work / "checkpoints")]) == 0
    folder = work / "analysis"
    manifest = create_analysis(folder, images=[f[1] for f in fields], labels=[f[2] for f in fields],
                               groups=[f[0] for f in fields])  # fmt: skip
    save_analysis(manifest, crop_set=crops, model=model, latents=embed(load_bundle(model), load_crop_set(crops)))
    return folder


def export_from_the_analysis_widget(folder: Path, target: Path) -> None:
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1500, 950)
    _, widget = viewer.window.add_plugin_dock_widget("napari-morphospace", "Analysis")
    widget.open(folder)
    while widget._worker is not None:
        settle(0.1)
    # What the user types into the two dialogs.
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(target), ""))
    QInputDialog.getText = staticmethod(lambda *a, **k: ("Ada Lovelace", True))
    widget.zoo_button.native.click()
    while widget._worker is not None:
        settle(0.1)
    settle(1.0)
    viewer.screenshot(str(IMAGES / "zoo-export.png"), canvas_only=False)
    viewer.close()
    for role in ("encoder", "decoder"):
        (IMAGES / f"zoo-{role}-cover.png").write_bytes(zipfile.ZipFile(target / f"{role}.zip").read("cover.png"))


if __name__ == "__main__":
    work = Path(tempfile.mkdtemp(prefix="morphospace-zoo-"))
    export_from_the_analysis_widget(analysis_of_real_nuclei(work), work / "zoo packages")
