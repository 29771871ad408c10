"""What the Classifier widget shows and writes: which crops take part, metric tables, export.

Pure functions around :mod:`~napari_morphospace.core.classifier.fusion`, usable from a
script and tested without a display:

* :func:`summarise_labels` / :func:`check_folds` — which crops have a class
  (rows with an empty label are left out and counted), how many source images
  each class comes from, and a refusal that says what to change when a class
  has fewer source images than cross-validation folds.
* :func:`train_with_evidence` — cross-validate, train the final model and
  measure which channel drives each class (:func:`channel_evidence`).
* :func:`metrics_table`, :func:`evidence_table`, :func:`ranking_table` — the
  numbers as pandas tables, one row per fold / class / channel; the metrics
  table also has each metric's mean ± SD over the folds (as the organelle study
  reports them) next to the metrics pooled over all out-of-fold predictions.
* :func:`average_precision` — the area under a precision–recall curve.
* :func:`write_metrics` — the metrics as CSV or JSON, written atomically.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import atomic_write_text, to_dict
from ..errors import InputError
from .fusion import (
    ChannelRanking,
    ClassificationMetrics,
    ClassifierResult,
    ClassifierSettings,
    ClassifierUpdate,
    channel_evidence,
    train_classifier,
)

METRIC_COLUMNS = ("balanced_accuracy", "macro_f1", "mcc", "auroc")
METRIC_TITLES = {"balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1", "mcc": "MCC", "auroc": "AUROC"}
LABEL_COLUMNS = ("group", "annotation")


# --------------------------------------------------------------------------- which crops take part


@dataclass
class LabelSummary:
    """The crops with a class in ``column``, and how the classes spread over source images.

    ``positions``: row positions (``iloc``) of the labelled crops in the crop
    table; ``labels`` and ``sources``: their class (as text) and source image;
    ``n_left_out``: crops whose label is empty; ``crops_per_class`` and
    ``sources_per_class``: counts per class, classes sorted.
    """

    column: str
    positions: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    n_left_out: int
    crops_per_class: dict[str, int]
    sources_per_class: dict[str, int]

    @property
    def classes(self) -> list[str]:
        return list(self.crops_per_class)

    def text(self) -> str:
        """One line per class: ``"treated: 24 crops from 3 sources"``, and the left-out count."""
        lines = [
            f"{name}: {self.crops_per_class[name]} crops from {self.sources_per_class[name]} source(s)"
            for name in self.classes
        ]
        if self.n_left_out:
            lines.append(f"{self.n_left_out} crop(s) with an empty {self.column} left out")
        return "\n".join(lines) if lines else f"no crop has a {self.column}"


def summarise_labels(table: pd.DataFrame, column: str) -> LabelSummary:
    """The crops of ``table`` that have a class in ``column`` (``"group"`` or ``"annotation"``).

    Empty labels (missing values, empty or blank text) are left out and
    counted; labels are compared as text, so ``1`` and ``"1"`` are one class.
    """
    if column not in table.columns:
        raise InputError(
            f"the crop table has no {column!r} column; "
            f"choose one of {', '.join(c for c in LABEL_COLUMNS if c in table.columns)}"
        )
    if "source" not in table.columns:
        raise InputError(
            "the crop table has no source column: cross-validation must keep the crops of one image together"
        )
    values = table[column]
    text = values.astype(str).str.strip()
    labelled = (values.notna() & (text != "")).to_numpy()
    positions = np.flatnonzero(labelled)
    labels = text.to_numpy()[positions].astype(str)
    sources = table["source"].astype(str).to_numpy()[positions]
    frame = pd.DataFrame({"label": labels, "source": sources})
    crops = frame.groupby("label").size()
    distinct_sources = frame.groupby("label")["source"].nunique()
    return LabelSummary(
        column=column,
        positions=positions,
        labels=labels,
        sources=sources,
        n_left_out=int((~labelled).sum()),
        crops_per_class={str(k): int(v) for k, v in crops.items()},
        sources_per_class={str(k): int(v) for k, v in distinct_sources.items()},
    )


def check_folds(summary: LabelSummary, folds: int) -> None:
    """Refuse a cross-validation that cannot keep every class in every test fold.

    Folds are grouped by source image, so a class needs at least ``folds``
    source images; otherwise some test folds miss the class and its scores
    mean nothing.

    Raises
    ------
    InputError
        Naming the classes that come from too few sources and the largest
        number of folds that would work.
    """
    if len(summary.classes) < 2:
        found = f"only {summary.classes[0]!r}" if summary.classes else "none"
        raise InputError(
            f"the classifier needs at least 2 classes in column {summary.column!r}; found {found}. "
            "Give the crops groups or annotations, or choose the other label column"
        )
    short = {name: n for name, n in summary.sources_per_class.items() if n < folds}
    if not short:
        return
    fewest = min(summary.sources_per_class.values())
    listing = ", ".join(f"{name!r} from {n}" for name, n in short.items())
    advice = (
        f"Set folds to {fewest} or fewer, or add images of those classes"
        if fewest >= 2
        else "Add at least one more source image of those classes (cross-validation needs 2 folds or more)"
    )
    raise InputError(
        f"{folds}-fold cross-validation grouped by source image needs at least {folds} source images per class; "
        f"class {listing} source image(s). {advice}"
    )


# --------------------------------------------------------------------------- training


def train_with_evidence(
    images: Any,
    labels: Any,
    groups: Any,
    settings: ClassifierSettings,
    *,
    stop_event: threading.Event | None = None,
    on_update: Callable[[ClassifierUpdate], None] | None = None,
) -> tuple[ClassifierResult, np.ndarray | None]:
    """:func:`~napari_morphospace.core.classifier.fusion.train_classifier`,
    then per-channel evidence of the final model.

    Returns the result and ``evidence`` ``(n_classes, C)`` (each class's share
    of Grad-CAM mass per channel), or None when the run was stopped before
    the final model was trained, or with early fusion (one encoder for all
    channels has no per-channel Grad-CAM).
    """
    images = np.asarray(images, dtype=np.float32)
    result = train_classifier(images, labels, groups, settings, stop_event=stop_event, on_update=on_update)
    if result.model is None or settings.fusion == "early":
        return result, None
    return result, channel_evidence(result.model, images, np.asarray(labels), result.classes)


# --------------------------------------------------------------------------- tables


def _metric_values(metrics: ClassificationMetrics) -> dict[str, float]:
    return {name: float(getattr(metrics, name)) for name in METRIC_COLUMNS}


def fold_mean_sd(folds: Sequence[ClassificationMetrics]) -> pd.DataFrame:
    """Each metric's mean and standard deviation over the folds: index ``"mean"``, ``"SD"``; one column per metric.

    The SD is the sample SD (ddof=1), undefined (NaN) with one fold. A fold
    where a metric is undefined (AUROC when the fold's test set lacks a
    class) is left out of that metric's mean and SD.
    """
    values = np.array([[getattr(m, name) for name in METRIC_COLUMNS] for m in folds], dtype=float).reshape(
        len(folds), len(METRIC_COLUMNS)
    )
    rows = {}
    for label, statistic in (("mean", _mean), ("SD", _sample_sd)):
        rows[label] = [statistic(column[np.isfinite(column)]) for column in values.T]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(METRIC_COLUMNS))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _sample_sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


def metrics_table(result: ClassifierResult) -> pd.DataFrame:
    """Balanced accuracy, macro-F1, MCC and AUROC per fold, their mean and SD over folds, and pooled.

    Index: ``"fold k"``, then ``"mean"`` and ``"SD"`` over the folds
    (:func:`fold_mean_sd`), then ``"pooled"`` (over all out-of-fold
    predictions); empty when no fold finished. ``n_crops``: crops tested in
    that row (empty for mean and SD).
    """
    rows = {
        f"fold {k + 1}": {**_metric_values(m), "n_crops": int(m.confusion.sum())} for k, m in enumerate(result.folds)
    }
    if result.folds:
        rows.update(fold_mean_sd(result.folds).to_dict(orient="index"))
    if result.pooled is not None:
        rows["pooled"] = {**_metric_values(result.pooled), "n_crops": int(result.pooled.confusion.sum())}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[*METRIC_COLUMNS, "n_crops"])
    table["n_crops"] = table["n_crops"].astype("Int64")  # whole numbers, empty for mean and SD
    table.index.name = "fold"
    return table


def evidence_table(evidence: np.ndarray, classes: Sequence[Any], channel_names: Sequence[str]) -> pd.DataFrame:
    """Share of Grad-CAM evidence per channel (columns) for each class (rows); rows sum to 1 (0 without evidence)."""
    evidence = np.asarray(evidence, dtype=float)
    if evidence.shape != (len(classes), len(channel_names)):
        raise InputError(
            f"evidence of shape {evidence.shape} does not match {len(classes)} classes × {len(channel_names)} channels"
        )
    return pd.DataFrame(
        evidence, index=pd.Index([str(c) for c in classes], name="class"), columns=list(map(str, channel_names))
    )


def ranking_table(ranking: Sequence[ChannelRanking]) -> pd.DataFrame:
    """Single-channel classifiers, most informative channel first: ``rank``, ``channel``, pooled metrics."""
    rows = [{"rank": i + 1, "channel": r.name, **_metric_values(r.metrics)} for i, r in enumerate(ranking)]
    return pd.DataFrame(rows, columns=["rank", "channel", *METRIC_COLUMNS])


# --------------------------------------------------------------------------- precision–recall


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under a precision–recall curve as scikit-learn's ``average_precision_score``: Σ (Rₙ − Rₙ₋₁) Pₙ.

    ``precision``/``recall`` as returned by ``precision_recall_curve``
    (recall decreasing, last point (1, 0)).
    """
    return float(-np.sum(np.diff(recall) * np.asarray(precision)[:-1]))


