"""VAE loss terms as plain functions with explicit reductions.

Conventions (model-notes.md): the reconstruction term is summed over every
pixel/voxel and channel of one image and averaged over the batch; the KL is
summed over latent dimensions and averaged over the batch. With ``0.5·SSE``
and β = 1 the loss is exactly the negative ELBO (up to a constant) of a
unit-variance Gaussian decoder. Averaging over pixels instead would multiply
the effective β by the pixel count and collapse the posterior.

KL and total-correlation terms are computed in float32 with autocast switched
off, because log-variances near the clamp (±20) overflow half precision.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F

from ..errors import InputError

_LOG_2PI = math.log(2 * math.pi)


def full_precision(tensor: torch.Tensor) -> AbstractContextManager:
    """Context in which autocast is off on ``tensor``'s device, so float32 stays float32."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) per sample and dimension, shape (N, D), float32.

    ``0.5 · (mu² + exp(logvar) − logvar − 1)``, the closed form for diagonal Gaussians.
    """
    with full_precision(mu):
        mu, logvar = mu.float(), logvar.float()
        return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise ``log N(z | mu, exp(logvar))`` (broadcasting), float32."""
    with full_precision(z):
        z, mu, logvar = z.float(), mu.float(), logvar.float()
        return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor, kind: str = "sse") -> torch.Tensor:
    """Reconstruction term: summed over the pixels and channels of each image, averaged over the batch.

    Parameters
    ----------
    logits : Tensor (N, C, [Z,] Y, X)
        Decoder output before the sigmoid; the decoded image is ``sigmoid(logits)``.
    x : Tensor, same shape
        Target images in [0, 1].
    kind : {"sse", "bce", "calibrated-gaussian"}
        "sse": ``0.5·Σ(sigmoid(logits) − x)²`` — the negative log-likelihood
        of a unit-variance Gaussian decoder up to a constant. "bce": binary
        cross-entropy computed from the logits. "calibrated-gaussian": the
        negative log-likelihood of a Gaussian decoder whose variance is its
        maximum-likelihood value on the batch (:func:`calibrated_gaussian_nll`).

    Notes
    -----
    Cross-entropy is computed from the logits (``log σ(l) = −softplus(−l)``),
    never from the decoded probability: a float32 sigmoid rounds to exactly 0
    below a logit of about −104 (and to 1 above about 17), where ``log`` of
    the probability is −inf and its gradient 0/0 = NaN. That is how β = 0.25
    diverged on stardist 3D at step 1 155, on background pixels decoded to 0.
    """
    if logits.shape != x.shape:
        raise InputError(f"reconstruction shape {tuple(logits.shape)} differs from the target's {tuple(x.shape)}")
    with full_precision(logits):
        logits, x = logits.float(), x.float()
        if kind == "sse":
            per_pixel = 0.5 * (torch.sigmoid(logits) - x).pow(2)
        elif kind == "bce":
            per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        elif kind == "calibrated-gaussian":
            return calibrated_gaussian_nll(torch.sigmoid(logits), x)
        else:
            raise InputError(f"reconstruction must be 'sse', 'bce' or 'calibrated-gaussian', got {kind!r}")
        return per_pixel.flatten(1).sum(dim=1).mean()


#: Smallest decoder variance of the calibrated Gaussian: σ ≥ e^−6 ≈ 0.0025, the floor of Rybkin et al. (2021).
MIN_DECODER_VARIANCE = math.exp(-12.0)


