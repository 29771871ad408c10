"""``morphospace zoo export`` and ``zoo import`` end to end: train, export, import, embed with the import."""

from __future__ import annotations

import shutil
import zipfile

import pandas as pd
import pytest
import yaml
from test_cli_train_embed import disk_crop_set

from napari_morphospace.cli import main
from napari_morphospace.core.cells.crop_set import save_crop_set

pytest.importorskip("bioimageio.core", reason="the zoo extra is part of the testing extra")


def test_train_export_import_embed_from_the_command_line(tmp_path, capsys):
    crops, model = tmp_path / "crops", tmp_path / "model"
    save_crop_set(disk_crop_set(24, group="control", radius=3, seed=0), crops)
    assert (
        main(
            [
                "train",
                "--crops",
                str(crops),
                "--latent-dim",
                "2",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--accelerator",
                "cpu",
                "--out",
                str(model),
                "--checkpoint-dir",
                str(tmp_path / "ckpt"),
            ]
        )
        == 0
    )
    capsys.readouterr()

    # No --crops: the training crop set recorded in the bundle gives the test tensors.
    packages = tmp_path / "zoo"
    assert (
        main(
            [
                "zoo",
                "export",
                "--model",
                str(model),
                "--out",
                str(packages),
                "--author",
                "Ada Lovelace",
                "--author",
                "Alan Turing",
                "--name",
                "disk nuclei",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "Validating and test-running the decoder package" in err and "validated and test-run; written" in err
    rdf = yaml.safe_load(zipfile.ZipFile(packages / "encoder.zip").read("rdf.yaml"))
    assert rdf["name"] == "disk nuclei encoder" and [a["name"] for a in rdf["authors"]] == [
        "Ada Lovelace",
        "Alan Turing",
    ]

    imported = tmp_path / "imported"
    assert main(["zoo", "import", str(packages), "--out", str(imported)]) == 0
    assert f"model bundle written to {imported}" in capsys.readouterr().err
    for bundle, out in ((model, "original.csv"), (imported, "imported.csv")):
        assert main(["embed", "--model", str(bundle), "--crops", str(crops), "--out", str(tmp_path / out)]) == 0
    original, again = pd.read_csv(tmp_path / "original.csv"), pd.read_csv(tmp_path / "imported.csv")
    pd.testing.assert_frame_equal(original, again)

    # The same folder again needs --overwrite; a crop set that is gone needs --crops.
    assert main(["zoo", "export", "--model", str(model), "--out", str(packages), "--author", "A"]) == 2
    assert "already exists" in capsys.readouterr().err
    shutil.rmtree(crops)
    assert main(["zoo", "export", "--model", str(model), "--out", str(tmp_path / "other"), "--author", "A"]) == 2
    err = capsys.readouterr().err
    assert "give --crops" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "other").exists()


def test_import_refuses_a_foreign_package_in_one_line(tmp_path, capsys):
    foreign = tmp_path / "unet.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("rdf.yaml", yaml.safe_dump({"type": "model", "name": "some U-Net", "config": {}}))
    other = tmp_path / "other.zip"
    shutil.copy(foreign, other)
    assert main(["zoo", "import", str(foreign), str(other), "--out", str(tmp_path / "bundle")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("morphospace zoo: error:") and "was not exported by napari-morphospace" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "bundle").exists()
