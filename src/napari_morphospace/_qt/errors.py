"""Errors of GUI actions reach the user as napari notifications, never as tracebacks."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from napari.utils.notifications import show_error

from ..core.errors import InputError


def error_message(error: BaseException, action: str) -> str:
    """What the user reads: an ``InputError`` says itself; anything else is an unexpected failure of ``action``."""
    if isinstance(error, InputError):
        return str(error)
    return f"{action} failed unexpectedly: {error!r}; nothing was changed by it"


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
