"""The training engine: split, stop, resume, NaN guard, messages, and that training actually learns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.draw import ellipse
from skimage.metrics import structural_similarity

from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import BetaVAE, ModelSettings
from napari_morphospace.core.training.engine import (
    ReconstructionPreview,
    TrainFailed,
    TrainFinished,
    TrainingDiverged,
    TrainSettings,
    TrainUpdate,
    augment_batch,
    split_crops,
    train,
)


def ellipse_crop_set(n: int = 48, size: int = 16, channels: int = 1, n_sources: int = 4, seed: int = 0) -> CropSet:
    """Two populations: small and large bright ellipses at random angles, alternating, over ``n_sources`` images."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, channels, size, size), np.float32)
    rows = []
    for i in range(n):
        large = i % 2 == 1
        radii = (size * 0.4, size * 0.28) if large else (size * 0.2, size * 0.14)
        rr, cc = ellipse(
            size / 2 + rng.uniform(-1, 1),
            size / 2 + rng.uniform(-1, 1),
            *radii,
            shape=(size, size),
            rotation=rng.uniform(0, np.pi),
        )
        for c in range(channels):
            images[i, c][rr, cc] = 0.9 - 0.3 * c
        rows.append(
            {
                "crop_id": i,
                "source": f"image{i % n_sources}.tif",
                "label_id": i + 1,
                "t": 0,
                "group": "large" if large else "small",
                "annotation": "",
                "y_start": 0,
                "y_stop": size,
                "x_start": 0,
                "x_stop": size,
            }
        )
    return CropSet(images, pd.DataFrame(rows), [f"ch{c}" for c in range(channels)], (1.0, 1.0), {"steps": []})


def small_model(**overrides) -> ModelSettings:
    return ModelSettings(**{"model": "beta-vae", "latent_dim": 4, "base_channels": 8, **overrides})


def settings(tmp_path, **overrides) -> TrainSettings:
    values = {
        "epochs": 2,
        "batch_size": 8,
        "accelerator": "cpu",
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "augment_flips": False,
        "augment_rot90": False,
    }
    return TrainSettings(**{**values, **overrides})


