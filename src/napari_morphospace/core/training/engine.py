"""One training engine for the viewer and the cluster, on PyTorch Lightning.

The widget and the ``morphospace train`` command both call :func:`train`.
Lightning's ``Trainer`` owns devices, precision, distribution (DDP, SLURM),
checkpointing and early stopping; :class:`VAEModule` adapts any plain
``MorphoVAE`` ``nn.Module`` to it. Progress leaves the engine only as typed
messages (:class:`TrainUpdate`, :class:`ReconstructionPreview`,
:class:`TrainFinished`, :class:`TrainFailed`) passed to an ``on_update``
callable, so the engine never touches a widget; stopping is cooperative
through an event checked after every optimisation step.

Reproducibility: every random draw of a training step (augmentation,
reparameterisation noise, ME-VAE views) comes from a generator reseeded from
``(seed, global step, rank)``, and batches come from a sampler seeded from
``(seed, epoch)``. A run resumed from an epoch-end checkpoint therefore
continues exactly as the uninterrupted run would have, without storing RNG
state in the checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Protocol

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..cells.crop_set import CropSet
from ..errors import InputError
from ..models import MEVAE, Condition, ModelSettings, MorphoVAE, StackedConditionalVAE, build_model
from .bundle import Bundle, new_bundle
from .checkpoints import AtomicCheckpointIO, BestCheckpoint, RunCheckpoints, checkpoint_run_id, new_run_id
from .dataset import CropDataset
from .diagnostics import PROBE_CELLS, ProbeCrops, TrainingDiagnostics, diagnose_training

log = logging.getLogger(__name__)

Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Precision = Literal["32-true", "bf16-mixed", "16-mixed"]
PREVIEW_CROPS = 4
#: Held-out crops the end-of-training diagnostics look at, at most.
DIAGNOSTIC_CROPS = 2048


@dataclass
class TrainSettings:
    """How to train: data split, augmentation, optimiser, devices and checkpoints.

    One definition used by the Train widget form, the ``training:`` section of
    the YAML config and :func:`train`. Device settings pass straight to
    Lightning's ``Trainer``: ``accelerator="cuda", devices=[1]`` is "cuda:1";
    ``devices=4, strategy="ddp"`` trains data-parallel on four GPUs and
    ``num_nodes`` spreads that over machines (under SLURM, Lightning reads the
    ranks from the environment).
    """

    epochs: int | None = None
    min_steps: int = 3000
    batch_size: int | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    split: Literal["source", "random"] = "source"
    augment_flips: bool | None = None
    augment_rot90: bool | None = None
    augment_small_rotations: bool = False
    early_stopping_patience: int | None = None
    seed: int = 0
    accelerator: Accelerator = "auto"
    devices: int | list[int] | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Precision = "32-true"
    gradient_clip_val: float | None = 1.0
    num_workers: int = 0
    checkpoint_dir: str | None = None
    label_column: str | None = None
    preview_every_n_epochs: int = 5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse settings that cannot train, saying which value to change."""
        positive = {
            "epochs": self.epochs,
            "min_steps": self.min_steps,
            "batch_size": self.batch_size,
            "num_nodes": self.num_nodes,
            "preview_every_n_epochs": self.preview_every_n_epochs,
        }
        for name, value in positive.items():
            if value is not None and value < 1:
                raise InputError(f"training.{name} is {value}; it must be at least 1")
        if self.batch_size is not None and self.batch_size < 3:
            raise InputError(
                f"training.batch_size is {self.batch_size}; use at least 3 (the beta-TCVAE estimator "
                "compares every crop of a batch with the others)"
            )
        if not self.learning_rate > 0:
            raise InputError(f"training.learning_rate is {self.learning_rate}; use a positive value such as 1e-3")
        if self.weight_decay < 0:
            raise InputError(f"training.weight_decay is {self.weight_decay}; use 0 or a positive value")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"training.val_fraction is {self.val_fraction}; use a fraction between 0 and 1, e.g. 0.2")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise InputError("training.early_stopping_patience must be at least 1 epoch, or empty to switch it off")
        if self.gradient_clip_val is not None and not self.gradient_clip_val > 0:
            raise InputError("training.gradient_clip_val must be positive (e.g. 1.0), or empty to switch clipping off")
        if self.num_workers < 0:
            raise InputError(f"training.num_workers is {self.num_workers}; use 0 (load in the main process) or more")
        if isinstance(self.devices, str) and self.devices != "auto":
            raise InputError(
                f"training.devices is {self.devices!r}; use 'auto', a device count or a list of device ids"
            )


#: Batch size when ``batch_size`` is empty: an eighth of the training crops, within these bounds.
AUTO_BATCH_SIZE = (8, 64)


#: Models whose training crops are flipped and turned by default (the macrophage study augmented only its ME-VAE).
AUGMENTED_MODELS = ("me-vae",)


def augmentation_for(settings: TrainSettings, model: str) -> dict[str, bool]:
    """Keyword arguments of :func:`augment_batch`: the settings, or (empty) the default of the model type.

    Flips and 90° turns are on by default for the ME-VAE only, as in the
    macrophage study. They would undo the Statistical Cell's alignment on the
    major axis (``cond-vae``), and the study trained its β-VAE and β-TCVAE on
    the crops as they are.
    """
    default = model in AUGMENTED_MODELS
    return {
        "flips": default if settings.augment_flips is None else settings.augment_flips,
        "rot90": default if settings.augment_rot90 is None else settings.augment_rot90,
        "small_rotations": settings.augment_small_rotations,
    }


