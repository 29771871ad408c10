"""A widget's background work: results on the GUI thread, errors told once, busy refused, progress shown."""

import threading

from napari_morphospace._qt.tasks import Tasks
from napari_morphospace._qt.workers import Progress
from napari_morphospace.core.errors import InputError


def _tasks(status_lines, busy_changes=None):
    return Tasks("Cells", status=status_lines.append, on_busy=None if busy_changes is None else busy_changes.append)


def test_the_result_arrives_on_the_gui_thread_and_busy_goes_on_and_off(qtbot, napari_hooks):
    lines, busy, results = [], [], []
    tasks = _tasks(lines, busy)
    gui_thread = threading.current_thread()
    worker = tasks.start(
        lambda a, b=0: a + b,
        2,
        b=3,
        busy_text="Adding…",
        on_done=lambda r: results.append((r, threading.current_thread() is gui_thread)),
    )
    assert worker is not None and tasks.busy and lines == ["Adding…"]
    qtbot.waitUntil(lambda: not tasks.busy, timeout=5000)
    assert results == [(5, True)] and busy == [True, False]


def test_an_input_error_is_told_in_its_own_words_and_anything_else_as_unexpected(qtbot, napari_hooks):
    lines = []
    tasks = _tasks(lines)

    def refuse():
        raise InputError("no crops: build a crop set first")

    def crash():
        raise ZeroDivisionError("boom")

    tasks.start(refuse, action="Training")
    qtbot.waitUntil(lambda: not tasks.busy, timeout=5000)
    tasks.start(crash, action="Training")
    qtbot.waitUntil(lambda: not tasks.busy, timeout=5000)
    errors = napari_hooks.take_errors()
    assert errors[0] == "no crops: build a crop set first"
    assert errors[1].startswith("Training failed unexpectedly: ZeroDivisionError('boom')")
    assert len(errors) == 2
    assert lines == [f"⚠ {errors[0]}", f"⚠ {errors[1]}"]


def test_a_second_exclusive_task_is_refused_while_one_runs(qtbot, napari_hooks):
    release = threading.Event()
    tasks = _tasks([])
    first = tasks.start(release.wait, 10)
    second = tasks.start(lambda: None)
    assert first is not None and second is None
    assert napari_hooks.take_errors() == ["the Cells widget is still busy; wait until it has finished"]
    parallel = tasks.start(lambda: None, exclusive=False)
    assert parallel is not None
    release.set()
    qtbot.waitUntil(lambda: not tasks.busy, timeout=5000)


def test_progress_goes_to_the_status_line_and_other_messages_to_on_message(qtbot, napari_hooks):
    lines, messages, results = [], [], []
    tasks = _tasks(lines)

    def crop(send, n):
        for i in range(1, n + 1):
            send(Progress("Cropping A", i, n))
        send("18 objects under min_area")
        return n

    tasks.start(
        crop,
        500,
        progress="Building crop set",
        on_message=messages.append,
        on_done=lambda n: (results.append(n), tasks.show(f"{n} crops")),
    )
    qtbot.waitUntil(lambda: not tasks.busy, timeout=5000)
    assert results == [500] and messages == ["18 objects under min_area"]
    assert lines[-1] == "500 crops"  # the progress display wrote nothing after the outcome
    assert all(line.startswith("Cropping A: ") for line in lines[:-1])


def test_stop_lets_go_of_running_tasks_and_their_results_never_arrive(qtbot, napari_hooks):
    release, results, busy = threading.Event(), [], []
    tasks = _tasks([], busy)
    tasks.start(release.wait, 10, on_done=results.append)
    tasks.stop()
    release.set()
    qtbot.wait(300)
    assert not tasks.busy and results == [] and busy == [True]


def test_work_that_ends_after_its_widget_was_deleted_touches_nothing_of_it(qtbot, napari_hooks):
    from qtpy.QtWidgets import QPushButton, QWidget

    widget = QWidget()
    button = QPushButton("Compute", widget)
    calls, release, ended = [], threading.Event(), threading.Event()
    tasks = Tasks(
        "Statistics",
        status=button.setText,
        on_busy=lambda busy: (calls.append(busy), button.setEnabled(not busy)),
        parent=widget,
    )
    worker = tasks.start(
        lambda: release.wait(5), on_done=lambda _result: button.setText("done"), busy_text="Computing…"
    )
    worker.finished.connect(ended.set)
    widget.deleteLater()  # the user closed the dock while it computed
    qtbot.waitUntil(lambda: not calls or _deleted(button), timeout=5000)
    qtbot.wait(50)
    assert _deleted(button)
    release.set()
    qtbot.waitUntil(ended.is_set, timeout=5000)
    qtbot.wait(50)  # the finished and returned signals have been delivered: none reached the deleted button
    assert calls == [True]


def _deleted(qobject) -> bool:
    """Whether Qt has deleted the C++ object behind ``qobject``."""
    try:
        qobject.objectName()
    except RuntimeError:
        return True
    return False


def test_on_quit_runs_when_napari_cancels_the_viewers_tasks_on_close(make_napari_viewer, qtbot, napari_hooks):
    """napari registers every worker with the viewer's window and quits them when it closes: on_quit hears it."""
    viewer = make_napari_viewer()
    release = threading.Event()
    tasks = _tasks([])
    tasks.start(release.wait, 30, on_quit=release.set)
    manager = viewer.window._qt_window._window._task_status_manager
    assert manager.is_busy()  # "closing the viewer asks first" sees the task
    manager.cancel_all()  # what closing the viewer does
    assert release.is_set()
    qtbot.waitUntil(lambda: not tasks.busy, timeout=5000)


def test_on_quit_runs_when_the_widget_lets_go_of_its_tasks(qtbot, napari_hooks):
    release = threading.Event()
    tasks = _tasks([])
    tasks.start(release.wait, 30, progress="Waiting", on_quit=release.set)
    tasks.stop()
    assert release.is_set() and not tasks.busy


def test_every_task_shows_its_title_in_napari_activity_with_or_without_progress_messages(qtbot, napari_hooks):
    """A task without ``progress=`` is titled by its action; one with it by its progress title, before any message."""
    from napari.utils import progress

    def titles():
        return {bar.desc.removesuffix(": ") for bar in progress._all_instances}

    release = threading.Event()
    tasks = _tasks([])
    tasks.start(release.wait, 10, action="Saving the analysis")
    tasks.start(
        lambda send, event: event.wait(10), release, progress="Building crop set", action="Building", exclusive=False
    )
    qtbot.waitUntil(lambda: {"Saving the analysis", "Building crop set"} <= titles(), timeout=5000)
    release.set()
    qtbot.waitUntil(lambda: not tasks.busy, timeout=5000)
    assert not {"Saving the analysis", "Building crop set"} & titles()  # closed with their tasks