def last_state(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# ---------------------------------------------------------------- settings and split


def test_split_by_source_keeps_every_source_on_one_side():
    table = ellipse_crop_set(n=50, n_sources=5).table
    split = split_crops(table, val_fraction=0.2, method="source", seed=3)
    train_sources = set(table.source.iloc[split.train])
    val_sources = set(table.source.iloc[split.val])
    assert train_sources.isdisjoint(val_sources)
    assert sorted(np.concatenate([split.train, split.val])) == list(range(50))
    assert len(split.val) == 10  # 5 sources of 10 crops: exactly one source reaches 20 %
    assert split.method == "source" and split.note is None


def test_split_with_one_source_falls_back_to_random_and_says_why():
    table = ellipse_crop_set(n=20, n_sources=1).table
    split = split_crops(table, val_fraction=0.25, method="source", seed=0)
    assert split.method == "random"
    assert "one source" in split.note and "random" in split.note
    assert len(split.val) == 5 and len(set(split.train) | set(split.val)) == 20


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("batch_size", 2, "at least 3"),
        ("val_fraction", 1.0, "between 0 and 1"),
        ("learning_rate", 0.0, "positive"),
        ("early_stopping_patience", 0, "at least 1"),
        ("devices", "many", "'auto'"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(field, value, words):
    with pytest.raises(InputError, match=field) as err:
        TrainSettings(**{field: value})
    assert words in str(err.value)


def test_float16_on_cpu_is_refused_before_training(tmp_path):
    with pytest.raises(InputError, match="16-mixed.*GPU"):
        train(ellipse_crop_set(), small_model(), settings(tmp_path, precision="16-mixed"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_missing_gpu_is_refused_with_advice(tmp_path):
    with pytest.raises(InputError, match="accelerator='gpu'.*accelerator 'auto'"):
        train(ellipse_crop_set(), small_model(), settings(tmp_path, accelerator="gpu"))


def test_too_few_crops_for_a_batch_is_refused(tmp_path):
    with pytest.raises(InputError, match="fewer than one batch"):
        train(ellipse_crop_set(n=12), small_model(), settings(tmp_path, batch_size=16))


def test_augmentation_only_reorients_crops():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    torch.manual_seed(0)
    out = augment_batch(x, flips=True, rot90=True, small_rotations=False)
    for original, moved in zip(x, out, strict=True):
        views = [torch.rot90(v, k, dims=(-2, -1)) for v in (original, original.flip(-1)) for k in range(4)]
        assert any(torch.equal(moved, v) for v in views)  # one of the 8 symmetries of the square, all channels alike
    rotated = augment_batch(x, flips=False, rot90=False, small_rotations=True)
    assert rotated.shape == x.shape and not torch.equal(rotated, x)


# ---------------------------------------------------------------- learning


def test_training_lowers_validation_loss_and_reconstructs_held_out_crops(tmp_path):
    crop_set = ellipse_crop_set(n=96, size=16)
    messages = []
    result = train(
        crop_set,
        small_model(latent_dim=4, beta=1.0),
        settings(tmp_path, epochs=12, learning_rate=3e-3, preview_every_n_epochs=4),
        on_update=messages.append,
    )
    val_losses = [row["val_loss"] for row in result.history]
    assert len(val_losses) == 12
    assert min(val_losses) < 0.6 * val_losses[0]
    assert result.best_val_loss == pytest.approx(min(val_losses), rel=1e-5)
    # Held-out crops (the validation sources) come back recognisably: SSIM against the truth.
    split = split_crops(crop_set.table, val_fraction=0.2, method="source", seed=0)
    val_idx = split.val
    with torch.no_grad():
        recon = result.model(torch.from_numpy(crop_set.images[val_idx])).recon.numpy()
    ssim = np.mean(
        [structural_similarity(crop_set.images[i, 0], recon[k, 0], data_range=1.0) for k, i in enumerate(val_idx)]
    )
    print(f"held-out SSIM: {ssim:.3f}; val loss {val_losses[0]:.1f} -> {min(val_losses):.1f}")
    assert ssim > 0.5
    previews = [m for m in messages if isinstance(m, ReconstructionPreview)]
    assert [p.epoch for p in previews] == [3, 7, 11]
    assert previews[0].originals.shape == previews[0].reconstructions.shape == (4, 1, 16, 16)
    epoch_updates = [m for m in messages if isinstance(m, TrainUpdate) and m.val_losses is not None]
    assert len(epoch_updates) == 12 and len(epoch_updates[0].kl_per_dim) == 4
    assert epoch_updates[-1].step == epoch_updates[-1].total_steps == 12 * (len(split.train) // 8)
    assert isinstance(messages[-1], TrainFinished) and not messages[-1].stopped_by_user


# ---------------------------------------------------------------- stop, resume, NaN guard


class StopAfter:
    """A stop flag that reads as set from its ``n``-th check on (the engine checks once per step)."""

    def __init__(self, n: int) -> None:
        self.n, self.checks = n, 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


def test_stop_takes_effect_within_one_step_and_leaves_a_usable_checkpoint(tmp_path):
    messages = []
    result = train(
        ellipse_crop_set(),
        small_model(),
        settings(tmp_path, epochs=5),
        stop_event=StopAfter(3),
        on_update=messages.append,
    )
    checkpoint = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 3
    assert result.stopped_by_user and not result.stopped_early
    assert isinstance(messages[-1], TrainFinished) and messages[-1].stopped_by_user
    model = BetaVAE(small_model(), (1, 16, 16))
    model.load_state_dict({k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()})
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_resumed_training_continues_exactly_like_an_uninterrupted_run(tmp_path):
    crop_set = ellipse_crop_set()
    flips = {"augment_flips": True, "augment_rot90": True}
    straight = train(crop_set, small_model(), settings(tmp_path / "a", epochs=4, **flips))
    first = train(crop_set, small_model(), settings(tmp_path / "b", epochs=2, **flips))
    resumed = train(
        crop_set, small_model(), settings(tmp_path / "b", epochs=4, **flips), resume_from=first.last_checkpoint
    )
    a, b = last_state(straight.last_checkpoint), last_state(resumed.last_checkpoint)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2, 3]  # history survives the resume
    assert resumed.history[3]["val_loss"] == pytest.approx(straight.history[3]["val_loss"], rel=1e-5)


def test_resume_refuses_a_checkpoint_of_another_architecture(tmp_path):
    first = train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=1))
    with pytest.raises(InputError, match="another architecture"):
        train(
            ellipse_crop_set(),
            small_model(latent_dim=6),
            settings(tmp_path / "b", epochs=2),
            resume_from=first.last_checkpoint,
        )


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_weights(tmp_path, monkeypatch):
    real_loss = BetaVAE.loss

    def loss_with_nan_at_step_5(self, x, out, **kwargs):
        terms = real_loss(self, x, out, **kwargs)
        if self.training and kwargs.get("step") == 5:
            terms["loss"] = terms["loss"] * math.nan
        return terms

    monkeypatch.setattr(BetaVAE, "loss", loss_with_nan_at_step_5)
    messages = []
    with pytest.raises(TrainingDiverged, match="non-finite.*step 5") as err:
        train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=3), on_update=messages.append)
    assert "learning rate" in str(err.value) and "resume from last.ckpt" in str(err.value)
    assert isinstance(messages[-1], TrainFailed) and "step 5" in messages[-1].message
    kept = last_state(err.value.last_checkpoint)
    assert all(torch.isfinite(v).all() for v in kept.values())
    # Known answer: the weights that gave the non-finite loss came from step 4's update, so the kept weights are
    # those before it: exactly those of the same run stopped after four steps.
    monkeypatch.undo()
    stopped = train(
        ellipse_crop_set(), small_model(), settings(tmp_path / "stopped", epochs=3), stop_event=StopAfter(4)
    )
    reference = last_state(stopped.last_checkpoint)
    for name in reference:
        torch.testing.assert_close(kept[name], reference[name], rtol=0, atol=0, msg=name)


