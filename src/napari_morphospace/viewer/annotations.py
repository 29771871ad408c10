"""Annotations on the images: each cell's class drawn over its Labels layer, and the cells a click hits.

napari-aware, Qt-free (the Annotate widget uses these; a script can too).
The class codes and colours come from :mod:`core.project.annotations`; here they
become one Labels picture per source layer, frame by frame for time-lapses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap

from ..core.cells.selection import spatial_ndim
from ..core.project.annotations import AnnotationClass, annotation_overlay, class_codes
from .features import is_overlay, source_names


def source_rows(cells: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The cells cut from the source known by any of ``names`` (layer name, file)."""
    return cells[cells["source"].astype(str).isin(names)]


def annotated_sources(layers: Any, cells: pd.DataFrame) -> list[Labels]:
    """The Labels layers the cells were cut from (by layer name or ``metadata["source"]``)."""
    sources = set(cells["source"].astype(str))
    return [
        layer
        for layer in layers
        if isinstance(layer, Labels) and not is_overlay(layer) and sources & set(source_names(layer))
    ]


def overlay_data(
    labels: np.ndarray, label_ids: np.ndarray, codes: np.ndarray, t: np.ndarray | None, ndim: int
) -> np.ndarray:
    """Class code per pixel of ``labels`` (0 = not annotated), frame by frame for time-lapses
    (``ndim``: spatial axes)."""
    labels = np.asarray(labels)
    if labels.ndim <= ndim or t is None:
        return annotation_overlay(labels, label_ids, codes)
    out = np.zeros(labels.shape, dtype=np.uint16)
    for frame in range(labels.shape[0]):
        here = t == frame
        out[frame] = annotation_overlay(labels[frame], label_ids[here], codes[here])
    return out


def annotation_layer(layer: Labels, cells: pd.DataFrame, classes: Sequence[AnnotationClass]) -> tuple[np.ndarray, dict]:
    """The "annotations" picture of source ``layer``: each cell's class code, coloured like its class;
    with its placement."""
    rows = source_rows(cells, source_names(layer))
    codes = class_codes(rows["annotation"].to_numpy(), [cls.name for cls in classes])
    data = overlay_data(
        layer.data,
        rows["label_id"].to_numpy(),
        codes,
        rows["t"].to_numpy() if "t" in rows.columns else None,
        spatial_ndim(cells, layer.ndim),
    )
    colours: dict[int | None, tuple[float, float, float, float]] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
    colours.update({i + 1: cls.rgba for i, cls in enumerate(classes)})
    return data, {
        "scale": layer.scale,
        "translate": layer.translate,
        "colormap": DirectLabelColormap(color_dict=colours),
    }


def clicked_cells(layer: Labels, position: Sequence[float], cells: pd.DataFrame) -> np.ndarray:
    """Crop ids of the cell under world ``position`` in source ``layer`` (its frame too, for a time-lapse);
    empty: none."""
    value = layer.get_value(position, world=True)
    if value is None or isinstance(value, tuple) or int(value) <= 0:
        return np.zeros(0, np.int64)
    rows = source_rows(cells, source_names(layer))
    mask = (rows["label_id"] == int(value)).to_numpy()
    if layer.ndim > spatial_ndim(cells, layer.ndim) and "t" in rows.columns:
        mask = mask & (rows["t"] == int(round(float(layer.world_to_data(position)[0])))).to_numpy()
    return rows.loc[mask, "crop_id"].to_numpy(dtype=np.int64)
