"""``morphospace sweep`` as a cluster runs it: list the grid, one grid point per job, then collect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml
from skimage.draw import disk

from napari_morphospace.cli import main
from napari_morphospace.core.cells.crop_set import CropSet, save_crop_set


def disk_crop_set(n: int = 48) -> CropSet:
    """16×16 crops of one bright disk, small (control) or large (treated), over 6 source images."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, 1, 16, 16), np.float32)
    radius = np.where(np.arange(n) % 2 == 0, 3.0, 5.0) + rng.uniform(-0.5, 0.5, n)
    for i in range(n):
        rr, cc = disk((8 + rng.uniform(-1, 1), 8 + rng.uniform(-1, 1)), radius[i], shape=(16, 16))
        images[i, 0][rr, cc] = 0.8
    table = pd.DataFrame(
        {
            "crop_id": np.arange(n),
            "source": [f"image{i % 6}.tif" for i in range(n)],
            "label_id": np.arange(1, n + 1),
            "t": 0,
            "group": np.where(np.arange(n) % 2 == 0, "control", "treated"),
            "annotation": "",
            "y_start": 0,
            "y_stop": 16,
            "x_start": 0,
            "x_stop": 16,
            "area": np.pi * radius**2,
        }
    )
    return CropSet(images, table, ["dna"], (1.0, 1.0), {"steps": []})


def test_sweep_from_the_command_line_one_job_per_grid_point_then_collect(tmp_path, capsys):
    crops = tmp_path / "crops"
    save_crop_set(disk_crop_set(), crops)
    config = tmp_path / "sweep.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"latent_dim": 2, "base_channels": 8},
                "training": {
                    "epochs": 2,
                    "batch_size": 8,
                    "accelerator": "cpu",
                    "augment_flips": False,
                    "augment_rot90": False,
                },
                "grid": {"beta": [0.5, 4.0], "depth": [2, 9]},
            }
        )
    )
    assert main(["sweep", "--config", str(config), "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == ["0\t000_beta0.5_depth2", "1\t001_beta0.5_depth9", "2\t002_beta4_depth2", "3\t003_beta4_depth9"]

    out = tmp_path / "sweep"
    for index in (0, 2):  # two array jobs
        assert (
            main(["sweep", "--config", str(config), "--crops", str(crops), "--out", str(out), "--index", str(index)])
            == 0
        )
    printed = capsys.readouterr()
    assert "[1/4] 000_beta0.5_depth2: epoch 2/2" in printed.out and "[3/4] 002_beta4_depth2: ok" in printed.out
    assert "morphospace sweep --collect" in printed.err
    # A depth too large for 16 px crops fails: the job says so with exit status 1, the message is recorded.
    assert main(["sweep", "--config", str(config), "--crops", str(crops), "--out", str(out), "--index", "1"]) == 1
    assert "001_beta0.5_depth9: failed" in capsys.readouterr().out

    assert main(["sweep", "--collect", str(out)]) == 1  # a point failed
    printed = capsys.readouterr().err
    assert (
        "2 of 4 runs finished" in printed
        and "failed: 001_beta0.5_depth9" in printed
        and "1 run(s) not finished" in printed
    )
    table = pd.read_csv(out / "comparison.csv", keep_default_na=False)
    assert list(table["status"]) == ["ok", "failed", "ok", "not run"]
    for row in table[table["warnings"] != ""].itertuples():  # the diagnostics' problems of each finished run
        assert f"warning: {row.name}: {row.warnings}" in printed
    assert set(table["warnings"][[1, 3]]) == {""}
    assert (out / "report.html").is_file()


def test_sweep_options_are_checked(tmp_path, capsys):
    assert main(["sweep", "--crops", str(tmp_path)]) == 2
    assert "give --config" in capsys.readouterr().err
    assert main(["sweep", "--collect", str(tmp_path)]) == 2
    assert "is not a sweep folder" in capsys.readouterr().err
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"grid": {"latent_dims": [2]}}))
    assert main(["sweep", "--config", str(config), "--list"]) == 2
    assert "unknown setting(s) latent_dims" in capsys.readouterr().err