# --------------------------------------------------------------------------- export


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _metrics_dict(metrics: ClassificationMetrics, classes: Sequence[str]) -> dict[str, Any]:
    return {
        **{name: _finite_or_none(v) for name, v in _metric_values(metrics).items()},
        "n_crops": int(metrics.confusion.sum()),
        "confusion": np.asarray(metrics.confusion).astype(int).tolist(),
        "average_precision": {classes[k]: average_precision(p, r) for k, (p, r) in sorted(metrics.pr_curves.items())},
    }


def metrics_document(
    result: ClassifierResult,
    *,
    evidence: np.ndarray | None = None,
    channel_names: Sequence[str] = (),
    label_column: str = "",
) -> dict[str, Any]:
    """Everything :func:`write_metrics` puts in its JSON file, as JSON-ready builtins (NaN as None).

    The same document goes into an analysis folder's ``classifier.json``,
    which the report shows.
    """
    classes = [str(c) for c in result.classes]
    summary = fold_mean_sd(result.folds)
    document: dict[str, Any] = {
        "label_column": label_column,
        "classes": classes,
        "settings": to_dict(result.settings),
        "stopped": bool(result.stopped),
        "folds": [_metrics_dict(m, classes) for m in result.folds],
        "fold_mean": {name: _finite_or_none(v) for name, v in summary.loc["mean"].items()},
        "fold_sd": {name: _finite_or_none(v) for name, v in summary.loc["SD"].items()},
        "pooled": None if result.pooled is None else _metrics_dict(result.pooled, classes),
    }
    if evidence is not None:
        document["channel_evidence"] = evidence_table(evidence, classes, channel_names).to_dict(orient="index")
    weights = None if result.model is None else result.model.channel_weights()
    if weights is not None:
        names = list(channel_names) or [f"channel {c}" for c in range(len(weights))]
        document["channel_weights"] = {str(name): float(w) for name, w in zip(names, weights, strict=True)}
    return document


