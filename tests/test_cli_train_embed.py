"""``morphospace train`` and ``morphospace embed`` end to end on a small saved crop set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
import yaml
from skimage.draw import disk

from napari_morphospace.cli import main
from napari_morphospace.core.cells.crop_set import CropSet, save_crop_set
from napari_morphospace.core.training.bundle import load_bundle


def disk_crop_set(n: int, *, group: str, radius: float, seed: int) -> CropSet:
    """``n`` 16×16 crops of one bright disk of the given radius, over 4 source images."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, 16, 16), np.float32)
    for i in range(n):
        rr, cc = disk((8 + rng.uniform(-1, 1), 8 + rng.uniform(-1, 1)), radius, shape=(16, 16))
        images[i, 0][rr, cc] = 0.8
    table = pd.DataFrame(
        {
            "crop_id": np.arange(n),
            "source": [f"{group}{i % 4}.tif" for i in range(n)],
            "label_id": np.arange(1, n + 1),
            "t": 0,
            "group": group,
            "annotation": "",
            "y_start": 0,
            "y_stop": 16,
            "x_start": 0,
            "x_stop": 16,
        }
    )
    return CropSet(images, table, ["dna"], (1.0, 1.0), {"steps": []})


def test_train_then_embed_new_cells_from_the_command_line(tmp_path, capsys):
    controls, treated = tmp_path / "controls", tmp_path / "treated"
    save_crop_set(disk_crop_set(32, group="control", radius=3, seed=0), controls)
    save_crop_set(disk_crop_set(10, group="treated", radius=6, seed=1), treated)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"base_channels": 8, "beta": 0.5},
                "training": {"batch_size": 8, "accelerator": "cpu", "epochs": 5},
            }
        )
    )
    bundle_dir, effective = tmp_path / "model", tmp_path / "effective.yaml"
    status = main(
        [
            "train",
            "--crops",
            str(controls),
            "--model",
            "beta-vae",
            "--latent-dim",
            "3",
            "--epochs",
            "2",
            "--config",
            str(config),
            "--save-config",
            str(effective),
            "--out",
            str(bundle_dir),
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
        ]
    )
    assert status == 0
    out = capsys.readouterr()
    assert "epoch 1: train loss=" in out.out and "epoch 2:" in out.out and "epoch 3" not in out.out
    saved = yaml.safe_load(effective.read_text())  # options override the config file, the rest is kept
    assert saved["training"]["epochs"] == 2 and saved["training"]["batch_size"] == 8
    assert saved["model"]["latent_dim"] == 3 and saved["model"]["beta"] == 0.5
    model_json = json.loads((bundle_dir / "model.json").read_text())
    assert model_json["provenance"]["n_crops"] == 32 and model_json["provenance"]["groups"] == ["control"]
    assert len(model_json["history"]) == 2

    latents = tmp_path / "latents.parquet"
    assert main(["embed", "--model", str(bundle_dir), "--crops", str(treated), "--out", str(latents)]) == 0
    table = pd.read_parquet(latents)
    assert len(table) == 10 and table["crop_id"].tolist() == list(range(10))
    assert [c for c in table.columns if c.startswith(("mu_", "logvar_"))] == [
        "mu_0",
        "mu_1",
        "mu_2",
        "logvar_0",
        "logvar_1",
        "logvar_2",
    ]
    assert (table["group"] == "treated").all()
    bundle = load_bundle(bundle_dir)
    with torch.no_grad():
        mu, _ = bundle.model.encode(torch.from_numpy(disk_crop_set(10, group="treated", radius=6, seed=1).images))
    np.testing.assert_allclose(table[["mu_0", "mu_1", "mu_2"]].to_numpy(), mu.numpy(), rtol=1e-5, atol=1e-5)

    # Existing outputs are kept unless --overwrite is given: exit status 2 and a message.
    assert main(["embed", "--model", str(bundle_dir), "--crops", str(treated), "--out", str(latents)]) == 2
    assert "already exists" in capsys.readouterr().err
    csv = tmp_path / "latents.csv"
    assert main(["embed", "--model", str(bundle_dir), "--crops", str(treated), "--out", str(csv)]) == 0
    pd.testing.assert_frame_equal(
        pd.read_csv(csv)[["crop_id", "mu_0"]], table[["crop_id", "mu_0"]], check_dtype=False, rtol=1e-5
    )


def test_train_refuses_bad_options_with_exit_status_2(tmp_path, capsys):
    crops = tmp_path / "crops"
    save_crop_set(disk_crop_set(12, group="control", radius=3, seed=0), crops)
    status = main(["train", "--crops", str(crops), "--out", str(tmp_path / "m"), "--latent-dim", "1"])
    assert status == 2
    assert "--latent-dim must be between 2 and 512" in capsys.readouterr().err
    status = main(
        [
            "train",
            "--crops",
            str(crops),
            "--out",
            str(tmp_path / "m"),
            "--precision",
            "16-mixed",
            "--accelerator",
            "cpu",
            "--epochs",
            "1",
        ]
    )
    assert status == 2
    assert "16-mixed" in capsys.readouterr().err


def test_beta_option_is_the_chosen_models_beta(tmp_path, capsys):
    """--beta weighs the KL of beta-vae and the total correlation of beta-tcvae (its tc_beta); a config
    that sets beta for beta-tcvae, which would change nothing, is refused with the setting to use."""
    import argparse

    from napari_morphospace.cli.train import add_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    tcvae = config_from_args(
        parser.parse_args(["train", "--crops", "c", "--out", "o", "--model", "beta-tcvae", "--beta", "4"])
    )
    assert (tcvae.model.tc_beta, tcvae.model.beta) == (4.0, 1.0)
    vae = config_from_args(parser.parse_args(["train", "--crops", "c", "--out", "o", "--beta", "4"]))
    assert (vae.model.beta, vae.model.tc_beta) == (4.0, 6.0)
    config = tmp_path / "tcvae.yaml"
    config.write_text(yaml.safe_dump({"model": {"model": "beta-tcvae", "beta": 4.0}}))
    crops = tmp_path / "crops"
    save_crop_set(disk_crop_set(12, group="control", radius=3, seed=0), crops)
    assert main(["train", "--crops", str(crops), "--out", str(tmp_path / "m"), "--config", str(config)]) == 2
    assert "beta-tcvae does not use beta" in capsys.readouterr().err
