"""The crops beside the scatter plot: the clicked point's crop with a caption, the hovered point's at the cursor.

Crops come from the session's crop set, matched to the plot rows by crop id
once per plot (:class:`~napari_morphospace.viewer.thumbnails.CropPictures`),
beside the GUI thread: at a million points the matching takes ~0.2 s, which
the first hover would otherwise wait for. A crop is read alone from the set,
which may be on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from qtpy.QtWidgets import QHBoxLayout, QLabel, QWidget

from ..viewer.thumbnails import CropPictures
from .hover_thumbnail import HoverThumbnail, rgb_pixmap, shown_size

# Prepares the hover/click lookups beside the GUI thread once a plot is drawn: the k-d tree of the points (scipy
# releases the GIL while it builds) and the rows matched to the crop set by crop id.
LOOKUPS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scatter-lookups")


class CropPreview(QWidget):
    """The clicked point's crop and caption (a row of the dock) and the hover thumbnail over the plot ``canvas``.

    ``crop_ids`` gives the plot rows' crop ids (None without a ``crop_id``
    column) and ``crop_set`` the session's crop set (None without one); both
    are asked when the crops are needed.
    """

    def __init__(self, canvas: QWidget, crop_ids: Callable[[], np.ndarray | None], crop_set: Callable[[], Any]) -> None:
        super().__init__()
        self._crop_ids, self._crop_set = crop_ids, crop_set
        self._pictures: Future | None = None  # the CropPictures of the plotted rows, being matched
        self.hover_thumbnail = HoverThumbnail(canvas)
        self.thumbnail = QLabel()
        self.thumbnail.setScaledContents(True)  # the pixmap keeps the crop's own pixels; the label scales it
        self.thumbnail.hide()
        self.caption = QLabel("click a point to see its crop")
        self.caption.setWordWrap(True)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.thumbnail)
        row.addWidget(self.caption, stretch=1)

    def match(self) -> None:
        """Start matching the plot rows to the crop set by crop id (when both exist and it is not done)."""
        crop_set = self._crop_set()
        crop_ids = self._crop_ids() if self._pictures is None and crop_set is not None else None
        if crop_ids is not None:
            self._pictures = LOOKUPS.submit(CropPictures, crop_set, crop_ids)

    def pictures(self) -> CropPictures | None:
        """Crops of the plot rows from the crop set (matched by crop id once); None without either."""
        self.match()
        return None if self._pictures is None else self._pictures.result()

    def forget(self) -> None:
        """Other crops or other rows: match them again when next needed."""
        if self._pictures is not None:
            self._pictures.cancel()
        self._pictures = None
        self.hover_thumbnail.hide()

    def show_row(self, row: int, description: str) -> None:
        """Show the crop of plot ``row`` (its channel composite, 3D as a maximum projection), or say what is missing."""
        self.thumbnail.hide()
        crop_ids = self._crop_ids()
        if crop_ids is None:
            self.caption.setText("no crop to show: the features have no crop_id column")
            return
        crop_id = int(crop_ids[row])
        pictures = self.pictures()
        if pictures is None:
            self.caption.setText(f"crop {crop_id}: load its crop set in the Cells widget to see it here")
            return
        position = pictures.position(row)
        if position is None:
            self.caption.setText(f"crop {crop_id} is not in the crop set of this viewer")
            return
        picture = pictures.picture(row)
        self.thumbnail.setPixmap(rgb_pixmap(picture))
        self.thumbnail.setFixedSize(*shown_size(picture))
        self.thumbnail.show()
        table_row = pictures.crop_set.table.iloc[position]
        group = f" · group {table_row['group']}" if "group" in table_row.index else ""
        self.caption.setText(f"crop {crop_id}{group}\n{description}")

    def hover(self, row: int | None, pixel: tuple[float, float]) -> None:
        """Show the crop of plot ``row`` at canvas ``pixel`` (hidden for None or a row without a crop)."""
        pictures = self.pictures() if row is not None else None
        picture = pictures.picture(row) if pictures is not None else None
        if picture is None:
            self.hover_thumbnail.hide()
        else:
            self.hover_thumbnail.show_at(picture, pixel)
