"""Crop sets: the single-cell crops, one metadata row per crop, saved and loaded from disk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

# Columns every crop table has, in this order; more columns may follow.
# The bounding box is one start/stop pair per spatial axis of the source:
# ``z_start, z_stop`` (3D sources only), ``y_start, y_stop, x_start, x_stop``.
CROP_TABLE_COLUMNS = ["crop_id", "source", "label_id", "t", "group", "annotation"]


def bbox_columns(ndim: int) -> list[str]:
    """Bounding-box column names for a source with ``ndim`` spatial axes (2 or 3)."""
    axes = "zyx"[3 - ndim :]
    return [f"{a}_{end}" for a in axes for end in ("start", "stop")]


@dataclass
class CropSet:
    """Crops ``(N, C, [Z,] Y, X)`` float32 in [0, 1] plus a table with one row per crop.

    ``images`` is a numpy array, or a zarr/dask array when the set is larger
    than memory. ``table`` holds ``CROP_TABLE_COLUMNS`` plus the bounding box
    columns (``bbox_columns``): the region of the source, in source pixel
    coordinates, that the crop shows before any resize (it may extend past the
    image edge where the crop was padded). ``label_id`` is the Labels id, or
    the 1-based index of the point/box/patch for other object sources. ``channel_names``, ``spacing`` (physical size
    of one crop pixel per spatial axis) and ``preprocess`` (the pipeline
    config dict) travel with the set so a model trained on it can record them.
    """

    images: Any
    table: pd.DataFrame
    channel_names: list[str]
    spacing: tuple[float, ...] = ()
    preprocess: dict[str, Any] | None = None