def write_metrics(
    result: ClassifierResult,
    path: str | Path,
    *,
    evidence: np.ndarray | None = None,
    channel_names: Sequence[str] = (),
    label_column: str = "",
) -> Path:
    """Write the cross-validated metrics to ``path``: ``.csv`` (the :func:`metrics_table`) or ``.json`` (everything).

    The JSON file holds the classes, settings, per-fold and pooled metrics
    with confusion matrices (rows: true class) and average precision per
    class, and the per-channel evidence; undefined values (AUROC with a
    class missing from a fold) are ``null``. The file is written to a
    temporary sibling and renamed into place, so it is never half written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        atomic_write_text(path, metrics_table(result).to_csv())
        return path
    if suffix != ".json":
        raise InputError(
            f"cannot write metrics as {path.suffix or 'a file without extension'!r}; name the file .csv or .json"
        )
    document = metrics_document(result, evidence=evidence, channel_names=channel_names, label_column=label_column)
    atomic_write_text(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
    return path


__all__ = [
    "LABEL_COLUMNS",
    "METRIC_COLUMNS",
    "METRIC_TITLES",
    "LabelSummary",
    "average_precision",
    "check_folds",
    "evidence_table",
    "fold_mean_sd",
    "metrics_document",
    "metrics_table",
    "ranking_table",
    "summarise_labels",
    "train_with_evidence",
    "write_metrics",
]
