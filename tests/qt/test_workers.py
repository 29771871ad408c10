"""Worker messages and progress: coalesced on both sides, never re-entering the GUI."""

import time

from napari_morphospace._qt.workers import PROGRESS_INTERVAL_S, Progress, ProgressDisplay, messages_from


def _drain(generator):
    """The yielded messages and the returned value of a generator."""
    yielded = []
    while True:
        try:
            yielded.append(next(generator))
        except StopIteration as stop:
            return yielded, stop.value


def test_progress_is_coalesced_and_other_messages_all_arrive_in_order():
    def task(send):
        for i in range(1, 20001):
            send(Progress("cropping", i, 20000))
            if i % 5000 == 0:
                send(f"note {i}")
                time.sleep(PROGRESS_INTERVAL_S)  # long enough for one progress message per pause
        return "result"

    started = time.monotonic()
    yielded, result = _drain(messages_from(task))
    elapsed = time.monotonic() - started
    notes = [m for m in yielded if isinstance(m, str)]
    progress = [m for m in yielded if isinstance(m, Progress)]
    assert result == "result" and notes == ["note 5000", "note 10000", "note 15000", "note 20000"]
    assert progress[-1] == Progress("cropping", 20000, 20000)  # the last one always arrives
    assert 2 <= len(progress) <= elapsed / PROGRESS_INTERVAL_S + 2  # not 20000
    assert [p.done for p in progress] == sorted(p.done for p in progress)


def test_an_error_in_the_task_reaches_the_worker_after_its_messages():
    def task(send):
        send(Progress("reading", 1, 2))
        raise ValueError("bad file")

    generator = messages_from(task)
    assert next(generator) == Progress("reading", 1, 2)
    try:
        next(generator)
    except ValueError as err:
        assert str(err) == "bad file"
    else:
        raise AssertionError("the task's error was not raised")


def test_the_display_shows_only_the_latest_and_never_inside_itself(qtbot):
    shown = []
    display = ProgressDisplay(
        "Building", show_text=lambda text: (shown.append(text), display.show_latest()), interval_ms=10, bar_delay_s=0
    )
    for i in range(1, 101):
        display.post(Progress("Cropping A", i, 100))  # only recorded
    assert shown == [] and display.bar is None
    qtbot.waitUntil(lambda: shown == ["Cropping A: 100/100"], timeout=2000)  # the nested call did nothing
    assert (display.bar.n, display.bar.total) == (100, 100) and display.bar.desc == "Cropping A: "
    display.post(Progress("Cropping B", 3, 7))  # a new source restarts the bar
    qtbot.waitUntil(lambda: display.bar.total == 7, timeout=2000)
    assert display.bar.n == 3 and shown[-1] == "Cropping B: 3/7"


def test_closing_while_the_display_shows_waits_until_it_has_returned(qtbot):
    events = []

    def show_text(text):
        events.append(text)
        display.close()  # the task's end, processed by napari's progress bar while it updates
        events.append("closed" if display.closed else "close deferred")

    display = ProgressDisplay("Building", show_text=show_text, interval_ms=10, bar_delay_s=0)
    display.post(Progress("Cropping", 5, 10))
    display.show_latest()
    assert events == ["Cropping: 5/10", "close deferred"] and display.closed
    display.post(Progress("Cropping", 6, 10))
    display.show_latest()
    qtbot.wait(50)
    assert events == ["Cropping: 5/10", "close deferred"]  # nothing shown once closed


def test_a_short_task_shows_its_progress_as_text_only(qtbot):
    """Adding napari's bar repaints the whole window (about a second with software OpenGL): not for short tasks."""
    shown = []
    display = ProgressDisplay("Building", show_text=shown.append, interval_ms=10, bar_delay_s=60)
    display.post(Progress("Cropping", 5, 10))
    qtbot.waitUntil(lambda: shown == ["Cropping: 5/10"], timeout=2000)
    display.close()
    assert display.bar is None and display.closed


def test_a_long_task_without_progress_messages_shows_its_title_in_an_indeterminate_bar(qtbot):
    """napari's activity dock lists every running task by name, also one that never counts its steps."""
    shown = []
    display = ProgressDisplay("Saving the analysis", show_text=shown.append, interval_ms=10, bar_delay_s=0.05)
    assert display.bar is None
    qtbot.waitUntil(lambda: display.bar is not None, timeout=2000)
    assert display.bar.desc.removesuffix(": ") == "Saving the analysis" and display.bar.total == 0
    assert shown == []  # no step count to tell: the status line keeps the widget's own text
    display.post(Progress("Writing features", 2, 5))
    qtbot.waitUntil(lambda: display.bar.total == 5, timeout=2000)
    assert display.bar.n == 2 and shown == ["Writing features: 2/5"]
    display.close()
    assert display.closed
