"""The sweep: grid points from one config, one held-out split, ordinary runs, scores, table, figures and report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from napari_morphospace.core.analysis.embed import embed
from napari_morphospace.core.cells.crop_set import concat_crop_sets
from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels
from napari_morphospace.core.cells.sample_data import SampleSettings, make_sample_data
from napari_morphospace.core.config import from_dict
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project.sweep import (
    SweepSettings,
    collect_sweep,
    comparison_table,
    evaluate_run,
    grid_points,
    prepare_sweep,
    probe_targets,
    read_run_record,
    run_sweep,
    split_for_sweep,
)
from napari_morphospace.core.training.bundle import load_bundle
from napari_morphospace.core.training.diagnostics import (
    diagnose_training,
    representation_probe,
)
from napari_morphospace.core.training.engine import split_crops

TINY = {
    "model": {"latent_dim": 4, "base_channels": 8},
    "training": {
        "epochs": 5,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "accelerator": "cpu",
        "augment_flips": False,
        "augment_rot90": False,
    },
}


def sweep_settings(grid: dict, **extra) -> SweepSettings:
    return from_dict(SweepSettings, {**TINY, "grid": grid, **extra})


@pytest.fixture(scope="module")
def sample_crops():
    """The synthetic sample data three times over (seeds 0-2): 6 fields, 12 cells each, as 16 px crops.

    Each field is its own source, so the test split can hold out whole
    fields. The known factors join the crop table as measurement columns.
    """
    sets = []
    for seed in range(3):
        sample = make_sample_data(SampleSettings(n_cells=12, seed=seed, n_channels=2))
        for stack, labels, group in zip(sample.images, sample.labels, ("control", "treated"), strict=True):
            crop_set = crops_from_labels(
                stack, labels, CropSettings(size=16, mode="fit"), group=group, source=f"{group}-{seed}"
            )
            factors = sample.factors[sample.factors["group"] == group].set_index("label_id")
            for name in ("size", "elongation"):
                crop_set.table[name] = factors.loc[crop_set.table["label_id"], name].to_numpy()
            sets.append(crop_set)
    return concat_crop_sets(sets)


def test_grid_points_are_every_combination_in_order_and_beta_means_tc_beta_for_beta_tcvae():
    settings = sweep_settings({"model": ["beta-vae", "beta-tcvae"], "beta": [0.5, 4.0]})
    points = grid_points(settings)
    assert [p.name for p in points] == [
        "000_beta-vae_beta0.5",
        "001_beta-vae_beta4",
        "002_beta-tcvae_beta0.5",
        "003_beta-tcvae_beta4",
    ]
    assert [p.values for p in points][1] == {"model": "beta-vae", "beta": 4.0}
    assert (points[1].model.beta, points[1].model.latent_dim, points[1].model.base_channels) == (4.0, 4, 8)  # base kept
    assert (points[3].model.tc_beta, points[3].model.beta) == (4.0, 1.0)  # β-TCVAE's β is tc_beta; beta stays unused
    depth = grid_points(sweep_settings({"depth": [None, 2], "block": ["maxpool", "strided"]}))
    assert [p.name for p in depth] == [
        "000_depthauto_maxpool",
        "001_depthauto_strided",
        "002_depth2_maxpool",
        "003_depth2_strided",
    ]
    assert depth[0].model.depth is None and depth[3].model.depth == 2
    assert [p.name for p in grid_points(sweep_settings({}))] == ["000_base"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grid": {"latent_dim": [4, 1]}}, r"grid point 1 \(001_latent1\).*latent_dim"),
        ({"grid": {"model": ["cond-vae"]}}, "train it with 'morphospace train'"),
        ({"grid": {"beta": [0.5], "depths": [2]}}, "unknown setting.*depths"),
        ({"grid": {"block": ["resnet"]}}, "'resnet' is not one of"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"grid": {"beta": [2.0]}, "model": {"objective": "reparameterised"}}, "beta in \\[0, 1\\]"),
    ],
)
def test_bad_sweep_configs_are_refused_before_anything_trains(values, message):
    data = {**TINY, **values, "model": {**TINY["model"], **values.get("model", {})}}
    with pytest.raises(InputError, match=message):
        from_dict(SweepSettings, data)


def test_test_split_holds_out_whole_sources_and_the_rest_splits_as_the_training_engine_does(sample_crops):
    table = sample_crops.table
    settings = sweep_settings({})
    split = split_for_sweep(table, settings)
    parts = split.table(table)
    assert sorted(np.concatenate([split.train, split.val, split.test])) == list(range(len(table)))
    test_sources = set(table["source"].iloc[split.test])
    assert test_sources and test_sources.isdisjoint(table["source"].iloc[split.fit])  # whole fields held out
    assert len(split.test) >= 0.2 * len(table) and split.notes == []
    # What the engine does with the training crops it is given, with the same settings:
    engine = split_crops(table.iloc[split.fit].reset_index(drop=True), val_fraction=0.2, method="source", seed=0)
    np.testing.assert_array_equal(split.fit[engine.train], split.train)
    np.testing.assert_array_equal(split.fit[engine.val], split.val)
    assert list(parts["part"].value_counts().sort_index().index) == ["test", "train", "val"]


def set_encoder(encoder: torch.nn.Module, mu: float) -> None:
    """Make an encoder output the posterior N(mu, 1) in every dimension for every input (weights 0)."""
    with torch.no_grad():
        for head, bias in ((encoder.mu, mu), (encoder.logvar, 0.0)):
            head.weight.zero_()
            head.bias.fill_(bias)


def test_an_me_vae_run_is_scored_by_each_encoders_own_kl(sample_crops):
    """Three encoders at N(+1, 1), N(-1, 1) and N(0, 1): each encoder's own KL is μ²/2 per dimension, 1 nat per
    dimension in all, which the model's loss pays. The combined posterior N(0, 1) hides it (0 nats); a collapsed
    ME-VAE (every encoder at the prior) shows 0 both ways."""
    settings = sweep_settings({})
    split = split_for_sweep(sample_crops.table, settings)
    model = build_model(ModelSettings(model="me-vae", latent_dim=4, base_channels=4, norm="group"), (2, 16, 16))
    for encoder, mu in zip(model.encoders, (1.0, -1.0, 0.0), strict=True):
        set_encoder(encoder, mu)
    scores = evaluate_run(model, sample_crops, split, settings)["diagnostics"]
    assert scores["kl_per_dim"] == pytest.approx([1.0] * 4, abs=1e-5)
    assert scores["kl_per_encoder"] == pytest.approx([2.0, 2.0, 0.0], abs=1e-5)
    assert scores["elbo_kl"] == pytest.approx(4.0, abs=1e-4)
    for encoder in model.encoders:
        set_encoder(encoder, 0.0)
    collapsed = evaluate_run(model, sample_crops, split, settings)["diagnostics"]
    assert collapsed["kl_per_dim"] == pytest.approx([0.0] * 4, abs=1e-6) and collapsed["active_units"] == 0
    assert any("collapsed" in w for w in collapsed["warnings"]) and "collapsed" in collapsed["problems"]


def test_a_run_is_scored_by_the_training_diagnostics_and_the_representation_probe(sample_crops):
    """The sweep's numbers are diagnose_training's on the test crops and representation_probe's on all crops."""
    settings = sweep_settings({}, elbo_samples=3)
    split = split_for_sweep(sample_crops.table, settings)
    torch.manual_seed(0)
    model = build_model(ModelSettings(latent_dim=4, base_channels=8), (2, 16, 16))
    scores = evaluate_run(model, sample_crops, split, settings)
    images = np.asarray(sample_crops.images, dtype=np.float32)
    expected = diagnose_training(model, images[split.test], elbo_samples=3, seed=settings.training.seed)
    assert scores["diagnostics"] == expected.to_dict()  # the same function on the same crops and seed
    assert scores["test_crops"] == len(split.test) == expected.n_crops
    # The probe: every crop, folds by source image, the pixel PCA fitted on the training crops.
    mu = embed(model, sample_crops)[[f"mu_{i}" for i in range(4)]].to_numpy()
    table = sample_crops.table
    probe = representation_probe(mu, images, probe_targets(table), table["source"], pca_fit=images[split.train])
    assert scores["probe"] == probe.to_dict()
    assert probe.grouped and probe.folds == 5 and set(probe.latent_r2) == {"area", "size", "elongation"}


