"""VAE architectures and objectives: shapes, depth rule, conditioning, ME-VAE latent, numerics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from napari_morphospace.core.analysis.statistics import kl_per_dimension
from napari_morphospace.core.config import from_dict, to_dict
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import (
    MEVAE,
    BetaTCVAE,
    BetaVAE,
    Condition,
    ModelSettings,
    StackedConditionalVAE,
    build_model,
    depth_for_shape,
)
from napari_morphospace.core.models.blocks import level_shapes, resolve_depth
from napari_morphospace.core.models.settings import unused_settings
from napari_morphospace.core.models.vae import rotate_in_plane

MODELS = ["beta-vae", "beta-tcvae", "me-vae", "cond-vae"]


def _settings(model: str = "beta-vae", **kwargs) -> ModelSettings:
    defaults = {"model": model, "latent_dim": 4, "base_channels": 4}
    if model == "cond-vae":
        defaults["cond_reference_channels"] = [0]
    return ModelSettings(**{**defaults, **kwargs})


# --- adaptive depth -------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "depth"), [((20, 20), 2), ((80, 80), 3), ((140, 140), 4), ((64, 64), 3)])
def test_depth_rule_values_from_the_thesis(shape, depth):
    assert depth_for_shape(shape) == depth


def test_depth_rule_rounds_at_the_half():
    # 2 + 0.356·(log2(p) − 8.64) crosses 2.5 between p = 1056 (2.49997) and p = 1057 (2.50047).
    assert depth_for_shape((32, 33)) == 2
    assert depth_for_shape((7, 151)) == 3


def test_depth_rule_is_at_least_one_and_refuses_tiny_crops():
    assert depth_for_shape((4, 4)) == 1  # the formula gives 0.35
    with pytest.raises(InputError, match="too small"):
        depth_for_shape((2, 2))


def test_thin_axes_stop_being_downsampled_at_two_pixels():
    assert level_shapes((8, 32, 32), 4) == [(8, 32, 32), (4, 16, 16), (2, 8, 8), (2, 4, 4), (2, 2, 2)]
    assert level_shapes((16, 64, 64), 5)[-1] == (2, 2, 2)
    assert level_shapes((35, 35), 2) == [(35, 35), (18, 18), (9, 9)]
    # A two-slice stack is never halved in z.
    assert [s[0] for s in level_shapes((2, 64, 64), depth_for_shape((2, 64, 64)))] == [2] * 4


@pytest.mark.parametrize(
    ("shape", "depth"),
    [
        ((5, 140, 140), 4),
        ((140, 140), 4),
        ((16, 64, 64), 3),
        ((8, 32, 32), 2),
        ((2, 64, 64), 3),
        ((64, 64, 64), 5),
        ((12, 24, 24), 3),
    ],
)
def test_3d_depth_is_bounded_by_the_plane_and_the_smallest_axis(shape, depth):
    """Counting voxels gave a 5×140×140 stack 5 blocks, one more than its 140×140 plane; the depth is
    at most the larger of the plane's rule and the halvings of the smallest axis. Cubes keep the
    voxel rule."""
    assert depth_for_shape(shape) == depth


def test_depth_override_is_checked_against_the_crop():
    assert resolve_depth(2, (64, 64)) == 2
    with pytest.raises(InputError, match="at most 4"):
        resolve_depth(5, (20, 20))


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "vae"},
        {"block": "resnet"},
        {"objective": "elbo"},
        {"reconstruction": "mse"},
        {"tc_estimator": "exact"},
        {"me_combine": "sum"},
        {"kl_schedule": "cosine", "kl_warmup_steps": 10},
        {"me_views": ["original", "polar"]},
        {"me_views": ["flip", "flip"]},
        {"latent_dim": 1},
        {"latent_dim": 513},
        {"objective": "reparameterised", "beta": 1.5},
        {"model": "beta-tcvae", "objective": "reparameterised", "beta": 0.5},
        {"kl_schedule": "linear", "kl_warmup_steps": 0},
        {"logvar_min": 5.0, "logvar_max": 5.0},
        {"depth": 0},
        {"free_bits": -1.0},
    ],
)
def test_settings_refuse_bad_values(kwargs):
    with pytest.raises(InputError):
        ModelSettings(**kwargs)


def test_beta_tcvae_refuses_beta_which_it_would_ignore_and_names_tc_beta():
    """beta weighs the KL of beta-vae; beta-tcvae's β is tc_beta. Before, beta = 0, 1 or 100 gave the
    same β-TCVAE loss; now a changed beta is refused and the message names the setting to use."""
    with pytest.raises(InputError, match="beta-tcvae does not use beta.*set tc_beta instead"):
        ModelSettings(model="beta-tcvae", beta=100.0)
    with pytest.raises(InputError, match="beta-vae does not use tc_beta"):
        ModelSettings(model="beta-vae", tc_beta=3.0)
    with pytest.raises(InputError, match="does not use me_combine"):
        ModelSettings(model="beta-tcvae", me_combine="product")
    # Every setting a model keeps changes its loss: tc_beta for beta-tcvae, beta for beta-vae.
    x = torch.rand(8, 1, 20, 20)
    for model_name, name in (("beta-tcvae", "tc_beta"), ("beta-vae", "beta")):
        losses = []
        for value in (0.0, 1.0, 100.0):
            torch.manual_seed(0)
            model = build_model(_settings(model_name, **{name: value}), (1, 20, 20))
            out = model(x)
            losses.append(float(model.loss(x, out, dataset_size=100)["loss"]))
        assert len(set(losses)) == 3, (model_name, losses)


def test_unused_settings_are_listed_per_model_and_reset_for_the_form():
    assert {"beta", "objective", "capacity_max", "free_bits", "me_views"} <= set(unused_settings("beta-tcvae"))
    assert "tc_beta" in unused_settings("beta-vae") and "beta" not in unused_settings("me-vae")
    form_values = ModelSettings(model="beta-vae", beta=4.0)
    form_values.model, form_values.tc_beta = "beta-tcvae", 3.0  # the user switched models in the form
    settings = form_values.without_unused()
    assert (settings.model, settings.beta, settings.tc_beta) == ("beta-tcvae", 1.0, 3.0)


def test_settings_edited_after_creation_are_checked_when_building():
    settings = ModelSettings()
    settings.reconstruction = "l1"
    with pytest.raises(InputError, match="reconstruction"):
        build_model(settings, (1, 20, 20))


def test_settings_round_trip_through_config_dicts():
    settings = ModelSettings(model="me-vae", me_views=["original", "flip"], capacity_max=25.0)
    assert from_dict(ModelSettings, to_dict(settings)) == settings


# --- shapes ---------------------------------------------------------------------------------


def _run(model, x: torch.Tensor):
    """Forward pass and loss; for the stacked model, through its target submodel."""
    if isinstance(model, StackedConditionalVAE):
        reference, target = model.split_channels(x)
        out = model.target(target, Condition(reference))
        return out, target, model.target.loss(target, out, cond=Condition(reference))
    out = model(x)
    return out, x, model.loss(x, out, dataset_size=100)


SHAPES = [(20, 20), (33, 33), (64, 64), (140, 140), (8, 32, 32), (16, 64, 64)]


@pytest.mark.parametrize("spatial", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("model_name", MODELS)
def test_output_shape_equals_input_shape(model_name, spatial):
    torch.manual_seed(0)
    channel_counts = (2, 3) if model_name == "cond-vae" else (1, 2, 3)
    for channels in channel_counts:
        model = build_model(_settings(model_name, base_channels=2), (channels, *spatial))
        # Batch 3: the smallest batch the β-TCVAE's stratified estimator accepts.
        x = torch.rand(3, channels, *spatial)
        out, target, terms = _run(model, x)
        assert out.recon.shape == target.shape
        assert out.mu.shape == out.logvar.shape == out.z.shape == (3, 4)
        assert 0 <= out.recon.min() and out.recon.max() <= 1
        assert terms["kl_per_dim"].shape == (4,) and torch.isfinite(terms["loss"])


@given(
    y=st.integers(3, 70),
    x=st.integers(3, 70),
    block=st.sampled_from(["strided", "maxpool"]),
    reconstruction=st.sampled_from(["sse", "bce", "calibrated-gaussian"]),
)
@hypothesis_settings(max_examples=25, deadline=None)
def test_any_2d_size_and_block_decodes_to_the_input_shape(y, x, block, reconstruction):
    model = build_model(_settings(block=block, base_channels=2, reconstruction=reconstruction), (1, y, x))
    image = torch.rand(2, 1, y, x)
    out = model(image)
    assert out.recon.shape == image.shape
    assert torch.isfinite(model.loss(image, out)["loss"])


@pytest.mark.parametrize("spatial", [(33, 33), (8, 32, 32), (5, 35, 21)], ids=lambda s: "x".join(map(str, s)))
def test_maxpool_blocks_decode_to_the_input_shape_in_2d_and_3d(spatial):
    model = build_model(_settings("me-vae", block="maxpool", base_channels=2), (2, *spatial))
    x = torch.rand(2, 2, *spatial)
    assert model(x).recon.shape == x.shape


def test_stacked_model_needs_a_target_channel():
    with pytest.raises(InputError, match="at least one target channel"):
        build_model(_settings("cond-vae"), (1, 20, 20))
    with pytest.raises(InputError, match="below 2"):
        build_model(_settings("cond-vae", cond_reference_channels=[0, 2]), (2, 20, 20))


def test_wrong_input_shape_is_refused_with_the_expected_shape():
    model = build_model(_settings(), (2, 20, 20))
    with pytest.raises(InputError, match=r"\(2, 20, 20\)"):
        model(torch.rand(2, 1, 20, 20))


def test_feature_layer_is_the_last_encoder_block():
    model = build_model(_settings(depth=3), (1, 33, 33))
    seen = []
    handle = model.feature_layer().register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.rand(2, 1, 33, 33))
    handle.remove()
    # Channels 4 → 8 → 16, sizes 33 → 17 → 9 → 5.
    assert seen == [torch.Size([2, 16, 5, 5])]


@pytest.mark.parametrize("block", ["strided", "maxpool"])
def test_eval_mode_is_deterministic_and_decodes_the_mean(block):
    model = build_model(_settings("me-vae", block=block), (1, 20, 20)).eval()
    x = torch.rand(4, 1, 20, 20)
    first, second = model(x), model(x)
    torch.testing.assert_close(first.recon, second.recon)
    torch.testing.assert_close(first.z, first.mu)


# --- objectives -----------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["beta-vae", "me-vae"])
def test_duplicating_the_batch_leaves_the_loss_unchanged(model_name):
    torch.manual_seed(1)
    model = build_model(_settings(model_name, beta=3.0), (2, 20, 20)).eval()
    x = torch.rand(3, 2, 20, 20)
    once = model.loss(x, model(x))
    doubled_x = torch.cat([x, x])
    twice = model.loss(doubled_x, model(doubled_x))
    for key in ("loss", "rec", "kl", "kl_per_dim"):
        torch.testing.assert_close(once[key], twice[key])


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.8])
def test_reparameterised_gradient_is_classic_gradient_scaled_by_one_minus_beta(beta):
    torch.manual_seed(2)
    reparam = build_model(_settings(beta=beta, objective="reparameterised"), (1, 20, 20))
    classic = build_model(_settings(beta=beta / (1 - beta)), (1, 20, 20))
    classic.load_state_dict(reparam.state_dict())
    x = torch.rand(4, 1, 20, 20)
    torch.manual_seed(3)
    g_reparam = torch.autograd.grad(reparam.loss(x, reparam(x))["loss"], list(reparam.parameters()))
    torch.manual_seed(3)
    g_classic = torch.autograd.grad(classic.loss(x, classic(x))["loss"], list(classic.parameters()))
    a = torch.cat([g.flatten() for g in g_reparam])
    b = torch.cat([g.flatten() for g in g_classic])
    assert torch.nn.functional.cosine_similarity(a, b, dim=0).item() == pytest.approx(1.0, abs=1e-5)
    assert (a.norm() / b.norm()).item() == pytest.approx(1 - beta, rel=1e-4)


def test_beta_vae_loss_is_rec_plus_beta_kl_re_derived():
    torch.manual_seed(4)
    model = build_model(_settings(beta=4.0, reconstruction="sse"), (1, 20, 20)).eval()
    x = torch.rand(3, 1, 20, 20)
    out = model(x)
    terms = model.loss(x, out)
    rec = 0.5 * ((out.recon - x) ** 2).sum(dim=(1, 2, 3)).mean()
    var = out.logvar.exp()
    kl_per_dim = (0.5 * (out.mu**2 + var - out.logvar - 1)).mean(dim=0)
    torch.testing.assert_close(terms["rec"], rec)
    torch.testing.assert_close(terms["kl_per_dim"], kl_per_dim)
    torch.testing.assert_close(terms["loss"], rec + 4.0 * kl_per_dim.sum())


def test_warmup_capacity_and_free_bits_enter_the_loss():
    torch.manual_seed(5)
    x = torch.rand(3, 1, 20, 20)
    base = build_model(_settings(beta=2.0), (1, 20, 20)).eval()
    out = base(x)
    plain = base.loss(x, out)
    rec, kl = plain["rec"], plain["kl"]
    warm = build_model(_settings(beta=2.0, kl_schedule="linear", kl_warmup_steps=100), (1, 20, 20))
    torch.testing.assert_close(warm.loss(x, out, step=25)["loss"], rec + 0.25 * 2.0 * kl)
    capped = build_model(_settings(capacity_max=10.0, capacity_gamma=50.0, capacity_steps=100), (1, 20, 20))
    torch.testing.assert_close(capped.loss(x, out, step=50)["loss"], rec + 50.0 * (kl - 5.0).abs())
    free = build_model(_settings(beta=2.0, free_bits=100.0), (1, 20, 20))
    torch.testing.assert_close(free.loss(x, out)["loss"], rec + 2.0 * 100.0 * 4)


def test_tcvae_loss_combines_its_terms_and_needs_the_dataset_size():
    torch.manual_seed(6)
    model = build_model(_settings("beta-tcvae", tc_alpha=2.0, tc_beta=5.0, tc_gamma=0.5), (1, 20, 20))
    x = torch.rand(5, 1, 20, 20)
    out = model(x)
    with pytest.raises(InputError, match="dataset_size"):
        model.loss(x, out)
    terms = model.loss(x, out, dataset_size=1000)
    expected = terms["rec"] + 2.0 * terms["mi"] + 5.0 * terms["tc"] + 0.5 * terms["dwkl"]
    torch.testing.assert_close(terms["loss"], expected)
    # The analytic KL and the Monte-Carlo decomposition estimate the same quantity.
    assert isinstance(model, BetaTCVAE)
    assert abs((terms["mi"] + terms["tc"] + terms["dwkl"]).item() - terms["kl"].item()) < 5.0


@pytest.mark.parametrize("model_name", ["beta-vae", "beta-tcvae", "me-vae"])
@pytest.mark.parametrize("logvar", [-20.0, 20.0, 60.0])
def test_finite_loss_and_gradients_at_extreme_logvar_under_bf16_autocast(model_name, logvar):
    torch.manual_seed(7)
    model = build_model(_settings(model_name), (1, 20, 20))
    encoders = model.encoders if isinstance(model, MEVAE) else [model.encoder]
    with torch.no_grad():
        for encoder in encoders:
            encoder.logvar.weight.zero_()
            encoder.logvar.bias.fill_(logvar)
    x = torch.rand(4, 1, 20, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        terms = model.loss(x, out, dataset_size=100)
    assert out.logvar.max().item() <= 20.0 + 1e-3  # clamped (ME-VAE: the combined variance shrinks by 1/K)
    assert all(torch.isfinite(v).all() for v in terms.values())
    assert terms["kl_per_dim"].dtype == torch.float32
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("model_name", ["beta-vae", "beta-tcvae", "me-vae"])
@pytest.mark.parametrize("reconstruction", ["bce", "sse", "calibrated-gaussian"])
@pytest.mark.parametrize("logit", [-200.0, 200.0])
def test_finite_gradients_when_the_decoder_saturates(model_name, reconstruction, logit):
    """The stardist-3D divergence (β = 0.25, step 1 155): background pixels decoded to a sigmoid of exactly 0.

    A float32 sigmoid rounds to exactly 0 below a logit of about −104 (and to 1
    above about 17). Cross-entropy computed from that probability has a finite,
    clamped loss but a 0/0 gradient through log(0), which gradient clipping
    spreads to every weight. Computed from the logits it stays finite.
    """
    torch.manual_seed(3)
    model = build_model(_settings(model_name, reconstruction=reconstruction), (1, 20, 20))
    with torch.no_grad():
        model.decoder.head.bias.fill_(logit)
    x = torch.zeros(4, 1, 20, 20)
    x[:, :, 5:15, 5:15] = torch.rand(4, 1, 10, 10)  # a cell on a background of exact zeros, like the crops
    out = model(x)
    terms = model.loss(x, out, dataset_size=100)
    assert bool(((out.recon == 0) | (out.recon == 1)).any())  # saturated, as in the diverged run
    assert all(torch.isfinite(v).all() for v in terms.values())
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- ME-VAE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("combine", ["mean", "product"])
def test_me_vae_combined_posterior_matches_monte_carlo_of_the_combination_rule(combine):
    model = build_model(_settings("me-vae", me_combine=combine), (1, 20, 20))
    g = torch.Generator().manual_seed(8)
    parts = [(torch.randn(1, 4, generator=g), torch.randn(1, 4, generator=g) - 1) for _ in range(3)]
    samples = [mu + torch.exp(0.5 * lv) * torch.randn(200_000, 4, generator=g) for mu, lv in parts]
    combined = model.combine(samples)
    mu, logvar = model.combined_posterior(parts)
    torch.testing.assert_close(combined.mean(0, keepdim=True), mu, atol=0.02, rtol=0.02)
    torch.testing.assert_close(combined.var(0, keepdim=True).log(), logvar, atol=0.03, rtol=0.03)


def test_me_vae_loss_reports_each_encoder_kl_and_sums_them():
    torch.manual_seed(9)
    model = build_model(_settings("me-vae", beta=2.0), (1, 20, 20))
    x = torch.rand(3, 1, 20, 20)
    out = model(x)
    terms = model.loss(x, out)
    per_encoder = [0.5 * (mu**2 + lv.exp() - lv - 1).sum(1).mean() for mu, lv, _ in out.parts]
    for k, kl in enumerate(per_encoder):
        torch.testing.assert_close(terms[f"kl_enc{k}"], kl)
    torch.testing.assert_close(terms["kl"], sum(per_encoder))
    torch.testing.assert_close(terms["loss"], terms["rec"] + 2.0 * terms["kl"])
    # Training mode decodes the mean of the three encoders' samples (the latent is that mean times √3).
    torch.testing.assert_close(out.z, torch.stack([z for _, _, z in out.parts]).mean(0) * math.sqrt(3))


@pytest.mark.parametrize("combine", ["mean", "product"])
def test_a_collapsed_me_vae_has_zero_kl_per_dimension_in_its_latent_table(combine):
    """Every encoder at the prior N(0, I): the combined posterior (what embed writes as mu/logvar and
    what the statistics turn into per-dimension KL, "rank by KL" and the empirical KL) is the prior
    too. A plain mean of three N(0, 1) latents would show 0.216 nats per dimension."""
    model = build_model(_settings("me-vae", me_combine=combine), (1, 20, 20)).eval()
    with torch.no_grad():
        for encoder in model.encoders:
            for head in (encoder.mu, encoder.logvar):
                head.weight.zero_()
                head.bias.zero_()
        mu, logvar = model.encode(torch.rand(16, 1, 20, 20))
    np.testing.assert_allclose(kl_per_dimension(mu.numpy(), logvar.numpy()), 0.0, atol=1e-6)
    # Under the prior the combined latent is standard normal, so the decoder reads N(0, I) draws.
    g = torch.Generator().manual_seed(3)
    draws = model.combine([torch.randn(100_000, 4, generator=g) for _ in range(3)])
    torch.testing.assert_close(draws.var(0), torch.ones(4), atol=0.03, rtol=0)


def test_me_vae_views_are_random_in_training_and_the_crop_in_eval():
    model = build_model(_settings("me-vae"), (1, 20, 20))
    x = torch.rand(8, 1, 20, 20)
    torch.manual_seed(10)
    assert not torch.equal(model.view(x, "rotation"), x)
    model.eval()
    for name in ("original", "rotation", "flip"):
        assert torch.equal(model.view(x, name), x)


def test_rotation_by_quarter_turns_matches_rot90_in_2d_and_per_slice_in_3d():
    x2 = torch.rand(1, 1, 6, 6)
    quarter = rotate_in_plane(x2, torch.tensor([math.pi / 2]))
    torch.testing.assert_close(quarter, torch.rot90(x2, k=1, dims=(-2, -1)), atol=1e-5, rtol=0)
    x3 = torch.rand(2, 1, 3, 6, 6)
    torch.testing.assert_close(
        rotate_in_plane(x3, torch.tensor([math.pi / 2, math.pi / 2])),
        torch.rot90(x3, k=1, dims=(-2, -1)),
        atol=1e-5,
        rtol=0,
    )
    # Non-square crops: a half turn is a flip of both axes (no shear from the aspect ratio).
    rect = torch.rand(1, 1, 4, 10)
    torch.testing.assert_close(rotate_in_plane(rect, torch.tensor([math.pi])), rect.flip(-2, -1), atol=1e-5, rtol=0)


def test_calibrated_latent_scale_is_the_sd_of_the_means():
    model = build_model(_settings("me-vae"), (1, 20, 20))
    torch.testing.assert_close(model.latent_scale, torch.ones(4))
    mu = torch.tensor([[0.0, 1.0, 5.0, 2.0], [2.0, 1.0, 7.0, -2.0], [4.0, 1.0, 9.0, 0.0]])
    model.calibrate_latent_scale(mu)
    torch.testing.assert_close(model.latent_scale, torch.tensor([2.0, 1e-6, 2.0, 2.0]))
    assert "latent_scale" in model.state_dict()
    with pytest.raises(InputError):
        model.calibrate_latent_scale(mu[:1])


# --- stacked conditional model --------------------------------------------------------------


def _stacked(num_labels: int = 3) -> StackedConditionalVAE:
    torch.manual_seed(11)
    settings = _settings("cond-vae", cond_reference_channels=[0, 2], cond_num_labels=num_labels)
    return build_model(settings, (3, 24, 24)).eval()


def test_stacked_model_has_an_unconditional_reference_and_a_conditional_target():
    model = _stacked()
    assert isinstance(model.reference, BetaVAE) and model.reference.input_shape == (2, 24, 24)
    assert model.target.input_shape == (1, 24, 24)
    x = torch.rand(2, 3, 24, 24)
    reference, target = model.split_channels(x)
    torch.testing.assert_close(reference, x[:, [0, 2]])
    torch.testing.assert_close(target, x[:, [1]])
    torch.testing.assert_close(model.merge_channels(reference, target), x)


def test_conditional_target_output_changes_with_the_label_and_the_reference():
    model = _stacked()
    g = torch.Generator().manual_seed(12)
    z = torch.randn(2, 4, generator=g)
    ref_a, ref_b = torch.rand(2, 2, 24, 24, generator=g), torch.rand(2, 2, 24, 24, generator=g)
    label_a = torch.eye(3)[[0, 0]]
    label_b = torch.eye(3)[[2, 2]]
    base = model.target.decode(z, Condition(ref_a, label_a))
    assert (model.target.decode(z, Condition(ref_a, label_b)) - base).abs().max() > 1e-4
    assert (model.target.decode(z, Condition(ref_b, label_a)) - base).abs().max() > 1e-4
    torch.testing.assert_close(model.target.decode(z, Condition(ref_a, label_a)), base)
    x = torch.rand(2, 1, 24, 24, generator=g)
    mu_a, _ = model.target.encode(x, Condition(ref_a, label_a))
    mu_b, _ = model.target.encode(x, Condition(ref_a, label_b))
    assert (mu_a - mu_b).abs().max() > 1e-4


def test_conditional_target_refuses_missing_or_malformed_conditions():
    model = _stacked()
    x = torch.rand(2, 1, 24, 24)
    with pytest.raises(InputError, match="Condition"):
        model.target(x)
    with pytest.raises(InputError, match="one-hot"):
        model.target(x, Condition(torch.rand(2, 2, 24, 24), None))
    with pytest.raises(InputError, match="reference images"):
        model.target(x, Condition(torch.rand(2, 1, 24, 24), torch.eye(3)[[0, 1]]))


def test_generate_decodes_a_sampled_reference_then_the_conditioned_target():
    model = _stacked()
    label = torch.eye(3)[[1, 1, 1]]
    generated = model.generate(3, label, generator=torch.Generator().manual_seed(13))
    g = torch.Generator().manual_seed(13)
    with torch.no_grad():
        reference = model.reference.decode(torch.randn(3, 4, generator=g))
        target = model.target.decode(torch.randn(3, 4, generator=g), Condition(reference, label))
    assert generated.shape == (3, 3, 24, 24)
    torch.testing.assert_close(generated[:, [0, 2]], reference)
    torch.testing.assert_close(generated[:, [1]], target)


def test_a_few_steps_of_training_lower_the_loss_of_every_model():
    torch.manual_seed(14)
    x = torch.rand(6, 2, 20, 20)
    x[:, :, 5:15, 5:15] += 1.0
    x = x / x.max()
    for name in MODELS:
        # 0.5·SSE: its minimum is 0, so the loss can fall by a fifth (BCE of grey pixels stays above their entropy).
        model = build_model(_settings(name, base_channels=8, reconstruction="sse"), (2, 20, 20))
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(30):
            out, target, terms = _run(model, x)
            optimiser.zero_grad()
            terms["loss"].backward()
            optimiser.step()
            losses.append(terms["loss"].item())
        assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), (name, losses[:5], losses[-5:])


def test_first_block_width_defaults_to_32_in_2d_and_16_in_3d():
    """3D convolutions cost a third axis more: the default keeps a 64³ decode interactive."""

    def first_width(model: torch.nn.Module) -> int:
        return next(
            m for m in model.encoder.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))
        ).out_channels

    assert first_width(build_model(ModelSettings(latent_dim=4), (1, 32, 32))) == 32
    assert first_width(build_model(ModelSettings(latent_dim=4), (1, 16, 32, 32))) == 16
    assert first_width(build_model(ModelSettings(latent_dim=4, base_channels=8), (1, 16, 32, 32))) == 8