def calibrated_gaussian_nll(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of a Gaussian decoder with the maximum-likelihood variance ("σ-VAE").

    Rybkin, Daniilidis & Levine (2021), "Simple and Effective VAE Training
    with Calibrated Decoders", optimal σ: one variance shared by every pixel,
    σ² = the batch's mean squared error (at least :data:`MIN_DECODER_VARIANCE`).
    Per image, ``Σ (recon − x)²/(2σ²) + (P/2)·log(2πσ²)`` over its P pixels
    and channels; averaged over the batch this is exactly
    ``(P/2)·(1 + log(2π·σ²))``. Because σ² is the likelihood's own optimum,
    the weight of the reconstruction against the KL is set by how well the
    decoder fits the data, not by a hand-chosen β; relative to ``0.5·SSE``
    the calibrated decoder is that loss with β = σ² (plus the log σ² term).
    The gradient through σ² is kept: at the optimum it changes nothing
    (the derivative of the NLL with respect to σ² is zero there).
    """
    with full_precision(recon):
        residual = (recon.float() - x.float()).pow(2)
        variance = residual.mean().clamp_min(MIN_DECODER_VARIANCE)
        pixels = residual[0].numel()
        per_image = residual.flatten(1).sum(dim=1) / (2 * variance) + 0.5 * pixels * torch.log(2 * math.pi * variance)
        return per_image.mean()


def beta_vae_loss(rec: torch.Tensor, kl: torch.Tensor, beta: float, objective: str = "classic") -> torch.Tensor:
    """β-VAE objective from the batch-averaged reconstruction and KL terms.

    "classic": ``rec + β·KL`` (β ≥ 0). "reparameterised" (Statistical Cell):
    ``(1−β)·rec + β·KL`` with β in [0, 1], equivalent to classic
    ``β_c = β/(1−β)`` scaled by ``(1−β)``. At the ends the unused term is left
    out entirely (β = 0: plain autoencoder; β = 1: KL only), so a non-finite
    unused term cannot turn the loss into NaN via ``0·inf``.
    """
    if objective == "classic":
        if beta < 0:
            raise InputError(f"beta must be non-negative, got {beta}")
        return rec if beta == 0 else rec + beta * kl
    if objective == "reparameterised":
        if not 0 <= beta <= 1:
            raise InputError(f"the reparameterised objective needs beta in [0, 1], got {beta}")
        if beta == 0:
            return rec
        if beta == 1:
            return kl
        return (1 - beta) * rec + beta * kl
    raise InputError(f"objective must be 'classic' or 'reparameterised', got {objective!r}")


def kl_weight(step: int | None, schedule: str, warmup_steps: int) -> float:
    """KL warm-up weight in [0, 1] at training step ``step``.

    "none": 1. "linear": ``min(1, step / warmup_steps)``. "cyclical" (Fu et
    al. 2019, ratio 0.5): cycles of ``warmup_steps`` steps, the weight rising
    linearly from 0 to 1 over the first half of each cycle and staying at 1
    for the second half. ``step=None`` means the objective the schedule leads
    to (weight 1): what validation and model selection use.
    """
    if schedule == "none":
        return 1.0
    if warmup_steps <= 0:
        raise InputError(f"kl_schedule={schedule!r} needs kl_warmup_steps > 0, got {warmup_steps}")
    if schedule not in ("linear", "cyclical"):
        raise InputError(f"kl_schedule must be 'none', 'linear' or 'cyclical', got {schedule!r}")
    if step is None:
        return 1.0
    if schedule == "linear":
        return min(1.0, step / warmup_steps)
    return min(1.0, (step % warmup_steps) / (warmup_steps / 2))


def capacity_target(step: int | None, capacity_max: float, capacity_steps: int) -> float:
    """Capacity C in nats at ``step``: linear from 0 to ``capacity_max`` over ``capacity_steps`` (Burgess et al.).

    ``step=None`` means the end of the schedule, ``capacity_max``.
    """
    if capacity_steps == 0 or step is None:
        return float(capacity_max)
    return float(capacity_max) * min(1.0, step / capacity_steps)


def capacity_loss(kl: torch.Tensor, capacity: float, gamma: float) -> torch.Tensor:
    """``γ·|KL − C|``: pulls the batch KL towards the capacity C instead of towards 0."""
    return gamma * (kl - capacity).abs()


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Sum over dimensions of ``max(KL_d, λ)`` with KL_d averaged over the batch (Kingma et al. 2016).

    Dimensions whose KL is below λ nats get no gradient pushing them further
    towards the prior, which counters posterior collapse. ``free_bits = 0``
    gives the plain KL.
    """
    if free_bits < 0:
        raise InputError(f"free_bits must be non-negative, got {free_bits}")
    return kl_per_dim.clamp(min=free_bits).sum()


def log_importance_weight_matrix(batch_size: int, dataset_size: int | None) -> torch.Tensor:
    """Log of the minibatch-stratified-sampling weights W (B, B) of Chen et al. (2018).

    Row i weights the densities ``q(z_i | x_j)`` of the batch members to
    estimate ``q(z_i) = (1/N) Σ_n q(z_i | x_n)``. With ``M = B − 1``: the
    diagonal (the sample's own posterior) is ``1/N``; in each row exactly one
    off-diagonal entry, the cyclic neighbour ``j = (i + 1) mod B``, is
    ``(N − M)/(N·M)``; all other entries are ``1/M``. Every row of W sums to 1.

    Notes
    -----
    Several public implementations fill this matrix with the wrong stride
    (``view(-1)[::M+1]`` misses the diagonal); this one indexes explicitly.
    """
    if dataset_size is None:
        raise InputError(
            "minibatch-stratified sampling needs the dataset size N (number of training crops); "
            "it must not default to the batch size"
        )
    if batch_size < 3:
        raise InputError(
            f"minibatch-stratified sampling needs batches of at least 3 crops, got {batch_size}; "
            "raise the batch size and drop the last incomplete batch"
        )
    if dataset_size < batch_size:
        raise InputError(f"dataset size {dataset_size} is smaller than the batch size {batch_size}")
    n, m = float(dataset_size), float(batch_size - 1)
    weights = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch_size)
    weights[rows, rows] = 1.0 / n
    weights[rows, (rows + 1) % batch_size] = (n - m) / (n * m)
    return weights.log().float()


