"""Outputs: replaced only when ours, refused before work when they cannot be written, scratch of killed runs removed."""

import subprocess
import sys

import pytest
import torch

from napari_morphospace.core import outputs
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.training.bundle import (
    preprocessing_differences,
    save_bundle,
)
from napari_morphospace.core.training.engine import TrainSettings


def dead_pid() -> int:
    """The id of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_scratch_of_dead_processes_of_this_host_is_removed_and_nothing_else(tmp_path):
    host = outputs._host()
    dead = dead_pid()
    stale_file = tmp_path / f".crop_000001.ome.tif.{host}-{dead}.abcd1234.tmp"
    stale_folder = tmp_path / f".crops.{host}-{dead}.x_y9z0ab.tmp"
    mine = tmp_path / outputs.scratch_prefix(tmp_path / "crops")
    mine = mine.with_name(mine.name + "k2k2k2k2.tmp")
    other_host = tmp_path / f".crops.elsewhere-{dead}.abcdabcd.tmp"
    unrelated = [tmp_path / ".hidden.tmp", tmp_path / f"crops.{host}-{dead}.abcd1234.tmp", tmp_path / "data.tif"]
    stale_file.write_bytes(b"")
    stale_folder.mkdir()
    (stale_folder / "images.zarr").write_bytes(b"198 MB in real life")
    for path in (mine, other_host, *unrelated):
        path.write_text("keep")
    removed = outputs.remove_stale_scratch(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_folder])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, other_host, *unrelated))


def test_check_output_refuses_before_anything_is_written(tmp_path, monkeypatch):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("years of work")
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        outputs.check_output(foreign, what="crop set", kind="folder", overwrite=False, is_ours=lambda p: False)
    with pytest.raises(InputError, match="is not a crop set written by napari-morphospace"):
        outputs.check_output(foreign, what="crop set", kind="folder", overwrite=True, is_ours=lambda p: False)
    with pytest.raises(InputError, match="notes.txt is a file, but the crop set is a folder"):
        outputs.check_output(foreign / "notes.txt", what="crop set", kind="folder", overwrite=True)
    with pytest.raises(InputError, match="home is a folder, but the table is a file"):
        outputs.check_output(foreign, what="table", kind="file", overwrite=True)
    with pytest.raises(InputError, match="notes.txt is a file, so the table cannot be written under"):
        outputs.check_output(foreign / "notes.txt" / "t.csv", what="table", kind="file", overwrite=False)
    assert (
        outputs.check_output(tmp_path / "new" / "deeper", what="x", kind="folder", overwrite=False)
        == tmp_path / "new" / "deeper"
    )
    assert not (tmp_path / "new").exists()  # checking creates nothing
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: outputs.shutil._ntuple_diskusage(100, 100, 4096))
    with pytest.raises(InputError, match=r"the disk holding .* is full \(4.0 KiB free, the report needs 1.0 MiB\)"):
        outputs.check_output(tmp_path / "r.html", what="report", kind="file", overwrite=False)
    assert (foreign / "notes.txt").read_text() == "years of work"


def test_a_bundle_replaces_a_bundle_but_never_another_folder(tmp_path):
    """``train --out ~/data --overwrite`` used to run rmtree on ~/data."""
    settings = ModelSettings(latent_dim=2, base_channels=4)
    model = build_model(settings, (1, 16, 16))

    def save(directory):
        return save_bundle(
            model,
            directory,
            model_settings=settings,
            input_shape=(1, 16, 16),
            channel_names=["c"],
            preprocess=None,
            train_settings=TrainSettings(),
            provenance={},
            history=[],
            overwrite=True,
        )

    data = tmp_path / "data"
    data.mkdir()
    (data / "model.json").write_text('{"my": "own model.json"}')  # a look-alike is not a bundle
    (data / "raw.tif").write_bytes(b"irreplaceable")
    with pytest.raises(InputError, match="is not a model bundle written by napari-morphospace"):
        save(data)
    assert (data / "raw.tif").read_bytes() == b"irreplaceable"
    bundle = save(tmp_path / "model")
    torch.manual_seed(1)
    model = build_model(settings, (1, 16, 16))
    assert save(bundle) == bundle and sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"]


def test_preprocessing_differences_name_what_changes_the_crops_only():
    trained = {
        "crops": {
            "size": 64,
            "normalise": "percentiles",
            "percentiles": [0.1, 99.9],
            "mask_neighbours": True,
            "min_area": 10,
            "exclude_border": False,
        },
        "pipeline": {"steps": [{"name": "normalize_minmax"}]},
    }
    same_look = {"crops": {**trained["crops"], "min_area": 99, "exclude_border": True}, "pipeline": trained["pipeline"]}
    assert preprocessing_differences(trained, same_look) == []
    assert preprocessing_differences(trained, None) == [] and preprocessing_differences(None, trained) == []
    other = {"crops": {**trained["crops"], "percentiles": [1, 99]}, "pipeline": None}
    assert preprocessing_differences(trained, other) == [
        "crops.percentiles: model [0.1, 99.9], crops [1, 99]",
        'pipeline: model {"steps": [{"name": "normalize_minmax"}]}, crops null',
    ]
    assert preprocessing_differences(trained, {"crops": {**trained["crops"], "mask_background": True}}) == [
        "crops.mask_background: model (not set), crops true",
        'pipeline: model {"steps": [{"name": "normalize_minmax"}]}, crops (not set)',
    ]
