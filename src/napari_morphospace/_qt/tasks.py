"""The one way a widget runs work off the GUI thread: start it, show its progress, report its end.

Each widget owns a :class:`Tasks`. ``tasks.start(function, …, on_done=…)``
runs ``function`` in a napari worker thread and calls ``on_done`` with its
result on the GUI thread. Errors become a status line and a napari
notification (an :class:`~napari_morphospace.core.errors.InputError` says
itself; anything else is reported as an unexpected failure that changed
nothing). Every task running longer than a second shows a bar in napari's
activity dock, titled by ``progress=`` or else by its ``action``. With
``progress=`` the function also receives ``send`` and reports through it
(:func:`~._qt.workers.messages_from`): :class:`Progress` messages are shown,
coalesced, in the status line and that bar, every other message goes to
``on_message``. Workers never touch widgets.

napari registers every worker with the viewer's window: closing the viewer
asks first while a task runs, then quits the tasks. A task that must be told
to stop (training writes its last checkpoint) passes ``on_quit``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from napari.qt.threading import FunctionWorker, GeneratorWorker, create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject

from .errors import error_message
from .workers import Progress, ProgressDisplay, messages_from


class Tasks(QObject):
    """The background work of one widget.

    Parameters
    ----------
    name : str
        The widget's name as the user knows it ("Cells"), for "still busy" messages.
    status : callable, optional
        Shows a line of text to the user (e.g. a status label's ``setText``).
    on_busy : callable, optional
        Called with True when the widget's first task starts and False when
        its last one has finished (e.g. to disable buttons meanwhile).
    """

    def __init__(
        self,
        name: str,
        *,
        status: Callable[[str], None] | None = None,
        on_busy: Callable[[bool], None] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.name = name
        self._status = status
        self._on_busy = on_busy
        self._workers: list[Any] = []

    @property
    def busy(self) -> bool:
        """True while any task of this widget runs."""
        return bool(self._workers)

    def start(
        self,
        function: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None] | None = None,
        action: str = "the task",
        busy_text: str | None = None,
        progress: str | None = None,
        on_message: Callable[[Any], None] | None = None,
        exclusive: bool = True,
        on_quit: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``function(*args, **kwargs)`` off the GUI thread; returns the started worker, or None when refused.

        ``action`` names the work in an unexpected error ("Saving the
        analysis") and titles its bar in napari's activity dock. With
        ``progress`` (the bar's title then) the function is called as
        ``function(send, *args, **kwargs)``. An ``exclusive``
        task is refused, with a message, while another task of the widget runs.
        A task asked to quit (:meth:`stop`, or napari closing the viewer) is
        let go of, and ``on_quit`` is called: the function must then end.
        """
        if exclusive and self.busy:
            show_error(f"the {self.name} widget is still busy; wait until it has finished")
            return None
        display = ProgressDisplay(action if progress is None else progress, show_text=self._status, parent=self)
        if progress is not None:
            worker = create_worker(
                _with_messages,
                function,
                args,
                kwargs,
                _start_thread=False,
                _ignore_errors=True,
                _worker_class=_GeneratorTask,
            )
            worker.yielded.connect(partial(self._message, worker, display, on_message))
        else:
            worker = create_worker(
                function, *args, _start_thread=False, _ignore_errors=True, _worker_class=_FunctionTask, **kwargs
            )
        worker.on_quit = partial(self._let_go, worker, display, on_quit)
        if on_done is not None:
            worker.returned.connect(partial(self._done, worker, display, on_done))
        worker.errored.connect(partial(self._report, worker, display, action))
        worker.finished.connect(partial(self._finished, worker, display))
        self._workers.append(worker)
        if busy_text is not None:
            self.show(busy_text)
        if len(self._workers) == 1 and self._on_busy is not None:
            self._on_busy(True)
        worker.start()
        return worker

    def show(self, text: str) -> None:
        """Show ``text`` in the widget's status line (when it has one)."""
        if self._status is not None:
            self._status(text)

    def report(self, error: BaseException, action: str = "the task") -> None:
        """Tell the user about ``error``: in the status line (marked ⚠) and as a napari notification."""
        message = error_message(error, action)
        self.show(f"⚠ {message}")
        show_error(message)

    def stop(self) -> None:
        """Let go of every running task (when the widget closes): ask each to quit;
        none of their results or errors arrive."""
        for worker in list(self._workers):
            worker.quit()

    def _let_go(self, worker: Any, display: ProgressDisplay, on_quit: Callable[[], Any] | None) -> None:
        """A task asked to quit: nothing of it arrives any more (the widget may be gone);
        ``on_quit`` ends the function."""
        if worker in self._workers:
            self._workers.remove(worker)
            display.close()
        if on_quit is not None:
            on_quit()

    def _gone(self) -> bool:
        """Whether Qt deleted this object, with its widget (a closed dock), while work still ran.

        The worker's signals still arrive (they hold this Python object) and
        must then touch nothing. (A slot on ``destroyed`` would run during
        garbage collection, which crashes PyQt: the C++ object is asked instead.)
        """
        try:
            self.objectName()
        except RuntimeError:
            return True
        return False

    def _done(self, worker: Any, display: ProgressDisplay, on_done: Callable[[Any], None], result: Any) -> None:
        """Close the progress display before ``on_done`` writes the outcome into the status line."""
        if self._gone() or worker not in self._workers:  # the widget is gone, or let go of the task
            return
        display.close()
        on_done(result)

    def _message(
        self, worker: Any, display: ProgressDisplay, on_message: Callable[[Any], None] | None, message: Any
    ) -> None:
        """Progress to the display (shown coalesced), everything else to ``on_message``."""
        if self._gone() or worker not in self._workers:
            return
        if isinstance(message, Progress):
            display.post(message)
        elif on_message is not None:
            on_message(message)

    def _report(self, worker: Any, display: ProgressDisplay, action: str, error: BaseException) -> None:
        if self._gone() or worker not in self._workers:
            return
        display.close()
        self.report(error, action)

    def _finished(self, worker: Any, display: ProgressDisplay) -> None:
        worker.on_quit = None
        if self._gone() or worker not in self._workers:
            return
        display.close()
        self._workers.remove(worker)
        if not self._workers and self._on_busy is not None:
            self._on_busy(False)


class _QuitHook:
    """A worker that calls ``on_quit`` when asked to quit: napari's "cancel" of a registered task is ``worker.quit``."""

    on_quit: Callable[[], Any] | None = None

    def quit(self) -> None:
        on_quit, self.on_quit = self.on_quit, None  # once; a finished task has none (napari cancels those too)
        if on_quit is not None:
            on_quit()
        super().quit()  # type: ignore[misc]


class _GeneratorTask(_QuitHook, GeneratorWorker):
    pass


class _FunctionTask(_QuitHook, FunctionWorker):
    pass


def _with_messages(function: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """A generator worker's body: yields what ``function`` sends, returns what it returns."""
    return (yield from messages_from(lambda send: function(send, *args, **kwargs)))