def test_early_stopping_ends_training_once_validation_stops_improving(tmp_path, monkeypatch):
    real_loss = BetaVAE.loss

    def flat_validation_loss(self, x, out, **kwargs):
        terms = real_loss(self, x, out, **kwargs)
        if not self.training:
            terms["loss"] = torch.tensor(1.0)
        return terms

    monkeypatch.setattr(BetaVAE, "loss", flat_validation_loss)
    result = train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=10, early_stopping_patience=2))
    # Epoch 0 sets the best value; epochs 1 and 2 do not improve on it: patience 2 is used up after epoch 2.
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    assert result.stopped_early and not result.stopped_by_user
    assert "epoch=0" in result.best_checkpoint


# ---------------------------------------------------------------- other models


def test_conditional_model_trains_reference_then_target_with_labels(tmp_path):
    crop_set = ellipse_crop_set(n=32, channels=2)
    model_settings = small_model(model="cond-vae", cond_reference_channels=[0])
    result = train(crop_set, model_settings, settings(tmp_path, epochs=1, label_column="group"))
    assert result.model_settings.cond_num_labels == 2 and result.label_classes == ["large", "small"]
    assert len(result.history) == 2  # one epoch per stage
    assert "target" in result.best_checkpoint
    reference_ckpt = last_state(tmp_path / "ckpt" / "reference" / "last.ckpt")
    target_ckpt = last_state(result.last_checkpoint)
    # The target stage leaves the reference weights as the reference stage trained them.
    name = next(k for k in reference_ckpt if k.startswith("model.reference.") and k.endswith("weight"))
    torch.testing.assert_close(reference_ckpt[name], target_ckpt[name])
    assert all(p.requires_grad for p in result.model.parameters())  # unfrozen again, e.g. for Grad-CAM


