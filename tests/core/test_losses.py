"""Loss terms re-derived independently: closed forms, torch.distributions, exact mixtures."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models.losses import (
    beta_vae_loss,
    capacity_loss,
    capacity_target,
    free_bits_kl,
    gaussian_kl,
    kl_weight,
    log_importance_weight_matrix,
    reconstruction_loss,
    tc_decomposition,
)


def _posterior(batch: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, dim, generator=g) * 1.5
    logvar = torch.randn(batch, dim, generator=g) - 1.0
    z = mu + torch.exp(0.5 * logvar) * torch.randn(batch, dim, generator=g)
    return z, mu, logvar


def test_gaussian_kl_matches_torch_distributions_per_dimension():
    _, mu, logvar = _posterior(7, 5)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    assert gaussian_kl(mu, logvar).shape == (7, 5)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)


def test_gaussian_kl_is_zero_for_the_prior_and_hand_value():
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0
    # mu = 2, logvar = 0: 0.5·(4 + 1 − 0 − 1) = 2.
    assert gaussian_kl(torch.tensor([[2.0]]), torch.tensor([[0.0]])).item() == pytest.approx(2.0)


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


def test_reconstruction_sse_sums_pixels_and_averages_batch():
    x = torch.ones(2, 1, 2, 3)
    logits = torch.full((2, 1, 2, 3), -200.0)  # decodes to 0
    logits[1] = 0.0  # decodes to 0.5
    # image 0: 0.5·6·1² = 3; image 1: 0.5·6·0.25 = 0.75; batch mean 1.875.
    assert reconstruction_loss(logits, x, "sse").item() == pytest.approx(1.875)


def test_reconstruction_bce_equals_torchs_on_the_decoded_image_and_a_diverged_output_gives_nan():
    torch.manual_seed(0)
    recon, x = torch.rand(4, 1, 8, 8) * 0.98 + 0.01, torch.rand(4, 1, 8, 8)
    expected = torch.nn.functional.binary_cross_entropy(recon, x, reduction="none").flatten(1).sum(dim=1).mean()
    assert reconstruction_loss(_logit(recon), x, "bce").item() == pytest.approx(expected.item(), rel=1e-5)
    logits = _logit(recon)
    logits[2, 0, 0, 0] = float("nan")  # a diverged step: NaN for the training guard, not an error
    assert torch.isnan(reconstruction_loss(logits, x, "bce"))


def test_reconstruction_bce_hand_values_including_saturated_logits():
    x = torch.tensor([[[[1.0, 0.0]]]])
    assert reconstruction_loss(torch.zeros_like(x), x, "bce").item() == pytest.approx(2 * math.log(2), rel=1e-6)
    # Logit ±200: sigmoid rounds to exactly 1 / 0 in float32. Target 1 at logit −200 costs 200 nats,
    # target 0 at logit −200 costs log(1 + e^−200) ≈ 0; the gradients are σ(l) − x: −1 and 0, finite.
    logits = torch.tensor([[[[-200.0, -200.0]]]], requires_grad=True)
    loss = reconstruction_loss(logits, x, "bce")
    assert loss.item() == pytest.approx(200.0, rel=1e-6)
    loss.backward()
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, torch.tensor([[[[-1.0, 0.0]]]]))


def test_calibrated_gaussian_hand_values():
    """σ² = the batch's MSE; per image Σr²/(2σ²) + (P/2)·log(2πσ²), batch mean (P/2)·(1 + log 2πσ²)."""
    x = torch.zeros(2, 1, 2, 2)
    x[1] = 0.5
    logits = torch.zeros_like(x)  # decodes to 0.5: residual 0.5 on image 0, 0 on image 1
    # σ² = (4·0.25 + 0)/8 = 0.125. Image 0: 4·0.25/0.25 + 2·log(2π·0.125) ; image 1: 2·log(2π·0.125).
    expected = ((1.0 / 0.25) + 2 * 2 * math.log(2 * math.pi * 0.125)) / 2
    assert reconstruction_loss(logits, x, "calibrated-gaussian").item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(2 * (1 + math.log(2 * math.pi * 0.125)))


