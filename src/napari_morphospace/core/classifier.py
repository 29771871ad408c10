"""The organelle study's fusion CNN: one small encoder per channel, fused by concatenation.

Each channel (organelle stain) gets its own convolutional encoder, so per-channel
Grad-CAM can show which channel drives each class. The encoders are fused by
concatenating their feature maps either after the first block ("early": the
shared trunk sees all channels together) or after the last ("late": each
channel is encoded on its own up to the head). Training uses class-weighted
cross entropy and k-fold cross-validation grouped by source image
(``StratifiedGroupKFold``), so patches of one image are never split between
training and test: neighbouring patches are near-duplicates and would inflate
every score.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_curve,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from .errors import InputError
from .gradcam import gradcam_classifier
from .traversal import evaluating

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


@dataclass
class ClassifierSettings:
    """Settings of the fusion classifier and its cross-validated training.

    ``fusion``: "early" concatenates the channel encoders after their first
    block, "late" after their last block. ``depth``: conv blocks per encoder
    (each halves the size). ``class_weighting``: weight the loss by inverse
    class frequency of the training fold. ``folds``: cross-validation folds,
    grouped by source image (needs at least this many sources).
    """

    fusion: Literal["early", "late"] = "late"
    base_channels: int = 8
    depth: int = 3
    epochs: int = 20
    learning_rate: float = 1e-3
    batch_size: int = 32
    class_weighting: bool = True
    folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fusion not in ("early", "late"):
            raise InputError(f"fusion must be 'early' or 'late'; got {self.fusion!r}")
        for name in ("base_channels", "depth", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.folds < 2:
            raise InputError(f"folds must be at least 2 for cross-validation; got {self.folds}")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be positive; got {self.learning_rate}")


def _block(ndim: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """conv 3 → BatchNorm → ReLU → max-pool 2 (halves every spatial axis)."""
    return nn.Sequential(
        _CONV[ndim](in_channels, out_channels, 3, padding=1),
        _NORM[ndim](out_channels),
        nn.ReLU(),
        _POOL[ndim](2, ceil_mode=True),
    )


class FusionClassifier(nn.Module):
    """Per-channel conv encoders fused by concatenation, then global average pooling and a linear head.

    Input ``(N, C, [Z,] Y, X)``, output logits ``(N, n_classes)``.
    ``channel_layer(c)`` is channel ``c``'s last block before fusion: the
    layer for that channel's Grad-CAM.
    """

    def __init__(self, in_channels: int, n_classes: int, spatial_dims: int, *, fusion: str = "late", base_channels: int = 8, depth: int = 3) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise InputError(f"the classifier works on 2D or 3D crops; got {spatial_dims} spatial axes")
        if fusion not in ("early", "late"):
            raise InputError(f"fusion must be 'early' or 'late'; got {fusion!r}")
        widths = [base_channels * 2**i for i in range(depth)]
        own_blocks = 1 if fusion == "early" else depth
        self.fusion = fusion
        self.channel_encoders = nn.ModuleList(
            nn.Sequential(*[_block(spatial_dims, 1 if i == 0 else widths[i - 1], widths[i]) for i in range(own_blocks)])
            for _ in range(in_channels)
        )
        fused = in_channels * widths[own_blocks - 1]
        shared = []
        for i in range(own_blocks, depth):
            shared.append(_block(spatial_dims, fused if i == own_blocks else widths[i - 1], widths[i]))
        self.trunk = nn.Sequential(*shared)
        self.head = nn.Linear(widths[-1] if shared else fused, n_classes)

    def channel_layer(self, channel: int) -> nn.Module:
        return self.channel_encoders[channel][-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.cat([encoder(x[:, c : c + 1]) for c, encoder in enumerate(self.channel_encoders)], dim=1)
        pooled = self.trunk(features).flatten(2).mean(dim=2)
        return self.head(pooled)


@dataclass
class ClassifierUpdate:
    """Progress message: ``fold`` (None for the final model on all data), ``epoch``, mean training ``loss``."""

    fold: int | None
    epoch: int
    loss: float


@dataclass
class ClassificationMetrics:
    """Scores of predictions against true classes.

    ``auroc`` is one-vs-rest macro for more than 2 classes and NaN where a
    class is missing from the test set. ``confusion[i, j]``: true class i
    predicted as j. ``pr_curves[k] = (precision, recall)``, class k vs rest.
    """

    balanced_accuracy: float
    macro_f1: float
    mcc: float
    auroc: float
    confusion: np.ndarray
    pr_curves: dict[int, tuple[np.ndarray, np.ndarray]]


@dataclass
class ClassifierResult:
    """Outcome of :func:`train_classifier`.

    ``folds``: metrics per fold; ``pooled``: metrics over all out-of-fold
    predictions; ``probabilities`` (N, n_classes): each sample's out-of-fold
    class probabilities; ``fold_of`` (N,): the fold in which each sample was
    tested; ``model``: trained on all data (None if stopped before);
    ``classes``: the label value of each class index; ``stopped``: the run was
    stopped and covers only the completed folds.
    """

    classes: np.ndarray
    folds: list[ClassificationMetrics]
    pooled: ClassificationMetrics | None
    probabilities: np.ndarray
    fold_of: np.ndarray
    model: FusionClassifier | None
    settings: ClassifierSettings
    stopped: bool = False


class _Stopped(Exception):
    """Raised inside the training loop when the stop event is set; never leaves this module."""


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> ClassificationMetrics:
    """Balanced accuracy, macro-F1, MCC, AUROC, confusion matrix and PR curves from class probabilities."""
    n_classes = probabilities.shape[1]
    labels = np.arange(n_classes)
    predicted = probabilities.argmax(axis=1)
    present = np.unique(y_true)
    if present.size < n_classes:
        auroc = float("nan")
    elif n_classes == 2:
        auroc = float(roc_auc_score(y_true, probabilities[:, 1]))
    else:
        auroc = float(roc_auc_score(y_true, probabilities, multi_class="ovr", labels=labels))
    curves = {}
    for k in present:
        precision, recall, _ = precision_recall_curve(y_true == k, probabilities[:, k])
        curves[int(k)] = (precision, recall)
    return ClassificationMetrics(
        balanced_accuracy=float(balanced_accuracy_score(y_true, predicted)),
        macro_f1=float(f1_score(y_true, predicted, average="macro", labels=labels, zero_division=0)),
        mcc=float(matthews_corrcoef(y_true, predicted)),
        auroc=auroc,
        confusion=confusion_matrix(y_true, predicted, labels=labels),
        pr_curves=curves,
    )


def _class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency ("balanced") weights of the classes present in ``y``; absent classes get 0."""
    weights = np.zeros(n_classes, dtype=np.float32)
    present = np.unique(y)
    weights[present] = compute_class_weight("balanced", classes=present, y=y)
    return torch.from_numpy(weights)


