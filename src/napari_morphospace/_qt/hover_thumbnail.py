"""The crop of the cell under the cursor, drawn at the cursor over the scatter plot."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QLabel, QWidget

from ..viewer.thumbnails import thumbnail_place

THUMBNAIL_PX = 96  # longest side of a shown crop: small crops are enlarged, pixel for pixel


def rgb_pixmap(rgb: np.ndarray) -> QPixmap:
    """An RGB uint8 picture ``(Y, X, 3)`` as a ``QPixmap`` (copied: the array may go)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    image = QImage(rgb.data, width, height, rgb.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


def shown_size(rgb: np.ndarray, longest: int = THUMBNAIL_PX) -> tuple[int, int]:
    """(width, height) a picture is shown at: its longest side ``longest`` pixels, its aspect kept."""
    height, width = rgb.shape[:2]
    zoom = longest / max(height, width)
    return max(1, round(width * zoom)), max(1, round(height * zoom))


class HoverThumbnail(QLabel):
    """A picture laid over ``canvas`` (the plot's native widget), beside the cursor; mouse events go through it."""

    def __init__(self, canvas: QWidget) -> None:
        super().__init__(canvas)
        self.setScaledContents(True)  # the pixmap keeps the crop's own pixels; the label scales it
        self.setStyleSheet("border: 1px solid white; background: black")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.hide()

    def show_at(self, rgb: np.ndarray, cursor: tuple[float, float]) -> None:
        """Show ``rgb`` beside the canvas position ``cursor`` (logical pixels), inside the canvas."""
        self.setPixmap(rgb_pixmap(rgb))
        width, height = shown_size(rgb)
        self.setFixedSize(width, height)
        canvas = self.parentWidget()
        self.move(*thumbnail_place(cursor, (width, height), (canvas.width(), canvas.height())))
        self.show()
        self.raise_()
