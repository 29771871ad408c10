"""BioImage Model Zoo export (validated with bioimageio.spec, test-run with bioimageio.core) and import back."""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from napari_morphospace.core.analysis.embed import embed
from napari_morphospace.core.analysis.traversal import traverse
from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.cells.preprocess import normalize_percentile
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project import zoo
from napari_morphospace.core.project.zoo import (
    ZooSettings,
    export_zoo_packages,
    import_zoo_packages,
)
from napari_morphospace.core.training.bundle import load_bundle, new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings

bioimageio_core = pytest.importorskip("bioimageio.core", reason="the zoo extra is part of the testing extra")

PIPELINE = {"steps": [{"name": "normalize_percentile", "params": {"low": 1.0, "high": 99.8}}]}
PREPROCESS = {
    "crops": {"mode": "fixed", "size": 16, "normalise": "percentiles", "percentiles": [1.0, 99.8]},
    "pipeline": PIPELINE,
}


def blob_crops(n: int = 12, shape: tuple[int, ...] = (2, 16, 16), seed: int = 0) -> CropSet:
    """Blobs of varying radius and brightness plus noise, normalised per crop as the pipeline above does."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 for s in shape[1:]], indexing="ij"))
    images = []
    for _ in range(n):
        radius = rng.uniform(2, 6)
        blob = np.exp(-(grid**2).sum(axis=0) / (2 * radius**2))
        raw = np.stack([blob * rng.uniform(0.3, 1) + rng.normal(0, 0.05, blob.shape) for _ in range(shape[0])])
        images.append(normalize_percentile(raw.astype(np.float32)))
    table = pd.DataFrame(
        {
            "crop_id": np.arange(n),
            "source": "field 1.tif",
            "label_id": np.arange(1, n + 1),
            "t": 0,
            "group": ["control", "treated"] * (n // 2),
            "annotation": "",
        }
    )
    return CropSet(
        np.stack(images), table, ["membrane (CellMask)", "DNA"][: shape[0]], (1.0,) * (len(shape) - 1), PREPROCESS
    )


def bundle_folder(directory: Path, settings: ModelSettings, shape: tuple[int, ...], seed: int = 1) -> Path:
    """A bundle whose weights and BatchNorm statistics differ from the defaults, as after training."""
    torch.manual_seed(seed)
    model = build_model(settings, shape)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value) * 0.05)
    return save_bundle(
        new_bundle(
            model.eval(),
            model_settings=settings,
            input_shape=shape,
            channel_names=["membrane (CellMask)", "DNA"][: shape[0]],
            preprocess=PREPROCESS,
            train_settings=TrainSettings(epochs=2),
            provenance={"crop_set": "/data/crops", "n_crops": 12},
            history=[{"epoch": 0, "val_loss": 80.5}, {"epoch": 1, "val_loss": 75.25}],
        ),
        directory,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One 2D β-VAE bundle, its crops and its export (validated and test-run during the export)."""
    root = tmp_path_factory.mktemp("zoo")
    bundle = load_bundle(bundle_folder(root / "bundle", ModelSettings(latent_dim=3, base_channels=4), (2, 16, 16)))
    crops = blob_crops()
    steps: list[str] = []
    written = export_zoo_packages(
        bundle, crops, root / "zoo", settings=ZooSettings(authors=["Ada Lovelace"]), on_step=steps.append
    )
    return bundle, crops, written, steps


def rdf_of(package: Path) -> dict:
    return yaml.safe_load(zipfile.ZipFile(package).read("rdf.yaml"))


def npy(package: Path, name: str) -> np.ndarray:
    return np.load(io.BytesIO(zipfile.ZipFile(package).read(name)))


# --------------------------------------------------------------------------- export


