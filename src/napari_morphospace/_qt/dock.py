"""Dock layouts that hold up at a normal dock size: the content scrolls rather than squeezing or overlapping.

napari gives each dock what is left of the window: a widget whose minimum
height is its whole content makes the window taller than the screen, and one
with no minimum gets squeezed until its rows overlap (the Classifier got
~70 px, Embed's rows lay on top of each other). Every widget puts its content
in a scroll area with a modest minimum height instead. It scrolls vertically
only: the dock is kept at least as wide as the content's rows, so no button
is cut off at the right edge.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

DOCK_MIN_HEIGHT = 220  # px: a few rows of any widget stay readable; four docks fit a 1080p screen
DOCK_MIN_WIDTH = 380  # px: labels, fields and buttons side by side without clipping


def scroll_in_dock(
    owner: QWidget, content: QWidget, *, min_height: int = DOCK_MIN_HEIGHT, min_width: int = DOCK_MIN_WIDTH
) -> QScrollArea:
    """Fill ``owner`` with ``content`` in a vertically scrolling area,
    at least ``min_height`` high and as wide as its rows."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(content)
    scroll.setMinimumHeight(min_height)
    width = content.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
    scroll.setMinimumWidth(max(min_width, width))
    layout = QVBoxLayout(owner)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(scroll)
    return scroll
