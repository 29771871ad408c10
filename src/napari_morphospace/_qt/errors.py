"""Errors of GUI actions reach the user as napari notifications, never as tracebacks."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from napari.utils.notifications import show_error

from ..core.errors import InputError


def report_errors(method: Callable) -> Callable:
    """Show an ``InputError`` raised by a GUI callback as a napari error notification (the viewer keeps running)."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except InputError as err:
            show_error(str(err))
            return None

    return wrapper