def test_export_writes_two_packages_that_validate_and_reproduce_their_test_outputs(exported):
    from bioimageio.spec import InvalidDescr, load_description

    bundle, crops, written, steps = exported
    assert sorted(p.name for p in written.folder.iterdir()) == ["decoder.zip", "encoder.zip"]
    assert not [p for p in written.folder.parent.iterdir() if p.name.startswith(".")]  # no scratch left
    assert any("test-running the encoder" in s for s in steps) and any("decoder" in s for s in steps)
    for package in (written.encoder, written.decoder):
        described = load_description(package, perform_io_checks=True)
        assert not isinstance(described, InvalidDescr), described.validation_summary.format()
        summary = bioimageio_core.test_model(package)
        assert summary.status == "passed", summary.format()
        assert {"pytorch_state_dict", "torchscript"} <= {f for f, w in described.weights if w is not None}


def test_test_tensors_are_our_models_outputs_after_the_described_normalisation(exported):
    bundle, crops, written, _ = exported
    test_crops = npy(written.encoder, "crops.npy")
    assert test_crops.shape == (4, 2, 16, 16) and np.array_equal(test_crops, crops.images[[0, 4, 7, 11]])
    renormalised = np.stack([normalize_percentile(c) for c in test_crops])
    with torch.no_grad():
        mu, logvar = bundle.model.encode(torch.from_numpy(renormalised))
        image = bundle.model.decode(mu)
    np.testing.assert_array_equal(npy(written.encoder, "mu.npy"), mu.numpy())
    np.testing.assert_array_equal(npy(written.encoder, "logvar.npy"), logvar.numpy())
    np.testing.assert_array_equal(npy(written.decoder, "z.npy"), mu.numpy())
    np.testing.assert_array_equal(npy(written.decoder, "image.npy"), image.numpy())
    preprocessing = rdf_of(written.encoder)["inputs"][0]["preprocessing"]
    scale = next(p for p in preprocessing if p["id"] == "scale_range")["kwargs"]
    assert scale["axes"] == ["y", "x"] and (scale["min_percentile"], scale["max_percentile"]) == (1.0, 99.8)
    assert any(p["id"] == "clip" for p in preprocessing)


def test_descriptions_carry_cover_readme_citations_and_our_model_json(exported):
    bundle, _, written, _ = exported
    for package, role in ((written.encoder, "encoder"), (written.decoder, "decoder")):
        rdf = rdf_of(package)
        ours = rdf["config"]["napari-morphospace"]
        assert ours["role"] == role and ours["bundle"]["model_settings"] == bundle.config["model_settings"]
        assert ours["model_id"] == zoo.model_id(bundle.model)
        assert rdf["authors"] == [{"name": "Ada Lovelace"}] and rdf["name"] == f"bundle {role}"
        assert {c.get("doi") for c in rdf["cite"]} >= {"10.3390/bioengineering13010076", "10.48550/arXiv.1312.6114"}
        assert rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] == f"Zoo{role.capitalize()}"
        width, height = Image.open(io.BytesIO(zipfile.ZipFile(package).read("cover.png"))).size
        assert width == 2 * height
        readme = zipfile.ZipFile(package).read("README.md").decode()
        assert "## Validation" in readme and "normalize_percentile" in readme and "weights_only=True" in readme
    assert zoo._name(ZooSettings(name="Zellen: größer/kleiner"), bundle, "decoder") == "Zellen gr er kleiner decoder"
    assert zoo._name(ZooSettings(name="ü"), bundle, "encoder") == "bundle encoder"
    names = rdf_of(written.decoder)["outputs"][0]["axes"][1]["channel_names"]
    assert names == ["membrane_cellmask", "dna"]  # identifiers; the original names travel in model.json


