"""The VAEs of the studies as plain ``torch.nn.Module``\\ s, 2D and 3D, usable without Lightning.

* :class:`BetaVAE` — classic ``rec + β·KL`` or reparameterised ``(1−β)·rec + β·KL``.
* :class:`BetaTCVAE` — ``rec + α·MI + β·TC + γ·dwKL`` (Chen et al. 2018).
* :class:`MEVAE` — multi-encoder VAE over views of each crop, one decoder to the original crop.
* :class:`StackedConditionalVAE` — reference β-VAE + :class:`ConditionalVAE` target (Statistical Cell).

All take crops ``(N, C, [Z,] Y, X)`` in [0, 1] and decode (sigmoid) to exactly
that shape. See ``docs/models.md`` for the objectives and documented choices.
"""

from __future__ import annotations

import abc
import math
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .blocks import Decoder, Encoder, resolve_depth
from .losses import (
    beta_vae_loss,
    capacity_loss,
    capacity_target,
    free_bits_kl,
    full_precision,
    gaussian_kl,
    kl_weight,
    reconstruction_loss,
    tc_decomposition,
)
from .settings import ModelSettings


class VAEOutput(NamedTuple):
    """What a forward pass returns.

    Attributes
    ----------
    logits : Tensor (N, C, [Z,] Y, X)
        Decoder output before the sigmoid: what the reconstruction loss takes.
        ``recon`` is the decoded image in [0, 1].
    mu, logvar : Tensor (N, D)
        Posterior parameters (clamped log-variance). For the ME-VAE these are
        the combined latent's (see :class:`MEVAE`).
    z : Tensor (N, D)
        The latent that was decoded: a reparameterised sample in training
        mode (or with ``sample=True``), ``mu`` in evaluation mode.
    parts : tuple of (mu, logvar, z) per encoder, or None
        ME-VAE only: each encoder's own posterior and sample, in ``me_views`` order.
    """

    logits: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    parts: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...] | None = None

    @property
    def recon(self) -> torch.Tensor:
        """Decoded images in [0, 1]: the sigmoid of ``logits``."""
        return torch.sigmoid(self.logits)


class Condition(NamedTuple):
    """What the conditional target model is conditioned on.

    Attributes
    ----------
    reference : Tensor (N, Cr, [Z,] Y, X)
        Reference channels (e.g. membrane + DNA) in [0, 1], same spatial shape as the target.
    label : Tensor (N, K)
        One-hot float structure/condition label; ``None`` or (N, 0) when K = 0.
    """

    reference: torch.Tensor
    label: torch.Tensor | None = None


