"""Hovering a point of the docked Scatter widget shows its cell's crop at the cursor,
read from the session's crop set."""

import numpy as np
import pandas as pd
from qtpy.QtCore import QEvent
from qtpy.QtGui import QImage
from qtpy.QtWidgets import QApplication

from napari_morphospace._qt.hover_thumbnail import THUMBNAIL_PX, rgb_pixmap
from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.figures.gallery import CHANNEL_COLOURS
from napari_morphospace.viewer.session import session_for

# plot positions (mu_0, mu_1) of the four cells; crop ids 10..13; crop 13 is not in the crop set
POSITIONS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def _scene(make_napari_viewer, dock, crops):
    viewer = make_napari_viewer()
    labels = np.zeros((20, 20), np.uint16)
    for label, (y, x) in zip([1, 2, 3, 4], [(0, 0), (0, 10), (10, 0), (10, 10)], strict=True):
        labels[y : y + 5, x : x + 5] = label
    features = pd.DataFrame(
        {"index": [1, 2, 3, 4], "crop_id": [10, 11, 12, 13], "mu_0": POSITIONS[:, 0], "mu_1": POSITIONS[:, 1]}
    )
    viewer.add_labels(labels, name="cells", features=features)
    table = pd.DataFrame({"crop_id": [12, 11, 10], "source": "cells", "label_id": [3, 2, 1], "t": 0})
    session_for(viewer).crop_set = CropSet(crops, table, [f"c{i}" for i in range(crops.shape[1])])
    widget = dock(viewer, "Scatter")
    widget.set_sources(["cells"])
    widget.set_axes("mu_0", "mu_1")
    canvas = widget.plot.canvas
    canvas.size = (400, 400)  # the test viewer is never shown: give the canvas a real size
    canvas.render()  # lays out the axes and the view
    widget.plot.fit(widget._positions)
    return widget


def _pixel(widget, x, y):
    transform = widget.plot.canvas.scene.node_transform(widget.plot.view.scene)
    return tuple(float(v) for v in transform.imap([x, y, 0, 1])[:2])


def _move_and_rest(widget, qtbot, pixel):
    """The cursor moves to ``pixel`` and rests there: the throttled hover runs once."""
    widget.plot.canvas.events.mouse_move(pos=pixel, button=None, modifiers=())
    qtbot.waitUntil(lambda: not widget.mouse.hover_timer.isActive(), timeout=2000)


def _pixmap_rgb(pixmap) -> np.ndarray:
    image = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB888)
    pointer = image.constBits()
    pointer.setsize(image.sizeInBytes())
    rows = np.frombuffer(pointer, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def _green_magenta(crop: np.ndarray) -> np.ndarray:
    """The expected picture of a two-channel crop: channel 0 green, channel 1 magenta, added."""
    return (np.clip(np.einsum("cyx,ck->yxk", crop, CHANNEL_COLOURS[:2]), 0, 1) * 255).astype(np.uint8)


def _shows(thumbnail, expected: np.ndarray) -> bool:
    """Whether the thumbnail holds ``expected``: through a pixmap as it is (16-bit colour under pytest-xvfb),
    and close."""
    shown = _pixmap_rgb(thumbnail.pixmap())
    return np.array_equal(shown, _pixmap_rgb(rgb_pixmap(expected))) and np.abs(shown.astype(int) - expected).max() <= 8


def test_hovering_a_point_shows_its_two_channel_crop_at_the_cursor(make_napari_viewer, dock, qtbot):
    crops = np.random.default_rng(0).random((3, 2, 6, 8)).astype(np.float32)  # 2 channels, 6 x 8
    widget = _scene(make_napari_viewer, dock, crops)
    thumbnail = widget.crops.hover_thumbnail
    pixel = _pixel(widget, 0.0, 1.0)  # row 2 (top left): crop 12, the first crop of the set
    _move_and_rest(widget, qtbot, (pixel[0] + 2, pixel[1] - 2))  # a couple of pixels off the point still finds it
    assert not thumbnail.isHidden()
    assert _shows(thumbnail, _green_magenta(crops[0]))
    assert (thumbnail.width(), thumbnail.height()) == (THUMBNAIL_PX, THUMBNAIL_PX * 6 // 8)  # aspect kept
    assert (thumbnail.x(), thumbnail.y()) == (round(pixel[0] + 2) + 12, round(pixel[1] - 2) + 12)  # beside the cursor
    assert "label 3" in widget.hover_label.text()

    pixel = _pixel(widget, 1.0, 0.0)  # row 1 (bottom right): crop 11; no room right of it or below
    _move_and_rest(widget, qtbot, pixel)
    assert _shows(thumbnail, _green_magenta(crops[1]))
    assert (thumbnail.x(), thumbnail.y()) == (round(pixel[0]) - 12 - THUMBNAIL_PX, round(pixel[1]) - 12 - 72)

    _move_and_rest(widget, qtbot, _pixel(widget, 0.5, 0.5))  # the middle of the plot: far from every point
    assert thumbnail.isHidden() and widget.hover_label.text() == ""

    _move_and_rest(widget, qtbot, _pixel(widget, 1.0, 1.0))  # crop 13 is not in the crop set: nothing to show
    assert thumbnail.isHidden() and "label 4" in widget.hover_label.text()


def test_3d_crops_show_their_maximum_projection_and_the_toggle_and_leaving_hide_it(make_napari_viewer, dock, qtbot):
    crops = np.zeros((3, 1, 4, 5, 5), np.float32)
    crops[2, 0, 3, 1, 2] = 1.0  # crop 10 (the third): one bright voxel deep in z
    widget = _scene(make_napari_viewer, dock, crops)
    thumbnail = widget.crops.hover_thumbnail
    pixel = _pixel(widget, 0.0, 0.0)
    _move_and_rest(widget, qtbot, pixel)
    assert not thumbnail.isHidden()
    bright = np.argwhere(_pixmap_rgb(thumbnail.pixmap()).sum(axis=-1) > 0)
    assert bright.min(axis=0).tolist() == [1, 2] and bright.max(axis=0).tolist() == [1, 2]  # the projected voxel

    QApplication.sendEvent(widget.plot.canvas.native, QEvent(QEvent.Type.Leave))  # the cursor leaves the plot
    assert thumbnail.isHidden()
    _move_and_rest(widget, qtbot, pixel)
    assert not thumbnail.isHidden()
    widget.plot.canvas.events.mouse_wheel(pos=pixel, delta=(0, 1), modifiers=())  # zooming moves the point away
    assert thumbnail.isHidden()

    widget.form.thumbnail_check.setChecked(False)
    _move_and_rest(widget, qtbot, pixel)
    assert thumbnail.isHidden() and "label 1" in widget.hover_label.text()  # still described, no picture
    widget.form.thumbnail_check.setChecked(True)
    _move_and_rest(widget, qtbot, pixel)
    assert not thumbnail.isHidden()
