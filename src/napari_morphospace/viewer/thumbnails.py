"""The crop of a plotted cell as a small picture, for the scatter plot's hover thumbnail and its clicked-cell view.

Qt-free. Plot rows are matched to the session's crop set by ``crop_id`` once
(one hash lookup for all rows), and crops are read one at a time from the
set's images, which may be a zarr array on disk: hovering a million points
reads only the crops under the cursor, and the last few pictures are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

from ..core.figures.gallery import composite_rgb

#: Pictures kept, so that moving back and forth over the same cells reads nothing again.
KEPT_PICTURES = 256


class CropPictures:
    """RGB pictures of the crops of plot rows (``composite_rgb``: channels as colours, 3D as a maximum projection).

    Parameters
    ----------
    crop_set : CropSet
        The session's crop set (``images`` in memory or on disk, ``table`` with ``crop_id``).
    crop_ids : (N,) array
        The crop id of each plot row.
    """

    def __init__(self, crop_set: Any, crop_ids: np.ndarray):
        self.crop_set = crop_set
        table_ids = pd.Index(crop_set.table["crop_id"].to_numpy())
        first = ~table_ids.duplicated(keep="first")  # a crop id listed twice: its first crop, as a lookup by id would
        positions = np.flatnonzero(first)
        # position of each row's crop in the set, -1 where the set has no crop of that id
        found = table_ids[first].get_indexer(np.asarray(crop_ids))
        self.positions = np.where(found >= 0, positions[np.maximum(found, 0)], -1)
        self._kept: OrderedDict[int, np.ndarray] = OrderedDict()

    def position(self, row: int) -> int | None:
        """Position in the crop set of the crop of plot ``row``, or None when the set has no crop with its id."""
        position = int(self.positions[row])
        return position if position >= 0 else None

    def picture(self, row: int) -> np.ndarray | None:
        """RGB uint8 picture ``(Y, X, 3)`` of the crop of plot ``row``; None when it has no crop."""
        position = self.position(row)
        if position is None:
            return None
        if position in self._kept:
            self._kept.move_to_end(position)
            return self._kept[position]
        picture = composite_rgb(np.asarray(self.crop_set.images[position]))
        self._kept[position] = picture
        if len(self._kept) > KEPT_PICTURES:
            self._kept.popitem(last=False)
        return picture


def thumbnail_place(
    cursor: tuple[float, float], size: tuple[int, int], area: tuple[int, int], gap: int = 12
) -> tuple[int, int]:
    """Top-left ``(x, y)`` of a thumbnail of ``size`` (width, height) beside the ``cursor`` inside ``area``
    (width, height).

    Below and right of the cursor, so it never hides the point under it;
    flipped to the left (above) when it would leave the area on the right
    (bottom), and kept inside the area when the area is smaller than that.
    """
    (x, y), (width, height), (area_width, area_height) = cursor, size, area
    left = x + gap if x + gap + width <= area_width else x - gap - width
    top = y + gap if y + gap + height <= area_height else y - gap - height
    return int(round(min(max(left, 0), max(area_width - width, 0)))), int(
        round(min(max(top, 0), max(area_height - height, 0)))
    )


__all__ = ["KEPT_PICTURES", "CropPictures", "thumbnail_place"]
