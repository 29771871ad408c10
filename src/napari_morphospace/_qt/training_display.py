"""What the Train dock shows of a run as it trains: progress with ETA, loss plot and KL bars, reconstruction preview.

The viewer stays responsive while training (``benchmarks/bench_viewer_responsiveness.py``):

- Messages are only recorded when they arrive. At most every
  ``REFRESH_INTERVAL_MS`` one refresh shows the latest progress and the new
  epochs, so all of it is painted in one pass. Every paint of a widget next to
  napari's OpenGL canvas composes the whole window (15-30 ms without a GPU),
  and ``QProgressBar.setValue`` would paint at once, so the bar is updated
  with painting held back.
- The loss plot and KL bars are painted with QPainter (``line_plot``), about
  1 ms, where a matplotlib redraw took 50-700 ms.
- The preview layer is written in place (same array, no new extent or
  contrast limits) and refreshed at most every ``PREVIEW_INTERVAL_S``: a
  redraw of napari's canvas costs 100-200 ms of GUI time with software
  OpenGL. The last preview of a run is always shown.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer

from ..core.training.engine import ReconstructionPreview, TrainFinished, TrainUpdate
from ..viewer.reconstructions import add_preview_layer, show_reconstructions
from .loss_plot import LossPlot
from .run_progress import RunProgress

#: Progress, plot and preview are shown at most this often, all in one paint.
REFRESH_INTERVAL_MS = 500
#: The preview layer is refreshed at most this often: each canvas redraw costs 100-200 ms without a GPU.
PREVIEW_INTERVAL_S = 3.0


class TrainingDisplay(QObject):
    """The progress (``progress``), the loss plot (``plot``) and the preview layer of a run; :meth:`record` its
    messages."""

    def __init__(self, viewer: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.progress = RunProgress()
        self.plot = LossPlot()
        self.last_finished: TrainFinished | None = None
        self._pending_update: TrainUpdate | None = None
        self._pending_preview: ReconstructionPreview | None = None
        self._preview_shown_at = -np.inf
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_INTERVAL_MS)
        self._timer.timeout.connect(self.refresh)

    def begin(self, crop_shape: tuple[int, ...], *, resume: bool) -> None:
        """A run starts: the plot starts over (a resumed run continues it), and the preview layer is ready."""
        if not resume:
            self.plot.clear()
        add_preview_layer(self.viewer, crop_shape, resume=resume)
        self.last_finished, self._pending_update, self._pending_preview = None, None, None
        self._preview_shown_at = -np.inf
        self.progress.starting()

    def record(self, message: Any) -> None:
        """Record a message from the worker; progress, plot and preview are shown by the next :meth:`refresh`."""
        if isinstance(message, (TrainUpdate, ReconstructionPreview)):
            if isinstance(message, ReconstructionPreview):
                self._pending_preview = message
            else:
                self._pending_update = message
                if message.val_losses is not None:
                    self.plot.add_epoch(message)
            if not self._timer.isActive():
                self._timer.start()
        elif isinstance(message, TrainFinished):
            self.last_finished = message
        # A TrainFailed message is followed by the engine's error, which Tasks tells the user.

    def refresh(self, *, final: bool = False) -> None:
        """Show the latest progress, the new epochs and, at most every ``PREVIEW_INTERVAL_S`` (or when
        ``final``), the latest preview."""
        if self._pending_update is not None:
            self.progress.show_update(self._pending_update)
            self._pending_update = None
        self.plot.refresh()
        if self._pending_preview is not None:
            if final or time.monotonic() - self._preview_shown_at >= PREVIEW_INTERVAL_S:
                show_reconstructions(self.viewer, self._pending_preview)
                self._pending_preview, self._preview_shown_at = None, time.monotonic()
            else:
                self._timer.start()  # come back for the held preview

    def finish(self) -> None:
        """The worker has sent everything: show what the last refresh held back (e.g. the last preview)."""
        self._timer.stop()
        self.refresh(final=True)
