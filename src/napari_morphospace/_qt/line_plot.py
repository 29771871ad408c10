"""Small line and bar plots painted with QPainter: cheap enough to follow a training run.

A matplotlib redraw of the Train widget's loss plot cost 50-700 ms of GUI
time, during which the viewer could not react. Painting a few polylines with
QPainter costs about a millisecond. The widgets keep what they draw
(:attr:`LinePlot.series`, :attr:`BarPlot.values`) so callers and tests can read
it back, and map data to pixels with :meth:`LinePlot.to_pixel` /
:meth:`BarPlot.bar_rects`.

Setting data only calls ``update()``: Qt paints once on the next pass of the
event loop, however often the data changed since.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPalette, QPen
from qtpy.QtWidgets import QWidget

#: Points get a marker while there are at most this many of them.
MAX_MARKED_POINTS = 60
TICK_LENGTH = 4
PAD = 6


def nice_ticks(low: float, high: float, *, max_ticks: int = 5, integer: bool = False) -> list[float]:
    """At most ``max_ticks`` round values from ``low`` to ``high``, 1, 2 or 5 times a power of ten apart.

    ``integer`` keeps the step at 1 or more (for counts such as epochs).
    """
    if not high > low:
        return [low]
    raw_step = (high - low) / max(max_ticks - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw_step))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw_step * (1 - 1e-9))
    if integer:
        step = max(step, 1.0)
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return [k * step for k in range(first, last + 1)]


def log_ticks(low: float, high: float, *, max_ticks: int = 6) -> list[float]:
    """Ticks for a log axis from ``low`` to ``high`` (both > 0).

    Powers of ten when at least two fit (every other one, etc., beyond
    ``max_ticks``); else 1, 2 and 5 times powers of ten; else, on a range
    narrower than that, round linear steps.
    """
    lowest, highest = math.floor(math.log10(low)), math.ceil(math.log10(high))
    decades = [10.0**k for k in range(lowest, highest + 1) if low * (1 - 1e-9) <= 10.0**k <= high * (1 + 1e-9)]
    if len(decades) >= 2:
        return decades[:: math.ceil(len(decades) / max_ticks)]
    one_two_five = [m * 10.0**k for k in range(lowest, highest + 1) for m in (1, 2, 5)]
    one_two_five = [v for v in one_two_five if low * (1 - 1e-9) <= v <= high * (1 + 1e-9)]
    if len(one_two_five) >= 2:
        return one_two_five
    return nice_ticks(low, high, max_ticks=4)


def tick_text(value: float) -> str:
    """``1000.0`` -> "1000", ``0.30000000000000004`` -> "0.3", ``1e-05`` -> "1e-05"."""
    return f"{value:.4g}"


class _Axes(QWidget):
    """Axes with ticks, labels and a title; subclasses give the limits, the ticks and the data to paint."""

    def __init__(self, *, x_label: str, y_label: str, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.x_label, self.y_label, self.title = x_label, y_label, title
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 6.0))
        self.setFont(font)

    # ----------------------------------------------------------------- to be given by subclasses

    def x_limits(self) -> tuple[float, float]:
        raise NotImplementedError

    def y_limits(self) -> tuple[float, float]:
        raise NotImplementedError

    def x_ticks(self) -> list[float]:
        raise NotImplementedError

    def y_ticks(self) -> list[float]:
        raise NotImplementedError

    def _y_fraction(self, y: float, low: float, high: float) -> float:
        return (y - low) / (high - low)

    def _paint_data(self, painter: QPainter) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- geometry

    def plot_area(self) -> QRectF:
        """The rectangle (widget pixels) inside the axes."""
        metrics = QFontMetricsF(self.font())
        widest = max((metrics.horizontalAdvance(tick_text(v)) for v in self.y_ticks()), default=0.0)
        line = metrics.height()
        left = PAD + line + PAD + widest + TICK_LENGTH
        top = PAD + (line + PAD if self.title else 0)
        bottom = TICK_LENGTH + line + PAD + (line if self.x_label else 0) + PAD
        return QRectF(left, top, max(self.width() - left - PAD, 1.0), max(self.height() - top - bottom, 1.0))

    def to_pixel(self, x: float, y: float) -> QPointF:
        """Where the data point (x, y) is drawn, in widget pixels."""
        area = self.plot_area()
        (x0, x1), (y0, y1) = self.x_limits(), self.y_limits()
        fx = (x - x0) / (x1 - x0)
        fy = self._y_fraction(y, y0, y1)
        return QPointF(area.left() + fx * area.width(), area.bottom() - fy * area.height())

    # ----------------------------------------------------------------- painting

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setFont(self.font())
        self._paint_axes(painter)
        painter.save()
        painter.setClipRect(self.plot_area().adjusted(-2, -2, 2, 2))
        self._paint_data(painter)
        painter.restore()
        painter.end()

    def _text_colour(self) -> QColor:
        return self.palette().color(QPalette.ColorRole.WindowText)

    def _paint_axes(self, painter: QPainter) -> None:
        area, colour = self.plot_area(), self._text_colour()
        metrics = QFontMetricsF(self.font())
        line = metrics.height()
        grid = QColor(colour)
        grid.setAlphaF(0.15)
        painter.setPen(QPen(colour, 1))
        painter.drawRect(area)
        for x in self.x_ticks():
            px = self.to_pixel(x, self.y_limits()[0]).x()
            painter.setPen(QPen(colour, 1))
            painter.drawLine(QPointF(px, area.bottom()), QPointF(px, area.bottom() + TICK_LENGTH))
            text = tick_text(x)
            width = metrics.horizontalAdvance(text)
            painter.drawText(QPointF(px - width / 2, area.bottom() + TICK_LENGTH + metrics.ascent()), text)
        for y in self.y_ticks():
            py = self.to_pixel(self.x_limits()[0], y).y()
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(area.left(), py), QPointF(area.right(), py))
            painter.setPen(QPen(colour, 1))
            painter.drawLine(QPointF(area.left() - TICK_LENGTH, py), QPointF(area.left(), py))
            text = tick_text(y)
            width = metrics.horizontalAdvance(text)
            painter.drawText(QPointF(area.left() - TICK_LENGTH - 2 - width, py + metrics.ascent() / 2 - 1), text)
        if self.x_label:
            width = metrics.horizontalAdvance(self.x_label)
            baseline = area.bottom() + TICK_LENGTH + line + metrics.ascent()
            painter.drawText(QPointF(area.center().x() - width / 2, baseline), self.x_label)
        if self.y_label:
            painter.save()
            painter.translate(PAD + metrics.ascent(), area.center().y() + metrics.horizontalAdvance(self.y_label) / 2)
            painter.rotate(-90)
            painter.drawText(QPointF(0, 0), self.y_label)
            painter.restore()
        if self.title:
            width = metrics.horizontalAdvance(self.title)
            painter.drawText(QPointF(area.center().x() - width / 2, PAD + metrics.ascent()), self.title)


@dataclass
class Line:
    """One series of a :class:`LinePlot`: ``values[i]`` is drawn at x = i + 1.

    Values that are not finite (or not positive on a log axis) are not drawn:
    the line breaks there. ``legend`` is the name listed in the legend
    (None: not listed, e.g. the dashed twin of a solid line).
    """

    values: list[float]
    colour: str
    dashed: bool = False
    legend: str | None = None


class LinePlot(_Axes):
    """Series over x = 1, 2, ... n as polylines, on a linear or log y axis, with a legend."""

    def __init__(
        self,
        *,
        x_label: str = "",
        y_label: str = "",
        title: str = "",
        log_y: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(x_label=x_label, y_label=y_label, title=title, parent=parent)
        self.log_y = log_y
        self.lines: dict[str, Line] = {}

    @property
    def series(self) -> dict[str, list[float]]:
        """The plotted values of every line, by name."""
        return {name: list(line.values) for name, line in self.lines.items()}

    def set_lines(self, lines: dict[str, Line]) -> None:
        """Plot ``lines`` (by name) instead of the current ones; painted on the next event-loop pass."""
        self.lines = dict(lines)
        self.update()

    def _drawable(self, value: float) -> bool:
        return math.isfinite(value) and (value > 0 or not self.log_y)

    def x_limits(self) -> tuple[float, float]:
        n = max((len(line.values) for line in self.lines.values()), default=0)
        return 1.0, float(max(n, 2))

    def y_limits(self) -> tuple[float, float]:
        values = [v for line in self.lines.values() for v in line.values if self._drawable(v)]
        if self.log_y:
            low, high = (min(values), max(values)) if values else (1.0, 10.0)
            if low == high:
                low, high = low / 2, high * 2
            margin = (high / low) ** 0.05
            return low / margin, high * margin
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if low == high:
            low, high = low - 0.5, high + 0.5
        margin = 0.05 * (high - low)
        return low - margin, high + margin

    def _y_fraction(self, y: float, low: float, high: float) -> float:
        if self.log_y:
            return (math.log10(y) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return (y - low) / (high - low)

    def x_ticks(self) -> list[float]:
        return nice_ticks(*self.x_limits(), max_ticks=6, integer=True)

    def y_ticks(self) -> list[float]:
        low, high = self.y_limits()
        return log_ticks(low, high) if self.log_y else nice_ticks(low, high)

    def _paint_data(self, painter: QPainter) -> None:
        for line in self.lines.values():
            pen = QPen(QColor(line.colour), 1.5)
            pen.setStyle(Qt.PenStyle.DashLine if line.dashed else Qt.PenStyle.SolidLine)
            painter.setPen(pen)
            path, points, pen_down = QPainterPath(), [], False
            for i, value in enumerate(line.values):
                if not self._drawable(value):
                    pen_down = False
                    continue
                point = self.to_pixel(i + 1, value)
                if pen_down:
                    path.lineTo(point)
                else:
                    path.moveTo(point)
                points.append(point)
                pen_down = True
            painter.drawPath(path)
            if len(line.values) <= MAX_MARKED_POINTS:
                painter.setBrush(QColor(line.colour))
                painter.setPen(Qt.PenStyle.NoPen)
                for point in points:
                    painter.drawEllipse(point, 1.8, 1.8)
                painter.setBrush(Qt.BrushStyle.NoBrush)
        self._paint_legend(painter)

    def _paint_legend(self, painter: QPainter) -> None:
        entries = [line for line in self.lines.values() if line.legend and any(self._drawable(v) for v in line.values)]
        if not entries:
            return
        metrics = QFontMetricsF(self.font())
        area, sample = self.plot_area(), 14.0
        width = max(metrics.horizontalAdvance(line.legend) for line in entries) + sample + 3 * PAD / 2
        box = QRectF(area.right() - width - 2, area.top() + 2, width, len(entries) * metrics.height() + PAD / 2)
        background = self.palette().color(QPalette.ColorRole.Window)
        background.setAlphaF(0.8)
        painter.fillRect(box, background)
        for row, line in enumerate(entries):
            y = box.top() + PAD / 4 + (row + 0.5) * metrics.height()
            painter.setPen(QPen(QColor(line.colour), 2))
            painter.drawLine(QPointF(box.left() + PAD / 2, y), QPointF(box.left() + PAD / 2 + sample, y))
            painter.setPen(QPen(self._text_colour(), 1))
            painter.drawText(QPointF(box.left() + PAD + sample, y + metrics.ascent() / 2 - 1), line.legend)


class BarPlot(_Axes):
    """One bar per value, in the order given, from zero up (or down); x ticks count bars from 1."""

    def __init__(
        self,
        *,
        x_label: str = "",
        y_label: str = "",
        title: str = "",
        colour: str = "#ff7f0e",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(x_label=x_label, y_label=y_label, title=title, parent=parent)
        self.colour = colour
        self.values: list[float] = []

    def set_values(self, values: list[float]) -> None:
        """Plot ``values`` instead of the current ones; painted on the next event-loop pass."""
        self.values = [float(v) for v in values]
        self.update()

    def x_limits(self) -> tuple[float, float]:
        return 0.5, max(len(self.values), 1) + 0.5

    def y_limits(self) -> tuple[float, float]:
        finite = [v for v in self.values if math.isfinite(v)]
        low, high = min([0.0, *finite]), max([0.0, *finite])
        if low == high:
            return 0.0, 1.0
        return low, high + 0.05 * (high - low)

    def x_ticks(self) -> list[float]:
        return nice_ticks(1, max(len(self.values), 1), max_ticks=8, integer=True) if self.values else []

    def y_ticks(self) -> list[float]:
        return nice_ticks(*self.y_limits(), max_ticks=4)

    def bar_rects(self) -> list[QRectF]:
        """The rectangle of each bar, in widget pixels (not-finite values get an empty one)."""
        rects = []
        for i, value in enumerate(self.values):
            value = value if math.isfinite(value) else 0.0
            top_left = self.to_pixel(i + 1 - 0.4, max(value, 0.0))
            bottom_right = self.to_pixel(i + 1 + 0.4, min(value, 0.0))
            rects.append(QRectF(top_left, bottom_right))
        return rects

    def _paint_data(self, painter: QPainter) -> None:
        colour = QColor(self.colour)
        for rect in self.bar_rects():
            painter.fillRect(rect, colour)


__all__ = ["LinePlot", "BarPlot", "Line", "nice_ticks", "log_ticks", "tick_text"]
