"""The organelle study's fusion CNNs: early, intermediate and late fusion of the channels.

The organelle-classification study compared three ways of combining organelle
stains (channels), under these names:

* **early** fusion: all channels enter one network together (its first
  convolution sees every channel).
* **intermediate** fusion (the study's choice): one encoder per channel; their
  feature vectors are concatenated and one head classifies them. Per-channel
  Grad-CAM then shows which channel drives each class.
* **late** fusion: one whole classifier per channel; the class probabilities
  of the channel classifiers are averaged with learned weights (non-negative,
  summing to 1), which say how much each channel is trusted.

The backbone is a small CNN trained from scratch (``depth`` blocks of conv 3 →
BatchNorm → ReLU → max-pool), not the study's ImageNet-pretrained ResNet50:
torchvision and its pretrained weights cannot be installed or downloaded here.
Training uses class-weighted cross entropy and k-fold cross-validation grouped
by source image (``StratifiedGroupKFold``), so patches of one image are never
split between training and test: neighbouring patches are near-duplicates and
would inflate every score.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

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

from ..analysis.gradcam import gradcam, gradcam_classifier
from ..analysis.traversal import evaluating
from ..errors import InputError

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
FUSIONS = ("early", "intermediate", "late")
Fusion = Literal["early", "intermediate", "late"]


@dataclass
class ClassifierSettings:
    """Settings of the fusion classifier and its cross-validated training.

    ``fusion``: "early" (all channels into one network), "intermediate" (one
    encoder per channel, features concatenated before one head) or "late" (one
    classifier per channel, probabilities averaged with learned weights); the
    organelle study's names. ``depth``: conv blocks per encoder (each halves
    the size). ``class_weighting``: weight the loss by inverse class frequency
    of the training fold. ``folds``: cross-validation folds, grouped by source
    image (needs at least this many sources per class).
    """

    fusion: Fusion = "intermediate"
    base_channels: int = 8
    depth: int = 3
    epochs: int = 20
    learning_rate: float = 1e-3
    batch_size: int = 32
    class_weighting: bool = True
    folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        _check_fusion(self.fusion)
        for name in ("base_channels", "depth", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.folds < 2:
            raise InputError(f"folds must be at least 2 for cross-validation; got {self.folds}")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be positive; got {self.learning_rate}")


def _check_fusion(fusion: str) -> None:
    if fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {', '.join(map(repr, FUSIONS))}; got {fusion!r}")


def _block(ndim: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """conv 3 → BatchNorm → ReLU → max-pool 2 (halves every spatial axis)."""
    return nn.Sequential(
        _CONV[ndim](in_channels, out_channels, 3, padding=1),
        _NORM[ndim](out_channels),
        nn.ReLU(),
        _POOL[ndim](2, ceil_mode=True),
    )


def _encoder(ndim: int, in_channels: int, widths: list[int]) -> nn.Sequential:
    """``len(widths)`` blocks, the first taking ``in_channels``."""
    return nn.Sequential(*[_block(ndim, in_channels if i == 0 else widths[i - 1], w) for i, w in enumerate(widths)])


def _global_average(features: torch.Tensor) -> torch.Tensor:
    """Global average over the spatial axes: ``(N, K, ...)`` → ``(N, K)``."""
    return features.flatten(2).mean(dim=2)


class FusionClassifier(nn.Module):
    """A small CNN classifier with early, intermediate or late fusion of the channels.

    Input ``(N, C, [Z,] Y, X)``, output ``(N, n_classes)`` logits (for late
    fusion, the log of the weighted mean of the channel classifiers'
    probabilities, so ``softmax`` of it is that mean). Each encoder is
    ``depth`` blocks followed by global average pooling.
    ``channel_layer(c)`` is channel ``c``'s last encoder block, the layer for
    that channel's Grad-CAM (intermediate and late fusion only: early fusion
    has one encoder for all channels).
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        spatial_dims: int,
        *,
        fusion: str = "intermediate",
        base_channels: int = 8,
        depth: int = 3,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise InputError(f"the classifier works on 2D or 3D crops; got {spatial_dims} spatial axes")
        _check_fusion(fusion)
        widths = [base_channels * 2**i for i in range(depth)]
        self.fusion = fusion
        self.in_channels = in_channels
        self.n_classes = n_classes
        if fusion == "early":
            self.encoder = _encoder(spatial_dims, in_channels, widths)
            self.head = nn.Linear(widths[-1], n_classes)
            return
        self.channel_encoders = nn.ModuleList(_encoder(spatial_dims, 1, widths) for _ in range(in_channels))
        if fusion == "intermediate":
            self.head = nn.Linear(in_channels * widths[-1], n_classes)
        else:
            self.channel_heads = nn.ModuleList(nn.Linear(widths[-1], n_classes) for _ in range(in_channels))
            #: Softmax of these gives the channel weights; equal weights to start with.
            self.weight_logits = nn.Parameter(torch.zeros(in_channels))

    def channel_layer(self, channel: int) -> nn.Module:
        if self.fusion == "early":
            raise InputError(
                "early fusion has one encoder for all channels, so there is no per-channel Grad-CAM; "
                "use intermediate or late fusion, or Rank channels"
            )
        return cast(nn.Sequential, self.channel_encoders[channel])[-1]

    def channel_weights(self) -> np.ndarray | None:
        """Late fusion: each channel classifier's weight in the fused probability (sums to 1); None otherwise."""
        if self.fusion != "late":
            return None
        return torch.softmax(self.weight_logits.detach(), dim=0).cpu().numpy()

    def channel_classifier(self, x: torch.Tensor, channel: int) -> torch.Tensor:
        """Late fusion: the logits ``(N, n_classes)`` of channel ``channel``'s own classifier."""
        features = self.channel_encoders[channel](x[:, channel : channel + 1])
        return self.channel_heads[channel](_global_average(features))

    def channel_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Late fusion: every channel classifier's logits, ``(N, C, n_classes)``."""
        return torch.stack([self.channel_classifier(x, c) for c in range(self.in_channels)], dim=1)

    def fuse(self, channel_logits: torch.Tensor) -> torch.Tensor:
        """Late fusion: log Σ_c w_c softmax(logits_c), the log of the weighted mean probability."""
        log_weights = torch.log_softmax(self.weight_logits, dim=0)[None, :, None]
        return torch.logsumexp(log_weights + torch.log_softmax(channel_logits, dim=2), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion == "early":
            return self.head(_global_average(self.encoder(x)))
        if self.fusion == "late":
            return self.fuse(self.channel_logits(x))
        features = torch.cat(
            [_global_average(encoder(x[:, c : c + 1])) for c, encoder in enumerate(self.channel_encoders)], dim=1
        )
        return self.head(features)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """Class-weighted cross entropy of the fused output.

        Late fusion: each channel classifier learns from its own cross entropy
        only (as if trained on its channel alone), and the channel weights
        learn from the fused probability of the (detached) channel outputs:
        the sum of both losses, each reaching only its own parameters.
        """
        if self.fusion != "late":
            return F.cross_entropy(self(x), y, weight=weight)
        logits = self.channel_logits(x)
        per_channel = sum(F.cross_entropy(logits[:, c], y, weight=weight) for c in range(logits.shape[1]))
        return per_channel + F.nll_loss(self.fuse(logits.detach()), y, weight=weight)


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
        images.shape[1],
        n_classes,
        images.ndim - 2,
        fusion=settings.fusion,
        base_channels=settings.base_channels,
        depth=settings.depth,
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
            loss = model.training_loss(x_all[batch], y_all[batch], weights)
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


def _check_training_inputs(
    images: Any, labels: Any, groups: Any, settings: ClassifierSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if images.ndim not in (4, 5):
        raise InputError(f"expected crops (N, C, Y, X) or (N, C, Z, Y, X); got shape {images.shape}")
    if not len(images) == len(labels) == len(groups):
        raise InputError(
            f"{len(images)} crops, {len(labels)} labels and {len(groups)} source ids: they must match one to one"
        )
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
            model = _fit(
                images[train],
                y[train],
                n_classes,
                settings,
                seed=settings.seed + fold,
                fold=fold,
                stop_event=stop_event,
                on_update=on_update,
            )
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
    folds, probabilities, fold_of, stopped = _cross_validate(
        images, y, groups, classes.size, settings, stop_event, on_update
    )
    model = None
    if not stopped:
        try:
            model = _fit(
                images,
                y,
                classes.size,
                settings,
                seed=settings.seed + settings.folds,
                fold=None,
                stop_event=stop_event,
                on_update=on_update,
            )
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


def _channel_map(model: FusionClassifier, images: Any, class_index: int, channel: int) -> np.ndarray:
    """Raw (unnormalised) Grad-CAM of class ``class_index`` at channel ``channel``'s encoder.

    Intermediate fusion: of the class logit. Late fusion: of that channel
    classifier's own class logit, times the channel's weight. (The fused
    output is the log of a weighted mean of probabilities; where a channel
    classifier is confident its softmax saturates and the gradient of the
    fused output through it vanishes, so a confident, informative channel
    would look like it gave no evidence.)
    """
    layer = model.channel_layer(channel)
    if model.fusion != "late":
        return gradcam_classifier(model, images, class_index, layer=layer, normalize=False)
    weights = model.channel_weights()
    assert weights is not None  # late fusion weighs its channels
    weight = float(weights[channel])
    logit = lambda batch: model.channel_classifier(batch, channel)[:, class_index]  # noqa: E731
    return weight * gradcam(model, images, logit, layer=layer, normalize=False)


def channel_gradcam(model: FusionClassifier, images: Any, class_index: int) -> np.ndarray:
    """Grad-CAM of one class at each channel's encoder: ``(C, N, [Z,] Y, X)``.

    Maps are normalised per image jointly over the channels (divided by the
    largest value over all channels of that image), so a channel whose map is
    dimmer contributes less evidence for the class than a brighter one. Late
    fusion: each channel classifier's map of its own class logit, weighted by
    the channel's weight in the fused probability.
    """
    if not 0 <= class_index < model.n_classes:
        raise InputError(f"class {class_index} does not exist: the classifier has classes 0 to {model.n_classes - 1}")
    raw = np.stack([_channel_map(model, images, class_index, c) for c in range(model.in_channels)])
    peak = raw.reshape(raw.shape[0], raw.shape[1], -1).max(axis=(0, 2)).reshape(1, -1, *[1] * (raw.ndim - 2))
    return np.divide(raw, peak, out=np.zeros_like(raw), where=peak > 0)


def channel_evidence(model: FusionClassifier, images: Any, labels: Any, classes: np.ndarray) -> np.ndarray:
    """Share of Grad-CAM mass per channel for each class: ``(n_classes, C)``, rows summing to 1 (0 where no evidence).

    Row k uses the crops labelled ``classes[k]`` and the logit of class k: it
    answers "which channel drives class k".
    """
    labels = np.asarray(labels)
    images = np.asarray(images, dtype=np.float32)
    shares = np.zeros((classes.size, model.in_channels))
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
        _, probabilities, fold_of, stopped = _cross_validate(
            images[:, c : c + 1], y, groups, classes.size, settings, stop_event, on_update
        )
        if stopped:
            break
        ranking.append(ChannelRanking(channel=c, name=names[c], metrics=classification_metrics(y, probabilities)))
    return sorted(ranking, key=lambda r: -r.metrics.balanced_accuracy)
