"""Paths of tracked cells drawn over the scatter plot: one line per track, and a ring on each track's current cell.

Drawing and picking only, on the scatter's vispy view; which rows form a
track and which segment a click hits are computed in :mod:`core.analysis.tracks`. The
scatter widget calls :meth:`TrackOverlay.show` after every redraw (points,
colours or the shown frame changed) and :meth:`TrackOverlay.pick` on a click.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from vispy import scene

from ..core.analysis.tracks import nearest_segment, path_segments

#: How the paths are coloured: off, by frame (viridis, early to late), or like their points (the "colour by" column).
MODES = ("off", "by time", "by colour")
CURRENT_EDGE = (1.0, 0.85, 0.0, 1.0)


class TrackOverlay:
    """Line segments joining each track's cells in frame order, and rings on the cells of the shown frame."""

    def __init__(self, view: scene.ViewBox) -> None:
        self.lines = scene.visuals.Line(connect="segments", width=1.5, parent=view.scene)
        self.current = scene.visuals.Markers(pos=np.zeros((1, 2), np.float32), parent=view.scene)
        self.lines.order, self.current.order = 1, 3  # lines with the points (under the selection), rings on top
        self.lines.visible = self.current.visible = False
        self.keys = np.zeros(0, np.int64)
        self.segments = np.zeros((0, 2), np.int64)
        #: Rows ringed now: each track's cell of the frame shown in the viewer.
        self.ringed = np.zeros(0, np.int64)
        self._positions = np.zeros((0, 2), np.float32)

    def clear(self) -> None:
        self.lines.visible = self.current.visible = False
        self.segments = np.zeros((0, 2), np.int64)
        self.ringed = np.zeros(0, np.int64)

    def show(
        self,
        positions: np.ndarray,
        keys: np.ndarray,
        t: np.ndarray,
        colors: np.ndarray | None,
        current: np.ndarray,
        size: float,
    ) -> None:
        """Draw the paths of ``keys`` (one track key per row, -1 off tracks; :func:`core.analysis.tracks.track_keys`).

        ``colors`` (N, 4) colours each segment like its later point; None colours
        it by its later frame ``t``. ``current`` marks the rows of the frame
        shown in the viewer: they get a ring.
        """
        if keys is not self.keys or not len(self.segments):  # the same tracks in another frame: segments unchanged
            self.segments = path_segments(keys, t)
        self._positions, self.keys = positions, keys
        if not len(self.segments):
            self.clear()
            return
        if colors is None:
            frames = np.asarray(t, float)
            span = max(float(np.ptp(frames)), 1.0)
            colors = colormaps["viridis"]((frames - frames.min()) / span).astype(np.float32)
        else:
            colors = np.array(colors, dtype=np.float32)
            colors[:, 3] = 1.0
        ends = self.segments[:, 1]
        self.lines.set_data(pos=positions[self.segments.reshape(-1)], color=np.repeat(colors[ends], 2, axis=0))
        self.lines.visible = True
        self.ringed = np.flatnonzero(current & (keys >= 0))
        if len(self.ringed):
            self.current.set_data(
                positions[self.ringed], face_color=(0, 0, 0, 0), edge_color=CURRENT_EDGE, edge_width=2.0, size=size + 8
            )
        self.current.visible = bool(len(self.ringed))

    def pick(self, x: float, y: float, radius: float | tuple[float, float]) -> tuple[np.ndarray, int] | None:
        """The rows of the track whose path passes within ``radius`` of ``(x, y)``, and its row nearest the click."""
        segment = nearest_segment(self._positions, self.segments, (x, y), radius)
        if segment is None:
            return None
        a, b = self.segments[segment]
        distance = np.linalg.norm(self._positions[[a, b]] - np.array([x, y]), axis=1)
        return np.flatnonzero(self.keys == self.keys[a]), int((a, b)[int(np.argmin(distance))])