class MorphoVAE(nn.Module, abc.ABC):
    """Shared interface of the VAEs: encode, decode, forward, loss, Grad-CAM layer, latent scale.

    Parameters
    ----------
    settings : ModelSettings
        Architecture and objective.
    input_shape : tuple of int
        (C, [Z,] Y, X) of the crops the model takes.

    Attributes
    ----------
    latent_scale : Tensor (D,) buffer
        Unit of latent traversals: a traversal from −3 to +3 sets the
        dimension to the absolute values ``−3·latent_scale … +3·latent_scale``
        (the other dimensions stay at the start point). Ones by default (the prior's
        SD); :meth:`calibrate_latent_scale` sets it to the empirical SD of the
        posterior means, which is what the ME-VAE needs because its combined
        latent is not N(0, I)-distributed.
    """

    latent_scale: torch.Tensor  # a buffer: registered in __init__, typed here for the type checker

    def __init__(self, settings: ModelSettings, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        settings.validate()
        if len(input_shape) not in (3, 4) or any(int(s) < 1 for s in input_shape):
            raise InputError(f"input_shape must be (C, Y, X) or (C, Z, Y, X) with positive sizes, got {input_shape}")
        self.settings = settings
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = settings.latent_dim
        self.depth = resolve_depth(settings.depth, self.input_shape[1:])
        self.register_buffer("latent_scale", torch.ones(settings.latent_dim))

    @abc.abstractmethod
    def encode(self, x: torch.Tensor, cond: Condition | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic posterior parameters ``(mu, logvar)``, each (N, D), logvar clamped."""

    @abc.abstractmethod
    def decode_logits(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Decoder output before the sigmoid (N, C, [Z,] Y, X) from latents (N, D): what the losses take."""

    def decode(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Images (N, C, [Z,] Y, X) in [0, 1] from latents (N, D)."""
        return torch.sigmoid(self.decode_logits(z, cond))

    @abc.abstractmethod
    def feature_layer(self) -> nn.Module:
        """The last encoder conv block, whose activations Grad-CAM weighs."""

    def forward(self, x: torch.Tensor, cond: Condition | None = None, *, sample: bool | None = None) -> VAEOutput:
        """Encode, draw z from the posterior or take its mean, decode.

        ``sample=None`` draws in training mode and takes the mean in
        evaluation mode; ``sample=True`` draws in either, which the ELBO
        needs (validation: normalisation layers in eval mode, z sampled).
        """
        mu, logvar = self.encode(x, cond)
        z = self.sample(mu, logvar, sample)
        return VAEOutput(self.decode_logits(z, cond), mu, logvar, z)

    @abc.abstractmethod
    def loss(
        self,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        cond: Condition | None = None,
        dataset_size: int | None = None,
        step: int | None = 0,
    ) -> dict[str, torch.Tensor]:
        """Training objective and its terms: "loss", "rec", "kl", "kl_per_dim" (D,) and model extras.

        ``step`` sets the KL warm-up weight and the capacity of that training
        step; ``None`` gives the full objective the schedules lead to (what
        validation reports and model selection compares across epochs).
        """

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor, draw: bool | None = None) -> torch.Tensor:
        """Reparameterised sample ``mu + σ·ε`` when ``draw`` (default: in training mode), else ``mu``."""
        if not (self.training if draw is None else draw):
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    @torch.no_grad()
    def calibrate_latent_scale(self, mu: torch.Tensor) -> None:
        """Set ``latent_scale`` to the per-dimension SD (ddof=1) of posterior means ``mu`` (N, D).

        Call after training with the means of the training crops (eval mode).
        Dimensions with (near-)zero spread get a tiny floor so traversals stay defined.
        """
        if mu.ndim != 2 or mu.shape[1] != self.latent_dim or mu.shape[0] < 2:
            raise InputError(
                f"calibrate_latent_scale needs means of shape (N >= 2, {self.latent_dim}), got {tuple(mu.shape)}"
            )
        self.latent_scale.copy_(mu.float().std(dim=0).clamp(min=1e-6))

    def _check_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"this model takes crops of shape {self.input_shape} (C, [Z,] Y, X), got {tuple(x.shape[1:])}; "
                "use crops made with the same channels and crop size as the training crops"
            )

    def _clamp(self, logvar: torch.Tensor) -> torch.Tensor:
        return logvar.clamp(self.settings.logvar_min, self.settings.logvar_max)

    def _regularised_loss(self, rec: torch.Tensor, kl_per_dim: torch.Tensor, step: int | None) -> torch.Tensor:
        """β-VAE objective with warm-up, then capacity (replaces β·KL) or free bits."""
        s = self.settings
        weight = kl_weight(step, s.kl_schedule, s.kl_warmup_steps)
        if s.capacity_max is not None:
            target = capacity_target(step, s.capacity_max, s.capacity_steps)
            return rec + weight * capacity_loss(kl_per_dim.sum(), target, s.capacity_gamma)
        return beta_vae_loss(rec, weight * free_bits_kl(kl_per_dim, s.free_bits), s.beta, s.objective)


class BetaVAE(MorphoVAE):
    """β-VAE: one encoder, one decoder, ``rec + β·KL`` or ``(1−β)·rec + β·KL``.

    ``condition = (reference_channels, num_labels)`` adds the conditioning
    layers of :class:`ConditionalVAE`, which is the only caller that sets it.
    """

    def __init__(
        self, settings: ModelSettings, input_shape: tuple[int, ...], condition: tuple[int, int] | None = None
    ) -> None:
        super().__init__(settings, input_shape)
        s = settings
        channels = s.channels_for(len(self.input_shape) - 1)
        args = (self.input_shape[0], self.input_shape[1:], s.latent_dim, self.depth, channels, s.block)
        self.encoder = Encoder(*args, condition=condition, norm=s.norm)
        self.decoder = Decoder(*args, condition=condition, norm=s.norm)

    def encode(self, x: torch.Tensor, cond: Condition | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x)
        mu, logvar = self.encoder(x)
        return mu, self._clamp(logvar)

    def decode_logits(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        return self.decoder(z)

    def feature_layer(self) -> nn.Module:
        return self.encoder.blocks[-1]

    def loss(
        self,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        cond: Condition | None = None,
        dataset_size: int | None = None,
        step: int | None = 0,
    ) -> dict[str, torch.Tensor]:
        rec = reconstruction_loss(out.logits, x, self.settings.reconstruction)
        kl_per_dim = gaussian_kl(out.mu, out.logvar).mean(dim=0)
        loss = self._regularised_loss(rec, kl_per_dim, step)
        return {"loss": loss, "rec": rec, "kl": kl_per_dim.sum(), "kl_per_dim": kl_per_dim}


class BetaTCVAE(BetaVAE):
    """β-TCVAE: ``rec + w·(α·MI + β·TC + γ·dwKL)`` with w the KL warm-up weight.

    The loss needs ``dataset_size`` (the number of training crops) for the
    estimate of log q(z); there is no default.
    """

    def loss(
        self,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        cond: Condition | None = None,
        dataset_size: int | None = None,
        step: int | None = 0,
    ) -> dict[str, torch.Tensor]:
        s = self.settings
        if dataset_size is None:
            raise InputError(
                "beta-tcvae needs dataset_size, the number of training crops, to estimate the total "
                "correlation; pass loss(..., dataset_size=N)"
            )
        rec = reconstruction_loss(out.logits, x, s.reconstruction)
        kl_per_dim = gaussian_kl(out.mu, out.logvar).mean(dim=0)
        terms = tc_decomposition(out.z, out.mu, out.logvar, dataset_size, s.tc_estimator)
        weight = kl_weight(step, s.kl_schedule, s.kl_warmup_steps)
        regulariser = s.tc_alpha * terms["mi"] + s.tc_beta * terms["tc"] + s.tc_gamma * terms["dwkl"]
        return {
            "loss": rec + weight * regulariser,
            "rec": rec,
            "kl": kl_per_dim.sum(),
            "kl_per_dim": kl_per_dim,
            **terms,
        }


def rotate_in_plane(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each crop by its angle (radians) in the Y–X plane; 3D crops rotate every z-slice alike.

    Bilinear sampling with zero fill outside the crop; the rotation is in
    pixel units, so non-square crops are not sheared.
    """
    n, spatial = x.shape[0], x.shape[2:]
    height, width = spatial[-2], spatial[-1]
    cos, sin = torch.cos(angles), torch.sin(angles)
    theta = torch.zeros(n, len(spatial), len(spatial) + 1, dtype=x.dtype, device=x.device)
    # affine_grid works in normalised coordinates (x first); scale by the aspect ratio to rotate in pixels.
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * height / width
    theta[:, 1, 0] = sin * width / height
    theta[:, 1, 1] = cos
    if len(spatial) == 3:
        theta[:, 2, 2] = 1.0
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_flips(x: torch.Tensor) -> torch.Tensor:
    """Flip each crop along Y and along X, each independently with probability 1/2."""
    out = x.clone()
    for axis in (-2, -1):
        chosen = torch.rand(x.shape[0], device=x.device) < 0.5
        out[chosen] = out[chosen].flip(axis)
    return out


class MEVAE(MorphoVAE):
    """Multi-encoder VAE: one encoder (separate weights) per view, one decoder to the original crop.

    In training mode each view is a random transform of the crop: "rotation"
    by a per-crop angle uniform in [−180°, 180°), "flip" along Y and/or X with
    probability 1/2 each, "original" the crop itself. In evaluation mode every
    view is the crop itself (angle 0, no flip) — a transform the encoders saw
    in training — so ``encode`` is deterministic.

    Each encoder has its own posterior N(mu_k, σ_k²) and its own KL to N(0, I)
    ("kl_enc0", ...). The decoded latent combines the encoders' samples z_k,
    scaled so that under the prior (every z_k ~ N(0, I)) the combined latent
    is N(0, I) too, like every other model's latent:

    * "mean": ``z = √K · mean_k z_k`` (the decoder sees ``mean_k z_k``, as in
      the macrophage study). The combined posterior is exactly
      ``N(√K · mean_k mu_k, Σ_k σ_k² / K)``, returned as ``mu``/``logvar``.
    * "product" (original ME-VAE code): ``z = Π_k z_k``, which has mean 0 and
      variance 1 under the prior (not Gaussian). Returned ``mu`` is
      ``Π_k mu_k`` (the evaluation-mode latent) and ``logvar`` the log of the
      product's exact variance ``Π_k(σ_k² + mu_k²) − Π_k mu_k²``.

    Because the combined latent's prior is N(0, I), the per-dimension KL of
    the combined posterior (``mu``/``logvar`` in a latent table) is 0 for a
    collapsed model; without the √K a mean of K prior samples would have
    variance 1/K and show ``0.5·(1/K + log K − 1)`` nats per dimension that
    the model never learned. The KL in the loss is the sum of the encoders'
    KLs (each encoder is regularised towards N(0, I), as in the original
    code); "kl_per_dim" is that sum per dimension. Call
    :meth:`calibrate_latent_scale` after training so traversals are in units
    of the combined latent's empirical SD.
    """

    def __init__(self, settings: ModelSettings, input_shape: tuple[int, ...]) -> None:
        super().__init__(settings, input_shape)
        s = settings
        channels = s.channels_for(len(self.input_shape) - 1)
        args = (self.input_shape[0], self.input_shape[1:], s.latent_dim, self.depth, channels, s.block)
        self.views = list(s.me_views)
        self.encoders = nn.ModuleList(Encoder(*args, norm=s.norm) for _ in self.views)
        self.decoder = Decoder(*args, norm=s.norm)

    def view(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """The crop as encoder ``name`` sees it (random in training mode, the crop itself in evaluation)."""
        if not self.training or name == "original":
            return x
        if name == "rotation":
            angles = (torch.rand(x.shape[0], device=x.device) * 2 - 1) * math.pi
            return rotate_in_plane(x, angles.to(x.dtype))
        if name == "flip":
            return random_flips(x)
        raise InputError(f"unknown ME-VAE view {name!r}; choose from 'original', 'rotation', 'flip'")

    def encode_parts(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each encoder's ``(mu, logvar)`` on its view, in ``me_views`` order."""
        self._check_input(x)
        parts = []
        for name, encoder in zip(self.views, self.encoders, strict=True):
            mu, logvar = encoder(self.view(x, name))
            parts.append((mu, self._clamp(logvar)))
        return parts

    @property
    def _mean_scale(self) -> float:
        """√K: the mean of K standard normals times √K is standard normal."""
        return math.sqrt(len(self.views))

    def combine(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """Combine per-encoder latents (N, D) by the ``me_combine`` rule (see class notes)."""
        stacked = torch.stack(latents)
        if self.settings.me_combine == "mean":
            return stacked.mean(dim=0) * self._mean_scale
        return stacked.prod(dim=0)

    def combined_posterior(self, parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the combined latent given each encoder's posterior (see class notes)."""
        with full_precision(parts[0][0]):
            mus = torch.stack([mu for mu, _ in parts]).float()
            variances = torch.stack([logvar for _, logvar in parts]).float().exp()
            if self.settings.me_combine == "mean":
                return mus.mean(dim=0) * self._mean_scale, torch.log(variances.sum(dim=0) / len(parts))
            mean = mus.prod(dim=0)
            second_moment = (variances + mus.pow(2)).prod(dim=0)
            return mean, torch.log((second_moment - mean.pow(2)).clamp(min=1e-30))

    def encode(self, x: torch.Tensor, cond: Condition | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.combined_posterior(self.encode_parts(x))

    def decode_logits(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        if self.settings.me_combine == "mean":
            z = z / self._mean_scale  # the decoder takes the plain mean of the encoders' latents
        return self.decoder(z)

    def feature_layer(self) -> nn.Module:
        """Last block of the encoder of the "original" view (the first encoder if there is none)."""
        index = self.views.index("original") if "original" in self.views else 0
        return cast(Encoder, self.encoders[index]).blocks[-1]

    def forward(self, x: torch.Tensor, cond: Condition | None = None, *, sample: bool | None = None) -> VAEOutput:
        parts = self.encode_parts(x)
        samples = [self.sample(mu, logvar, sample) for mu, logvar in parts]
        z = self.combine(samples)
        mu, logvar = self.combined_posterior(parts)
        triples = tuple((m, lv, zk) for (m, lv), zk in zip(parts, samples, strict=True))
        return VAEOutput(self.decode_logits(z), mu, logvar, z, triples)

    def loss(
        self,
        x: torch.Tensor,
        out: VAEOutput,
        *,
        cond: Condition | None = None,
        dataset_size: int | None = None,
        step: int | None = 0,
    ) -> dict[str, torch.Tensor]:
        if out.parts is None:
            raise InputError("the ME-VAE loss needs the per-encoder posteriors: pass the output of MEVAE.forward")
        rec = reconstruction_loss(out.logits, x, self.settings.reconstruction)
        per_encoder = [gaussian_kl(mu, logvar).mean(dim=0) for mu, logvar, _ in out.parts]
        kl_per_dim = torch.stack(per_encoder).sum(dim=0)
        terms = {
            "loss": self._regularised_loss(rec, kl_per_dim, step),
            "rec": rec,
            "kl": kl_per_dim.sum(),
            "kl_per_dim": kl_per_dim,
        }
        terms.update({f"kl_enc{k}": kl.sum() for k, kl in enumerate(per_encoder)})
        return terms


class ConditionalVAE(BetaVAE):
    """Target model of the stacked conditional β-VAE (Statistical Cell).

    The encoder sees (target channels, reference image, label), the decoder
    (z, reference image, label): after every encoder block, at the decoder's
    bottleneck and after every decoder block, the reference image resized to
    that scale and the label broadcast over space each pass a 1×1 conv and are
    added to the features.

    Parameters
    ----------
    settings : ModelSettings
        Uses ``cond_num_labels`` as K.
    input_shape : tuple of int
        (C_target, [Z,] Y, X).
    reference_channels : int
        Number of reference channels Cr.
    """

    def __init__(self, settings: ModelSettings, input_shape: tuple[int, ...], reference_channels: int) -> None:
        super().__init__(settings, input_shape, condition=(reference_channels, settings.cond_num_labels))
        self.reference_channels = reference_channels
        self.num_labels = settings.cond_num_labels

    def _check_condition(self, cond: Condition | None, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if cond is None:
            raise InputError("the conditional target model needs cond=Condition(reference, label)")
        expected = (self.reference_channels, *self.input_shape[1:])
        if tuple(cond.reference.shape[1:]) != expected or cond.reference.shape[0] != batch:
            raise InputError(
                f"reference images must have shape (N={batch}, {', '.join(map(str, expected))}), "
                f"got {tuple(cond.reference.shape)}"
            )
        if self.num_labels == 0:
            return cond.reference, None
        if cond.label is None or tuple(cond.label.shape) != (batch, self.num_labels):
            shape = None if cond.label is None else tuple(cond.label.shape)
            raise InputError(f"labels must be one-hot of shape (N={batch}, K={self.num_labels}), got {shape}")
        return cond.reference, cond.label.to(cond.reference.dtype)

    def encode(self, x: torch.Tensor, cond: Condition | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x)
        reference, label = self._check_condition(cond, x.shape[0])
        mu, logvar = self.encoder(x, reference, label)
        return mu, self._clamp(logvar)

    def decode_logits(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        reference, label = self._check_condition(cond, z.shape[0])
        return self.decoder(z, reference, label)


class StackedConditionalVAE(nn.Module):
    """Stacked conditional β-VAE: a reference model and a target model conditioned on it.

    ``reference`` is an unconditional :class:`BetaVAE` over the
    ``cond_reference_channels``; ``target`` a :class:`ConditionalVAE` over the
    remaining channels, conditioned on the reference image and the label. The
    two are trained separately (reference first), each with its own loss.
    Interpretability tools apply to either submodel.
    """

    def __init__(self, settings: ModelSettings, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        settings.validate()
        self.settings = settings
        self.input_shape = tuple(int(s) for s in input_shape)
        channels = self.input_shape[0]
        self.reference_channels = list(settings.cond_reference_channels)
        if any(c >= channels for c in self.reference_channels) or len(self.reference_channels) >= channels:
            raise InputError(
                f"cond_reference_channels {self.reference_channels} must be channel indices below {channels} "
                "and leave at least one target channel; crops need at least 2 channels for cond-vae"
            )
        self.target_channels = [c for c in range(channels) if c not in self.reference_channels]
        spatial = self.input_shape[1:]
        self.reference = BetaVAE(settings, (len(self.reference_channels), *spatial))
        self.target = ConditionalVAE(settings, (len(self.target_channels), *spatial), len(self.reference_channels))

    def split_channels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reference, target)`` channel subsets of crops (N, C, [Z,] Y, X)."""
        return x[:, self.reference_channels], x[:, self.target_channels]

    def merge_channels(self, reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`split_channels`: the channels back in their original order."""
        merged = reference.new_empty((reference.shape[0], *self.input_shape))
        merged[:, self.reference_channels] = reference
        merged[:, self.target_channels] = target
        return merged

    @torch.no_grad()
    def generate(
        self, n: int, label: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Sample ``n`` synthetic cells (N, C, [Z,] Y, X), channels in the original order.

        ``z_ref ~ N(0, I)`` is decoded to a reference image, then ``z_t ~ N(0, I)``
        is decoded by the target model conditioned on that reference and
        ``label`` (one-hot (n, K); None when ``cond_num_labels`` is 0). Call
        ``.eval()`` first so BatchNorm uses its running statistics.
        """
        device = self.target.latent_scale.device
        d = self.settings.latent_dim
        z_ref = torch.randn(n, d, generator=generator, device=device)
        reference = self.reference.decode(z_ref)
        z_target = torch.randn(n, d, generator=generator, device=device)
        target = self.target.decode(z_target, Condition(reference, label))
        return self.merge_channels(reference, target)


def build_model(settings: ModelSettings, input_shape: tuple[int, ...]) -> MorphoVAE | StackedConditionalVAE:
    """Build the model ``settings.model`` for crops of shape (C, [Z,] Y, X)."""
    settings.validate()
    models = {"beta-vae": BetaVAE, "beta-tcvae": BetaTCVAE, "me-vae": MEVAE, "cond-vae": StackedConditionalVAE}
    return models[settings.model](settings, tuple(input_shape))
