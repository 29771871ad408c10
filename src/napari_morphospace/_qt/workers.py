"""Run a core function that reports through a callback, as a stream of typed messages.

Core functions report progress through callbacks (``on_progress``,
``on_update``) and never know about Qt. A napari generator worker needs
*yielded* values instead. :func:`messages_from` bridges the two: it runs the
function in a helper thread, forwards every callback message through a queue
and yields it, and finally returns the function's result (or raises its
exception) to the worker, which hands it to the GUI thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.05


def messages_from(function: Callable[[Callable[[Any], None]], T]) -> Generator[Any, None, T]:
    """Yield every message ``function(send)`` sends; return what it returns.

    ``function`` receives ``send`` (thread-safe) and calls it with each
    message. Messages are yielded in the order sent, all of them before the
    result is returned.
    """
    messages: queue.Queue[Any] = queue.Queue()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = function(messages.put)
        except BaseException as err:  # handed to the worker thread below
            outcome["error"] = err

    thread = threading.Thread(target=target, name="morphospace-task", daemon=True)
    thread.start()
    while thread.is_alive() or not messages.empty():
        try:
            yield messages.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