def batch_size_for(settings: TrainSettings, n_train: int) -> int:
    """The batch size to train with: the setting, or (empty) an eighth of the training crops in [8, 64].

    Small crop sets get small batches, so an epoch holds several optimiser
    steps; never more crops than there are (and at least 3, for β-TCVAE).
    """
    if settings.batch_size is not None:
        return settings.batch_size
    low, high = AUTO_BATCH_SIZE
    return max(3, min(n_train, high, max(low, n_train // 8)))


def epochs_for(settings: TrainSettings, n_train: int, batch_size: int, world_size: int = 1) -> int:
    """The epochs to train: the setting, or (empty) enough for at least ``min_steps`` optimiser steps.

    What a VAE learns depends on the number of optimiser steps, not of
    epochs: 50 epochs of 125 crops in batches of 64 are 50 steps, which
    learn nothing. Each of ``world_size`` processes (DDP) takes one batch per step.
    """
    if settings.epochs is not None:
        return settings.epochs
    steps_per_epoch = max(1, n_train // (batch_size * world_size))
    return math.ceil(settings.min_steps / steps_per_epoch)


@dataclass
class TrainConfig:
    """A whole training configuration: the ``model:`` and ``training:`` sections of a YAML file.

    The Train widget saves one with ``core.config.save_config`` and
    ``morphospace train --config`` reads it with ``load_config``.
    """

    model: ModelSettings = field(default_factory=ModelSettings)
    training: TrainSettings = field(default_factory=TrainSettings)


# ---------------------------------------------------------------- messages


@dataclass
class TrainUpdate:
    """Progress of a running training, sent after steps (throttled) and after every epoch.

    ``val_losses`` and ``kl_per_dim`` (KL per latent dimension in nats,
    averaged over the epoch's training steps) are filled at the end of an
    epoch only, when ``train_losses`` holds the epoch means of every term;
    within an epoch ``train_losses`` holds the current step's ``loss``.
    ``eta_s`` is ``None`` until the first step has been timed. ``stage`` is ``"model"``, or ``"reference"`` /
    ``"target"`` for the two stages of the conditional model.
    """

    epoch: int
    step: int
    total_steps: int
    train_losses: dict[str, float]
    val_losses: dict[str, float] | None
    kl_per_dim: list[float] | None
    elapsed_s: float
    eta_s: float | None
    stage: str = "model"


@dataclass
class ReconstructionPreview:
    """A few fixed validation crops and their reconstructions, ``(n, C, [Z,] Y, X)`` float32 in [0, 1].

    For the stages of the conditional model, ``C`` covers that stage's
    channels (reference or target) only.
    """

    epoch: int
    originals: np.ndarray
    reconstructions: np.ndarray
    stage: str = "model"


@dataclass
class TrainFinished:
    """Training ended normally, by early stopping or by the user; the checkpoints are usable."""

    best_checkpoint: str | None
    best_val_loss: float | None
    stopped_early: bool
    stopped_by_user: bool


@dataclass
class TrainFailed:
    """Training stopped on an error; ``message`` says what happened and what to try."""

    message: str


TrainMessage = TrainUpdate | ReconstructionPreview | TrainFinished | TrainFailed


class StopFlag(Protocol):
    """Anything with ``is_set()``, e.g. a ``threading.Event`` set by the Stop button."""

    def is_set(self) -> bool: ...


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (eval mode, CPU) and where its checkpoints are.

    ``model_settings`` are the settings the model was built with (for the
    conditional model ``cond_num_labels`` is filled in from the label column);
    ``label_classes`` are that column's values in one-hot order. Under DDP
    every process returns a result; only the one with ``is_global_zero``
    should write files. ``steps`` (optimiser steps, all stages), ``epochs``
    and ``batch_size`` are what the run used, with the automatic values
    filled in; ``diagnostics`` says what the model learned
    (:func:`~napari_morphospace.core.training.diagnostics.diagnose_training` on the
    held-out crops).
    """

    model: MorphoVAE | StackedConditionalVAE
    model_settings: ModelSettings
    label_classes: list[Any]
    history: list[dict[str, float]]
    best_checkpoint: str | None
    last_checkpoint: str | None
    best_val_loss: float | None
    stopped_early: bool
    stopped_by_user: bool
    checkpoint_dir: str
    train_size: int
    val_size: int
    is_global_zero: bool = True
    notes: list[str] = field(default_factory=list)
    steps: int = 0
    epochs: int = 0
    batch_size: int = 0
    diagnostics: TrainingDiagnostics | None = None


# ---------------------------------------------------------------- data split


@dataclass
class DataSplit:
    """Indices of the crops used for training and validation, and how they were chosen."""

    train: np.ndarray
    val: np.ndarray
    method: Literal["source", "random"]
    note: str | None = None


def split_crops(
    table: pd.DataFrame, *, val_fraction: float, method: Literal["source", "random"], seed: int
) -> DataSplit:
    """Choose validation crops, by whole source image (no leakage) or at random.

    With ``method="source"`` every crop of a source image lands on the same
    side, so crops of one field of view never appear in both sets (they share
    illumination, focus and neighbouring cells, which would flatter the
    validation loss). Sources are shuffled with ``seed`` and moved to
    validation until at least ``val_fraction`` of the crops are there. With a
    single source this is impossible; the split falls back to random crops
    and says so in ``note``.
    """
    n = len(table)
    if n < 2:
        raise InputError(f"the crop set has {n} crop(s); training needs at least 2 (one to train, one to validate)")
    rng = np.random.default_rng(seed)
    sources = table["source"].astype(str).to_numpy()
    unique = np.unique(sources)
    note = None
    if method == "source" and len(unique) < 2:
        note = (
            f"all crops come from one source ({unique[0]!r}), so the validation crops cannot be held out by "
            "source; falling back to a random split. Crops from the same image in both sets make the "
            "validation loss optimistic; add crops from more images to avoid this."
        )
        method = "random"
    if method == "random":
        order = rng.permutation(n)
        n_val = min(max(1, round(val_fraction * n)), n - 1)
        return DataSplit(np.sort(order[n_val:]), np.sort(order[:n_val]), "random", note)
    val_sources: list[str] = []
    n_val = 0
    for source in rng.permutation(unique)[:-1]:  # keep at least one source for training
        if n_val >= val_fraction * n:
            break
        val_sources.append(source)
        n_val += int(np.sum(sources == source))
    is_val = np.isin(sources, val_sources)
    return DataSplit(np.flatnonzero(~is_val), np.flatnonzero(is_val), "source", note)


# ---------------------------------------------------------------- augmentation


def augment_batch(x: torch.Tensor, *, flips: bool, rot90: bool, small_rotations: bool) -> torch.Tensor:
    """Randomly flip and rotate each crop of a batch ``(B, C, [Z,] Y, X)`` in the Y–X plane.

    Morphology does not depend on the cell's orientation on the slide, so
    these views are free extra data. Z is never flipped: top and bottom of a
    3D cell (coverslip side) differ. 90° rotations are applied only to square
    crops. Small rotations draw an angle in ±15° per crop and resample
    bilinearly with zero (background) padding. All channels of a crop move
    together, so the reference and target channels of the conditional model
    stay aligned. Random draws use torch's global generator, which
    :class:`VAEModule` reseeds per step.
    """
    batch = x.shape[0]
    spatial = (1,) * (x.ndim - 1)
    if flips:
        for dim in (-1, -2):
            chosen = torch.rand(batch, device=x.device).view(batch, *spatial) < 0.5
            x = torch.where(chosen, x.flip(dim), x)
    if rot90 and x.shape[-1] == x.shape[-2]:
        k = torch.randint(0, 4, (batch,), device=x.device).view(batch, *spatial)
        x = sum(
            (torch.where(k == turns, torch.rot90(x, turns, dims=(-2, -1)), 0.0) for turns in range(4)),
            torch.zeros_like(x),
        )
    if small_rotations:
        x = _rotate_yx(x, (torch.rand(batch, device=x.device) * 2 - 1) * math.radians(15))
    return x


def _rotate_yx(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each crop by ``angles`` (radians) about its centre in the Y–X plane."""
    height, width = x.shape[-2], x.shape[-1]
    cos, sin = torch.cos(angles), torch.sin(angles)
    n_spatial = x.ndim - 2
    theta = torch.zeros(x.shape[0], n_spatial, n_spatial + 1, device=x.device, dtype=x.dtype)
    # affine_grid works in coordinates normalised to [-1, 1] per axis; the
    # aspect factors keep the rotation rigid on non-square crops.
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
    if n_spatial == 3:
        theta[:, 2, 2] = 1.0
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _reseed(*keys: int) -> None:
    """Seed torch's global generator from a tuple of integers (seed, step, rank, ...)."""
    torch.manual_seed(int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]))


# ---------------------------------------------------------------- Lightning module


Stage = Literal["model", "reference", "target"]


class VAEModule(L.LightningModule):
    """Adapts a plain ``MorphoVAE`` (or one stage of a ``StackedConditionalVAE``) to Lightning.

    The model stays an ``nn.Module`` usable without Lightning; this class only
    adds the training step, logging and the optimiser. Every loss term the
    model returns is logged as ``train_<term>`` / ``val_<term>`` (epoch
    means); the per-dimension KL is accumulated for progress messages.

    Parameters
    ----------
    model : nn.Module
        The whole model. For ``stage="reference"``/``"target"`` this is the
        stacked conditional model; only that stage's sub-model is optimised,
        but checkpoints hold all weights, so a target-stage checkpoint carries
        the trained reference too.
    train_size : int
        Number of training crops: the dataset size N of the β-TCVAE estimator
        (never the batch size).
    augment : dict
        Keyword arguments of :func:`augment_batch`.
    num_labels : int
        One-hot width of the target stage's label (0: no label).
    """

    def __init__(
        self,
        model: MorphoVAE | StackedConditionalVAE,
        *,
        learning_rate: float,
        weight_decay: float,
        train_size: int,
        seed: int,
        augment: dict[str, bool],
        stage: Stage = "model",
        num_labels: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.train_size = train_size
        self.seed = seed
        self.augment = augment
        self.stage = stage
        self.num_labels = num_labels
        self.nonfinite_step: int | None = None
        self._good: _GoodState | None = None
        self._step = 0
        self._kl_sum: torch.Tensor | None = None
        self._kl_batches = 0
        # Freeze the other stage, so DDP does not wait for gradients it never gets.
        model.requires_grad_(False)
        self.trained.requires_grad_(True)

    @property
    def trained(self) -> MorphoVAE:
        """The sub-model this stage optimises."""
        if isinstance(self.model, StackedConditionalVAE):
            return self.model.target if self.stage == "target" else self.model.reference
        return self.model

    def losses(self, batch: Any) -> dict[str, torch.Tensor]:
        """Forward pass and loss terms of one batch (images, or images and labels).

        Training: the objective of this step (KL warm-up, capacity). Otherwise
        :func:`validation_terms`: the full objective and the ELBO, z sampled.
        """
        images, labels = _unpack(batch)
        if not self.training:
            return validation_terms(self.trained, *self._inputs(images, labels), dataset_size=self.train_size)
        x, cond = self._inputs(augment_batch(images, **self.augment), labels)
        out = self.trained(x, cond)
        return self.trained.loss(x, out, cond=cond, dataset_size=self.train_size, step=int(self.global_step))

    def _inputs(self, images: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, Condition | None]:
        """Split channels for the conditional stages; the target is conditioned on reference and label."""
        if not isinstance(self.model, StackedConditionalVAE):
            return images, None
        reference, target = self.model.split_channels(images)
        if self.stage == "reference":
            return reference, None
        label = F.one_hot(labels, self.num_labels).to(images.dtype) if self.num_labels and labels is not None else None
        return target, Condition(reference=reference, label=label)

    def reconstruct(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs of this stage and their reconstructions, in eval mode without gradients (previews)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            x, cond = self._inputs(*_unpack(batch))
            reconstruction = self.trained(x, cond).recon
        self.train(was_training)
        return x, reconstruction

    def on_train_start(self) -> None:
        # A resumed run restores the optimiser with the learning rate it was saved with; the settings of this
        # run apply instead (after a diverged run, resuming with a lower learning rate is the advice).
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"], group["weight_decay"] = self.learning_rate, self.weight_decay

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        self._step = int(self.global_step)
        _reseed(self.seed, self._step, self.global_rank)
        # BatchNorm statistics change in the forward pass; keep them to undo a failed step.
        buffers = [b.detach().clone() for b in self.trained.buffers()]
        losses = self.losses(batch)
        loss = losses["loss"]
        if self._all_ranks_see(not bool(torch.isfinite(loss))):
            self._roll_back(buffers)
            return None  # no gradients: the optimiser skips this step
        self._good = _GoodState.capture(self.trained, buffers, self.trainer.optimizers[0])
        self._log_losses("train", losses, batch_size=_batch_size(batch))
        kl = losses["kl_per_dim"].detach().float()
        self._kl_sum = kl if self._kl_sum is None else self._kl_sum + kl
        self._kl_batches += 1
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # A finite loss can still give non-finite gradients (overflow in the backward pass) and so weights.
        if self.nonfinite_step is None:
            finite = torch.stack([torch.isfinite(p).all() for p in self.trained.parameters()]).all()
            if self._all_ranks_see(not bool(finite)):
                self._roll_back(None)

    def _all_ranks_see(self, problem: bool) -> bool:
        """True when any process saw the problem: DDP processes must skip and stop in lock-step."""
        return bool(self.trainer.strategy.reduce_boolean_decision(problem, all=False))

    def _roll_back(self, buffers: list[torch.Tensor] | None) -> None:
        """Return to the last state whose loss and update were finite, and ask to stop.

        That is the state before the latest step with a finite loss: the
        weights it produced are the ones that failed (or produced a
        non-finite loss now). Without such a step, only this step's BatchNorm
        statistics are undone.
        """
        self.nonfinite_step = self._step
        if self._good is not None:
            self._good.restore(self.trained, self.trainer.optimizers[0])
        elif buffers is not None:
            with torch.no_grad():
                for buffer, saved in zip(self.trained.buffers(), buffers, strict=True):
                    buffer.copy_(saved)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _reseed(self.seed, self.current_epoch, batch_idx, self.global_rank, 1)
        self._log_losses("val", self.losses(batch), batch_size=_batch_size(batch))

    def _log_losses(self, prefix: str, losses: dict[str, torch.Tensor], *, batch_size: int) -> None:
        for name, value in losses.items():
            if value.ndim == 0:
                self.log(
                    f"{prefix}_{name}",
                    value.detach().float(),
                    on_step=False,
                    on_epoch=True,
                    batch_size=batch_size,
                    sync_dist=True,
                )

    def pop_kl_per_dim(self) -> list[float] | None:
        """Mean per-dimension KL (nats) over the training steps since the last call."""
        if self._kl_sum is None:
            return None
        values = (self._kl_sum / self._kl_batches).cpu().tolist()
        self._kl_sum, self._kl_batches = None, 0
        return values

    @torch.no_grad()
    def recalibrate_batchnorm(self, loader: DataLoader) -> None:
        """Replace BatchNorm running statistics by their average over the training crops ("precise BN").

        During training the running statistics are an exponential average
        (momentum 0.1) of batch statistics of weights that kept changing; after
        few optimiser steps they are far from what the final weights produce,
        and eval mode — embedding, traversal, Grad-CAM — normalises every crop
        wrongly (the first release put all 125 nuclei of a 5-epoch run at one
        point). One pass over the training crops with the final weights, in
        training mode, averages the batch statistics exactly. Models without
        BatchNorm are left alone.
        """
        norms = [m for m in self.trained.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms or len(loader) == 0:
            return
        momenta = [m.momentum for m in norms]
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the pass
        was_training = self.trained.training
        self.trained.train()
        _reseed(self.seed, 2**31 - 1)  # sampling noise and ME-VAE views of the pass are reproducible
        for batch in loader:
            images, labels = _unpack(_to_device(batch, self.device))
            self.trained(*self._inputs(images, labels))
        for module, momentum in zip(norms, momenta, strict=True):
            module.momentum = momentum
        self.trained.train(was_training)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.trained.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["morphospace_stage"] = self.stage


def validation_terms(
    model: MorphoVAE, x: torch.Tensor, cond: Condition | None, *, dataset_size: int
) -> dict[str, torch.Tensor]:
    """Loss terms for validation and model selection: the full objective and the ELBO, z sampled.

    Two things differ from the training step. The KL warm-up, cyclical
    weight and capacity are taken at the end of their schedules
    (``step=None``), so ``loss`` measures the same objective in every epoch:
    selecting the best checkpoint or stopping early on a warm-up-weighted
    loss would prefer early epochs, whose KL weighs little. And z is drawn
    from the posterior (normalisation layers stay in eval mode): decoding
    z = μ would make the reconstruction term too low and compute the β-TCVAE
    terms at μ. ``elbo`` is ``−(rec + kl)``, a one-sample estimate per crop
    (β = 1 whatever the training β).
    """
    out = model(x, cond, sample=True)
    terms = model.loss(x, out, cond=cond, dataset_size=dataset_size, step=None)
    terms["elbo"] = -(terms["rec"] + terms["kl"])
    return terms


@dataclass
class _GoodState:
    """Weights, BatchNorm statistics and optimiser state at the start of a step whose loss was finite.

    The non-finite guard rolls back to it. A copy per step costs one pass
    over the weights and Adam moments, small next to a forward and backward
    pass.
    """

    parameters: list[torch.Tensor]
    buffers: list[torch.Tensor]
    optimizer: dict[torch.Tensor, dict[str, Any]]

    @classmethod
    @torch.no_grad()
    def capture(
        cls, model: torch.nn.Module, buffers: list[torch.Tensor], optimizer: torch.optim.Optimizer
    ) -> "_GoodState":
        state = {
            p: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in optimizer.state.items()
        }
        return cls([p.detach().clone() for p in model.parameters()], buffers, state)

    @torch.no_grad()
    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for live, saved in zip([*model.parameters(), *model.buffers()], [*self.parameters, *self.buffers], strict=True):
            live.copy_(saved)
        optimizer.state.clear()
        optimizer.state.update(self.optimizer)


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, labels)`` from a batch of images or of (images, labels)."""
    return (batch[0], batch[1]) if isinstance(batch, (list, tuple)) else (batch, None)


def _batch_size(batch: Any) -> int:
    return int(_unpack(batch)[0].shape[0])


# ---------------------------------------------------------------- data and progress


class _CropDataModule(L.LightningDataModule):
    """Training and validation loaders whose samplers know the DDP rank.

    Samplers are made here, once the Trainer knows the world size, so each
    process sees its own shard and the shuffle order depends only on
    ``(seed, epoch)`` (Lightning calls ``set_epoch``). Training drops the last
    incomplete batch: the β-TCVAE estimator needs at least 3 crops per batch.
    """

    def __init__(
        self,
        train_set: Dataset,
        val_set: Dataset,
        *,
        batch_size: int,
        val_batch_size: int,
        drop_last_val: bool,
        num_workers: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.train_set, self.val_set = train_set, val_set
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.drop_last_val, self.num_workers, self.seed = drop_last_val, num_workers, seed

    @property
    def _fitting(self) -> L.Trainer:
        """The trainer asking for the loaders (Lightning attaches it before it asks)."""
        if self.trainer is None:
            raise RuntimeError("the crop data module gives loaders only to the Trainer it is attached to")
        return self.trainer

    def _sampler(self, dataset: Dataset, *, shuffle: bool) -> _EpochSampler:
        return _EpochSampler(
            dataset,
            num_replicas=self._fitting.world_size,
            rank=self._fitting.global_rank,
            shuffle=shuffle,
            seed=self.seed,
        )

    def train_dataloader(self) -> DataLoader:
        return _ResumableLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=self._sampler(self.train_set, shuffle=True),
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            trainer=self._fitting,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.val_batch_size,
            sampler=self._sampler(self.val_set, shuffle=False),
            drop_last=self.drop_last_val,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


class _EpochSampler(DistributedSampler):
    """A ``DistributedSampler`` that can start one epoch part-way through.

    Its order depends only on ``(seed, epoch)``, so leaving out the crops of
    the batches already trained continues an interrupted epoch exactly.
    """

    skip: tuple[int, int] | None = None  # (epoch, crops of this process to leave out), used once

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self.skip is not None and self.skip[0] == self.epoch:
            indices = indices[self.skip[1] :]
        self.skip = None
        return iter(indices)


class _ResumableLoader(DataLoader):
    """The training loader, which continues an epoch that a checkpoint interrupted (SIGTERM between steps).

    Lightning stores its ``state_dict`` in every checkpoint and hands it
    back on resume; without it, a resumed epoch started again from its first
    batch and skipped its last ones.
    """

    def __init__(self, *args: Any, trainer: L.Trainer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer = trainer

    def state_dict(self) -> dict[str, int]:
        progress = self._trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": self._trainer.current_epoch, "batches_done": progress.completed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        assert isinstance(self.sampler, _EpochSampler) and self.batch_size is not None  # as train_dataloader makes it
        self.sampler.skip = (state["epoch"], state["batches_done"] * self.batch_size)


class _ProgressReporter(L.Callback):
    """Turns Lightning progress into typed messages and honours the Stop flag.

    Runs on every process but reports only from global rank 0. Checks the stop
    flag after every optimisation step, so Stop takes effect within one step.
    Keeps the per-epoch history in its state, so it survives a resume.
    """

    def __init__(
        self,
        *,
        on_update: Callable[[TrainMessage], None] | None,
        stop_event: StopFlag | None,
        stage: Stage,
        preview_batch: Any,
        preview_every: int,
        min_interval_s: float = 0.5,
    ) -> None:
        self.on_update, self.stop_event = on_update, stop_event
        self.stage, self.preview_batch, self.preview_every = stage, preview_batch, preview_every
        self.min_interval_s = min_interval_s
        self.history: list[dict[str, float]] = []
        self.stopped_by_user = False
        self._started = self._last_sent = 0.0
        self._first_step = 0

    def _send(self, trainer: L.Trainer, message: TrainMessage) -> None:
        if self.on_update is not None and trainer.is_global_zero:
            self.on_update(message)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self._last_sent = time.monotonic()
        self._first_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if isinstance(pl_module, VAEModule) and pl_module.nonfinite_step is not None:
            trainer.should_stop = True
        # Every process decides together (a Ctrl-C reaches the DDP processes at different steps).
        if trainer.strategy.reduce_boolean_decision(
            self.stop_event is not None and self.stop_event.is_set(), all=False
        ):
            trainer.should_stop = True
            self.stopped_by_user = True
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # none for a skipped step
        now = time.monotonic()
        if now - self._last_sent >= self.min_interval_s and loss is not None:
            self._last_sent = now
            self._send(trainer, self._update(trainer, {"loss": float(loss)}, None, None))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, VAEModule)  # the engine's only module
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        train_losses = {k[len("train_") :]: v for k, v in metrics.items() if k.startswith("train_")}
        val_losses = {k[len("val_") :]: v for k, v in metrics.items() if k.startswith("val_")} or None
        kl_per_dim = pl_module.pop_kl_per_dim()
        epoch = trainer.current_epoch
        self.history.append(
            {
                "epoch": epoch,
                **{f"train_{k}": v for k, v in train_losses.items()},
                **{f"val_{k}": v for k, v in (val_losses or {}).items()},
            }
        )
        self._send(trainer, self._update(trainer, train_losses, val_losses, kl_per_dim))
        last_epoch = epoch + 1 == trainer.max_epochs
        wanted = (epoch + 1) % self.preview_every == 0 or last_epoch
        if wanted and self.preview_batch is not None and self.on_update is not None and trainer.is_global_zero:
            batch = _to_device(self.preview_batch, pl_module.device)
            originals, reconstructions = pl_module.reconstruct(batch)
            self._send(
                trainer,
                ReconstructionPreview(
                    epoch, originals.float().cpu().numpy(), reconstructions.float().cpu().numpy(), self.stage
                ),
            )

    def _update(
        self,
        trainer: L.Trainer,
        train_losses: dict[str, float],
        val_losses: dict[str, float] | None,
        kl_per_dim: list[float] | None,
    ) -> TrainUpdate:
        elapsed = time.monotonic() - self._started
        done = trainer.global_step - self._first_step
        total = int(trainer.estimated_stepping_batches)
        eta = elapsed / done * (total - trainer.global_step) if done > 0 else None
        return TrainUpdate(
            trainer.current_epoch,
            trainer.global_step,
            total,
            train_losses,
            val_losses,
            kl_per_dim,
            elapsed,
            eta,
            self.stage,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, (list, tuple)):
        return [t.to(device) for t in batch]
    return batch.to(device)


# ---------------------------------------------------------------- the engine


class TrainingDiverged(InputError):
    """The loss became non-finite; ``last_checkpoint`` holds the last good weights."""

    def __init__(self, message: str, last_checkpoint: str | None) -> None:
        super().__init__(message)
        self.last_checkpoint = last_checkpoint


class TrainingInterrupted(Exception):
    """Training was stopped by SIGTERM (SLURM, Kubernetes, ``timeout``); ``last_checkpoint`` resumes it.

    Under DDP every process raises it; ``is_global_zero`` tells the one that should report.
    """

    def __init__(self, message: str, last_checkpoint: str | None, is_global_zero: bool = True) -> None:
        super().__init__(message)
        self.last_checkpoint, self.is_global_zero = last_checkpoint, is_global_zero


def train(
    crop_set: CropSet,
    model_settings: ModelSettings,
    train_settings: TrainSettings,
    *,
    on_update: Callable[[TrainMessage], None] | None = None,
    stop_event: StopFlag | None = None,
    resume_from: str | Path | None = None,
    progress_bar: bool = False,
) -> TrainResult:
    """Train a VAE on a crop set; the same call serves the widget and the command line.

    Parameters
    ----------
    crop_set : CropSet
        Crops ``(N, C, [Z,] Y, X)`` float32 in [0, 1]; zarr-backed sets stream from disk.
    model_settings, train_settings : ModelSettings, TrainSettings
    on_update : callable, optional
        Receives :class:`TrainUpdate`, :class:`ReconstructionPreview`,
        :class:`TrainFinished` or :class:`TrainFailed` messages, from the
        training thread (put them on a queue for a GUI).
    stop_event : object with ``is_set()``, optional
        Set it (e.g. ``threading.Event``) to stop after the current step.
    resume_from : path, optional
        A checkpoint written by this engine (``last.ckpt``): training continues
        from it up to ``train_settings.epochs``, with the learning rate and
        weight decay of ``train_settings``. Resume only files you trust:
        Lightning checkpoints are read with ``weights_only=True``, but they are
        still torch archives, not safetensors.
    progress_bar : bool
        Show Lightning's progress bar and model summary (command line).

    Returns
    -------
    TrainResult
        ``model`` carries the best-validation weights, on the CPU, in eval mode.
        For the conditional model (``cond-vae``) the reference model is
        trained first, then the target model conditioned on the reference
        channels and the one-hot ``label_column``; both stages run
        ``epochs`` epochs and checkpoint into ``reference/`` and ``target/``.

    Raises
    ------
    InputError
        For settings or data that cannot train, or a checkpoint folder that
        cannot be written or holds another run's checkpoints (checked before
        the first epoch); :class:`TrainingDiverged` when the loss becomes
        non-finite; ``CheckpointWriteError`` when a checkpoint cannot be
        written (the previous one is intact). All are ``InputError``.
    TrainingInterrupted
        On SIGTERM, once ``last.ckpt`` holds the state to resume from.
    KeyboardInterrupt
        When Ctrl-C interrupts an optimiser step (the last epoch's
        ``last.ckpt`` stays). Make Ctrl-C set ``stop_event`` to stop cleanly.
    """
    train_settings.validate()
    crop_set.validate()
    _check_precision(train_settings)
    labels = CropDataset(crop_set, label_column=train_settings.label_column).classes
    model_settings = _with_label_count(model_settings, train_settings, labels)
    split = split_crops(
        crop_set.table, val_fraction=train_settings.val_fraction, method=train_settings.split, seed=train_settings.seed
    )
    notes = [split.note] if split.note else []
    if split.note:
        warnings.warn(split.note, UserWarning, stacklevel=2)
    batch_size = batch_size_for(train_settings, len(split.train))
    train_settings = replace(train_settings, batch_size=batch_size)
    _check_sizes(split, batch_size)
    if not train_settings.checkpoint_dir:
        raise InputError(
            "training.checkpoint_dir is empty; name the folder for this run's checkpoints (the command line "
            "uses '<out>-checkpoints', the Train widget a run folder next to the crop set)"
        )
    checkpoint_dir = Path(train_settings.checkpoint_dir)
    L.seed_everything(train_settings.seed, workers=True, verbose=False)
    model = build_model(model_settings, tuple(int(n) for n in crop_set.images.shape[1:]))
    stages: list[Stage] = ["reference", "target"] if model_settings.model == "cond-vae" else ["model"]
    run_id = new_run_id()
    if resume_from is not None:
        resume_from = Path(resume_from)
        stage, run_id = _resume_stage(resume_from, model, stages)
        stages = stages[stages.index(stage) :]
    dataset = CropDataset(crop_set, label_column=train_settings.label_column)
    outcomes: list[dict[str, Any]] = []
    try:
        with _quiet_lightning(not progress_bar):
            for stage in stages:
                directory = checkpoint_dir if stage == "model" else checkpoint_dir / stage
                outcomes.append(
                    _fit_stage(
                        model,
                        stage,
                        dataset,
                        split,
                        model_settings,
                        train_settings,
                        RunCheckpoints(
                            checkpoint_dir,
                            directory,
                            run_id,
                            model=model,
                            resume_from=resume_from if not outcomes else None,
                        ),
                        batch_size=batch_size,
                        on_update=on_update,
                        stop_event=stop_event,
                        progress_bar=progress_bar,
                    )
                )
                if outcomes[-1]["stopped_by_user"]:
                    break
    except TrainingDiverged as err:
        if on_update is not None:
            on_update(TrainFailed(str(err)))
        raise
    final = outcomes[-1]
    model.requires_grad_(True).cpu().eval()
    if isinstance(model, MEVAE):
        _calibrate(model, CropDataset(crop_set.subset(split.train)), batch_size)
    result = TrainResult(
        model=model,
        model_settings=model_settings,
        label_classes=list(labels),
        history=[row for outcome in outcomes for row in outcome["history"]],
        best_checkpoint=final["best"],
        last_checkpoint=final["last"],
        best_val_loss=final["best_val_loss"],
        stopped_early=any(o["stopped_early"] for o in outcomes),
        stopped_by_user=any(o["stopped_by_user"] for o in outcomes),
        checkpoint_dir=str(checkpoint_dir),
        train_size=len(split.train),
        val_size=len(split.val),
        is_global_zero=final["is_global_zero"],
        notes=notes,
        steps=sum(o["steps"] for o in outcomes),
        epochs=final["epochs"],
        batch_size=batch_size,
        diagnostics=_diagnose(model, crop_set, split, batch_size),
    )
    if on_update is not None:
        on_update(
            TrainFinished(result.best_checkpoint, result.best_val_loss, result.stopped_early, result.stopped_by_user)
        )
    return result


def _fit_stage(
    model: MorphoVAE | StackedConditionalVAE,
    stage: Stage,
    dataset: CropDataset,
    split: DataSplit,
    model_settings: ModelSettings,
    settings: TrainSettings,
    run: RunCheckpoints,
    *,
    batch_size: int,
    on_update: Callable[[TrainMessage], None] | None,
    stop_event: StopFlag | None,
    progress_bar: bool,
) -> dict[str, Any]:
    """Run one Lightning ``fit`` (one model, or one stage of the conditional model)."""
    module = VAEModule(
        model,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        train_size=len(split.train),
        seed=settings.seed,
        stage=stage,
        num_labels=model_settings.cond_num_labels if stage == "target" else 0,
        augment=augmentation_for(settings, model_settings.model),
    )
    val_set = Subset(dataset, split.val.tolist())
    # The β-TCVAE estimator needs >= 3 crops per batch, so validation drops a short last batch too.
    val_batch_size = min(batch_size, len(split.val))
    data = _CropDataModule(
        Subset(dataset, split.train.tolist()),
        val_set,
        batch_size=batch_size,
        val_batch_size=val_batch_size,
        drop_last_val=model_settings.model == "beta-tcvae",
        num_workers=settings.num_workers,
        seed=settings.seed,
    )
    preview = torch.utils.data.default_collate([val_set[i] for i in range(min(PREVIEW_CROPS, len(val_set)))])
    best = BestCheckpoint(
        dirpath=run.last.parent, filename="best-{epoch}", monitor="val_loss", mode="min", save_top_k=1
    )
    reporter = _ProgressReporter(
        on_update=on_update,
        stop_event=stop_event,
        stage=stage,
        preview_batch=preview,
        preview_every=settings.preview_every_n_epochs,
    )
    callbacks: list[L.Callback] = [best, run, reporter]
    early = None
    if settings.early_stopping_patience is not None:
        early = EarlyStopping(monitor="val_loss", mode="min", patience=settings.early_stopping_patience)
        callbacks.append(early)
    trainer = _make_trainer(settings, callbacks, run.last.parent, progress_bar)
    max_epochs = epochs_for(settings, len(split.train), batch_size, trainer.world_size)
    trainer.fit_loop.max_epochs = max_epochs
    try:
        trainer.fit(
            module,
            datamodule=data,
            ckpt_path=None if run.resume_from is None else str(run.resume_from),
            weights_only=True,
        )
    except SIGTERMException as err:
        raise TrainingInterrupted(
            f"training was stopped by SIGTERM at step {trainer.global_step}{_of_stage(stage)}; "
            f"{run.last} holds its state to resume from",
            str(run.last),
            trainer.is_global_zero,
        ) from err
    except SystemExit as err:  # after a Ctrl-C in the middle of a step, Lightning cleans up and exits with 1
        if isinstance(err.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise
    where = None
    if module.nonfinite_step is not None:
        where = f"the loss or the weights became non-finite (NaN or infinite) at step {module.nonfinite_step}"
    elif run.nonfinite_val_epoch is not None:
        where = f"the validation loss became non-finite (NaN or infinite) in epoch {run.nonfinite_val_epoch + 1}"
    if where is not None:
        kept = f" and {best.best_model_path} the best epoch so far" if best.best_model_path else ""
        raise TrainingDiverged(
            f"{where}{_of_stage(stage)}; training stopped, {run.last} keeps the last state whose training "
            f"and validation losses were finite{kept}. {_divergence_advice(settings)}, then resume from "
            f"{run.last.name} (the new settings apply) or start again",
            str(run.last),
        )
    best_path = best.best_model_path or None
    if best_path and trainer.is_global_zero:  # only global rank 0 writes results; the file may be on its disk only
        state = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    module.recalibrate_batchnorm(DataLoader(data.train_set, batch_size=batch_size, drop_last=True))
    return {
        "history": reporter.history,
        "best": best_path,
        "last": str(run.last) if run.last.exists() else None,
        "best_val_loss": float(best.best_model_score) if best.best_model_score is not None else None,
        "stopped_early": bool(early is not None and early.stopped_epoch > 0),
        "stopped_by_user": reporter.stopped_by_user,
        "is_global_zero": trainer.is_global_zero,
        "steps": int(trainer.global_step),
        "epochs": max_epochs,
    }


def _of_stage(stage: Stage) -> str:
    """`` (reference model)`` for a stage of the conditional model, nothing for a single model (messages)."""
    return "" if stage == "model" else f" ({stage} model)"


def _make_trainer(
    settings: TrainSettings, callbacks: list[L.Callback], checkpoint_dir: Path, progress_bar: bool
) -> L.Trainer:
    """A Lightning Trainer for these settings; device set-up problems become :class:`InputError`."""
    try:
        trainer = L.Trainer(
            max_epochs=settings.epochs,
            accelerator=settings.accelerator,
            devices=settings.devices,
            num_nodes=settings.num_nodes,
            strategy=settings.strategy,
            precision=settings.precision,
            gradient_clip_val=settings.gradient_clip_val,
            callbacks=callbacks,
            logger=False,
            default_root_dir=checkpoint_dir,
            enable_progress_bar=progress_bar,
            enable_model_summary=progress_bar,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            deterministic="warn",
            plugins=[AtomicCheckpointIO()],
        )
    except (MisconfigurationException, ValueError, TypeError) as err:
        raise InputError(
            f"cannot train with accelerator={settings.accelerator!r}, devices={settings.devices!r}, "
            f"strategy={settings.strategy!r}, precision={settings.precision!r}: {str(err).rstrip('.')}. "
            "Check the device settings; accelerator 'auto' picks what this machine has"
        ) from err
    if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
        raise InputError(
            f"strategy {settings.strategy!r} trains in worker processes that cannot hand the history, the "
            "progress and the best checkpoint back (ddp_spawn, ddp_fork, ddp_notebook); use 'ddp', which "
            "starts one process per device from the command line"
        )
    return trainer


def _divergence_advice(settings: TrainSettings) -> str:
    """What to change after a non-finite loss: only the remedies these settings do not already use."""
    remedies = [f"lower the learning rate (now {settings.learning_rate})"]
    if settings.gradient_clip_val is None:
        remedies.append("set gradient_clip_val (e.g. 1.0)")
    if settings.precision != "32-true":
        remedies.append(f"use precision '32-true' (now {settings.precision!r})")
    return "Try: " + ", or ".join(remedies)


def _check_precision(settings: TrainSettings) -> None:
    """Refuse float16 mixed precision where it cannot run: on the CPU."""
    on_cpu = settings.accelerator == "cpu" or (
        settings.accelerator == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )
    if settings.precision == "16-mixed" and on_cpu:
        raise InputError(
            "precision '16-mixed' needs a GPU, and this run would train on the CPU; "
            "use '32-true' (or 'bf16-mixed', which CPUs support) or choose a GPU accelerator"
        )


def _with_label_count(settings: ModelSettings, train: TrainSettings, classes: list[Any]) -> ModelSettings:
    """Settings whose one-hot label width matches the classes of ``label_column`` (conditional model)."""
    if settings.model != "cond-vae":
        return settings
    if train.label_column is None:
        if settings.cond_num_labels:
            raise InputError(
                f"model.cond_num_labels is {settings.cond_num_labels} but training.label_column is empty; "
                "name the crop-table column holding the structure/condition label (e.g. 'group')"
            )
        return settings
    if settings.cond_num_labels not in (0, len(classes)):
        raise InputError(
            f"model.cond_num_labels is {settings.cond_num_labels} but column {train.label_column!r} has "
            f"{len(classes)} values ({', '.join(map(str, classes))}); set cond_num_labels to {len(classes)} or 0"
        )
    return replace(settings, cond_num_labels=len(classes))


def _check_sizes(split: DataSplit, batch_size: int) -> None:
    if len(split.train) < batch_size:
        raise InputError(
            f"the training split has {len(split.train)} crops, fewer than one batch ({batch_size}); "
            "lower training.batch_size or add crops"
        )
    if len(split.val) < 3:
        raise InputError(
            f"the validation split has {len(split.val)} crop(s); it needs at least 3. "
            "Raise training.val_fraction or add crops (or images, for the split by source)"
        )


def _resume_stage(path: Path, model: torch.nn.Module, stages: list[Stage]) -> tuple[Stage, str]:
    """The stage and run a checkpoint of this engine belongs to, after checking it fits ``model``.

    Refuses foreign files, checkpoints of another model type and checkpoints
    of a different architecture (latent size, depth, channels) with a message,
    instead of a failure deep inside Lightning.
    """
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; choose a .ckpt file written by a previous training")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or damaged files
        raise InputError(f"{path} is not a checkpoint this program can resume from ({err})") from err
    stage = checkpoint.get("morphospace_stage") if isinstance(checkpoint, dict) else None
    if stage is None:
        raise InputError(f"{path} was not written by napari-morphospace training; choose its last.ckpt")
    if stage not in stages:
        raise InputError(
            f"{path} is a checkpoint of a {stage!r} stage, which this model type does not have; "
            "resume with the model settings it was trained with"
        )
    expected = {f"model.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    if expected != found:
        raise InputError(
            f"{path} holds a model of another architecture than these model settings "
            "(latent_dim, depth, base_channels, block or channels differ); "
            "resume with the settings it was trained with (saved next to it by --save-config)"
        )
    return stage, checkpoint_run_id(checkpoint) or new_run_id()


@contextmanager
def _quiet_lightning(quiet: bool) -> Iterator[None]:
    """Silence Lightning's informational log lines (GPU available, ...) for GUI runs, and its known harmless warning."""
    # Lightning 2.6 builds torch's deprecated LeafSpec for every data loader: harmless, and Lightning's to fix.
    warnings.filterwarnings(
        "ignore",
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    )
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    if quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@torch.no_grad()
def _calibrate(model: MEVAE, dataset: CropDataset, batch_size: int) -> None:
    """Set the ME-VAE latent scale to the spread of its training means (traversal units)."""
    loader = DataLoader(dataset, batch_size=batch_size)
    means = torch.cat([model.encode(batch)[0] for batch in loader])
    model.calibrate_latent_scale(means)


def _spread_out(indices: np.ndarray, count: int) -> np.ndarray:
    """At most ``count`` of ``indices``, evenly spaced (bounds the diagnostics' time on large sets)."""
    if len(indices) <= count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]


def _diagnose(
    model: MorphoVAE | StackedConditionalVAE, crop_set: CropSet, split: DataSplit, batch_size: int
) -> TrainingDiagnostics:
    """End-of-training diagnostics on the held-out crops (the reference model's, for ``cond-vae``).

    Crops cut from labels keep their object masks, so the representation
    probe runs too: on a spread of all crops (cross-validated, grouped by
    source image), its pixel PCA fitted on a spread of the training crops as
    the model was. Each part reads at most 2 048 crops.
    """
    channels = model.reference_channels if isinstance(model, StackedConditionalVAE) else slice(None)
    diagnosed: MorphoVAE = model.reference if isinstance(model, StackedConditionalVAE) else model
    held_out = np.asarray(crop_set.subset(_spread_out(split.val, DIAGNOSTIC_CROPS)).images)[:, channels]
    probe_crops = None
    if crop_set.masks is not None:
        probed = crop_set.subset(_spread_out(np.arange(len(crop_set)), PROBE_CELLS))
        probe_crops = ProbeCrops(
            images=np.asarray(probed.images)[:, channels],
            masks=np.asarray(probed.masks),
            groups=probed.table["source"].astype(str).to_numpy(),
            pca_fit=np.asarray(crop_set.subset(_spread_out(split.train, DIAGNOSTIC_CROPS)).images)[:, channels],
        )
    diagnostics = diagnose_training(diagnosed, held_out, batch_size=batch_size, probe_crops=probe_crops)
    if probe_crops is None:
        diagnostics.probe_note = "the crops have no object masks (only crops cut from labels keep them)"
    return diagnostics


def trained_provenance(result: TrainResult, crop_set: CropSet, crop_set_origin: str) -> dict[str, Any]:
    """Where a trained model's data came from and how much of it it saw, for the bundle's ``provenance``."""
    table = crop_set.table
    return {
        "crop_set": crop_set_origin,
        "n_crops": len(table),
        "groups": sorted(map(str, table["group"].unique())),
        "sources": sorted(map(str, table["source"].unique())),
        "train_crops": result.train_size,
        "val_crops": result.val_size,
        "batch_size": result.batch_size,
        "epochs": result.epochs,
        "optimiser_steps": result.steps,
    }


def trained_bundle(
    result: TrainResult, crop_set: CropSet, *, train_settings: TrainSettings, crop_set_origin: str
) -> Bundle:
    """What :func:`train` returned as a model bundle in memory, recording the crop set it learned from.

    ``crop_set_origin`` says where that crop set lives (its folder, or how it
    was made), for the bundle's provenance. ``save_bundle`` writes it.
    """
    return new_bundle(
        result.model.eval(),
        model_settings=result.model_settings,
        input_shape=tuple(int(n) for n in crop_set.images.shape[1:]),
        channel_names=list(crop_set.channel_names),
        preprocess=crop_set.preprocess,
        train_settings=train_settings,
        provenance=trained_provenance(result, crop_set, crop_set_origin),
        history=result.history,
        label_classes=result.label_classes,
        diagnostics=result.diagnostics,
    )
