"""Tracks of the session's cells: their ids from what the viewer shows, their statistics, one track shown.

napari-aware but Qt-free (the Tracks widget calls these; so can a script):
track ids come from tracked Labels layers, a Tracks layer (its points
converted into the pixel coordinates of each cell's Labels layer) or a
column of the cells, matched by :mod:`core.analysis.tracks`;
:func:`summarise_tracks` gathers what the widget shows about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Labels, Tracks

from ..core.analysis import tracks as core_tracks
from ..core.analysis.cell_table import mu_columns
from ..core.cells.crop_set import NO_TRACK, TRACK_ID
from ..core.cells.selection import spatial_ndim
from ..core.cells.track_ids import track_ids_from_column, track_ids_from_labels, track_ids_from_tracks
from ..core.errors import InputError
from .features import is_overlay, source_names
from .layers import unwrap
from .session import session_for


def source_layer(layers: Any, source: str) -> Labels | None:
    """The Labels layer the cells of ``source`` were cut from (by name or ``metadata["source"]``), or None."""
    return next(
        (
            layer
            for layer in layers
            if isinstance(layer, Labels) and not is_overlay(layer) and source in source_names(layer)
        ),
        None,
    )


def cell_track_ids(cells: pd.DataFrame, layers: Any, tracks: Tracks | None = None) -> np.ndarray:
    """Track id of every cell: its label id (``tracks=None``: tracked labels), or the track of a Tracks layer.

    With a Tracks layer, its points are moved into the pixel coordinates of
    each cell's source Labels layer (through world coordinates: scale and
    translate), and a cell gets the track whose point of its frame lies
    inside its label; cells whose source is no Labels layer fall back to
    their bounding box (:func:`core.cells.track_ids.track_ids_from_tracks`).
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


def give_track_ids(viewer: Any, tracks: Tracks | None = None, *, column: str | None = None) -> int:
    """Give every cell of the viewer's session its track id; returns the number of tracks.

    From the label ids of tracked Labels layers (the default), the tracks of
    a Tracks layer, or a whole-number ``column`` of the cells (e.g. a
    tracker's ``TRACK_ID`` in a feature table). The ids go into the per-cell
    table's ``track_id`` column, so the layers' features, the scatter plot,
    exports and the analysis folder carry them.
    """
    session = session_for(viewer)
    cells = session.cells
    if cells is None:
        raise InputError("there are no cells yet: build or load a crop set in the Cells widget first")
    if column is not None:
        ids = track_ids_from_column(cells, column)
    else:
        ids = cell_track_ids(cells, viewer.layers, None if tracks is None else unwrap(tracks))
    session.set_columns(cells["crop_id"].to_numpy(), {TRACK_ID: ids})
    return int(pd.unique(ids[ids != NO_TRACK]).size)


@dataclass
class TrackSummary:
    """What the Tracks widget shows: one row per track, how smooth the paths are, two groups of tracks compared."""

    statistics: pd.DataFrame
    #: Mean step through latent space along the tracks, and with their frames shuffled.
    mean_step: float
    shuffled_step: float
    #: The comparison of two groups (None without a group column, or when they could not be compared: see ``note``).
    comparison: pd.DataFrame | None = None
    note: str = ""


def summarise_tracks(
    latents: pd.DataFrame,
    *,
    frame_interval: float = 1.0,
    region: np.ndarray | None = None,
    group_column: str | None = None,
) -> TrackSummary:
    """Per-track statistics of the embedded cells (:func:`core.analysis.tracks.track_statistics`), their smoothness and,
    with ``group_column``, the comparison of its two groups; ``region``: crop ids the tracks may reach."""
    columns = mu_columns(latents)
    statistics = core_tracks.track_statistics(
        latents, columns, frame_interval=frame_interval, region=region, group_column=group_column
    )
    if statistics.empty:
        raise InputError("no embedded cell lies on a track; give track ids first")
    real, shuffled = core_tracks.smoothness(latents, columns)
    summary = TrackSummary(statistics, real, shuffled)
    if group_column is not None:
        try:
            summary.comparison = core_tracks.compare_track_groups(statistics, group_column)
        except InputError as err:
            summary.note = f"not compared: {err}"
    return summary


def show_track(viewer: Any, track_id: int) -> np.ndarray:
    """Select the cells of track ``track_id`` (highlighted in every plot and image) and show its first frame.

    Returns their crop ids.
    """
    session = session_for(viewer)
    cells = session.latents if session.latents is not None else session.cells
    if cells is None or TRACK_ID not in cells.columns:
        raise InputError("the cells have no track ids yet; give them track ids first")
    mine = cells[pd.to_numeric(cells[TRACK_ID], errors="coerce") == track_id]
    session.selection = mine["crop_id"].to_numpy(np.int64)
    layer = source_layer(viewer.layers, str(mine["source"].iloc[0])) if len(mine) else None
    if layer is not None and layer.ndim > spatial_ndim(cells, layer.ndim):  # a time-lapse: show the first frame
        world = layer.data_to_world([int(mine["t"].min())] + [0] * (layer.ndim - 1))
        viewer.dims.set_point(viewer.dims.ndim - layer.ndim, world[0])
    return session.selection
