"""The Classifier dock's work from a script with a viewer: train on a crop set, rank its channels, show Grad-CAM.

Qt-free. The computing is :mod:`~napari_morphospace.core.classifier`; the
functions here read the crops of a crop set first (a zarr/dask set is read
here: call them off the GUI thread) and report through ``on_update`` (the
:class:`~napari_morphospace.core.classifier.fusion.ClassifierUpdate` of each
epoch). :func:`show_class_gradcam` puts a class's per-channel Grad-CAM maps
on the source layers: one image layer per channel, per source (and frame)
when the class's crops come from several, named by :func:`gradcam_layer_name`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image

from ..core.cells.crop_set import CropSet
from ..core.classifier.fusion import (
    ChannelRanking,
    ClassifierResult,
    ClassifierSettings,
    channel_gradcam,
    rank_channels,
)
from ..core.classifier.report import LabelSummary, train_with_evidence
from ..core.errors import InputError
from .layers import source_layers
from .overlays import channel_colormaps_of, place_maps, put_image


def gradcam_layer_name(channel: str, class_name: str, source: str = "", frame: int | None = None) -> str:
    """``"<channel> Grad-CAM (<class>)"``, with ``" · <source>"`` (and ``" t=<frame>"``) when the class spans
    several."""
    return (
        f"{channel} Grad-CAM ({class_name})"
        + (f" · {source}" if source else "")
        + (f" t={frame}" if frame is not None else "")
    )


def crop_images(crop_set: CropSet, positions: np.ndarray) -> np.ndarray:
    """The crops at ``positions`` as float32 numpy (reads a zarr/dask set)."""
    return np.asarray(crop_set.subset(positions).images, dtype=np.float32)


def train_on_crop_set(
    on_update: Callable[[Any], None] | None,
    crop_set: CropSet,
    labels: LabelSummary,
    settings: ClassifierSettings,
    stop_event: threading.Event | None = None,
) -> tuple[ClassifierResult, np.ndarray | None]:
    """Cross-validate and train on the labelled crops of ``crop_set``; ``(result, per-channel evidence)``."""
    images = crop_images(crop_set, labels.positions)
    return train_with_evidence(
        images, labels.labels, labels.sources, settings, stop_event=stop_event, on_update=on_update
    )


def rank_crop_set_channels(
    on_update: Callable[[Any], None] | None,
    crop_set: CropSet,
    labels: LabelSummary,
    settings: ClassifierSettings,
    stop_event: threading.Event | None = None,
) -> list[ChannelRanking]:
    """One classifier per channel of ``crop_set``; the ranking (the channels done, when stopped)."""
    images = crop_images(crop_set, labels.positions)
    return rank_channels(
        images,
        labels.labels,
        labels.sources,
        settings,
        channel_names=list(crop_set.channel_names),
        stop_event=stop_event,
        on_update=on_update,
    )


def crop_set_gradcam(model: Any, crop_set: CropSet, positions: np.ndarray, class_index: int) -> np.ndarray:
    """Per-channel Grad-CAM ``(C, N, [Z,] Y, X)`` of class ``class_index`` on the crops at ``positions``."""
    return channel_gradcam(model, crop_images(crop_set, positions), class_index)


def class_cells(
    viewer: Any, result: ClassifierResult, crop_set: CropSet, labels: LabelSummary, class_name: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """Positions in ``crop_set`` and crop-table rows of the crops of ``class_name`` that the classifier was trained on.

    Everything that would stop per-channel Grad-CAM from being shown is
    refused here, before computing.

    Raises
    ------
    InputError
        Without a final model (a stopped run), for early fusion (one encoder
        for all channels), for a class the classifier does not know, or when
        a source layer of the crops is not in the viewer.
    """
    if result.model is None:
        raise InputError(
            "there is no trained classifier: press Train and let it finish (a stopped run has no final model)"
        )
    if result.settings.fusion == "early":
        raise InputError(
            "early fusion has one encoder for all channels, so there is no per-channel Grad-CAM; "
            "train with intermediate or late fusion"
        )
    classes = [str(c) for c in result.classes]
    if class_name not in classes:
        raise InputError(f"class {class_name!r} is not one of the classifier's classes: {', '.join(classes)}")
    positions = labels.positions[labels.labels == class_name]
    rows = crop_set.table.iloc[positions].reset_index(drop=True)
    source_layers(viewer.layers, rows)
    return positions, rows


def show_class_gradcam(
    viewer: Any, maps: np.ndarray, rows: pd.DataFrame, channel_names: Sequence[str], class_name: str
) -> list[Image]:
    """One overlay per channel and source (and frame) of the maps ``(C, N, …)`` of the cells ``rows``, on their fields.

    Maps are placed in the source layers' world coordinates; each layer's
    ``metadata`` holds ``class_name``, ``channel``, ``source`` and ``label_ids``.

    Raises
    ------
    InputError
        When a row's source layer is not in the viewer.
    """
    colormaps = channel_colormaps_of(viewer, channel_names)
    placed = [place_maps(viewer.layers, maps[c], rows) for c in range(len(channel_names))]
    several = len(placed[0]) > 1
    shown = []
    for c, channel in enumerate(channel_names):
        for part in placed[c]:
            source = part.source.name
            name = gradcam_layer_name(channel, class_name, source if several else "", part.frame if several else None)
            overlay = put_image(
                viewer,
                name,
                part.data,
                translate=part.translate,
                scale=part.scale,
                colormap=colormaps[c],
                blending="additive",
                opacity=0.8,
                contrast_limits=(0.0, 1.0),
            )
            overlay.metadata.update(class_name=class_name, channel=channel, source=source, label_ids=part.label_ids)
            shown.append(overlay)
    return shown