def tc_decomposition(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    dataset_size: int | None,
    estimator: str = "mss",
    chunk_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Split the Monte-Carlo KL into mutual information, total correlation and dimension-wise KL.

    ``MI = E[log q(z|x) − log q(z)]``, ``TC = E[log q(z) − Σ_j log q(z_j)]``,
    ``dwKL = E[Σ_j log q(z_j) − log p(z)]`` (Chen et al. 2018), estimated on
    the batch: the (B, B, D) matrix of ``log N(z_i,d | mu_j,d, σ_j,d)`` gives
    ``log q(z_i)`` as a weighted logsumexp over j of its sum over d, and
    ``log q(z_i,d)`` as a weighted logsumexp over j per d. The three terms add
    up to ``E[log q(z|x) − log p(z)]`` exactly.

    Parameters
    ----------
    z, mu, logvar : Tensor (B, D)
        Posterior samples and parameters of one batch.
    dataset_size : int
        Number N of crops in the training set. Required: defaulting it to the
        batch size would bias log q(z) by log(N/B).
    estimator : {"mss", "mws"}
        Minibatch-stratified sampling (:func:`log_importance_weight_matrix`),
        or minibatch-weighted sampling as published, weights ``1/(N·B)``
        (biased; the bias does not shrink with the batch size).
    chunk_size : int
        Rows of the (B, B, D) matrix held in memory at once: memory is
        O(chunk_size·B·D) instead of O(B²·D).

    Returns
    -------
    dict with scalar tensors "mi", "tc", "dwkl" (batch means, float32).
    """
    if dataset_size is None:
        raise InputError(
            "the β-TCVAE decomposition needs the dataset size N (number of training crops); "
            "it must not default to the batch size"
        )
    if chunk_size < 1:
        raise InputError(f"chunk_size must be at least 1, got {chunk_size}")
    batch = z.shape[0]
    with full_precision(z):
        z, mu, logvar = z.float(), mu.float(), logvar.float()
        if estimator == "mss":
            log_w = log_importance_weight_matrix(batch, dataset_size).to(z.device)
        elif estimator == "mws":
            if dataset_size < batch:
                raise InputError(f"dataset size {dataset_size} is smaller than the batch size {batch}")
            log_w = torch.full((batch, batch), -math.log(dataset_size * batch), device=z.device)
        else:
            raise InputError(f"tc_estimator must be 'mss' or 'mws', got {estimator!r}")
        log_qz_joint, log_qz_marginals = [], []
        for start in range(0, batch, chunk_size):
            rows = slice(start, start + chunk_size)
            # (rows, B, D): log density of sample i under the posterior of batch member j.
            log_dens = gaussian_log_density(z[rows, None, :], mu[None, :, :], logvar[None, :, :])
            weights = log_w[rows, :]
            log_qz_joint.append(torch.logsumexp(weights + log_dens.sum(dim=2), dim=1))
            log_qz_marginals.append(torch.logsumexp(weights[:, :, None] + log_dens, dim=1).sum(dim=1))
        log_qz = torch.cat(log_qz_joint)
        log_qz_product = torch.cat(log_qz_marginals)
        log_qz_given_x = gaussian_log_density(z, mu, logvar).sum(dim=1)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
        return {
            "mi": (log_qz_given_x - log_qz).mean(),
            "tc": (log_qz - log_qz_product).mean(),
            "dwkl": (log_qz_product - log_pz).mean(),
        }
