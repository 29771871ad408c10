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


def weak_drag_callback(method: Callable[..., Any]) -> Callable[..., Generator]:
    """A ``viewer.mouse_drag_callbacks`` entry calling the generator method ``method`` while its object lives."""
    reference = weakref.WeakMethod(method)

    def callback(viewer: Any, event: Any) -> Generator:
        bound = reference()
        if bound is not None:
            yield from bound(viewer, event)

    return callback


def weak_key_callback(method: Callable[[], Any]) -> Callable[[Any], None]:
    """A ``viewer.bind_key`` callback calling ``method()`` while its object lives."""
    reference = weakref.WeakMethod(method)

    def callback(_viewer: Any) -> None:
        bound = reference()
        if bound is not None:
            bound()

    return callback
