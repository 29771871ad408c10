"""End-of-training diagnostics and the representation probe, on models and data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.draw import disk, ellipse
from skimage.metrics import structural_similarity

from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.training.diagnostics import (
    PROBE_WORSE,
    ProbeCrops,
    TrainingDiagnostics,
    _ssim,
    cell_measurements,
    diagnose_training,
    mask_measurements,
    representation_probe,
    ridge_probe_r2,
)


def collapse(encoder: torch.nn.Module) -> None:
    """Make an encoder output the prior N(0, I) for every input: μ = 0, log σ² = 0."""
    with torch.no_grad():
        for head in (encoder.mu, encoder.logvar):
            head.weight.zero_()
            head.bias.zero_()


def disc_crops(n: int = 40, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        rr, cc = disk((size / 2, size / 2), rng.uniform(2, size / 2 - 1), shape=(size, size))
        images[i, 0, rr, cc] = 0.8
    return images


def test_a_collapsed_model_is_reported_as_collapsed_with_what_to_try():
    model = build_model(ModelSettings(latent_dim=4, base_channels=4, norm="group"), (1, 16, 16))
    collapse(model.encoder)
    diagnostics = diagnose_training(model, disc_crops())
    assert diagnostics.kl_total == pytest.approx(0.0, abs=1e-6)
    assert diagnostics.kl_per_dim == pytest.approx([0.0] * 4, abs=1e-6)
    assert diagnostics.active_units == 0
    assert diagnostics.elbo_kl == pytest.approx(0.0, abs=1e-6)
    assert not diagnostics.learned
    assert any("collapsed" in w and "beta" in w for w in diagnostics.warnings)
    assert any(line.startswith("WARNING: the model has collapsed") for line in diagnostics.lines())
    assert TrainingDiagnostics.from_dict(diagnostics.to_dict()) == diagnostics
    # Only remedies the model does not already use: it has bce and no warm-up.
    [warning] = [w for w in diagnostics.warnings if "collapsed" in w]
    assert "lower beta (now 1)" in warning and "kl_schedule 'linear'" in warning
    assert "reconstruction 'bce'" not in warning


def test_the_advice_for_a_collapsed_sse_model_with_a_warm_up_names_bce_not_the_warm_up():
    settings = ModelSettings(
        latent_dim=4, base_channels=4, norm="group", reconstruction="sse", kl_schedule="linear", kl_warmup_steps=10
    )
    model = build_model(settings, (1, 16, 16))
    collapse(model.encoder)
    [warning] = [w for w in diagnose_training(model, disc_crops()).warnings if "collapsed" in w]
    assert "reconstruction 'bce'" in warning and "kl_schedule" not in warning


def test_a_collapsed_me_vae_shows_zero_kl_not_the_combined_latents_mismatch():
    """Every encoder at the prior: each encoder's own KL is 0. The mean of three N(0, 1) latents has
    variance 1/3, whose KL to N(0, 1) (0.216 nats per dimension) measured nothing the model learned."""
    model = build_model(ModelSettings(model="me-vae", latent_dim=4, base_channels=4, norm="group"), (1, 16, 16))
    for encoder in model.encoders:
        collapse(encoder)
    diagnostics = diagnose_training(model, disc_crops())
    assert diagnostics.kl_per_dim == pytest.approx([0.0] * 4, abs=1e-6)
    assert diagnostics.kl_per_encoder == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert 0.5 * (1 / 3 - math.log(1 / 3) - 1) == pytest.approx(0.216, abs=1e-3)  # the figure the issue saw


def test_batchnorm_statistics_that_do_not_match_the_data_are_caught():
    """A freshly built strided model keeps BatchNorm's initial running statistics (mean 0, var 1): in
    eval mode the crops are normalised wrongly and μ spreads differently than with batch statistics."""
    crops = disc_crops(64)
    batchnorm = build_model(ModelSettings(latent_dim=4, base_channels=4, norm="batch"), (1, 16, 16))
    state = {k: v.clone() for k, v in batchnorm.state_dict().items()}
    diagnostics = diagnose_training(batchnorm, crops)
    assert not 0.5 <= diagnostics.spread_ratio <= 2.0
    assert any("BatchNorm running statistics" in w for w in diagnostics.warnings)
    for name, tensor in batchnorm.state_dict().items():  # the check ran on a copy
        torch.testing.assert_close(tensor, state[name])
    groupnorm = build_model(ModelSettings(latent_dim=4, base_channels=4, norm="group"), (1, 16, 16))
    assert diagnose_training(groupnorm, crops).spread_ratio == 1.0


@pytest.mark.parametrize(("size", "window"), [(16, 7), (7, 7), (6, 5), (5, 5), (4, 3), (3, 3)])
def test_ssim_of_small_crops_uses_the_largest_odd_window_that_fits(size, window):
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=(2, 1, size, size))
    assert _ssim(a, b) == pytest.approx(structural_similarity(a[0], b[0], data_range=1.0, win_size=window))
    with pytest.raises(InputError, match="too small for SSIM"):
        _ssim(a[:, :2, :2], b[:, :2, :2])


def test_ridge_probe_known_answers():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 3))
    targets = pd.DataFrame({"linear": features @ [1.0, -2.0, 0.5], "noise": rng.normal(size=200)})
    scores = ridge_probe_r2(features, targets)
    assert scores["linear"] > 0.99
    assert scores["noise"] < 0.05


def test_probe_folds_are_grouped_by_source_image():
    """A feature that only identifies the image predicts a per-image offset perfectly with random
    folds, and not at all when every image is held out as a whole."""
    rng = np.random.default_rng(1)
    sources = np.repeat([f"field{i}.tif" for i in range(10)], 20)
    offset = dict(zip(np.unique(sources), rng.normal(size=10), strict=True))
    image_identity = pd.get_dummies(sources).to_numpy(float)
    targets = pd.DataFrame({"brightness": [offset[s] for s in sources]})
    assert ridge_probe_r2(image_identity, targets)["brightness"] > 0.9  # no groups: random folds
    assert ridge_probe_r2(image_identity, targets, sources)["brightness"] < 0.1


def test_representation_probe_reports_latents_against_pixel_pca():
    crops = disc_crops(60)
    area = crops.reshape(60, -1).astype(bool).sum(axis=1).astype(float)
    measurements = pd.DataFrame({"area": area, "constant": 1.0})
    good = np.column_stack([area, np.random.default_rng(0).normal(size=60)])
    result = representation_probe(good, crops, measurements, groups=np.arange(60) % 5)
    assert list(result.latent_r2) == ["area"]  # a constant measurement has nothing to predict
    assert result.n_components == 2 and result.grouped and result.folds == 5
    assert result.latent_r2["area"] > 0.99 and result.ratio == pytest.approx(result.latent_mean / result.pca_mean)
    single = representation_probe(good, crops, measurements, groups=["one.tif"] * 60)
    assert not single.grouped and "one image" in single.note


def test_cell_measurements_match_the_drawn_objects_2d_and_3d():
    labels = np.zeros((40, 40), np.int32)
    labels[disk((10, 10), 5)] = 1
    rr, cc = ellipse(28, 25, 8, 3)
    labels[rr, cc] = 4
    intensity = labels * 10.0
    table = pd.DataFrame({"source": ["a.tif", "a.tif"], "label_id": [4, 1], "t": [0, 0]})
    measured = cell_measurements(table, {"a.tif": labels}, {"a.tif": intensity})
    assert measured["area"].tolist() == [np.sum(labels == 4), np.sum(labels == 1)]
    assert measured["intensity_mean"].tolist() == [40.0, 10.0]
    assert measured.loc[0, "eccentricity"] > 0.9 > 0.1 > measured.loc[1, "eccentricity"]
    volume = np.zeros((8, 20, 20), np.int32)
    volume[2:6, 5:15, 5:15] = 2
    table3d = pd.DataFrame({"source": ["v.tif"], "label_id": [2], "t": [0], "z_start": [0]})
    measured3d = cell_measurements(table3d, {"v.tif": volume})
    assert measured3d.loc[0, "area"] == 4 * 10 * 10 and "perimeter" not in measured3d.columns
    with pytest.raises(InputError, match="no label image.*b.tif"):
        cell_measurements(table.assign(source="b.tif"), {"a.tif": labels})


def test_latents_of_a_small_default_training_know_size_and_elongation_better_than_pixel_pca(tmp_path):
    """Known answer on the synthetic sample data, whose shape factors are known. Crops are aligned on
    the cell's major axis (as the Statistical Cell does), so elongation is visible to a linear probe at
    all; a VAE with default settings, trained for a few hundred steps, must beat a PCA of the pixels
    with as many components on the true size and elongation."""
    from napari_morphospace.core.analysis.embed import embed
    from napari_morphospace.core.cells.crop_set import concat_crop_sets
    from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels
    from napari_morphospace.core.cells.preprocess import (
        PreprocessPipeline,
        PreprocessStep,
    )
    from napari_morphospace.core.cells.sample_data import (
        SampleSettings,
        make_sample_data,
    )
    from napari_morphospace.core.training.engine import (
        TrainSettings,
        split_crops,
        train,
    )

    sample = make_sample_data(SampleSettings(n_cells=100, n_channels=1, seed=0))
    aligned = PreprocessPipeline([PreprocessStep("align_major_axis"), PreprocessStep("resize", {"shape": [32, 32]})])
    crop_set = concat_crop_sets(
        [
            crops_from_labels(
                stack, labels, CropSettings(size=48), group=stack.source, source=stack.source, pipeline=aligned
            )
            for stack, labels in zip(sample.images, sample.labels, strict=True)
        ]
    )
    factors = sample.factors.set_index(["source", "label_id"])
    known = factors.loc[list(zip(crop_set.table["source"], crop_set.table["label_id"], strict=True))][
        ["size", "elongation"]
    ]
    settings = TrainSettings(min_steps=300, split="random", accelerator="cpu", checkpoint_dir=str(tmp_path))
    result = train(crop_set, ModelSettings(latent_dim=8), settings)
    mu = embed(result.model, crop_set).filter(like="mu_").to_numpy()
    fit_rows = split_crops(crop_set.table, val_fraction=0.2, method="random", seed=0).train
    # Two sources, one per group: folds by source would test on the other group's shifted factors.
    probe = representation_probe(
        mu, np.asarray(crop_set.images), known.reset_index(drop=True), pca_fit=np.asarray(crop_set.images)[fit_rows]
    )
    print(probe.rows(), "\n".join(result.diagnostics.lines()))
    for factor, latent_r2, pca_r2 in probe.rows():
        assert latent_r2 > pca_r2, factor
    assert probe.latent_r2["size"] > 0.9 and probe.latent_r2["elongation"] > 0.6
    # The end-of-training probe measured the cells from their crops and masks, no label images:
    measured = result.diagnostics.probe
    assert measured is not None and measured.n_cells == len(crop_set) and measured.ratio > PROBE_WORSE
    assert result.diagnostics.learned, result.diagnostics.warnings


def test_mask_measurements_equal_the_label_image_measurements_of_the_same_cells():
    """A crop that holds the whole object at native size measures as the object in its label image."""
    labels = np.zeros((40, 40), np.int32)
    labels[disk((10, 10), 5)] = 1
    rr, cc = ellipse(28, 25, 8, 3, rotation=0.4)
    labels[rr, cc] = 4
    intensity = np.random.default_rng(0).random((40, 40))
    boxes = {1: (slice(2, 18), slice(2, 18)), 4: (slice(18, 38), slice(15, 35))}
    masks = np.zeros((2, 20, 20), bool)
    crops = np.zeros((2, 1, 20, 20))
    for i, (label, box) in enumerate(boxes.items()):
        region = labels[box] == label
        masks[i, : region.shape[0], : region.shape[1]] = region
        crops[i, 0, : region.shape[0], : region.shape[1]] = intensity[box]
    table = pd.DataFrame({"source": ["a.tif"] * 2, "label_id": list(boxes), "t": [0, 0]})
    expected = cell_measurements(table, {"a.tif": labels}, {"a.tif": intensity})
    measured = mask_measurements(masks, crops)
    pd.testing.assert_frame_equal(measured, expected, check_index_type=False)
    empty = mask_measurements(np.zeros((1, 20, 20), bool))
    assert empty.isna().all(axis=None) and "perimeter" in empty.columns


def test_latents_worse_than_pixel_pca_get_a_plain_warning_with_the_ratio_and_what_to_try():
    """An untrained encoder is a random map of the pixels: its latents know less about the drawn discs'
    size than a PCA of the same pixels, and the diagnostics say so. A collapsed one knows nothing."""
    crops = disc_crops(80)
    masks = crops[:, 0] > 0
    groups = np.repeat(["a.tif", "b.tif", "c.tif", "d.tif"], 20)
    untrained = build_model(ModelSettings(latent_dim=4, base_channels=4, norm="group"), (1, 16, 16))
    diagnostics = diagnose_training(untrained, crops, probe_crops=ProbeCrops(crops, masks, groups))
    probe = diagnostics.probe
    assert probe is not None and probe.n_cells == 80 and probe.grouped and probe.folds == 4
    assert probe.ratio < PROBE_WORSE and "worse than pixel PCA" in diagnostics.problems
    warning = next(w for w in diagnostics.warnings if "PCA" in w)
    assert f"ratio {probe.ratio:.2f}" in warning and "lower beta" in warning and "more training steps" in warning
    assert any(line.startswith("WARNING: the latents describe the cells") for line in diagnostics.lines())
    assert TrainingDiagnostics.from_dict(diagnostics.to_dict()) == diagnostics  # the bundle keeps the probe
    collapse(untrained.encoder)
    collapsed = diagnose_training(untrained, crops, probe_crops=ProbeCrops(crops, masks, groups))
    assert collapsed.probe.latent_mean <= 0 and "worse than pixel PCA" in collapsed.problems
    few = diagnose_training(untrained, crops, probe_crops=ProbeCrops(crops[:10], masks[:10]))
    assert few.probe is None and "the probe needs 20" in few.probe_note
    assert diagnose_training(untrained, crops).probe is None