def test_the_comparison_table_and_report_name_a_collapsed_run(sample_crops, tmp_path):
    """A run whose encoder outputs the prior for every crop: 0 KL, no active unit, "collapsed" in the table."""
    settings = sweep_settings({"beta": [1.0, 2.0]})
    folder = tmp_path / "sweep"
    split = prepare_sweep(sample_crops, settings, folder)
    model = build_model(ModelSettings(latent_dim=4, base_channels=4, norm="group"), (2, 16, 16))
    set_encoder(model.encoder, 0.0)
    point = grid_points(settings)[0]
    run_dir = folder / "runs" / point.name
    run_dir.mkdir(parents=True)
    record = {
        "index": 0,
        "name": point.name,
        "status": "ok",
        "test": evaluate_run(model, sample_crops, split, settings),
    }
    (run_dir / "run.json").write_text(json.dumps(record))
    table = collect_sweep(folder)
    assert table["warnings"][0].split(", ")[0] == "collapsed" and table["warnings"][1] == ""
    assert table["elbo_kl"][0] == pytest.approx(0.0, abs=1e-6) and table["active_units"][0] == 0
    report = (folder / "report.html").read_text()
    assert "000_beta1: the model has collapsed to the prior (KL 0.00 nats, 0 active units)" in report


def test_probe_targets_are_numeric_measurements_that_vary(sample_crops):
    targets = probe_targets(sample_crops.table)
    assert list(targets.columns) == ["area", "size", "elongation"]  # no ids, bounding boxes or text
    assert list(probe_targets(sample_crops.table, ["size"]).columns) == ["size"]
    with pytest.raises(InputError, match="probe_columns volume are not in the crop table"):
        probe_targets(sample_crops.table, ["volume"])


