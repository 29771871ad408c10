"""Track ids of the session's cells from what the viewer shows: tracked Labels layers or a Tracks layer.

napari-aware but Qt-free: reads layers, converts a Tracks layer's points into
the pixel coordinates of each cell's Labels layer, and calls
:mod:`core.analysis.tracks` for the matching.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Labels, Tracks

from ..core.analysis.tracks import track_ids_from_labels, track_ids_from_tracks
from ..core.cells.crop_set import NO_TRACK
from ..core.errors import InputError
from .features import is_overlay, source_names


def source_layer(layers: Any, source: str) -> Labels | None:
    """The Labels layer the cells of ``source`` were cut from (by name or ``metadata["source"]``), or None."""
    return next((layer for layer in layers if isinstance(layer, Labels) and not is_overlay(layer)
                 and source in source_names(layer)), None)  # fmt: skip


def cell_track_ids(cells: pd.DataFrame, layers: Any, tracks: Tracks | None = None) -> np.ndarray:
    """Track id of every cell: its label id (``tracks=None``: tracked labels), or the track of a Tracks layer.

    With a Tracks layer, its points are moved into the pixel coordinates of
    each cell's source Labels layer (through world coordinates: scale and
    translate), and a cell gets the track whose point of its frame lies
    inside its label; cells whose source is no Labels layer fall back to
    their bounding box (:func:`core.analysis.tracks.track_ids_from_tracks`).
    """
    if tracks is None:
        return track_ids_from_labels(cells)
    data = np.asarray(tracks.data, dtype=float)
    world = data[:, 1:] * np.asarray(tracks.scale) + np.asarray(tracks.translate)
    ids = np.full(len(cells), NO_TRACK, np.int64)
    for source, rows in cells.groupby(cells["source"].astype(str), sort=False).indices.items():
        layer = source_layer(layers, source)
        if layer is None:
            pixel, labels_at = data[:, 1:], None
        elif layer.ndim != world.shape[1]:
            raise InputError(
                f"the Tracks layer {tracks.name!r} has {world.shape[1]} axes (t, [z,] y, x) but the Labels layer "
                f"{layer.name!r} has {layer.ndim}; use the time-lapse labels the tracks were made on"
            )
        else:
            pixel = (world - np.asarray(layer.translate)) / np.asarray(layer.scale)
            labels_at = _frames(layer)
        points = np.column_stack([data[:, 0], pixel])
        ids[rows] = track_ids_from_tracks(cells.iloc[rows], points, labels_at)
    return ids


def _frames(layer: Labels) -> Any:
    data = layer.data[0] if layer.multiscale else layer.data
    return lambda t: np.asarray(data[t])
