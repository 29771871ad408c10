"""How tracked cells move through latent space: paths, their statistics, per-track comparisons.

Which track each crop belongs to is :mod:`~napari_morphospace.core.cells.track_ids`.
Ordered by frame, a track's latent means ``mu_*`` form a path. Its statistics
(:func:`track_statistics`) follow the usual definitions of cell-migration
analysis, applied in latent space instead of the image plane: path length
(sum of step lengths ``‖Δz‖``), net displacement (``‖z_last − z_first‖``),
straightness (net displacement / path length, 1 for a straight path), mean
speed (mean of ``‖Δz‖ / Δt`` over steps) and the time until the track first
reaches a region (a set of cells, e.g. a cluster or a named selection).
Outcomes or conditions are compared per track, not per crop, because the
frames of one cell are not independent samples (:func:`compare_track_groups`,
with the permutation tests and bootstrap intervals of :mod:`core.analysis.inference`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..cells.crop_set import NO_TRACK, TRACK_ID
from ..cells.track_ids import on_tracks, require_columns
from ..errors import InputError
from .inference import (
    InferenceSettings,
    bootstrap_intervals,
    make_units,
    permutation_p_values,
    require_enough_units,
)
from .statistics import cohens_d

#: Per-track measures, in the order tables show them.
MEASURES = ("mean_speed", "path_length", "net_displacement", "straightness")


# --------------------------------------------------------------------------- paths through latent space


def track_paths(cells: pd.DataFrame, columns: Sequence[str]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Track id -> ``(t, coordinates)`` of its cells in frame order (``coordinates`` has one column per name)."""
    rows = on_tracks(cells)
    coordinates = rows[list(columns)].to_numpy(float)
    ids, frames = rows[TRACK_ID].to_numpy(), rows["t"].to_numpy(np.int64)
    bounds = np.flatnonzero(np.diff(ids)) + 1
    return {
        int(ids[part[0]]): (frames[part], coordinates[part])
        for part in np.split(np.arange(len(rows)), bounds)
        if len(part)
    }


