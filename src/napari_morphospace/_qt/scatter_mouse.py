"""What the mouse does on the scatter plot: lasso and rectangle drags, clicks, and hovering (throttled).

It draws the outline being dragged and tells its owner what was done, in data
coordinates; which points that selects is the owner's business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QObject, QTimer

from .scatter_canvas import ScatterCanvas

HOVER_DELAY_MS = 30
CLICK_SLOP_PX = 3  # a press and release closer than this is a click, not a drag


class PlotMouse(QObject):
    """Mouse tools of a :class:`ScatterCanvas`; ``tool()`` says which is chosen ("pan/zoom", "lasso", "rectangle").

    Callbacks (``add``: Shift was held): ``on_lasso(vertices, add)``,
    ``on_rectangle(corner_a, corner_b, add)``, ``on_click(point, add)``,
    ``on_hover(pixel)`` (at most every :data:`HOVER_DELAY_MS`) and
    ``on_leave()`` (the cursor left the plot, a drag began, or the view zoomed).
    """

    def __init__(
        self,
        plot: ScatterCanvas,
        tool: Callable[[], str],
        *,
        on_lasso: Callable,
        on_rectangle: Callable,
        on_click: Callable,
        on_hover: Callable,
        on_leave: Callable,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.plot, self._tool = plot, tool
        self._on_lasso, self._on_rectangle, self._on_click = on_lasso, on_rectangle, on_click
        self._on_hover, self._on_leave = on_hover, on_leave
        self._drag: list[np.ndarray] = []
        self._press_pixel: np.ndarray | None = None
        self._hover_pixel: tuple[float, float] | None = None
        self.hover_timer = QTimer(self)
        self.hover_timer.setSingleShot(True)
        self.hover_timer.setInterval(HOVER_DELAY_MS)
        self.hover_timer.timeout.connect(self._hover)
        events = plot.canvas.events
        events.mouse_press.connect(self._press)
        events.mouse_move.connect(self._move)
        events.mouse_release.connect(self._release)
        events.mouse_wheel.connect(lambda _event: on_leave())  # zoom moves the points
        plot.canvas.native.installEventFilter(self)  # the cursor leaving the plot

    def set_tool(self, tool: str) -> None:
        """Pan and zoom with the mouse only with the pan/zoom tool."""
        self.plot.view.camera.interactive = tool == "pan/zoom"

    def _press(self, event: Any) -> None:
        self._on_leave()
        self._press_pixel = np.asarray(event.pos, dtype=float)
        self._drag = [self.plot.canvas_to_data(event.pos)]

    def _move(self, event: Any) -> None:
        tool = self._tool()
        if event.is_dragging and tool != "pan/zoom" and self._drag:
            point = self.plot.canvas_to_data(event.pos)
            if tool == "lasso":
                self._drag.append(point)
                self.plot.show_outline(np.array(self._drag + [self._drag[0]]))
            else:
                (x0, y0), (x1, y1) = self._drag[0], point
                self._drag = [self._drag[0], point]
                self.plot.show_outline(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]))
        elif not event.is_dragging:
            self._hover_pixel = tuple(event.pos)
            if not self.hover_timer.isActive():  # throttle: at most one pick per HOVER_DELAY_MS
                self.hover_timer.start()

    def _release(self, event: Any) -> None:
        if self._press_pixel is None:
            return
        tool, add = self._tool(), "Shift" in [key.name for key in event.modifiers]
        moved = float(np.abs(np.asarray(event.pos) - self._press_pixel).max()) > CLICK_SLOP_PX
        drag, self._drag, self._press_pixel = self._drag, [], None
        self.plot.show_outline(None)
        if tool == "lasso" and moved and len(drag) >= 3:
            self._on_lasso(np.array(drag), add)
        elif tool == "rectangle" and moved and len(drag) == 2:
            self._on_rectangle(drag[0], drag[1], add)
        elif not moved:
            self._on_click(self.plot.canvas_to_data(event.pos), add)

    def _hover(self) -> None:
        if self._hover_pixel is not None:
            self._on_hover(self._hover_pixel)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The cursor left the plot: nothing is hovered."""
        if watched is self.plot.canvas.native and event.type() == QEvent.Type.Leave:
            self._hover_pixel = None
            self._on_leave()
        return super().eventFilter(watched, event)