def test_a_traversal_runs_downstream_through_the_torchscript_packages(exported):
    """Encoder package → change one latent → decoder package, in bioimageio.core with TorchScript only."""
    from bioimageio.core import (
        create_prediction_pipeline,
        load_model_description,
        predict,
    )

    bundle, crops, written, _ = exported
    pipelines = {
        role: create_prediction_pipeline(load_model_description(path), weight_format="torchscript")
        for role, path in (("encoder", written.encoder), ("decoder", written.decoder))
    }
    crop = crops.images[3:4]
    mu = predict(model=pipelines["encoder"], inputs={"crops": crop}).members["mu"].data.values
    z = np.repeat(mu, 3, axis=0)
    z[:, 1] = np.array([-3.0, 0.0, 3.0]) * bundle.model.latent_scale[1].item()
    decoded = predict(model=pipelines["decoder"], inputs={"z": z.astype(np.float32)}).members["image"].data.values
    with torch.no_grad():  # the package's preprocessing re-applies the crop's own normalisation
        ours = bundle.model.encode(torch.from_numpy(normalize_percentile(crop[0])[None]))[0].numpy()
    np.testing.assert_allclose(mu, ours, atol=1e-5)
    np.testing.assert_allclose(decoded, traverse(bundle.model, 1, start=mu[0], values=[-3.0, 0.0, 3.0]), atol=1e-5)