def _fit(
    images: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    settings: ClassifierSettings,
    *,
    seed: int,
    fold: int | None,
    stop_event: threading.Event | None,
    on_update: Callable[[ClassifierUpdate], None] | None,
) -> FusionClassifier:
    """Train a fresh classifier on ``images``/``y`` with Adam; checks ``stop_event`` every step."""
    torch.manual_seed(seed)
    model = FusionClassifier(
        images.shape[1], n_classes, images.ndim - 2, fusion=settings.fusion, base_channels=settings.base_channels, depth=settings.depth
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    weights = _class_weights(y, n_classes) if settings.class_weighting else None
    x_all = torch.from_numpy(images)
    y_all = torch.from_numpy(y.astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(settings.epochs):
        order = torch.randperm(len(y_all), generator=generator)
        total, count = 0.0, 0
        for batch in order.split(settings.batch_size):
            if stop_event is not None and stop_event.is_set():
                raise _Stopped
            if len(batch) < 2:  # BatchNorm cannot train on a single sample
                continue
            loss = F.cross_entropy(model(x_all[batch]), y_all[batch], weight=weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
            count += len(batch)
        if on_update is not None:
            on_update(ClassifierUpdate(fold=fold, epoch=epoch, loss=total / max(count, 1)))
    return model.eval()


def predict_probabilities(model: nn.Module, images: Any, *, batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(N, n_classes)`` of ``images`` (N, C, [Z,] Y, X) in eval mode."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    with evaluating(model), torch.no_grad():
        logits = torch.cat([model(part) for part in x.split(batch_size)])
    return torch.softmax(logits, dim=1).numpy()


def _check_training_inputs(images: Any, labels: Any, groups: Any, settings: ClassifierSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if images.ndim not in (4, 5):
        raise InputError(f"expected crops (N, C, Y, X) or (N, C, Z, Y, X); got shape {images.shape}")
    if not len(images) == len(labels) == len(groups):
        raise InputError(f"{len(images)} crops, {len(labels)} labels and {len(groups)} source ids: they must match one to one")
    classes, y = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise InputError(f"the classifier needs at least 2 classes; all crops are labelled {classes[0]!r}")
    n_sources = np.unique(groups).size
    if n_sources < settings.folds:
        raise InputError(
            f"{settings.folds}-fold cross-validation grouped by source needs at least {settings.folds} source images; "
            f"got {n_sources}. Lower folds or add images."
        )
    return images, y, groups, classes


def _cross_validate(
    images: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    n_classes: int,
    settings: ClassifierSettings,
    stop_event: threading.Event | None,
    on_update: Callable[[ClassifierUpdate], None] | None,
) -> tuple[list[ClassificationMetrics], np.ndarray, np.ndarray, bool]:
    """Out-of-fold probabilities and per-fold metrics; stops cleanly between steps."""
    probabilities = np.full((len(y), n_classes), np.nan, dtype=np.float32)
    fold_of = np.full(len(y), -1)
    folds: list[ClassificationMetrics] = []
    splitter = StratifiedGroupKFold(n_splits=settings.folds, shuffle=True, random_state=settings.seed)
    for fold, (train, test) in enumerate(splitter.split(images, y, groups)):
        try:
            model = _fit(images[train], y[train], n_classes, settings, seed=settings.seed + fold, fold=fold, stop_event=stop_event, on_update=on_update)
        except _Stopped:
            return folds, probabilities, fold_of, True
        probabilities[test] = predict_probabilities(model, images[test])
        fold_of[test] = fold
        folds.append(classification_metrics(y[test], probabilities[test]))
    return folds, probabilities, fold_of, False


def _pooled(y: np.ndarray, probabilities: np.ndarray, fold_of: np.ndarray) -> ClassificationMetrics | None:
    tested = fold_of >= 0
    return classification_metrics(y[tested], probabilities[tested]) if tested.any() else None


def train_classifier(
    images: Any,
    labels: Any,
    groups: Any,
    settings: ClassifierSettings,
    *,
    stop_event: threading.Event | None = None,
    on_update: Callable[[ClassifierUpdate], None] | None = None,
) -> ClassifierResult:
    """Cross-validate the fusion classifier, then train it on all data.

    Parameters
    ----------
    images : array-like
        Crops ``(N, C, [Z,] Y, X)``, float32 in [0, 1].
    labels : array-like (N,)
        Class of each crop (group or annotation; any hashable values).
    groups : array-like (N,)
        Source image of each crop: folds never split one source between
        training and test (``StratifiedGroupKFold``).
    settings : ClassifierSettings
    stop_event : threading.Event, optional
        Set it to stop; takes effect within one training step. The result then
        holds the folds completed so far and ``stopped=True``.
    on_update : callable, optional
        Receives a :class:`ClassifierUpdate` after every epoch (from the
        calling thread: run this function in a worker).
    """
    images, y, groups, classes = _check_training_inputs(images, labels, groups, settings)
    folds, probabilities, fold_of, stopped = _cross_validate(images, y, groups, classes.size, settings, stop_event, on_update)
    model = None
    if not stopped:
        try:
            model = _fit(images, y, classes.size, settings, seed=settings.seed + settings.folds, fold=None, stop_event=stop_event, on_update=on_update)
        except _Stopped:
            stopped = True
    return ClassifierResult(
        classes=classes,
        folds=folds,
        pooled=_pooled(y, probabilities, fold_of),
        probabilities=probabilities,
        fold_of=fold_of,
        model=model,
        settings=settings,
        stopped=stopped,
    )


def channel_gradcam(model: FusionClassifier, images: Any, class_index: int) -> np.ndarray:
    """Grad-CAM of one class logit at each channel's encoder: ``(C, N, [Z,] Y, X)``.

    Maps are normalised per image jointly over the channels (divided by the
    largest value over all channels of that image), so a channel whose map is
    dimmer contributes less evidence for the class than a brighter one.
    """
    raw = np.stack(
        [
            gradcam_classifier(model, images, class_index, layer=model.channel_layer(c), normalize=False)
            for c in range(len(model.channel_encoders))
        ]
    )
    peak = raw.reshape(raw.shape[0], raw.shape[1], -1).max(axis=(0, 2)).reshape(1, -1, *[1] * (raw.ndim - 2))
    return np.divide(raw, peak, out=np.zeros_like(raw), where=peak > 0)


def channel_evidence(model: FusionClassifier, images: Any, labels: Any, classes: np.ndarray) -> np.ndarray:
    """Share of Grad-CAM mass per channel for each class: ``(n_classes, C)``, rows summing to 1 (0 where no evidence).

    Row k uses the crops labelled ``classes[k]`` and the logit of class k: it
    answers "which channel drives class k".
    """
    labels = np.asarray(labels)
    images = np.asarray(images, dtype=np.float32)
    shares = np.zeros((classes.size, len(model.channel_encoders)))
    for k, value in enumerate(classes):
        members = images[labels == value]
        if len(members) == 0:
            continue
        maps = channel_gradcam(model, members, k)
        mass = maps.reshape(maps.shape[0], -1).sum(axis=1)
        if mass.sum() > 0:
            shares[k] = mass / mass.sum()
    return shares


@dataclass
class ChannelRanking:
    """One row per channel, most informative first: ``channel`` index, ``name``, pooled cross-validated metrics."""

    channel: int
    name: str
    metrics: ClassificationMetrics


def rank_channels(
    images: Any,
    labels: Any,
    groups: Any,
    settings: ClassifierSettings,
    *,
    channel_names: list[str] | None = None,
    stop_event: threading.Event | None = None,
    on_update: Callable[[ClassifierUpdate], None] | None = None,
) -> list[ChannelRanking]:
    """Rank channels by how well a classifier on that channel alone separates the classes.

    One cross-validated single-channel classifier per channel (same settings
    and folds as :func:`train_classifier`); ranked by pooled balanced accuracy.
    A stopped run ranks the channels finished so far.
    """
    images, y, groups, classes = _check_training_inputs(images, labels, groups, settings)
    names = channel_names or [f"channel {c}" for c in range(images.shape[1])]
    ranking = []
    for c in range(images.shape[1]):
        _, probabilities, fold_of, stopped = _cross_validate(images[:, c : c + 1], y, groups, classes.size, settings, stop_event, on_update)
        if stopped:
            break
        ranking.append(ChannelRanking(channel=c, name=names[c], metrics=classification_metrics(y, probabilities)))
    return sorted(ranking, key=lambda r: -r.metrics.balanced_accuracy)