def test_me_vae_latent_scale_is_calibrated_after_training(tmp_path):
    result = train(ellipse_crop_set(n=32), small_model(model="me-vae"), settings(tmp_path, epochs=1))
    scale = result.model.latent_scale
    assert not torch.allclose(scale, torch.ones_like(scale))
    with torch.no_grad():
        crop_set = ellipse_crop_set(n=32)
        split = split_crops(crop_set.table, val_fraction=0.2, method="source", seed=0)
        mu = result.model.encode(torch.from_numpy(crop_set.images[split.train]))[0]
    torch.testing.assert_close(scale, mu.std(dim=0).clamp(min=1e-6))


# ---------------------------------------------------------------- validation and model selection


def test_model_selection_uses_the_full_objective_not_the_warm_up_weight(tmp_path):
    """The issue's scenario: β = 4 with a 5-epoch KL warm-up. Early epochs weigh the KL little in
    training; validation must still measure rec + 4·KL, or it picks an early, barely regularised epoch."""
    crop_set = ellipse_crop_set(n=48)
    split = split_crops(crop_set.table, val_fraction=0.2, method="source", seed=0)
    steps_per_epoch = len(split.train) // 8
    model_settings = small_model(beta=4.0, kl_schedule="linear", kl_warmup_steps=5 * steps_per_epoch)
    result = train(crop_set, model_settings, settings(tmp_path, epochs=8, learning_rate=3e-3))
    full = [row["val_rec"] + 4.0 * row["val_kl"] for row in result.history]
    for row, objective in zip(result.history, full, strict=True):
        assert row["val_loss"] == pytest.approx(objective, rel=1e-4)
        assert row["val_elbo"] == pytest.approx(-(row["val_rec"] + row["val_kl"]), rel=1e-4)
    best_epoch = int(np.argmin(full))
    assert result.best_val_loss == pytest.approx(min(full), rel=1e-4)
    assert f"epoch={best_epoch}" in result.best_checkpoint


