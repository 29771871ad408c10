"""One training run of the Train widget (and of its Sweep dialog) off the GUI thread: where, how, and stopping it.

Qt-free: the engine (:func:`core.training.engine.train`) runs with one CPU core left
to the viewer; a :class:`RunHandle` holds the stop and done events that
closing the widget or the viewer uses to stop it and wait for its last checkpoint.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..core.cells.crop_set import CropSet
from ..core.models import ModelSettings
from ..core.training.engine import TrainResult, TrainSettings, train

#: How long closing the widget or the viewer waits for training to stop and write its checkpoint.
CLOSE_WAIT_S = 30.0


def default_checkpoint_dir(crop_folder: Path | None, *, now: datetime | None = None) -> Path:
    """A new run folder: next to a crop set loaded from disk, else under the home folder."""
    parent = (
        crop_folder.parent / f"{crop_folder.name}-checkpoints"
        if crop_folder
        else Path.home() / "morphospace-checkpoints"
    )
    return parent / f"run-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


class RunHandle:
    """The stop and done events of the current run, shared with shutdown paths that outlive the widget."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.done_event = threading.Event()
        self.done_event.set()

    def begin(self) -> tuple[threading.Event, threading.Event]:
        """Fresh events for a new run: (stop, done)."""
        self.stop_event, self.done_event = threading.Event(), threading.Event()
        return self.stop_event, self.done_event

    def stop_and_wait(self, *_: Any, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Ask the engine to stop after its current step; wait until it has written its checkpoint."""
        self.stop_event.set()
        return self.done_event.wait(timeout_s)


def train_in_thread(
    send: Callable[[Any], None],
    crop_set: CropSet,
    model_settings: ModelSettings,
    train_settings: TrainSettings,
    stop_event: threading.Event,
    done_event: threading.Event,
    resume_from: Path | None,
) -> TrainResult:
    """Run the engine off the GUI thread, sending its messages, with one CPU core left for the viewer.

    ``done_event`` is set when it has ended (closing waits for it: the last checkpoint is written).
    """
    try:
        with one_core_for_the_viewer():
            return train(
                crop_set, model_settings, train_settings, on_update=send, stop_event=stop_event, resume_from=resume_from
            )
    finally:
        done_event.set()


@contextmanager
def one_core_for_the_viewer() -> Iterator[None]:
    """Train with ``cpu_count - 1`` torch threads (at least 1); torch's thread count is process-wide, so restore it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads, _usable_cpus() - 1)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _usable_cpus() -> int:
    """The CPUs this process may run on (fewer than ``os.cpu_count()`` in a container limited to some)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