def test_tiny_sweep_on_the_sample_data_writes_one_row_per_grid_point_with_known_directions(sample_crops, tmp_path):
    settings = sweep_settings({"beta": [0.1, 8.0], "latent_dim": [2, 4]})
    seen = []
    table = run_sweep(sample_crops, settings, tmp_path / "sweep", crop_set_origin="sample", on_update=seen.append)
    folder = tmp_path / "sweep"
    assert list(table["name"]) == [
        "000_beta0.1_latent2",
        "001_beta0.1_latent4",
        "002_beta8_latent2",
        "003_beta8_latent4",
    ]
    assert list(table["status"]) == ["ok"] * 4 and list(table["latent_dim"]) == [2, 4, 2, 4]
    scores = ["elbo_rec", "elbo_kl", "elbo", "ssim", "spread_ratio", "probe_r2", "pca_probe_r2", "max_abs_cohens_d"]
    assert np.isfinite(table[scores].to_numpy(dtype=float)).all()
    np.testing.assert_allclose(table["elbo"], -(table["elbo_rec"] + table["elbo_kl"]))
    by_beta = table.set_index(["latent_dim", "beta"])["elbo_kl"]
    for latent in (2, 4):  # a smaller β lets the posterior move further from the prior: more KL
        assert by_beta[(latent, 0.1)] > by_beta[(latent, 8.0)]
    assert [m.status for m in seen if m.status != "training"] == ["ok"] * 4
    assert max(m.epoch or 0 for m in seen) == 5

    # Files: the split once, one ordinary bundle per run, the table, the figures and the report; no temporary files.
    split = pd.read_csv(folder / "split.csv")
    assert len(split) == len(sample_crops) and set(split["part"]) == {"train", "val", "test"}
    record = read_run_record(folder, grid_points(settings)[1])
    assert (
        record["train_crops"] == (split["part"] == "train").sum()
        and record["test"]["test_crops"] == (split["part"] == "test").sum()
    )
    assert len(record["test"]["diagnostics"]["kl_per_dim"]) == 4 and len(record["test"]["abs_cohens_d"]) == 4
    assert (
        set(record["test"]["probe"]["latent_r2"]) == {"area", "size", "elongation"}
        and record["test"]["probe"]["grouped"]
    )
    assert table["warnings"][1] == ", ".join(record["test"]["diagnostics"]["problems"])
    bundle = load_bundle(folder / table["bundle"][1])
    assert bundle.latent_dim == 4 and bundle.config["provenance"]["train_crops"] == record["train_crops"]
    written = pd.read_csv(folder / "comparison.csv")
    assert list(written.columns) == list(table.columns) and list(written["name"]) == list(table["name"])
    np.testing.assert_allclose(written[scores].to_numpy(float), table[scores].to_numpy(float))
    assert sorted(p.name for p in (folder / "figures").iterdir()) == [
        "effect_sizes.png",
        "elbo_vs_beta.png",
        "scores.png",
    ]
    report = (folder / "report.html").read_text()
    assert "003_beta8_latent4" in report and report.count("<img") == 3 and "test split" in report
    assert not [p for p in folder.rglob(".*") if p.name.endswith(".tmp")]

    # Running the same command again finds every point done and trains nothing.
    again = []
    run_sweep(sample_crops, settings, folder, on_update=again.append)
    assert [m.status for m in again] == ["skipped"] * 4