def test_a_package_that_fails_its_test_run_is_refused_and_nothing_is_written(exported, tmp_path, monkeypatch):
    bundle, crops, _, _ = exported
    real = zoo._test_tensors

    def wrong_outputs(*args):
        tensors = real(*args)
        tensors.mu = tensors.mu + 0.5  # not what the weights compute
        return tensors

    monkeypatch.setattr(zoo, "_test_tensors", wrong_outputs)
    with pytest.raises(InputError) as caught:
        export_zoo_packages(bundle, crops, tmp_path / "zoo", settings=ZooSettings(authors=["Ada Lovelace"]))
    message = str(caught.value)
    assert "encoder package failed the bioimageio.core test-run" in message and "mu" in message
    assert "disagree" in message and "\n" not in message and "nothing was written" in message
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_description_is_refused_with_the_validators_error(exported, tmp_path, monkeypatch):
    bundle, crops, _, _ = exported
    monkeypatch.setattr(zoo, "_name", lambda *args: "abc")  # shorter than bioimage.io allows
    with pytest.raises(InputError, match=r"encoder description does not validate: name: .*at least 5") as caught:
        export_zoo_packages(bundle, crops, tmp_path / "zoo", settings=ZooSettings(authors=["A"]))
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400 and list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match=r"licence 'my own' is not an SPDX identifier"):
        export_zoo_packages(bundle, crops, tmp_path / "zoo", settings=ZooSettings(authors=["A"], license="my own"))
    with pytest.raises(InputError, match=r"author 'Lab A/B' is not accepted by bioimage.io"):
        export_zoo_packages(bundle, crops, tmp_path / "zoo", settings=ZooSettings(authors=["Lab A/B"]))
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_what_it_cannot_write(exported, tmp_path, monkeypatch):
    bundle, crops, written, _ = exported
    authors = ZooSettings(authors=["Ada Lovelace"])
    with pytest.raises(InputError, match="at least one author"):
        export_zoo_packages(bundle, crops, tmp_path / "a", settings=ZooSettings(authors=[" "]))
    with pytest.raises(InputError, match="already exists"):
        export_zoo_packages(bundle, crops, written.folder, settings=authors)
    with pytest.raises(InputError, match="folder holding encoder.zip and decoder.zip"):
        export_zoo_packages(bundle, crops, tmp_path / "model.zip", settings=authors)
    with pytest.raises(InputError, match="does not fit the model"):
        export_zoo_packages(bundle, blob_crops(shape=(1, 16, 16)), tmp_path / "b", settings=authors)
    cond = load_bundle(
        bundle_folder(
            tmp_path / "cond",
            ModelSettings(model="cond-vae", latent_dim=2, base_channels=4, cond_reference_channels=[0]),
            (2, 16, 16),
        )
    )
    with pytest.raises(InputError, match="cond-vae model cannot be exported"):
        export_zoo_packages(cond, crops, tmp_path / "c", settings=authors)
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)
    with pytest.raises(InputError, match=r'pip install "napari-morphospace\[zoo\]"'):
        export_zoo_packages(bundle, crops, tmp_path / "d", settings=authors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cond"]


def test_final_normalisation_is_what_a_scale_range_can_express():
    step = zoo.final_normalisation({"pipeline": {"steps": [{"name": "clahe"}, {"name": "normalize_minmax"}]}})
    assert step.name == "normalize_minmax"
    assert zoo.final_normalisation(PREPROCESS).params == {"low": 1.0, "high": 99.8}
    assert zoo.final_normalisation({"pipeline": {"steps": [{"name": "normalize_minmax"}, {"name": "clahe"}]}}) is None
    assert zoo.final_normalisation({"crops": {}, "pipeline": None}) is None and zoo.final_normalisation(None) is None


def test_citations_follow_the_model():
    def dois(**kwargs):
        return {ref.get("doi") or ref.get("url") for _, ref in zoo.citations(ModelSettings(**kwargs))}

    assert "10.1038/s42003-022-03218-x" in dois(model="me-vae") and "10.1038/s42003-022-03218-x" not in dois()
    assert "10.48550/arXiv.1802.04942" in dois(model="beta-tcvae")
    assert "10.1371/journal.pcbi.1009155" in dois(objective="reparameterised", beta=0.5)
    assert "10.3390/bioengineering13010076" in dois(model="beta-tcvae")


# --------------------------------------------------------------------------- import


def test_round_trip_export_import_gives_identical_latents_and_decodes(exported, tmp_path):
    bundle, crops, written, _ = exported
    imported = load_bundle(import_zoo_packages([written.folder], tmp_path / "imported"))
    np.testing.assert_array_equal(
        embed(imported, crops).filter(regex="^(mu|logvar)_").to_numpy(),
        embed(bundle, crops).filter(regex="^(mu|logvar)_").to_numpy(),
    )
    z = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.equal(imported.model.decode(z), bundle.model.decode(z))
    assert torch.equal(imported.model.latent_scale, bundle.model.latent_scale)
    assert imported.channel_names == bundle.channel_names and imported.preprocess == bundle.preprocess
    assert imported.config["history"] == bundle.config["history"]
    assert imported.config["provenance"]["imported_from"] == [
        str(written.encoder.resolve()),
        str(written.decoder.resolve()),
    ]
    again = import_zoo_packages([written.decoder, written.encoder], tmp_path / "again")  # the two files, any order
    assert load_bundle(again).config["model_settings"] == bundle.config["model_settings"]


def rewritten(
    package: Path, target: Path, *, files: dict[str, bytes | None] | None = None, rdf_change=None, fix_sha: bool = True
) -> Path:
    """A copy of ``package`` with files replaced (None: removed) and rdf.yaml edited, like a tampered download."""
    files = files or {}
    source = zipfile.ZipFile(package)
    rdf = yaml.safe_load(source.read("rdf.yaml"))
    weights = rdf["weights"]["pytorch_state_dict"]
    if fix_sha and files.get(weights["source"]):
        weights["sha256"] = hashlib.sha256(files[weights["source"]]).hexdigest()
    if rdf_change is not None:
        rdf_change(rdf)
    with zipfile.ZipFile(target, "w") as out:
        for name in source.namelist():
            data = files.get(name, source.read(name)) if name != "rdf.yaml" else yaml.safe_dump(rdf).encode()
            if data is not None:
                out.writestr(name, data)
    return target


class Payload:
    """What a malicious pickle would run on load: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def refused(tmp_path: Path, encoder: Path, decoder: Path, match: str) -> str:
    with pytest.raises(InputError, match=match) as caught:
        import_zoo_packages([encoder, decoder], tmp_path / "bundle")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "bundle").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    return str(caught.value)


def test_a_pickle_in_place_of_the_weights_is_refused_without_running_it(exported, tmp_path):
    _, _, written, _ = exported
    marker = tmp_path / "pickle-ran"
    evil = io.BytesIO()
    torch.save({"vae.latent_scale": Payload(marker)}, evil)
    name = rdf_of(written.encoder)["weights"]["pytorch_state_dict"]["source"]
    tampered = rewritten(written.encoder, tmp_path / "encoder.zip", files={name: evil.getvalue()})
    message = refused(tmp_path, tampered, written.decoder, "weights_only=True refused it")
    assert not marker.exists() and "never unpickles" in message
    plain_pickle = rewritten(written.encoder, tmp_path / "plain.zip", files={name: pickle.dumps(Payload(marker))})
    refused(tmp_path, plain_pickle, written.decoder, "not a plain state dict of tensors")
    assert not marker.exists()
    unsigned = rewritten(written.encoder, tmp_path / "unsigned.zip", files={name: evil.getvalue()}, fix_sha=False)
    refused(tmp_path, unsigned, written.decoder, "does not match the SHA-256 in rdf.yaml")


def test_wrong_shapes_missing_files_foreign_and_mismatched_packages_are_refused(exported, tmp_path):
    bundle, _, written, _ = exported
    encoder_rdf = rdf_of(written.encoder)
    name = encoder_rdf["weights"]["pytorch_state_dict"]["source"]
    state = torch.load(io.BytesIO(zipfile.ZipFile(written.encoder).read(name)), weights_only=True)
    state["vae.encoder.mu.weight"] = state["vae.encoder.mu.weight"][:-1]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    wrong = rewritten(written.encoder, tmp_path / "wrong.zip", files={name: buffer.getvalue()})
    assert "wrong shape" in refused(tmp_path, wrong, written.decoder, "do not fit the recorded architecture")
    missing = rewritten(written.encoder, tmp_path / "missing.zip", files={name: None})
    refused(tmp_path, missing, written.decoder, "missing its pytorch_state_dict weights file")
    foreign = rewritten(
        written.encoder, tmp_path / "foreign.zip", rdf_change=lambda rdf: rdf["config"].pop("napari-morphospace")
    )
    refused(tmp_path, foreign, written.decoder, "was not exported by napari-morphospace")
    other = rewritten(
        written.decoder,
        tmp_path / "other.zip",
        rdf_change=lambda rdf: rdf["config"]["napari-morphospace"].update(model_id="0123456789abcdef"),
    )
    refused(tmp_path, written.encoder, other, "come from different models")
    refused(tmp_path, written.encoder, written.encoder, "one encoder and one decoder")
    (tmp_path / "not-a.zip").write_text("hello")
    refused(tmp_path, tmp_path / "not-a.zip", written.decoder, "is not a zip package")
    with pytest.raises(InputError, match="has no decoder.zip"):
        only_encoder = tmp_path / "half"
        only_encoder.mkdir()
        shutil.copy(written.encoder, only_encoder)
        import_zoo_packages([only_encoder], tmp_path / "bundle")


def test_a_3d_multi_encoder_model_exports_test_runs_and_round_trips(tmp_path):
    """3D crops and the ME-VAE, whose decoder package drops a list of encoders rather than one."""
    shape = (1, 8, 16, 16)
    settings = ModelSettings(model="me-vae", latent_dim=2, base_channels=4)
    bundle = load_bundle(bundle_folder(tmp_path / "bundle", settings, shape))
    crops = blob_crops(shape=shape)
    bundle.model.train()  # e.g. a model another widget is using: the export works on its own copy
    written = export_zoo_packages(bundle, crops, tmp_path / "zoo", settings=ZooSettings(authors=["Ada Lovelace"]))
    assert bundle.model.training
    rdf = rdf_of(written.decoder)
    assert [a.get("id") for a in rdf["outputs"][0]["axes"][2:]] == ["z", "y", "x"]
    assert "10.1038/s42003-022-03218-x" in {c.get("doi") for c in rdf["cite"]}
    decoder_state = torch.load(
        io.BytesIO(zipfile.ZipFile(written.decoder).read("decoder_state_dict.pt")), weights_only=True
    )
    assert not [k for k in decoder_state if "encoders" in k] and "vae.latent_scale" in decoder_state
    imported = load_bundle(import_zoo_packages([written.folder], tmp_path / "imported"))
    np.testing.assert_array_equal(
        embed(imported, crops).filter(like="mu_").to_numpy(), embed(bundle, crops).filter(like="mu_").to_numpy()
    )
