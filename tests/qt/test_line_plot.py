"""QPainter line and bar plots: ticks with known values, data drawn where the axes say, gaps where it must not be."""

import math

import pytest
from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor

from napari_morphospace._qt.line_plot import BarPlot, Line, LinePlot, log_ticks, nice_ticks, tick_text

RED, BLUE = "#d62728", "#1f77b4"


def test_linear_ticks_are_round_steps_within_the_range():
    assert nice_ticks(0, 1, max_ticks=6) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(0, 1, max_ticks=5) == pytest.approx([0, 0.5, 1.0])
    assert nice_ticks(1, 50, max_ticks=6, integer=True) == [10, 20, 30, 40, 50]
    assert nice_ticks(1, 3, max_ticks=6, integer=True) == [1, 2, 3]
    assert nice_ticks(-0.3, 0.3, max_ticks=4) == pytest.approx([-0.2, 0, 0.2])
    assert nice_ticks(4, 4) == [4]


def test_log_ticks_are_decades_else_one_two_five_else_linear():
    assert log_ticks(0.3, 40) == [1, 10]
    assert log_ticks(0.5, 2e5) == [1, 10, 100, 1000, 1e4, 1e5]
    assert log_ticks(0.5, 2e8) == [1, 100, 1e4, 1e6, 1e8]  # every other decade beyond six
    assert log_ticks(15, 60) == [20, 50]
    assert log_ticks(150, 400) == [200, 300, 400]  # narrower than 2 to 5: linear steps
    assert [tick_text(v) for v in (1000.0, 0.1 * 3, 1e-5, 2.5e-4)] == ["1000", "0.3", "1e-05", "0.00025"]


def show(qtbot, plot, width=300, height=200):
    qtbot.addWidget(plot)
    plot.resize(width, height)
    plot.show()
    qtbot.waitExposed(plot)
    return plot.grab().toImage()


def has_colour(image, point, colour, radius=1, tolerance=12) -> bool:
    """Whether a pixel within ``radius`` of ``point`` has ``colour`` (up to the display's colour depth)."""
    x, y = round(point.x()), round(point.y())
    want = QColor(colour)
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            got = QColor(image.pixel(x + dx, y + dy))
            if (
                max(abs(got.red() - want.red()), abs(got.green() - want.green()), abs(got.blue() - want.blue()))
                <= tolerance
            ):
                return True
    return False


def test_log_line_is_drawn_at_its_values_with_equal_steps_per_decade(qtbot):
    plot = LinePlot(x_label="epoch", y_label="loss", log_y=True)
    plot.set_lines({"train rec": Line([1.0, 10.0, 100.0], RED, legend="rec")})
    image = show(qtbot, plot)
    points = [plot.to_pixel(x, y) for x, y in ((1, 1.0), (2, 10.0), (3, 100.0))]
    assert points[0].y() - points[1].y() == pytest.approx(points[1].y() - points[2].y())
    assert points[1].x() - points[0].x() == pytest.approx(points[2].x() - points[1].x())
    area = plot.plot_area()
    assert all(area.contains(p) for p in points)
    for point in points:
        assert has_colour(image, point, RED)
    assert plot.series == {"train rec": [1.0, 10.0, 100.0]}


def test_non_positive_and_missing_values_break_a_log_line(qtbot):
    plot = LinePlot(log_y=True)
    plot.set_lines({"mi": Line([1.0, -0.5, 10.0, math.nan, 100.0, 1000.0], BLUE)})
    image = show(qtbot, plot, width=400)

    # No segment from epoch 1 to 3 (epoch 2 is below zero), nor from 3 to 5; one from 5 to 6.
    def midpoint(a, b):
        pa, pb = plot.to_pixel(*a), plot.to_pixel(*b)
        return (pa + pb) / 2

    assert not has_colour(image, midpoint((1, 1.0), (3, 10.0)), BLUE, radius=2)
    assert not has_colour(image, midpoint((3, 10.0), (5, 100.0)), BLUE, radius=2)
    assert has_colour(image, midpoint((5, 100.0), (6, 1000.0)), BLUE)
    low, high = plot.y_limits()
    assert 0 < low < 1.0 and high > 1000.0


def test_dashed_line_has_gaps_a_solid_line_has_none(qtbot):
    plot = LinePlot()
    plot.set_lines({"val": Line([1.0, 1.0], RED, dashed=True), "train": Line([2.0, 2.0], BLUE)})
    image = show(qtbot, plot, width=400)

    def coverage(colour, y):
        start, end = plot.to_pixel(1, y), plot.to_pixel(2, y)
        xs = range(round(start.x()) + 4, round(end.x()) - 4)
        return sum(
            any(has_colour(image, QPointF(x, start.y() + dy), colour, radius=0) for dy in (-1, 0, 1)) for x in xs
        ) / len(xs)

    assert coverage(BLUE, 2.0) == 1.0
    assert 0.3 < coverage(RED, 1.0) < 0.9


def test_bars_stand_on_zero_with_heights_in_proportion(qtbot):
    plot = BarPlot(colour=RED)
    plot.set_values([4.0, 2.0, 1.0, 0.0])
    image = show(qtbot, plot)
    rects = plot.bar_rects()
    zero = plot.to_pixel(1, 0.0).y()
    assert [r.bottom() for r in rects] == pytest.approx([zero] * 4)
    assert [r.height() / rects[0].height() for r in rects] == pytest.approx([1.0, 0.5, 0.25, 0.0])
    assert rects[0].left() < rects[1].left() < rects[2].left()
    for rect in rects[:3]:
        assert has_colour(image, rect.center(), RED, radius=0)
    assert plot.x_ticks() == [1, 2, 3, 4]
