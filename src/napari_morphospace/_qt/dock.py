"""Dock layouts that hold up at a normal dock size: the content scrolls rather than squeezing or overlapping.

napari gives each dock what is left of the window: a widget whose minimum
height is its whole content makes the window taller than the screen, and one
with no minimum gets squeezed until its rows overlap (the Classifier got
~70 px, Embed's rows lay on top of each other). Every widget puts its content
in a scroll area with a modest minimum size instead.
"""

from __future__ import annotations

from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

DOCK_MIN_HEIGHT = 220  # px: a few rows of any widget stay readable; four docks fit a 1080p screen
DOCK_MIN_WIDTH = 380  # px: labels, fields and buttons side by side without clipping


def scroll_in_dock(owner: QWidget, content: QWidget, *, min_height: int = DOCK_MIN_HEIGHT,
                   min_width: int = DOCK_MIN_WIDTH) -> QScrollArea:  # fmt: skip
    """Fill ``owner`` with ``content`` in a scroll area at least ``min_height`` × ``min_width`` pixels."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(content)
    scroll.setMinimumHeight(min_height)
    layout = QVBoxLayout(owner)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(scroll)
    owner.setMinimumWidth(min_width)
    return scroll
