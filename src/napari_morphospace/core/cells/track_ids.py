"""Which track each crop belongs to: track ids from persistent label ids, a Tracks layer or a table column.

A time-lapse follows the same cell over frames. Each crop of such a cell
carries the cell's ``track_id`` (a column of the crop table and of the
per-cell table; ``NO_TRACK`` = -1 for a crop on no track), read from one of
three places:

- label ids that persist over time (a tracked 3D+t / 2D+t label image, where
  the label id *is* the track id): :func:`track_ids_from_labels`;
- a napari Tracks layer (rows ``track_id, t, [z,] y, x``): each crop gets the
  track whose point at the crop's frame lies inside its label (when the label
  image is given) or, without it, inside its bounding box and nearest its
  centre: :func:`track_ids_from_tracks`;
- a column of a table (e.g. a tracker's export): :func:`track_ids_from_column`.

How tracks then move through latent space is :mod:`~napari_morphospace.core.analysis.tracks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..errors import InputError
from .crop_set import NO_TRACK, TRACK_ID


def track_ids_from_labels(table: pd.DataFrame) -> np.ndarray:
    """Track id of each crop of a tracked label image, where a label id persists over time: the label id itself.

    Raises
    ------
    InputError
        When the crops come from a single frame: a still image has no tracks.
    """
    require_columns(table, ("label_id", "t"), "the crop table")
    if table["t"].nunique() < 2:
        raise InputError(
            "the crops come from a single frame, so label ids cannot be tracks; "
            "use a time-lapse (2D+t or 3D+t) label image whose label ids persist over time"
        )
    return table["label_id"].to_numpy(dtype=np.int64)


def track_ids_from_column(table: pd.DataFrame, column: str) -> np.ndarray:
    """Track id of each crop from a whole-number column of ``table`` (missing values: ``NO_TRACK``)."""
    require_columns(table, (column,), "the table")
    values = pd.to_numeric(table[column], errors="coerce")
    numbers = values.dropna()
    if len(numbers) and not np.all(numbers == np.round(numbers)):
        raise InputError(f"column {column!r} holds fractions; track ids are whole numbers, choose the track id column")
    return values.fillna(NO_TRACK).to_numpy(dtype=np.int64)


def track_ids_from_tracks(
    table: pd.DataFrame,
    tracks: np.ndarray,
    labels_at: Callable[[int], np.ndarray] | None = None,
) -> np.ndarray:
    """Track id of each crop from the points of a napari Tracks layer.

    Parameters
    ----------
    table : DataFrame
        Crop table (``label_id``, ``t`` and the bounding box ``{z,y,x}_start/stop``),
        all of one source, in that source's pixel coordinates.
    tracks : array, shape (M, 4) or (M, 5)
        Rows ``track_id, t, [z,] y, x`` as in ``napari.layers.Tracks.data``,
        in the same pixel coordinates as the crops.
    labels_at : callable, optional
        ``labels_at(t)`` returns the label image of frame ``t``. With it a crop
        gets the track whose point lies inside its label (nearest the crop's
        centre when several do); without it, the track whose point lies
        inside its bounding box nearest its centre.

    Returns
    -------
    array of int64
        One track id per crop row, ``NO_TRACK`` where no track point matches.
    """
    tracks = np.asarray(tracks, dtype=float)
    ndim = _spatial_ndim(table)
    if tracks.ndim != 2 or tracks.shape[1] != ndim + 2:
        raise InputError(
            f"tracks must have rows (track_id, t, {'z, ' if ndim == 3 else ''}y, x) for {ndim}D crops; "
            f"got shape {tracks.shape}"
        )
    axes = "zyx"[3 - ndim :]
    start = table[[f"{a}_start" for a in axes]].to_numpy(float)
    stop = table[[f"{a}_stop" for a in axes]].to_numpy(float)
    frames = table["t"].to_numpy(np.int64)
    label_ids = table["label_id"].to_numpy(np.int64)
    ids = np.full(len(table), NO_TRACK, np.int64)
    point_frames = np.round(tracks[:, 1]).astype(np.int64)
    for t in np.unique(frames):
        crops = np.flatnonzero(frames == t)
        points = tracks[point_frames == t]
        if not len(points):
            continue
        if labels_at is not None:
            ids[crops] = _match_by_label(labels_at(int(t)), points, label_ids[crops], (start[crops] + stop[crops]) / 2)
        else:
            ids[crops] = _match_by_box(points, start[crops], stop[crops])
    return ids


def _match_by_label(frame: np.ndarray, points: np.ndarray, label_ids: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The track whose point of this frame lies inside each label (nearest the crop's centre when several do)."""
    position = np.round(points[:, 2:]).astype(np.int64)
    inside = np.all((position >= 0) & (position < np.asarray(frame.shape)), axis=1)
    under = np.zeros(len(points), np.int64)
    under[inside] = frame[tuple(position[inside].T)]
    pairs = pd.DataFrame({"row": np.arange(len(label_ids)), "label": label_ids}).merge(
        pd.DataFrame({"point": np.flatnonzero(under), "label": under[under != 0]}), on="label"
    )  # every (crop, point inside its label) pair
    ids = np.full(len(label_ids), NO_TRACK, np.int64)
    if len(pairs):
        row, point = pairs["row"].to_numpy(), pairs["point"].to_numpy()
        pairs["distance"] = np.linalg.norm(points[point, 2:] - centres[row], axis=1)
        nearest = pairs.loc[pairs.groupby("row")["distance"].idxmin()]
        ids[nearest["row"].to_numpy()] = points[nearest["point"].to_numpy(), 0].astype(np.int64)
    return ids


