"""Model bundles (save, load, refuse tampered or foreign files) and embedding crops with them."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from napari_morphospace.core.analysis.embed import embed
from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import Condition, ModelSettings, build_model
from napari_morphospace.core.training.bundle import (
    check_compatible,
    load_bundle,
    new_bundle,
    save_bundle,
)
from napari_morphospace.core.training.engine import TrainSettings


def crop_set(n: int = 10, shape: tuple[int, ...] = (2, 16, 16), seed: int = 0, group: str = "control") -> CropSet:
    images = np.random.default_rng(seed).random((n, *shape), dtype=np.float32)
    table = pd.DataFrame(
        {
            "crop_id": np.arange(100, 100 + n),
            "source": "a.tif",
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
    return CropSet(images, table, ["membrane", "dna"][: shape[0]], (1.0, 1.0), {"steps": [{"name": "rescale"}]})


def trained_like_model(settings: ModelSettings, shape: tuple[int, ...]) -> torch.nn.Module:
    """A model with non-default weights and BatchNorm statistics, as after training."""
    torch.manual_seed(1)
    model = build_model(settings, shape)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value) * 0.01)
    return model.eval()


def saved_bundle(
    tmp_path,
    settings: ModelSettings | None = None,
    shape=(2, 16, 16),
    train_settings: TrainSettings | None = None,
    overwrite: bool = False,
    **extra,
):
    settings = settings or ModelSettings(model="beta-vae", latent_dim=3, base_channels=8)
    model = trained_like_model(settings, shape)
    directory = save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=shape,
            channel_names=["membrane", "dna"][: shape[0]],
            preprocess={"steps": [{"name": "rescale"}]},
            train_settings=train_settings or TrainSettings(epochs=3),
            provenance={"crop_set": "/data/crops", "n_crops": 10},
            history=[{"epoch": 0, "val_loss": 1.5}],
            **extra,
        ),
        tmp_path / "bundle",
        overwrite=overwrite,
    )
    return model, directory


def test_round_trip_gives_identical_outputs_and_the_recorded_config(tmp_path):
    model, directory = saved_bundle(tmp_path)
    bundle = load_bundle(directory)
    x = torch.from_numpy(crop_set().images)
    with torch.no_grad():
        expected, got = model(x), bundle.model(x)
    assert torch.equal(expected.recon, got.recon) and torch.equal(expected.mu, got.mu)
    assert not bundle.model.training
    assert bundle.input_shape == (2, 16, 16) and bundle.channel_names == ["membrane", "dna"]
    assert bundle.preprocess == {"steps": [{"name": "rescale"}]} and bundle.latent_dim == 3
    config = json.loads((directory / "model.json").read_text())
    assert config["train_settings"]["epochs"] == 3 and config["provenance"]["n_crops"] == 10
    assert set(config["versions"]) == {"napari-morphospace", "torch", "lightning", "numpy"}
    assert sorted(p.name for p in directory.iterdir()) == ["model.json", "weights.safetensors"]


def test_a_loaded_bundle_saves_again_as_the_same_bundle(tmp_path):
    _, directory = saved_bundle(tmp_path)
    loaded = load_bundle(directory)
    again = load_bundle(save_bundle(loaded, tmp_path / "again"))
    assert again.config == loaded.config
    assert (tmp_path / "again" / "model.json").read_text() == (directory / "model.json").read_text()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor)


def test_existing_folder_needs_overwrite(tmp_path):
    _, directory = saved_bundle(tmp_path)
    with pytest.raises(InputError, match="already exists.*overwrite"):
        saved_bundle(tmp_path)
    saved_bundle(tmp_path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_pickled_file_renamed_to_safetensors_is_refused_without_unpickling(tmp_path):
    model, directory = saved_bundle(tmp_path)
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    torch.save({"state": model.state_dict(), "payload": Payload()}, directory / "weights.safetensors")
    with pytest.raises(InputError, match="not a valid safetensors file"):
        load_bundle(directory)
    assert not marker.exists()


@pytest.mark.parametrize("tamper", ["missing", "extra", "shape"])
def test_weights_that_do_not_match_the_architecture_are_refused(tmp_path, tamper):
    model, directory = saved_bundle(tmp_path)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k in state if k.endswith("weight"))
    if tamper == "missing":
        del state[name]
    elif tamper == "extra":
        state["injected.weight"] = torch.zeros(1)
    else:
        state[name] = torch.zeros(1, *state[name].shape)
    save_file(state, str(directory / "weights.safetensors"))
    with pytest.raises(InputError, match={"missing": "missing", "extra": "unexpected", "shape": "wrong shape"}[tamper]):
        load_bundle(directory)


def test_a_bundle_from_before_the_norm_setting_loads_with_batchnorm(tmp_path):
    """The first release had BatchNorm only and wrote no ``norm``; such bundles still load and agree."""
    model, directory = saved_bundle(tmp_path, ModelSettings(latent_dim=3, base_channels=8, norm="batch"))
    config = json.loads((directory / "model.json").read_text())
    del config["model_settings"]["norm"]
    (directory / "model.json").write_text(json.dumps(config))
    bundle = load_bundle(directory)
    assert bundle.model_settings.norm == "batch"
    x = torch.from_numpy(crop_set().images)
    with torch.no_grad():
        assert torch.equal(model(x).mu, bundle.model(x).mu)


def test_unknown_format_version_is_refused(tmp_path):
    _, directory = saved_bundle(tmp_path)
    config = json.loads((directory / "model.json").read_text())
    config["format_version"] = 99
    (directory / "model.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="version 99.*reads"):
        load_bundle(directory)


def test_incompatible_crop_sets_are_refused_naming_both(tmp_path):
    bundle = load_bundle(saved_bundle(tmp_path)[1])
    check_compatible(bundle, crop_set())
    with pytest.raises(InputError, match=r"\['membrane'\] \(1\).*\['membrane', 'dna'\] \(2\)"):
        check_compatible(bundle, crop_set(shape=(1, 16, 16)))
    with pytest.raises(InputError, match=r"\(20, 20\).*\(16, 16\)"):
        check_compatible(bundle, crop_set(shape=(2, 20, 20)))


# ---------------------------------------------------------------- embedding


def test_embed_gives_one_row_per_crop_with_the_encoder_means(tmp_path):
    model, directory = saved_bundle(tmp_path)
    new_cells = crop_set(n=7, seed=5, group="treated")  # never seen in training
    table = embed(load_bundle(directory), new_cells, batch_size=3)
    mu_columns = [f"mu_{i}" for i in range(3)]
    assert list(table.columns[:7]) == ["crop_id", *mu_columns, "logvar_0", "logvar_1", "logvar_2"]
    assert list(table.columns[7:]) == [c for c in new_cells.table.columns if c != "crop_id"]
    assert table["crop_id"].tolist() == list(range(100, 107)) and (table["group"] == "treated").all()
    with torch.no_grad():
        mu, logvar = model.encode(torch.from_numpy(new_cells.images))
    np.testing.assert_allclose(table[mu_columns].to_numpy(), mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        table[["logvar_0", "logvar_1", "logvar_2"]].to_numpy(), logvar.numpy(), rtol=1e-5, atol=1e-6
    )


def test_embed_refuses_a_crop_set_the_bundle_was_not_made_for(tmp_path):
    bundle = load_bundle(saved_bundle(tmp_path)[1])
    with pytest.raises(InputError, match="does not fit the model"):
        embed(bundle, crop_set(shape=(1, 16, 16)))


def test_embed_reports_progress_and_stops_between_batches():
    model = trained_like_model(ModelSettings(latent_dim=2, base_channels=8), (2, 16, 16))
    stop = threading.Event()
    progress = []

    def record(done: int, total: int) -> None:
        progress.append((done, total))
        if done >= 4:
            stop.set()

    table = embed(model, crop_set(n=10), batch_size=2, on_progress=record, stop_event=stop)
    assert progress == [(2, 10), (4, 10)] and len(table) == 4


def test_conditional_model_embeds_with_the_target_encoder_conditioned_on_reference_and_label(tmp_path):
    settings = ModelSettings(
        model="cond-vae", latent_dim=2, base_channels=8, cond_reference_channels=[0], cond_num_labels=2
    )
    model, directory = saved_bundle(
        tmp_path, settings, train_settings=TrainSettings(label_column="group"), label_classes=["control", "treated"]
    )
    cells = crop_set(n=4)
    cells.table["group"] = ["control", "treated", "control", "treated"]
    table = embed(load_bundle(directory), cells)
    reference, target = model.split_channels(torch.from_numpy(cells.images))
    label = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        mu, _ = model.target.encode(target, Condition(reference, label))
    np.testing.assert_allclose(table[["mu_0", "mu_1"]].to_numpy(), mu.numpy(), rtol=1e-5, atol=1e-6)
    cells.table.loc[0, "group"] = "unknown-drug"
    with pytest.raises(InputError, match="unknown-drug.*not trained with"):
        embed(load_bundle(directory), cells)