def track_keys(track_ids: Any, source_codes: np.ndarray | None = None) -> np.ndarray:
    """One key per row for its track, unique across sources (the same id in two fields is two tracks); -1 off tracks.

    ``track_ids`` may hold missing values (cells given no track id); they and
    ``NO_TRACK`` get -1.
    """
    ids = pd.to_numeric(pd.Series(np.asarray(track_ids, dtype=object)), errors="coerce").fillna(NO_TRACK)
    ids = ids.to_numpy(np.int64)
    codes = np.zeros(len(ids), np.int64) if source_codes is None else np.asarray(source_codes, np.int64)
    keys = np.full(len(ids), -1, np.int64)
    on = ids != NO_TRACK
    if on.any():
        keys[on] = np.unique(np.stack([codes[on], ids[on]], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    return keys


def path_segments(keys: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Row pairs ``(a, b)``, shape (S, 2), joining each track's consecutive frames (rows with key -1 lie on none)."""
    keys, t = np.asarray(keys, np.int64), np.asarray(t)
    on = np.flatnonzero(keys >= 0)
    order = on[np.lexsort((t[on], keys[on]))]
    same = keys[order[1:]] == keys[order[:-1]]
    return np.stack([order[:-1][same], order[1:][same]], axis=1)


def nearest_segment(
    positions: np.ndarray, segments: np.ndarray, point: Sequence[float], radius: float | Sequence[float]
) -> int | None:
    """Index of the segment nearest ``point`` if within ``radius`` (one value, or one per axis), else None."""
    if not len(segments):
        return None
    scale = np.broadcast_to(np.asarray(radius, float), (2,))
    a, b = positions[segments[:, 0]] / scale, positions[segments[:, 1]] / scale
    p = np.asarray(point, float) / scale
    ab = b - a
    length2 = (ab**2).sum(axis=1)
    along = np.clip(((p - a) * ab).sum(axis=1) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    distance = np.linalg.norm(a + along[:, None] * ab - p, axis=1)
    nearest = int(np.argmin(distance))
    return nearest if distance[nearest] <= 1.0 else None


def step_lengths(cells: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``‖Δz‖`` of every step between consecutive cells of a track, all tracks together."""
    steps = [np.linalg.norm(np.diff(z, axis=0), axis=1) for _, z in track_paths(cells, columns).values()]
    return np.concatenate(steps) if steps else np.zeros(0)


def shuffle_frames(cells: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A copy of ``cells`` in which each track visits its own frames in a random order (the null for smoothness).

    The cells and their latents stay; only their ``t`` is permuted within each
    track, so a track's mean step length under this null measures how far
    apart the cells of one track are regardless of time.
    """
    rng = np.random.default_rng(seed)
    shuffled = on_tracks(cells)
    frames = shuffled["t"].to_numpy().copy()
    for rows in shuffled.groupby(TRACK_ID, sort=False).indices.values():
        frames[rows] = rng.permutation(frames[rows])
    return shuffled.assign(t=frames)


def smoothness(cells: pd.DataFrame, columns: Sequence[str], *, shuffles: int = 5, seed: int = 0) -> tuple[float, float]:
    """Mean step length of the real tracks, and its mean over ``shuffles`` frame-shuffled copies
    (:func:`shuffle_frames`).

    A real track whose cells change gradually steps less far than the same
    cells visited in random order: a ratio real / shuffled well below 1 says
    the embedding follows the cells over time.
    """
    real = step_lengths(cells, columns)
    if not len(real):
        raise InputError("no track has two frames, so there is no step to measure")
    shuffled = [step_lengths(shuffle_frames(cells, seed=seed + s), columns).mean() for s in range(shuffles)]
    return float(real.mean()), float(np.mean(shuffled))


# --------------------------------------------------------------------------- per-track statistics


def track_statistics(
    cells: pd.DataFrame,
    columns: Sequence[str],
    *,
    frame_interval: float = 1.0,
    region: Iterable[int] | None = None,
    group_column: str | None = "group",
) -> pd.DataFrame:
    """One row per track: how far, how fast and how straight it moves through the latent space.

    Parameters
    ----------
    cells : DataFrame
        Per-cell table with ``track_id``, ``t`` and the coordinate ``columns``.
    columns : sequence of str
        The latent coordinates (usually ``mu_0 .. mu_{D-1}``).
    frame_interval : float
        Time between frames (e.g. minutes), so speeds and times are in units per that time.
    region : iterable of int, optional
        Crop ids of the cells that form a region (a cluster, a named selection).
        Adds ``time_to_region``: time from the track's first frame to the first
        frame it is in the region (0 when it starts there, NaN when it never gets there).
    group_column : str or None
        Per-cell column (condition, outcome) copied per track: its last non-empty
        value along the track (an outcome such as death shows at the end).

    Returns
    -------
    DataFrame
        ``track_id, n_frames, t_start, t_end``, the :data:`MEASURES` (``mean_speed``
        in latent units per time; NaN for a single-frame track, and
        ``straightness`` NaN when the path length is 0), then ``time_to_region``
        and the group column when asked for.
    """
    if frame_interval <= 0:
        raise InputError(f"the frame interval must be positive; got {frame_interval}")
    rows = on_tracks(cells)
    require_columns(rows, columns, "the cells")
    region_ids = None if region is None else np.asarray(list(region), dtype=np.int64)
    if region_ids is not None and "crop_id" not in rows.columns:
        raise InputError("the cells have no crop_id column, so a region of crop ids cannot be found among them")
    ids = rows[TRACK_ID].to_numpy(np.int64)
    frames = rows["t"].to_numpy(np.int64)
    t = frames * float(frame_interval)
    z = rows[list(columns)].to_numpy(float)
    # Rows are sorted by track and frame: each track is one run of rows, and step i joins rows i and i + 1
    # when both are of one track (0 otherwise). Summing steps over each run of rows needs no loop per track.
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(ids)] - 1
    same = ids[1:] == ids[:-1]
    step = np.where(same, np.linalg.norm(np.diff(z, axis=0), axis=1), 0.0)
    speed = step / np.where(same, np.diff(t), 1.0)
    n_steps = ends - starts

    def per_track(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.r_[values, 0.0], starts) if len(starts) else np.zeros(0)

    path = per_track(step)
    net = np.linalg.norm(z[ends] - z[starts], axis=1)
    table = pd.DataFrame(
        {
            TRACK_ID: ids[starts],
            "n_frames": n_steps + 1,
            "t_start": frames[starts],
            "t_end": frames[ends],
            "mean_speed": np.where(n_steps > 0, per_track(speed) / np.maximum(n_steps, 1), np.nan),
            "path_length": path,
            "net_displacement": net,
            "straightness": np.where(path > 0, np.minimum(net / np.where(path > 0, path, 1.0), 1.0), np.nan),
        }
    )
    if region_ids is not None:
        inside = np.isin(rows["crop_id"].to_numpy(np.int64), region_ids)
        first = np.minimum.reduceat(np.where(inside, np.arange(len(ids)), len(ids)), starts) if len(ids) else starts
        table["time_to_region"] = np.where(first < len(ids), t[np.minimum(first, len(ids) - 1)] - t[starts], np.nan)
    if group_column is not None and group_column in rows.columns:
        values = rows[group_column]
        present = (values.notna() & (values.astype(str) != "")).to_numpy()
        last = np.maximum.reduceat(np.where(present, np.arange(len(ids)), -1), starts) if len(ids) else starts
        table[group_column] = [values.iloc[i] if i >= 0 else "" for i in last]
    return table


def compare_track_groups(
    statistics: pd.DataFrame,
    group_column: str,
    groups: Sequence[Any] | None = None,
    measures: Sequence[str] | None = None,
    settings: InferenceSettings | None = None,
) -> pd.DataFrame:
    """Compare two groups of tracks (outcomes, conditions) on each per-track measure,
    with :mod:`core.analysis.inference`.

    Each track is one sample (the frames of one cell are not independent).
    Per measure: the group means, Cohen's d (positive when the first group is
    higher) with its bootstrap interval, the two-sided permutation p-value of
    the mean difference, and the Benjamini–Hochberg q over the measures. A
    track whose measure is undefined (NaN) is left out of that measure; with
    too few tracks for the permutation test to reach ``settings.fdr`` the
    measure gets no p-value, and ``attrs["notes"]`` says why.

    Returns
    -------
    DataFrame
        One row per measure: ``measure, n_a, n_b, mean_a, mean_b, d, d_low, d_high, p_value, q_value``;
        ``attrs["groups"]`` is ``(a, b)``.
    """
    require_columns(statistics, (group_column,), "the track statistics")
    settings = settings or InferenceSettings()
    present = [g for g in pd.unique(statistics[group_column]) if str(g) != ""]
    groups = list(groups) if groups is not None else present[:2]
    absent = [g for g in groups if g not in present]
    if absent:
        raise InputError(f"no track has {group_column} {', '.join(map(repr, absent))}; the tracks have {present}")
    if len(groups) != 2 or groups[0] == groups[1]:
        raise InputError(f"comparing tracks needs two groups in column {group_column!r}; found {present or 'none'}")
    measures = [m for m in (measures or MEASURES + ("time_to_region",)) if m in statistics.columns]
    rng = np.random.default_rng(settings.seed)
    records, notes = [], []
    for measure in measures:
        a = statistics.loc[statistics[group_column] == groups[0], measure].dropna().to_numpy(float)
        b = statistics.loc[statistics[group_column] == groups[1], measure].dropna().to_numpy(float)
        record = {
            "measure": measure,
            "n_a": len(a),
            "n_b": len(b),
            "mean_a": a.mean() if len(a) else np.nan,
            "mean_b": b.mean() if len(b) else np.nan,
            "d": np.nan,
            "d_low": np.nan,
            "d_high": np.nan,
            "p_value": np.nan,
        }
        if len(a) >= 2 and len(b) >= 2:
            record["d"] = cohens_d(a, b).d[0]
            try:
                require_enough_units(len(a), len(b), settings.fdr, unit="track", a=groups[0], b=groups[1])
            except InputError as err:
                notes.append(f"{measure}: {err}")
            else:
                units = make_units(np.concatenate([a, b])[:, None], np.arange(len(a) + len(b)) < len(a))
                record["p_value"] = permutation_p_values(units, settings.permutations, rng)[0][0]
                low, high, _ = bootstrap_intervals(units, settings.resamples, settings.confidence, rng)
                record.update(d_low=low[1][0], d_high=high[1][0])
        records.append(record)
    table = pd.DataFrame.from_records(records)
    tested = table["p_value"].notna().to_numpy()
    table["q_value"] = np.nan
    if tested.any():
        table.loc[tested, "q_value"] = stats.false_discovery_control(table.loc[tested, "p_value"], method="bh")
    table.attrs["groups"] = (groups[0], groups[1])
    table.attrs["notes"] = notes
    return table


__all__ = [
    "MEASURES",
    "NO_TRACK",
    "TRACK_ID",
    "compare_track_groups",
    "nearest_segment",
    "path_segments",
    "shuffle_frames",
    "smoothness",
    "step_lengths",
    "track_keys",
    "track_paths",
    "track_statistics",
]