def _match_by_box(points: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """The track whose point of this frame is nearest each box centre, if it lies inside the box."""
    tree = cKDTree(points[:, 2:])
    _, nearest = tree.query((start + stop) / 2.0)
    position = points[nearest, 2:]
    inside = np.all((position >= start) & (position < stop), axis=1)
    return np.where(inside, points[nearest, 0].astype(np.int64), NO_TRACK)


def read_tracks(path: str | Path) -> np.ndarray:
    """Track points from a file: ``.npy`` (napari ``Tracks.data``) or CSV with columns track id, t, [z,] y, x.

    CSV columns are taken in that order whatever their names (trackers name
    them differently: ``track_id``, ``label``, ``frame``, ``centroid-y`` ...).
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".csv":
            data = pd.read_csv(path).apply(pd.to_numeric, errors="coerce").to_numpy(float)
        else:
            raise InputError(f"{path.name}: tracks are read from .csv or .npy files; convert the file to one of them")
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read tracks from {path} ({err}); give a .csv or .npy file of track points") from err
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.shape[1] not in (4, 5) or not np.isfinite(data).all():
        raise InputError(
            f"{path.name}: tracks need 4 or 5 numeric columns (track id, t, [z,] y, x) and no empty cells; "
            f"got shape {data.shape}"
        )
    return data


def with_track_ids(table: pd.DataFrame, track_ids: np.ndarray) -> pd.DataFrame:
    """A copy of a crop (or per-cell) table with its ``track_id`` column set to ``track_ids``."""
    track_ids = np.asarray(track_ids, dtype=np.int64)
    if len(track_ids) != len(table):
        raise InputError(f"{len(track_ids)} track ids for {len(table)} crops; give one per crop")
    return table.assign(**{TRACK_ID: track_ids})


def describe_tracks(table: pd.DataFrame) -> str:
    """One line: how many crops lie on how many tracks."""
    ids = on_tracks(table)[TRACK_ID]
    return f"{len(ids)} of {len(table)} crops lie on {ids.nunique()} tracks"


def require_columns(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Refuse ``table`` (called ``what`` in the message) when it lacks any of ``columns``."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{what} has no column(s) {', '.join(missing)}")


def _spatial_ndim(table: pd.DataFrame) -> int:
    ndim = 3 if "z_start" in table.columns else 2
    require_columns(
        table, ("label_id", "t", *(f"{a}_{e}" for a in "zyx"[3 - ndim :] for e in ("start", "stop"))), "the crop table"
    )
    return ndim


def on_tracks(cells: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``cells`` that lie on a track, ordered by track and frame.

    Raises
    ------
    InputError
        When there is no ``track_id`` column, or a track visits a frame twice.
    """
    if TRACK_ID not in cells.columns:
        raise InputError(
            "the cells have no track_id column; give their track ids first (Tracks widget, or "
            "'morphospace crops --track-ids')"
        )
    ids = pd.to_numeric(cells[TRACK_ID], errors="coerce")
    rows = cells[ids.notna().to_numpy() & (ids.fillna(NO_TRACK).to_numpy() != NO_TRACK)].copy()
    rows[TRACK_ID] = rows[TRACK_ID].astype(np.int64)
    rows = rows.sort_values([TRACK_ID, "t"], kind="stable").reset_index(drop=True)
    repeated = rows.duplicated([TRACK_ID, "t"])
    if repeated.any():
        first = rows.loc[repeated.to_numpy()].iloc[0]
        raise InputError(
            f"track {first[TRACK_ID]} has {int(repeated.sum()) + 1}+ cells in frame {first['t']}; a track has one "
            "cell per frame (after a division, give the daughters new track ids)"
        )
    return rows


__all__ = [
    "describe_tracks",
    "on_tracks",
    "read_tracks",
    "require_columns",
    "track_ids_from_column",
    "track_ids_from_labels",
    "track_ids_from_tracks",
    "with_track_ids",
]
