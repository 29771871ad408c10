"""Did the model learn? Diagnostics at the end of a training, and a probe of what the latents know.

Two questions a user of a VAE on real cells must be able to answer without
reading loss curves:

* :func:`diagnose_training` — after every training: the KL to the prior in
  total and per dimension (eval mode; for the ME-VAE each encoder's own KL),
  active units (variance of μ over held-out crops, eval mode), the
  reconstruction SSIM on held-out crops, an n-sample estimate of the
  validation ELBO, the ratio of the spread of μ in train and eval mode (a
  BatchNorm layer whose running statistics do not match the data puts every
  cell at the same point in eval mode), the representation probe when the
  crops' object masks are at hand (crops cut from labels keep them), and a
  plain warning with what to try when the model
  collapsed, learned little, or knows less about the cells than a PCA of
  their pixels. The result is a typed
  :class:`TrainingDiagnostics` that the CLI prints, the bundle stores, the
  report shows and the Train widget warns with.
* :func:`representation_probe` — what the latents know about the cells:
  cross-validated ridge regression (folds grouped by source image) from the
  latent means to the cells' own regionprops measurements
  (:func:`cell_measurements` from the label images, or
  :func:`mask_measurements` from the crops and their object masks), next to
  the same probe on a PCA of the crop pixels with as many components.
  Latents that learned real morphology beat pixel PCA; latents that did not,
  do not.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from skimage.measure import regionprops_table
from skimage.metrics import structural_similarity
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold, KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import InputError
from ..models.losses import gaussian_kl, reconstruction_loss
from ..models.settings import ModelSettings
from ..models.vae import MEVAE, MorphoVAE

#: Var(μ) above which a latent dimension counts as active (Burda et al. 2016).
ACTIVE_THRESHOLD = 0.01
#: Total KL (nats) below which a model has collapsed to the prior.
COLLAPSED_KL = 0.5
#: Mean KL per latent dimension (nats) below which a model has learned little. On real nuclei the first
#: release's defaults reached 1-2.4 nats over 16 dimensions (latents no better than pixel PCA); models
#: that learned shape reached 6-9 (docs/benchmarks.md).
LITTLE_KL_PER_DIM = 0.2
#: Held-out SSIM below which reconstructions do not look like the cells.
POOR_SSIM = 0.5
#: Train-mode / eval-mode spread of μ outside [1/x, x]: normalisation statistics do not match the data.
SPREAD_MISMATCH = 2.0
#: Held-out crops passed as one batch to compare batch statistics with running statistics.
SPREAD_CROPS = 128
#: Samples of z per crop for the validation ELBO of the diagnostics (the Statistical Cell uses 10).
ELBO_SAMPLES = 10
#: Regionprops measured per cell for the probe; 2D-only ones are dropped for 3D labels.
SHAPE_MEASUREMENTS = (
    "area",
    "axis_major_length",
    "axis_minor_length",
    "perimeter",
    "eccentricity",
    "solidity",
    "extent",
)
INTENSITY_MEASUREMENTS = ("intensity_mean", "intensity_max")
_ONLY_2D = {"perimeter", "eccentricity"}
RIDGE_ALPHAS = np.logspace(-3, 3, 13)
#: Cells the end-of-training probe needs: with fewer, its R² says more about the folds than the model.
PROBE_MIN_CELLS = 20
#: Cells measured from crops and masks for a probe, at most (evenly spread over the set): bounds its time.
PROBE_CELLS = 2048
#: Probe ratio (latents / pixel PCA) below which the latents are worse than pixel PCA beyond the probe's own
#: noise: repeated trainings on 50-1 200 real nuclei move the ratio by about ±0.05 (docs/benchmarks.md).
PROBE_WORSE = 0.95


# ---------------------------------------------------------------- training diagnostics


@dataclass
class TrainingDiagnostics:
    """How much a trained VAE learned, measured on held-out crops in eval mode.

    Attributes
    ----------
    n_crops : int
        Held-out crops the figures are computed on.
    kl_total : float
        KL of the posterior to the prior in nats, summed over dimensions,
        averaged over the crops (for the ME-VAE the sum of the encoders' KLs).
    kl_per_dim : list of float
        The same per latent dimension.
    kl_per_encoder : list of float
        ME-VAE only: each encoder's own total KL, in ``me_views`` order.
    probe : ProbeResult or None
        :func:`representation_probe` on the cells of :class:`ProbeCrops`,
        measured from their crops and object masks
        (:func:`mask_measurements`); None when the crops have no masks or
        are too few (``probe_note`` says why).
    active_units : int
        Dimensions whose posterior mean varies over the crops by more than
        ``active_threshold`` (eval mode).
    mu_variance : list of float
        Var(μ) per dimension over the crops, eval mode.
    heldout_ssim : float
        Mean SSIM (data range 1) between held-out crops and their eval-mode
        reconstructions (z = μ); for 3D crops, of the middle z-slice.
    elbo : float
        ELBO per crop in nats, ``−(rec + KL)`` with ``elbo_samples`` samples of
        z per crop (β = 1, whatever the training β).
    elbo_rec, elbo_kl : float
        Its reconstruction and KL terms.
    spread_ratio : float
        Total Var(μ) with the normalisation layers in train mode (batch
        statistics) divided by the same in eval mode (running statistics).
        Near 1 when both agree.
    warnings : list of str
        Plain sentences: what went wrong and what to try. Empty for a model that learned.
    problems : list of str
        The same in one or two words each ("collapsed", "learned little",
        "poor reconstruction", "normalisation mismatch"), for tables.
    """

    n_crops: int
    latent_dim: int
    kl_total: float
    kl_per_dim: list[float]
    active_units: int
    mu_variance: list[float]
    heldout_ssim: float
    elbo: float
    elbo_rec: float
    elbo_kl: float
    elbo_samples: int
    spread_ratio: float
    kl_per_encoder: list[float] = field(default_factory=list)
    active_threshold: float = ACTIVE_THRESHOLD
    probe: ProbeResult | None = None
    probe_note: str | None = None
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def learned(self) -> bool:
        """No warning: the model holds information about the crops and reconstructs them."""
        return not self.warnings

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (for the bundle's ``model.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingDiagnostics:
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in names}
        if isinstance(values.get("probe"), Mapping):
            values["probe"] = ProbeResult.from_dict(values["probe"])
        return cls(**values)

    def lines(self) -> list[str]:
        """The diagnostics as short lines of text (CLI, widget status, report)."""
        kl = sorted(self.kl_per_dim, reverse=True)
        top = ", ".join(f"{v:.2f}" for v in kl[:4])
        lines = [
            f"KL to the prior: {self.kl_total:.2f} nats over {self.latent_dim} dimensions "
            f"(largest {top}{', …' if len(kl) > 4 else ''})",
            f"active units (Var(μ) > {self.active_threshold:g}, eval mode): {self.active_units} of {self.latent_dim}",
            f"held-out reconstruction SSIM: {self.heldout_ssim:.3f} ({self.n_crops} crops)",
            f"validation ELBO ({self.elbo_samples} samples): {self.elbo:.2f} nats per crop "
            f"(reconstruction {self.elbo_rec:.2f}, KL {self.elbo_kl:.2f})",
            f"spread of μ, train-mode / eval-mode normalisation: {self.spread_ratio:.3g}",
        ]
        if self.kl_per_encoder:
            lines.append("KL per encoder: " + ", ".join(f"{v:.2f}" for v in self.kl_per_encoder) + " nats")
        if self.probe is not None:
            lines.append(f"what the latents know about the cells: {self.probe.summary()}")
        elif self.probe_note:
            lines.append(f"representation probe not run: {self.probe_note}")
        return lines + [f"WARNING: {w}" for w in self.warnings]


def diagnose_training(
    model: MorphoVAE,
    images: Any,
    *,
    batch_size: int = 64,
    elbo_samples: int = ELBO_SAMPLES,
    seed: int = 0,
    probe_crops: ProbeCrops | None = None,
) -> TrainingDiagnostics:
    """Measure what a trained model learned, on held-out crops ``images`` (N, C, [Z,] Y, X) in [0, 1].

    ``model`` is a ``MorphoVAE`` (for the conditional model pass its
    ``reference`` submodel with the reference channels). It is left as it
    was (mode, weights and normalisation statistics). Use crops the model
    did not train on, e.g. the validation split.

    With ``probe_crops`` (crops with their object masks) the representation
    probe runs on them too (:func:`probe_from_masks`).
    """
    n = int(images.shape[0])
    if n < 2:
        raise InputError(f"diagnostics need at least 2 held-out crops, got {n}")
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator().manual_seed(seed)
        mus, kls, encoder_kls, rec_sum, kl_sum = [], [], [], 0.0, 0.0
        ssims: list[float] = []
        with torch.no_grad():
            for start in range(0, n, batch_size):
                x = torch.as_tensor(np.asarray(images[start : start + batch_size], dtype=np.float32))
                x = x.to(_device(model))
                mu, logvar, parts = _posterior(model, x)
                mus.append(mu.float().cpu())
                kls.append(_kl_rows(mu, logvar, parts).cpu())
                if parts is not None:
                    encoder_kls.append(torch.stack([gaussian_kl(m, lv).sum(dim=1) for m, lv in parts], 1).cpu())
                recon = model.decode(mu)
                ssims.extend(_ssim(a, b) for a, b in zip(x.cpu().numpy(), recon.float().cpu().numpy(), strict=True))
                rec, kl = _elbo_terms(model, x, mu, logvar, parts, elbo_samples, generator)
                rec_sum += rec * len(x)
                kl_sum += kl * len(x)
        mu_all = torch.cat(mus).numpy().astype(float)
        kl_rows = torch.cat(kls).numpy().astype(float)
        variance = mu_all.var(axis=0)
        ratio = _spread_ratio(model, images)
    finally:
        model.train(was_training)
    kl_per_dim = kl_rows.mean(axis=0)
    diagnostics = TrainingDiagnostics(
        n_crops=n,
        latent_dim=int(mu_all.shape[1]),
        kl_total=float(kl_per_dim.sum()),
        kl_per_dim=[float(v) for v in kl_per_dim],
        active_units=int(np.sum(variance > ACTIVE_THRESHOLD)),
        mu_variance=[float(v) for v in variance],
        heldout_ssim=float(np.mean(ssims)),
        elbo=-(rec_sum + kl_sum) / n,
        elbo_rec=rec_sum / n,
        elbo_kl=kl_sum / n,
        elbo_samples=elbo_samples,
        spread_ratio=ratio,
        kl_per_encoder=[float(v) for v in torch.cat(encoder_kls).mean(dim=0)] if encoder_kls else [],
    )
    if probe_crops is not None:
        diagnostics.probe, diagnostics.probe_note = probe_from_masks(
            model, probe_crops, batch_size=batch_size, seed=seed
        )
    found = training_problems(diagnostics, getattr(model, "settings", None))
    diagnostics.problems, diagnostics.warnings = [p for p, _ in found], [w for _, w in found]
    return diagnostics


@dataclass
class ProbeCrops:
    """Cells for the end-of-training probe: crops with their object masks, source images, the PCA's crops.

    The probe is cross-validated, so it may use the crops the model trained
    on (the model never saw the measurements); using a spread of the whole
    set rather than the held-out split alone keeps several images on each
    side of the folds (as the sweep does).
    """

    images: np.ndarray  # (N, C, [Z,] Y, X) in [0, 1]
    masks: np.ndarray  # (N, [Z,] Y, X) bool
    groups: np.ndarray | None = None  # source image of every crop
    pca_fit: np.ndarray | None = None  # crops the pixel PCA is fitted on (the training crops); default: images


def probe_from_masks(
    model: MorphoVAE, crops: ProbeCrops, *, batch_size: int = 64, seed: int = 0
) -> tuple[ProbeResult | None, str | None]:
    """:func:`representation_probe` of the model's eval-mode latent means on cells measured from crop and mask.

    Returns ``(probe, None)``, or ``(None, why)`` when too few cells have a
    mask or no measurement varies. The model is left as it was.
    """
    images = np.asarray(crops.images, dtype=np.float32)
    measurements = mask_measurements(crops.masks, images if images.shape[1] == 1 else None)
    measured = measurements.notna().all(axis=1).to_numpy()
    if measured.sum() < PROBE_MIN_CELLS:
        return None, f"{int(measured.sum())} cells have an object mask; the probe needs {PROBE_MIN_CELLS}"
    images = images[measured]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mu = np.concatenate(
                [
                    _posterior(model, torch.as_tensor(images[i : i + batch_size]).to(_device(model)))[0]
                    .float()
                    .cpu()
                    .numpy()
                    for i in range(0, len(images), batch_size)
                ]
            )
    finally:
        model.train(was_training)
    groups = None if crops.groups is None else np.asarray(crops.groups)[measured]
    try:
        probe = representation_probe(
            mu, images, measurements[measured].reset_index(drop=True), groups, pca_fit=crops.pca_fit, seed=seed
        )
    except InputError as err:
        return None, str(err)
    return probe, None


def _learning_advice(settings: ModelSettings | None, *, warm_up: bool) -> str:
    """What to try for a model that learned too little: only the remedies its settings do not already use."""
    remedies = ["Train for more steps", "lower beta" + ("" if settings is None else f" (now {settings.beta:g})")]
    if settings is None or settings.reconstruction != "bce":
        remedies.append("use reconstruction 'bce'")
    if warm_up and (settings is None or settings.kl_schedule == "none"):
        remedies.append("add a KL warm-up (kl_schedule 'linear')")
    return ", ".join(remedies[:-1]) + " or " + remedies[-1] if len(remedies) > 1 else remedies[0]


def training_problems(d: TrainingDiagnostics, settings: ModelSettings | None = None) -> list[tuple[str, str]]:
    """``(problem, warning)`` pairs: a short name and a plain sentence with what to try,
    for a model that did not learn; ``settings`` (the model's) leave out the remedies already in use."""
    warnings = []
    if d.kl_total < COLLAPSED_KL or d.active_units == 0:
        warnings.append(
            (
                "collapsed",
                f"the model has collapsed to the prior (KL {d.kl_total:.2f} nats, {d.active_units} active units): "
                f"its latents say nothing about the cells. {_learning_advice(settings, warm_up=True)}.",
            )
        )
    elif d.kl_total < LITTLE_KL_PER_DIM * d.latent_dim:
        warnings.append(
            (
                "learned little",
                f"the model learned little: {d.kl_total:.2f} nats of KL over {d.latent_dim} dimensions "
                f"(under {LITTLE_KL_PER_DIM:g} per dimension). {_learning_advice(settings, warm_up=False)}; "
                "check the loss curves still fell at the end.",
            )
        )
    if d.heldout_ssim < POOR_SSIM:
        warnings.append(
            (
                "poor reconstruction",
                f"held-out reconstructions look little like the crops (SSIM {d.heldout_ssim:.2f}). "
                "Train for more steps, or check the crops are centred on single cells and normalised.",
            )
        )
    if not 1 / SPREAD_MISMATCH <= d.spread_ratio <= SPREAD_MISMATCH:
        warnings.append(
            (
                "normalisation mismatch",
                f"the latents spread {d.spread_ratio:.3g}× as much with batch statistics as in eval mode: the "
                "BatchNorm running statistics do not match the held-out crops, so embeddings and traversals "
                "normalise every cell wrongly. Check the held-out crops are like the training crops (same "
                "preprocessing), retrain (training averages the statistics over the training crops at the end), "
                "or use norm 'group'.",
            )
        )
    if d.probe is not None and d.probe.ratio < PROBE_WORSE:
        warnings.append(("worse than pixel PCA", probe_warning(d.probe)))
    return warnings


def probe_warning(probe: ProbeResult) -> str:
    """The plain warning for latents that know less about the cells than a PCA of their pixels, with what to try."""
    return (
        f"the latents describe the cells' size, shape and brightness less well than a plain PCA of the crop pixels "
        f"does (mean R² {probe.latent_mean:.2f} against {probe.pca_mean:.2f}, ratio {probe.ratio:.2f}, "
        f"{probe.n_cells} cells): the model has not learned more about these cells than simple pixel statistics "
        "would tell you. Try more crops (more images), more training steps, a lower beta (the model keeps "
        "more detail), or flips and 90° turns when the cells lie at random angles; check each crop shows "
        "one cell, centred. Until then, read differences between conditions in the latents with care."
    )


def _device(model: torch.nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _posterior(model: MorphoVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list | None]:
    """``(mu, logvar, parts)``: parts are the ME-VAE encoders' own posteriors (None for other models)."""
    if isinstance(model, MEVAE):
        parts = model.encode_parts(x)
        mu, logvar = model.combined_posterior(parts)
        return mu, logvar, parts
    mu, logvar = model.encode(x)
    return mu, logvar, None


def _kl_rows(mu: torch.Tensor, logvar: torch.Tensor, parts: list | None) -> torch.Tensor:
    """KL per crop and dimension: the model's own (the sum of the encoders' KLs for the ME-VAE)."""
    if parts is None:
        return gaussian_kl(mu, logvar)
    return torch.stack([gaussian_kl(m, lv) for m, lv in parts]).sum(dim=0)


def _elbo_terms(
    model: MorphoVAE,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    parts: list | None,
    samples: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    """Batch means of the reconstruction term over ``samples`` draws of z, and of the KL."""
    kind = model.settings.reconstruction
    rec = 0.0
    for _ in range(samples):
        if isinstance(model, MEVAE) and parts is not None:
            z = model.combine([m + torch.exp(0.5 * lv) * _normal(m, generator) for m, lv in parts])
        else:
            z = mu + torch.exp(0.5 * logvar) * _normal(mu, generator)
        rec += float(reconstruction_loss(model.decode_logits(z), x, kind)) / samples
    return rec, float(_kl_rows(mu, logvar, parts).sum(dim=1).mean())


def _normal(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator).to(like.device, like.dtype)


def _ssim(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """SSIM of one crop (C, [Z,] Y, X), mean over channels; the middle z-slice of 3D crops."""
    values = []
    for a, b in zip(original, reconstruction, strict=True):
        if a.ndim == 3:
            a, b = a[a.shape[0] // 2], b[b.shape[0] // 2]
        window = min(7, (min(a.shape) - 1) // 2 * 2 + 1)  # odd, at most 7, within the crop
        if window < 3:
            raise InputError(f"crops of spatial shape {a.shape} are too small for SSIM (each axis needs 3 pixels)")
        values.append(structural_similarity(a, b, data_range=1.0, win_size=window))
    return float(np.mean(values))


def _spread_ratio(model: MorphoVAE, images: Any) -> float:
    """Total Var(μ) of the same crops with BatchNorm using their batch statistics, over the same in eval mode.

    Up to :data:`SPREAD_CROPS` crops go through as one batch, so the batch
    statistics are those of the held-out data, not of a few crops. A copy of
    the model is used: the running statistics of ``model`` stay untouched.
    """
    probe = copy.deepcopy(model).eval()
    norms = [m for m in probe.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    n = int(images.shape[0])
    if not norms or n < 2:
        return 1.0
    rows = np.unique(np.linspace(0, n - 1, min(n, SPREAD_CROPS)).round().astype(int))
    x = torch.as_tensor(np.asarray(images[rows], dtype=np.float32)).to(_device(probe))
    with torch.no_grad():
        eval_variance = float(_posterior(probe, x)[0].double().var(dim=0, unbiased=False).sum())
        for module in norms:
            module.train()
        train_variance = float(_posterior(probe, x)[0].double().var(dim=0, unbiased=False).sum())
    if eval_variance <= 0:
        return math.inf if train_variance > 0 else 1.0
    return train_variance / eval_variance


# ---------------------------------------------------------------- representation probe


@dataclass
class ProbeResult:
    """Cross-validated R² of ridge probes from two representations to the cells' measurements.

    ``latent_r2`` and ``pca_r2`` map each measurement to the out-of-fold R²
    of the probe from the latent means and from a PCA of the crop pixels
    with ``n_components`` components (fitted on ``fit`` rows only).
    ``grouped`` says whether the folds kept every source image on one side.
    """

    latent_r2: dict[str, float]
    pca_r2: dict[str, float]
    n_cells: int
    n_components: int
    folds: int
    grouped: bool
    note: str | None = None

    @property
    def latent_mean(self) -> float:
        return float(np.mean(list(self.latent_r2.values())))

    @property
    def pca_mean(self) -> float:
        return float(np.mean(list(self.pca_r2.values())))

    @property
    def ratio(self) -> float:
        """Mean R² of the latents over that of pixel PCA (> 1: the latents know more)."""
        return self.latent_mean / self.pca_mean if self.pca_mean > 0 else math.inf

    def summary(self) -> str:
        """One line: both mean R², the ratio and how the folds were made."""
        how = "folds grouped by source image" if self.grouped else "random folds (one source image)"
        return (
            f"ridge-probe R² to their regionprops {self.latent_mean:.3f} (latents) against {self.pca_mean:.3f} "
            f"({self.n_components}-component pixel PCA), ratio {self.ratio:.3f}; {self.n_cells} cells, "
            f"{self.folds} {how}"
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})

    def rows(self) -> list[tuple[str, float, float]]:
        """``(measurement, latent R², PCA R²)`` per measurement."""
        return [(name, self.latent_r2[name], self.pca_r2[name]) for name in self.latent_r2]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "latent_mean": self.latent_mean, "pca_mean": self.pca_mean, "ratio": self.ratio}


def probe_folds(
    groups: Sequence[Any] | None, n: int, folds: int = 5, seed: int = 0
) -> tuple[Any, np.ndarray | None, str | None]:
    """A cross-validation splitter: folds by source image when there are at least 2 sources.

    Returns ``(splitter, groups or None, note)``. Crops of one image share
    illumination, focus and neighbours; keeping an image on one side stops
    the probe from learning the image instead of the cell. With a single
    source the folds are random and the note says so.
    """
    if groups is not None:
        sources = np.asarray(groups).astype(str)
        n_groups = len(np.unique(sources))
        if n_groups >= 2:
            return GroupKFold(n_splits=min(folds, n_groups)), sources, None
    note = "all cells come from one image, so the probe's folds could not be grouped by source image"
    return KFold(n_splits=min(folds, n), shuffle=True, random_state=seed), None, note


def ridge_probe_r2(
    features: np.ndarray, targets: pd.DataFrame, groups: Sequence[Any] | None = None, *, folds: int = 5, seed: int = 0
) -> dict[str, float]:
    """Out-of-fold R² of a standardised ridge regression (α chosen by inner CV) per target column.

    Folds are grouped by ``groups`` (source image) when there are two or more
    (:func:`probe_folds`). R² is computed once over all out-of-fold predictions.
    """
    x = np.asarray(features, dtype=float)
    if x.ndim != 2 or len(x) != len(targets):
        raise InputError(f"the probe needs one feature row per cell: {x.shape} features for {len(targets)} cells")
    if len(x) < 2 * folds and len(x) < 10:
        raise InputError(f"the probe needs at least 10 cells, got {len(x)}")
    splitter, groups_array, _ = probe_folds(groups, len(x), folds, seed)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    scores = {}
    for name in targets.columns:
        y = targets[name].to_numpy(dtype=float)
        predicted = cross_val_predict(model, x, y, cv=splitter, groups=groups_array)
        scores[name] = float(r2_score(y, predicted))
    return scores


def pixel_pca(images: Any, n_components: int, fit: Any | None = None) -> np.ndarray:
    """Scores of every crop on the first ``n_components`` principal components of the crop pixels.

    The PCA is fitted on the crops ``fit`` (default: ``images``; pass the
    model's training crops, so both representations learn from the same
    crops) and applied to ``images``.
    """
    pixels = np.asarray(images, dtype=np.float32).reshape(int(images.shape[0]), -1)
    fit = pixels if fit is None else np.asarray(fit, dtype=np.float32).reshape(int(fit.shape[0]), -1)
    components = min(n_components, *fit.shape)
    return PCA(n_components=components, random_state=0).fit(fit).transform(pixels)


def representation_probe(
    mu: np.ndarray,
    images: Any,
    measurements: pd.DataFrame,
    groups: Sequence[Any] | None = None,
    *,
    pca_fit: Any | None = None,
    folds: int = 5,
    seed: int = 0,
) -> ProbeResult:
    """Ridge-probe R² from the latent means and from pixel PCA (same number of components) to measurements.

    Parameters
    ----------
    mu : array (N, D)
        Latent means of the cells (eval mode).
    images : array (N, C, [Z,] Y, X)
        The same cells' crops.
    measurements : DataFrame
        One row per cell, one column per measurement (:func:`cell_measurements`).
    groups : sequence, optional
        Source image of every cell: folds keep an image on one side.
    pca_fit : array (M, C, [Z,] Y, X), optional
        Crops the PCA is fitted on (the model's training crops, which may be
        other crops than the probed ones); default: ``images``.
    """
    mu = np.asarray(mu, dtype=float)
    usable = measurements.loc[:, measurements.notna().all() & (measurements.std() > 0)]
    if usable.shape[1] == 0:
        raise InputError("no measurement varies over the cells; the probe has nothing to predict")
    pca = pixel_pca(images, mu.shape[1], pca_fit)
    _, _, note = probe_folds(groups, len(mu), folds, seed)
    n_folds = (
        min(folds, len(np.unique(np.asarray(groups).astype(str)))) if groups is not None and note is None else folds
    )
    return ProbeResult(
        latent_r2=ridge_probe_r2(mu, usable, groups, folds=folds, seed=seed),
        pca_r2=ridge_probe_r2(pca, usable, groups, folds=folds, seed=seed),
        n_cells=len(mu),
        n_components=int(pca.shape[1]),
        folds=n_folds,
        grouped=note is None,
        note=note,
    )


def _measure(label_image: np.ndarray, intensity: np.ndarray | None) -> pd.DataFrame:
    """Regionprops of every object of ``label_image``, indexed by label: the probe's measurements."""
    names = [m for m in SHAPE_MEASUREMENTS if label_image.ndim == 2 or m not in _ONLY_2D]
    if intensity is not None:
        names += list(INTENSITY_MEASUREMENTS)
    props = pd.DataFrame(regionprops_table(label_image, intensity_image=intensity, properties=["label", *names]))
    return props.set_index("label")


def mask_measurements(masks: np.ndarray, images: np.ndarray | None = None) -> pd.DataFrame:
    """Regionprops of the object in every crop, from its mask ``(N, [Z,] Y, X)``, one row per crop.

    The same measurements as :func:`cell_measurements`, in crop pixels (the
    cell as the model sees it, after any resize), without the label images:
    crop sets cut from labels keep each object's mask. ``images`` (N, 1,
    [Z,] Y, X), single-channel crops, add the intensity measurements. A crop
    whose mask is empty gets a row of NaN.
    """
    rows = []
    for i, mask in enumerate(np.asarray(masks, dtype=bool)):
        intensity = None if images is None else np.asarray(images[i, 0])
        rows.append(_measure(mask.astype(np.uint8), intensity).reindex([1]))
    return pd.concat(rows, ignore_index=True)


def cell_measurements(
    table: pd.DataFrame, labels: Mapping[str, np.ndarray], intensities: Mapping[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """Regionprops shape (and intensity) measurements of every crop's cell, one row per table row.

    Parameters
    ----------
    table : DataFrame
        A crop table (``source``, ``label_id``, ``t``).
    labels : mapping
        Source name -> label image ``[T,] [Z,] Y, X`` the crops were cut from.
    intensities : mapping, optional
        Source name -> the raw intensity image (one channel, same shape as
        its labels) for ``intensity_mean`` and ``intensity_max``.

    Returns
    -------
    DataFrame
        :data:`SHAPE_MEASUREMENTS` (without perimeter and eccentricity in 3D)
        and, with intensities, :data:`INTENSITY_MEASUREMENTS`; NaN for a crop
        whose source or label is not found.
    """
    spatial = 3 if "z_start" in table.columns else 2
    rows = []
    for (source, t), part in table.groupby(["source", "t"], sort=False):
        if str(source) not in labels:
            raise InputError(f"no label image given for source {source!r}; pass one for every source of the crops")
        label_image = np.asarray(labels[str(source)])
        intensity = None if intensities is None else np.asarray(intensities[str(source)])
        if label_image.ndim > spatial:  # a time axis first
            label_image = label_image[int(t)]
            intensity = None if intensity is None else intensity[int(t)]
        found = _measure(label_image, intensity).reindex(part["label_id"].astype(int).to_numpy())
        found.index = part.index
        rows.append(found)
    return pd.concat(rows).reindex(table.index)
