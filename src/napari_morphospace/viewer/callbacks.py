"""Callbacks a widget hands the viewer without the viewer keeping the widget alive.

napari keeps mouse callbacks and key bindings as strong references: a widget
that registers its bound method there is never freed after its dock is
closed, and keeps reacting to clicks. These wrappers hold the method weakly
and do nothing once its widget is gone.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator
from typing import Any

import numpy as np


def weak_click_callback(method: Callable[..., Any], slop_px: float = 3.0) -> Callable[..., Generator]:
    """A ``viewer.mouse_drag_callbacks`` entry that calls ``method`` on a click, while its object lives.

    A click is a press and a release without a drag of more than ``slop_px``
    screen pixels (a drag pans the view). ``method`` gets the world position
    pressed and ``add`` (Shift held), ``view_direction`` and ``dims_displayed``
    as keywords, as ``layer.get_value`` needs them in 3D.
    """
    reference = weakref.WeakMethod(method)

    def callback(_viewer: Any, event: Any) -> Generator:
        if event.type != "mouse_press":
            return
        start, position, moved = np.asarray(event.pos, dtype=float), tuple(event.position), False
        yield
        while event.type == "mouse_move":
            moved = moved or float(np.abs(np.asarray(event.pos) - start).max()) > slop_px
            yield
        bound = reference()
        if not moved and bound is not None:
            bound(
                position,
                add="Shift" in event.modifiers,
                view_direction=event.view_direction,
                dims_displayed=list(event.dims_displayed),
            )

    return callback


def weak_key_callback(method: Callable[[], Any]) -> Callable[[Any], None]:
    """A ``viewer.bind_key`` callback calling ``method()`` while its object lives."""
    reference = weakref.WeakMethod(method)

    def callback(_viewer: Any) -> None:
        bound = reference()
        if bound is not None:
            bound()

    return callback
