"""Run a core function that reports through a callback as a stream of typed messages; show its progress.

Core functions report progress through callbacks (``on_progress``,
``on_update``) and never know about Qt. A napari generator worker needs
*yielded* values instead. :func:`messages_from` bridges the two: it runs the
function in a helper thread, forwards every callback message through a queue
and yields it, and finally returns the function's result (or raises its
exception) to the worker, which hands it to the GUI thread.

Progress is coalesced on both sides, so a task with thousands of items never
floods or re-enters the GUI (issue 9: one message per cropped object nested
``_on_message → progress.update → processEvents → _on_message …`` until
RecursionError):

- worker side, :func:`messages_from` yields at most one :class:`Progress`
  every ``PROGRESS_INTERVAL_S`` (the newest; the last one always), and every
  other message as it comes;
- GUI side, :class:`ProgressDisplay` only *records* a progress message when
  it arrives; a timer shows the latest one a few times a second. napari's
  progress bar processes pending events whenever it changes
  (``QtLabeledProgressBar.setValue`` calls ``QApplication.processEvents``),
  so showing is guarded: it never runs inside itself, and closing while it
  runs waits until it has returned.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from napari.utils import progress
from qtpy.QtCore import QObject, QTimer

T = TypeVar("T")

_POLL_SECONDS = 0.05
#: A worker yields at most one progress message this often.
PROGRESS_INTERVAL_S = 0.2
#: A progress display shows the latest progress this often.
DISPLAY_INTERVAL_MS = 250
#: napari's progress bar appears only for tasks still running after this long: adding it to the activity
#: dock repaints the window, 0.9-1.5 s of GUI time with software OpenGL (benchmarks/bench_build_progress.py).
BAR_DELAY_S = 1.0


@dataclass(frozen=True)
class Progress:
    """How far a task has come: ``done`` of ``total`` items of ``task``. Only the newest one matters."""

    task: str
    done: int
    total: int

    def text(self) -> str:
        """``task: done/total``, or ``task…`` for a step without a count (``total`` 0)."""
        return f"{self.task}: {self.done}/{self.total}" if self.total > 0 else f"{self.task}…"


def messages_from(
    function: Callable[[Callable[[Any], None]], T], *, progress_interval_s: float = PROGRESS_INTERVAL_S
) -> Generator[Any, None, T]:
    """Yield the messages ``function(send)`` sends; return what it returns.

    ``function`` receives ``send`` (thread-safe) and calls it with each
    message. Messages are yielded in the order sent, all of them before the
    result is returned, except :class:`Progress` messages: of those only the
    newest is yielded, at most every ``progress_interval_s``, and the last
    one always (after the messages sent before it).
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
    pending: Progress | None = None
    last_progress = -float("inf")
    while thread.is_alive() or not messages.empty():
        try:
            message = messages.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            message = None
        if isinstance(message, Progress):
            pending = message
        elif message is not None:
            yield message
        if pending is not None and time.monotonic() - last_progress >= progress_interval_s:
            yield pending
            pending, last_progress = None, time.monotonic()
    if pending is not None:
        yield pending
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class ProgressDisplay(QObject):
    """A status text and napari's progress bar (in the activity dock), showing the latest :class:`Progress`.

    :meth:`post` only records; a timer shows the newest record every
    ``interval_ms``. The bar, titled ``description`` until a progress message
    names the step, is added once the task has run ``bar_delay_s`` (short
    tasks show their progress in the status text only). Call
    :meth:`close` when the task has ended, *before* writing the task's
    outcome into the status text: nothing of this display writes the status
    text after that.
    """

    def __init__(
        self,
        description: str,
        *,
        show_text: Callable[[str], None] | None = None,
        interval_ms: int = DISPLAY_INTERVAL_MS,
        bar_delay_s: float = BAR_DELAY_S,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bar: progress | None = None
        self._description, self._bar_due = description, time.monotonic() + bar_delay_s
        self._show_text = show_text
        self._latest: Progress | None = None
        self._shown: Progress | None = None
        self._showing = self._close_requested = self.closed = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.show_latest)
        self._timer.start()

    def post(self, message: Progress) -> None:
        """Record ``message``; the next tick of the timer shows it."""
        self._latest = message

    def show_latest(self) -> None:
        """Show the newest recorded progress, unless shown already, closed, or already showing (re-entered).

        Once the task has run ``bar_delay_s``, the bar appears even when no
        progress was recorded: titled with the description, without a count.
        """
        message = self._latest
        new = message is not None and message != self._shown
        bar_due = self.bar is None and time.monotonic() >= self._bar_due
        if self._showing or self.closed or not (new or bar_due):
            return
        self._showing = True
        try:
            if new:
                self._shown = message
                if self._show_text is not None:
                    self._show_text(message.text())  # before the bar: the bar may process events (the task's end)
            if self.bar is None:
                if self._close_requested or not bar_due:
                    return
                self.bar = progress(total=0, desc=self._description)
            if message is not None:
                self._update_bar(self.bar, message)
        finally:
            self._showing = False
            if self._close_requested:
                self._close_now()

    @staticmethod
    def _update_bar(bar: progress, message: Progress) -> None:
        if bar.desc != f"{message.task}: ":  # tqdm keeps the description with ": "
            bar.set_description(message.task)
        if bar.total != message.total:
            bar.n = 0
            bar.total = message.total
        bar.update(message.done - bar.n)

    def close(self) -> None:
        """Stop showing and close the bar (once the display has returned, when called while it shows)."""
        self._timer.stop()
        if self._showing:
            self._close_requested = True
        else:
            self._close_now()

    def _close_now(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