def test_one_grid_point_per_job_then_collect_and_a_failed_point_does_not_end_the_sweep(sample_crops, tmp_path):
    """As a SLURM array runs it: each job one index; the depth too deep for 16 px crops fails and says why."""
    settings = sweep_settings({"depth": [9, 2]}, training={**TINY["training"], "epochs": 2})
    folder = tmp_path / "sweep"
    assert run_sweep(sample_crops, settings, folder, index=1) is None
    table = comparison_table(folder)
    assert list(table["status"]) == ["not run", "ok"]
    assert run_sweep(sample_crops, settings, folder, index=0) is None  # recorded, not raised
    record = read_run_record(folder, grid_points(settings)[0])
    assert record["status"] == "failed" and "depth" in record["message"] and "Traceback" in record["traceback"]
    table = run_sweep(sample_crops, settings, folder)  # the failed point runs again, fails again; the table is built
    assert list(table["status"]) == ["failed", "ok"] and "depth" in table["message"][0]
    assert np.isnan(table["elbo_kl"][0]) and np.isfinite(table["elbo_kl"][1])
    assert "Failed runs" in (folder / "report.html").read_text()
    with pytest.raises(InputError, match="outside the grid: it has 2 point"):
        run_sweep(sample_crops, settings, folder, index=2)


def test_a_sweep_folder_belongs_to_one_sweep(sample_crops, tmp_path):
    settings = sweep_settings({"beta": [1.0, 2.0]})
    folder = tmp_path / "sweep"
    prepare_sweep(sample_crops, settings, folder)
    marker = json.loads((folder / "sweep.json").read_text())
    assert marker["points"] == ["000_beta1", "001_beta2"] and marker["n_crops"] == len(sample_crops)
    prepare_sweep(sample_crops, settings, folder)  # the same sweep reopens (several cluster jobs at once)
    with pytest.raises(InputError, match="holds another sweep"):
        prepare_sweep(sample_crops, sweep_settings({"beta": [1.0, 3.0]}), folder)
    with pytest.raises(InputError, match="holds another sweep"):
        prepare_sweep(sample_crops.subset(np.arange(40)), settings, folder)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"holds other files \(notes.txt\)"):
        prepare_sweep(sample_crops, settings, other)


def test_collecting_a_sweep_before_any_run_finished_writes_the_table_and_an_empty_report(sample_crops, tmp_path):
    folder = tmp_path / "sweep"
    prepare_sweep(sample_crops, sweep_settings({"beta": [1.0, 2.0]}), folder)
    table = collect_sweep(folder)
    assert list(table["status"]) == ["not run", "not run"] and table["elbo_kl"].isna().all()
    assert (folder / "report.html").is_file() and len(list((folder / "figures").iterdir())) == 3