def test_validation_samples_z_so_its_terms_are_the_elbo():
    """Known answer: μ = 0, σ² = 0.25 and a decoder that paints the logit z_0 into every pixel of a grey crop.
    E[rec] = 0.5·P·E[(sigmoid(z_0) − ½)²] with z sampled (Gauss–Hermite quadrature), but 0 when z = μ,
    which eval mode decodes."""
    from napari_morphospace.core.training.engine import validation_terms

    model = BetaVAE(small_model(beta=2.0, reconstruction="sse"), (1, 16, 16)).eval()
    with torch.no_grad():
        for head, bias in ((model.encoder.mu, 0.0), (model.encoder.logvar, math.log(0.25))):
            head.weight.zero_()
            head.bias.fill_(bias)
    model.decode_logits = lambda z, cond=None: z[:, :1, None, None].expand(-1, 1, 16, 16)
    x = torch.full((1024, 1, 16, 16), 0.5)
    torch.manual_seed(0)
    terms = validation_terms(model, x, None, dataset_size=1024)
    assert float((model(x).recon - x).abs().max()) == 0.0  # eval mode alone decodes z = μ
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)  # E[f(z)], z ~ N(0, 0.5²)
    expected = 0.5 * 256 * float(np.sum(weights * (1 / (1 + np.exp(-0.5 * nodes)) - 0.5) ** 2) / np.sqrt(2 * np.pi))
    assert float(terms["rec"]) == pytest.approx(expected, rel=0.15)
    kl = 4 * 0.5 * (0.25 - math.log(0.25) - 1)
    assert float(terms["kl"]) == pytest.approx(kl, rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(float(terms["rec"]) + 2.0 * kl, rel=1e-5)
    assert float(terms["elbo"]) == pytest.approx(-(float(terms["rec"]) + kl), rel=1e-5)


# ---------------------------------------------------------------- defaults for small crop sets


def test_small_crop_sets_get_small_batches_and_a_minimum_number_of_optimiser_steps(tmp_path):
    """125 crops in batches of 64 for 50 epochs were 50 optimiser steps, which learn nothing (issue 10):
    empty epochs and batch size mean "enough epochs for min_steps steps" and "an eighth of the crops"."""
    from napari_morphospace.core.training.engine import batch_size_for, epochs_for

    assert [batch_size_for(TrainSettings(), n) for n in (5, 41, 100, 978, 50_000)] == [5, 8, 12, 64, 64]
    assert batch_size_for(TrainSettings(batch_size=32), 41) == 32
    assert epochs_for(TrainSettings(min_steps=3000), 100, 12) == 375  # 8 steps per epoch
    assert epochs_for(TrainSettings(min_steps=3000), 100, 12, world_size=2) == 750
    assert epochs_for(TrainSettings(epochs=5, min_steps=3000), 100, 12) == 5
    result = train(
        ellipse_crop_set(n=48), small_model(), settings(tmp_path, epochs=None, batch_size=None, min_steps=30)
    )
    # 36 training crops: batches of 8, 4 steps per epoch, 8 epochs for at least 30 steps.
    assert (result.batch_size, result.epochs, result.steps, len(result.history)) == (8, 8, 32, 8)


def test_flips_and_turns_are_on_by_default_for_the_me_vae_only():
    """The macrophage study augmented only its ME-VAE; turning aligned Statistical Cell crops undoes
    their alignment. An explicit setting wins for every model."""
    from napari_morphospace.core.training.engine import augmentation_for

    defaults = TrainSettings()
    assert augmentation_for(defaults, "me-vae") == {"flips": True, "rot90": True, "small_rotations": False}
    for model in ("beta-vae", "beta-tcvae", "cond-vae"):
        assert augmentation_for(defaults, model) == {"flips": False, "rot90": False, "small_rotations": False}
    chosen = TrainSettings(augment_flips=True, augment_rot90=False)
    assert augmentation_for(chosen, "cond-vae")["flips"] and not augmentation_for(chosen, "me-vae")["rot90"]


def test_batchnorm_statistics_are_averaged_over_the_training_crops_after_a_short_run(tmp_path):
    """After a handful of steps BatchNorm's running averages are far from the final weights' statistics:
    the first release embedded 125 nuclei of a 5-epoch run at one point. A pass over the training crops
    replaces them, so eval mode spreads the crops as batch statistics do."""
    # A random split: held-out crops like the training crops (here, the split by source holds out small cells only).
    result = train(ellipse_crop_set(n=48), small_model(norm="batch"), settings(tmp_path, epochs=1, split="random"))
    assert result.steps == 4
    assert 0.8 < result.diagnostics.spread_ratio < 1.25, result.diagnostics.spread_ratio
    stored = last_state(result.last_checkpoint)  # the checkpoint keeps the training-time running averages
    name = next(k for k in stored if k.endswith("running_var"))
    assert not torch.allclose(stored[name], result.model.state_dict()[name[len("model.") :]])


def test_the_end_of_training_probe_runs_on_crops_with_object_masks_and_says_why_not_otherwise(tmp_path):
    """Crops cut from labels carry masks: the diagnostics measure the cells from them (no label images);
    other crops get the reason instead. The cond-vae's reference model is probed on its own channels."""
    from dataclasses import replace

    crop_set = ellipse_crop_set(n=48)
    masked = replace(crop_set, masks=crop_set.images[:, 0] > 0)
    result = train(masked, small_model(), settings(tmp_path, epochs=1))
    probe = result.diagnostics.probe
    assert probe is not None and probe.n_cells == 48 and probe.grouped and probe.folds == 4
    assert {"area", "eccentricity", "intensity_mean"} <= set(probe.latent_r2)
    assert any(line.startswith("what the latents know about the cells") for line in result.diagnostics.lines())
    plain = train(crop_set, small_model(), settings(tmp_path, epochs=1, checkpoint_dir=str(tmp_path / "plain")))
    assert plain.diagnostics.probe is None and "no object masks" in plain.diagnostics.probe_note
    two = replace(ellipse_crop_set(n=32, channels=2), masks=ellipse_crop_set(n=32).images[:, 0] > 0)
    conditional = train(
        two,
        small_model(model="cond-vae", cond_reference_channels=[0]),
        settings(tmp_path, epochs=1, label_column="group", checkpoint_dir=str(tmp_path / "cond")),
    )
    assert conditional.diagnostics.probe is not None and "intensity_mean" in conditional.diagnostics.probe.latent_r2