def test_calibrated_gaussian_is_half_sse_with_beta_sigma_squared():
    """The conversion docs/models.md states: its gradient is that of 0.5·SSE divided by σ² = MSE."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 1, 6, 6, generator=g)
    logits = torch.randn(3, 1, 6, 6, generator=g, requires_grad=True)
    reconstruction_loss(logits, x, "calibrated-gaussian").backward()
    calibrated = logits.grad.clone()
    logits.grad = None
    reconstruction_loss(logits, x, "sse").backward()
    variance = (torch.sigmoid(logits) - x).pow(2).mean().detach()
    torch.testing.assert_close(calibrated, logits.grad / variance)


def test_calibrated_gaussian_floors_the_variance_of_a_perfect_reconstruction():
    x = torch.full((2, 1, 3, 3), 0.5)
    logits = torch.zeros_like(x, requires_grad=True)  # exact: MSE 0
    loss = reconstruction_loss(logits, x, "calibrated-gaussian")
    assert loss.item() == pytest.approx(0.5 * 9 * math.log(2 * math.pi * math.exp(-12.0)), rel=1e-6)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_reductions_do_not_depend_on_batch_duplication():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 2, 5, 5, generator=g)
    logits = torch.randn(3, 2, 5, 5, generator=g)
    _, mu, logvar = _posterior(3, 4)
    for kind in ("sse", "bce", "calibrated-gaussian"):
        doubled = reconstruction_loss(torch.cat([logits, logits]), torch.cat([x, x]), kind)
        torch.testing.assert_close(doubled, reconstruction_loss(logits, x, kind))
    kl_once = gaussian_kl(mu, logvar).sum(1).mean()
    kl_twice = gaussian_kl(torch.cat([mu, mu]), torch.cat([logvar, logvar])).sum(1).mean()
    torch.testing.assert_close(kl_once, kl_twice)


def test_beta_vae_loss_values_and_guarded_ends():
    rec, kl = torch.tensor(10.0), torch.tensor(4.0)
    assert beta_vae_loss(rec, kl, 2.0, "classic").item() == pytest.approx(18.0)
    assert beta_vae_loss(rec, kl, 0.25, "reparameterised").item() == pytest.approx(0.75 * 10 + 0.25 * 4)
    # The unused term is left out at the ends, so an infinite unused term cannot give 0·inf = NaN.
    assert beta_vae_loss(rec, torch.tensor(math.inf), 0.0, "reparameterised").item() == 10.0
    assert beta_vae_loss(torch.tensor(math.inf), kl, 1.0, "reparameterised").item() == 4.0
    assert beta_vae_loss(rec, torch.tensor(math.inf), 0.0, "classic").item() == 10.0


@pytest.mark.parametrize(
    "args",
    [(1.5, "reparameterised"), (-0.1, "classic"), (0.5, "Reparameterised"), (0.5, "mean")],
)
def test_beta_vae_loss_refuses_bad_beta_and_unknown_objectives(args):
    with pytest.raises(InputError):
        beta_vae_loss(torch.tensor(1.0), torch.tensor(1.0), *args)


def test_unknown_option_strings_are_refused():
    x = torch.rand(2, 1, 3, 3)
    z, mu, logvar = _posterior(4, 2)
    with pytest.raises(InputError, match="sse"):
        reconstruction_loss(x, x, "mse")
    with pytest.raises(InputError, match="mss"):
        tc_decomposition(z, mu, logvar, 100, estimator="exact")
    with pytest.raises(InputError, match="cyclical"):
        kl_weight(5, "cosine", 10)


def test_kl_weight_schedules_hand_values():
    assert kl_weight(123, "none", 0) == 1.0
    assert kl_weight(0, "linear", 100) == 0.0
    assert kl_weight(50, "linear", 100) == 0.5
    assert kl_weight(250, "linear", 100) == 1.0
    # Cyclical: cycles of 100 steps, ramp over the first 50.
    assert [kl_weight(s, "cyclical", 100) for s in (0, 25, 50, 75, 100, 125)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    # step=None: the full objective the schedule leads to (validation, model selection).
    assert kl_weight(None, "linear", 100) == kl_weight(None, "cyclical", 100) == 1.0
    with pytest.raises(InputError):
        kl_weight(1, "linear", 0)


def test_capacity_and_free_bits():
    assert capacity_target(500, 25.0, 1000) == 12.5
    assert capacity_target(5000, 25.0, 1000) == 25.0
    assert capacity_target(0, 25.0, 0) == 25.0
    assert capacity_target(None, 25.0, 1000) == 25.0
    assert capacity_loss(torch.tensor(10.0), 12.5, 100.0).item() == pytest.approx(250.0)
    kl = torch.tensor([0.1, 2.0], requires_grad=True)
    value = free_bits_kl(kl, 0.5)
    assert value.item() == pytest.approx(2.5)
    value.backward()
    # The dimension below the free-bits floor gets no gradient; the other one the plain KL gradient.
    assert kl.grad.tolist() == [0.0, 1.0]


def test_mss_weight_matrix_small_case_by_hand():
    # B = 3, N = 10, M = 2: diagonal 1/10, cyclic neighbour (10 − 2)/(10·2) = 0.4, the rest 1/2.
    expected = torch.tensor([[0.1, 0.4, 0.5], [0.5, 0.1, 0.4], [0.4, 0.5, 0.1]])
    torch.testing.assert_close(log_importance_weight_matrix(3, 10).exp(), expected)


@pytest.mark.parametrize(("batch", "n"), [(3, 3), (5, 100), (64, 5000)])
def test_mss_weight_matrix_structure(batch, n):
    w = log_importance_weight_matrix(batch, n).double().exp()
    m = batch - 1
    strat = (n - m) / (n * m)
    torch.testing.assert_close(w.diagonal(), torch.full((batch,), 1 / n, dtype=torch.float64))
    off = w.clone()
    off.fill_diagonal_(float("nan"))
    for i, row in enumerate(off):
        strat_columns = torch.nonzero(torch.isclose(row, torch.tensor(strat, dtype=torch.float64), rtol=1e-6))
        if strat != 1 / m:  # both values coincide only if N = M + M²/(M−1); not for these cases
            assert strat_columns.flatten().tolist() == [(i + 1) % batch]
        others = [j for j in range(batch) if j not in (i, (i + 1) % batch)]
        torch.testing.assert_close(row[others], torch.full((len(others),), 1 / m, dtype=torch.float64))
    torch.testing.assert_close(w.sum(dim=1), torch.ones(batch, dtype=torch.float64), rtol=1e-6, atol=1e-6)


def test_mss_weight_matrix_refuses_missing_n_and_tiny_batches():
    with pytest.raises(InputError, match="dataset size"):
        log_importance_weight_matrix(8, None)
    with pytest.raises(InputError, match="at least 3"):
        log_importance_weight_matrix(2, 100)
    with pytest.raises(InputError):
        log_importance_weight_matrix(8, 5)
    z, mu, logvar = _posterior(8, 3)
    with pytest.raises(InputError, match="dataset size"):
        tc_decomposition(z, mu, logvar, None)


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_decomposition_adds_up_to_monte_carlo_kl(estimator):
    z, mu, logvar = _posterior(32, 4, seed=3)
    terms = tc_decomposition(z, mu, logvar, dataset_size=1000, estimator=estimator)
    q = Normal(mu, torch.exp(0.5 * logvar))
    monte_carlo_kl = (q.log_prob(z).sum(1) - Normal(0.0, 1.0).log_prob(z).sum(1)).mean()
    torch.testing.assert_close(terms["mi"] + terms["tc"] + terms["dwkl"], monte_carlo_kl, rtol=1e-5, atol=1e-4)


def test_decomposition_is_independent_of_chunk_size():
    z, mu, logvar = _posterior(50, 3, seed=4)
    whole = tc_decomposition(z, mu, logvar, 500, chunk_size=256)
    chunked = tc_decomposition(z, mu, logvar, 500, chunk_size=7)
    for key in ("mi", "tc", "dwkl"):
        torch.testing.assert_close(whole[key], chunked[key])


def test_mws_differs_from_mss_by_its_published_log_n_offset_on_a_full_batch():
    # With the whole data set as the batch (B = N), the published MWS weights 1/(N·B) make every
    # density estimate N times too small, so its TC exceeds the exact mixture TC by (D − 1)·log N.
    z, mu, logvar = _posterior(40, 3, seed=5)
    n = 40
    q = Normal(mu[None, :, :], torch.exp(0.5 * logvar[None, :, :]))
    log_dens = q.log_prob(z[:, None, :])  # (i, j, d)
    log_qz = torch.logsumexp(log_dens.sum(2), dim=1) - math.log(n)
    log_marginals = (torch.logsumexp(log_dens, dim=1) - math.log(n)).sum(1)
    exact_tc = (log_qz - log_marginals).mean()
    mws = tc_decomposition(z, mu, logvar, n, estimator="mws")
    torch.testing.assert_close(mws["tc"], exact_tc + 2 * math.log(n), rtol=1e-5, atol=1e-4)


def _synthetic_posteriors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """N posteriors in 3D whose means are strongly correlated, so the aggregate has a clear TC."""
    g = torch.Generator().manual_seed(seed)
    cov = torch.tensor([[1.0, 0.8, 0.0], [0.8, 1.0, 0.5], [0.0, 0.5, 1.0]], dtype=torch.float64)
    mu = (torch.randn(n, 3, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T).float()
    logvar = torch.full((n, 3), math.log(0.2**2))
    z = mu + torch.exp(0.5 * logvar) * torch.randn(n, 3, generator=g)
    return z, mu, logvar


def _exact_tc(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> float:
    """TC with q(z) the full mixture (1/N) Σ_n q(z | x_n) over all N samples, chunked over samples."""
    n = z.shape[0]
    inv_var = torch.exp(-logvar)[None, :, :]
    log_norm = (-0.5 * (math.log(2 * math.pi) + logvar))[None, :, :]
    values = []
    for start in range(0, n, 1000):
        log_dens = log_norm - 0.5 * (z[start : start + 1000, None, :] - mu[None, :, :]).pow(2) * inv_var
        log_qz = torch.logsumexp(log_dens.sum(2), dim=1) - math.log(n)
        log_marginals = (torch.logsumexp(log_dens, dim=1) - math.log(n)).sum(1)
        values.append(log_qz - log_marginals)
    return torch.cat(values).double().mean().item()


@pytest.mark.slow
def test_mss_total_correlation_is_close_to_the_exact_mixture_value():
    n, batch = 5000, 1024
    z, mu, logvar = _synthetic_posteriors(n, seed=11)
    exact = _exact_tc(z, mu, logvar)
    assert exact > 0.5  # the aggregate posterior is clearly correlated
    g = torch.Generator().manual_seed(12)
    estimates = []
    for _ in range(2):
        idx = torch.randperm(n, generator=g)[:batch]
        terms = tc_decomposition(z[idx], mu[idx], logvar[idx], n, estimator="mss")
        estimates.append(terms["tc"].item())
    for estimate in estimates:
        assert abs(estimate - exact) < 0.3, (estimates, exact)


def test_decomposition_is_float32_under_bf16_autocast():
    z, mu, logvar = _posterior(16, 4, seed=6)
    reference = tc_decomposition(z, mu, logvar, 200)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = tc_decomposition(z.bfloat16(), mu.bfloat16(), logvar.bfloat16(), 200)
        kl = gaussian_kl(mu.bfloat16(), torch.full_like(mu, 20.0).bfloat16())
    assert all(t.dtype == torch.float32 for t in terms.values())
    assert kl.dtype == torch.float32 and torch.isfinite(kl).all()
    # Only the bf16 rounding of the inputs differs, not the arithmetic.
    for key in ("mi", "tc", "dwkl"):
        assert abs(terms[key].item() - reference[key].item()) < 0.5
