"""The scatter widget links points and labels both ways across two sources and two time frames."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from qtpy.QtGui import QImage, QPixmap

from napari_morphospace._qt.scatter_widget import ScatterWidget
from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.errors import InputError
from napari_morphospace.viewer.session import session_for


def _time_lapse() -> tuple[np.ndarray, pd.DataFrame]:
    """Two frames: labels 1 and 2 at t=0, label 1 (moved) and label 3 at t=1."""
    labels = np.zeros((2, 20, 20), np.uint16)
    labels[0, 2:6, 2:6] = 1
    labels[0, 10:14, 10:14] = 2
    labels[1, 12:16, 2:6] = 1
    labels[1, 2:6, 12:16] = 3
    features = pd.DataFrame(
        {
            "index": [1, 2, 1, 3],
            "t": [0, 0, 1, 1],
            "mu_0": [0.0, 1.0, 0.1, 2.0],
            "mu_1": [0.0, 1.0, 0.2, 0.0],
            "group": ["control", "treated", "control", "treated"],
            "y_start": [2, 10, 12, 2],
            "y_stop": [6, 14, 16, 6],
            "x_start": [2, 10, 2, 12],
            "x_stop": [6, 14, 6, 16],
        }
    )
    return labels, features


def _still() -> tuple[np.ndarray, pd.DataFrame]:
    labels = np.zeros((20, 20), np.uint16)
    labels[0:5, 0:5] = 5
    labels[15:20, 15:20] = 7
    features = pd.DataFrame(
        {"index": [5, 7], "mu_0": [3.0, -1.0], "mu_1": [3.0, -1.0], "group": ["control", "treated"]}
    )
    return labels, features


@pytest.fixture
def widget(make_napari_viewer):
    """Two sources: a two-frame time-lapse (rows 0-3) and a still image (rows 4-5); axes mu_0, mu_1."""
    viewer = make_napari_viewer()
    lapse, lapse_features = _time_lapse()
    still, still_features = _still()
    viewer.add_labels(lapse, name="lapse", features=lapse_features)
    viewer.add_labels(still, name="still", features=still_features)
    widget = ScatterWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_sources(["lapse", "still"])
    widget.set_axes("mu_0", "mu_1")
    viewer.dims.set_current_step(0, 0)
    return widget


def _highlight(widget, source):
    """The one "selected cells" layer, showing ``source`` once the user makes it the active layer."""
    widget.viewer.layers.selection.active = widget.viewer.layers[source]
    layer = widget.viewer.layers["selected cells"]
    assert np.allclose(layer.translate, widget.viewer.layers[source].translate[-layer.ndim :])
    return np.asarray(layer.data)


def test_plot_rows_follow_sources_and_axes(widget):
    # mu_1 separates control from treated more (larger |Cohen's d|): offered first
    assert [widget.form.x_combo.itemText(i) for i in range(widget.form.x_combo.count())] == ["mu_1", "mu_0"]
    widget.set_axes("mu_0", "mu_1")
    assert np.allclose(widget._positions, [[0, 0], [1, 1], [0.1, 0.2], [2, 0], [3, 3], [-1, -1]])
    assert widget.form.source_list.count() == 2  # the highlight layer is not offered as a source
    assert [layer.name for layer in widget.viewer.layers] == ["lapse", "still", "selected cells"]  # one for all sources


def test_selecting_points_highlights_cells_of_current_frame_in_each_source(widget):
    lapse, _ = _time_lapse()
    still, _ = _still()
    widget.select_rows([0, 2, 5])  # lapse label 1 at t=0 and t=1, still label 7
    assert widget.selected_rows.tolist() == [0, 2, 5]
    assert np.array_equal(_highlight(widget, "lapse"), (lapse[0] == 1).astype(np.uint8))
    assert np.array_equal(_highlight(widget, "still"), (still == 7).astype(np.uint8))
    widget.viewer.dims.set_current_step(0, 1)  # next frame: label 1 has moved
    assert np.array_equal(_highlight(widget, "lapse"), (lapse[1] == 1).astype(np.uint8))
    # points of the other frame are dimmed, the shown frame's are not
    colors = widget.view.frame_colors(widget.sources.in_shown_frame())
    assert colors[0, 3] < colors[2, 3] and colors[4, 3] == colors[2, 3]


def test_lasso_and_rectangle_select_points_inside(widget):
    rows = widget.select_polygon(np.array([[0.5, 0.5], [3.5, 0.5], [3.5, 3.5], [0.5, 3.5]]))
    assert rows.tolist() == [1, 4]
    assert widget.select_rectangle((1.5, -0.5), (2.5, 0.5), add=True).tolist() == [3]
    assert widget.selected_rows.tolist() == [1, 3, 4]
    lapse, _ = _time_lapse()
    assert np.array_equal(_highlight(widget, "lapse"), (lapse[0] == 2).astype(np.uint8))


def test_clicking_a_label_selects_its_point_and_not_feedback(widget):
    rows = widget.select_at_image_position((0, 12, 12))  # label 2 of the time-lapse at t=0, label 0 of still
    assert rows.tolist() == [1]
    widget.viewer.dims.set_current_step(0, 1)
    assert widget.select_at_image_position((1, 3, 3)).tolist() == [4]  # still label 5; lapse background
    assert widget.selected_rows.tolist() == [4]
    # the viewer's mouse callback: a press and release without a drag selects label 3 (t=1) of the lapse
    event = SimpleNamespace(
        type="mouse_press", pos=(10, 10), position=(1, 3, 13), modifiers=[], view_direction=None, dims_displayed=[1, 2]
    )
    callback = widget._click_callback(widget.viewer, event)
    next(callback)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(callback)
    assert widget.selected_rows.tolist() == [3]
    lapse, _ = _time_lapse()
    assert np.array_equal(_highlight(widget, "lapse"), (lapse[1] == 3).astype(np.uint8))


def test_pick_finds_nearest_point_and_focus_moves_viewer(widget):
    assert widget.pick(2.05, 0.02, radius=0.2) == 3
    assert widget.pick(5.0, 5.0, radius=0.2) is None
    widget.focus_row(3)  # lapse label 3 lives at t=1, centre (3.5, 13.5)
    assert widget.viewer.dims.current_step[0] == 1
    assert np.allclose(widget.viewer.scene.camera.center[-2:], (3.5, 13.5))
    assert "label 3" in widget.describe_row(3)


def test_named_selections_round_trip(widget):
    widget.select_rows([1, 5])
    widget.save_selection("treated")
    widget.select_rows([0])
    assert widget.recall_selection("treated").tolist() == [1, 5]
    assert widget.selections.selection_list.count() == 1


def test_color_by_category_and_number(widget):
    widget.set_color_by("group")
    assert "control" in widget.view.legend.text() and "treated" in widget.view.legend.text()
    assert np.allclose(widget.view.base_colors[0], widget.view.base_colors[2])  # both control
    assert not np.allclose(widget.view.base_colors[0], widget.view.base_colors[1])
    widget.set_color_by("mu_0")
    assert not widget.view.colorbar.pixmap().isNull()
    with pytest.raises(InputError, match="no feature column"):
        widget.set_color_by("nope")


def test_layer_without_features_is_refused(widget):
    widget.viewer.add_labels(np.zeros((20, 20), np.uint8), name="bare")
    with pytest.raises(InputError, match="no features"):
        widget.set_sources(["bare"])


def _canvas_pixel(widget, x, y):
    """Canvas pixel position of a data position, through the same vispy transforms the widget uses."""
    transform = widget.plot.canvas.scene.node_transform(widget.plot.view.scene)
    return tuple(transform.imap([x, y, 0, 1])[:2])


def test_canvas_click_picks_the_point_under_the_cursor_and_lasso_selects(widget):
    canvas = widget.plot.canvas
    canvas.size = (400, 400)  # the test viewer is never shown: give the canvas a real size
    canvas.render()  # lays out the axes and the view
    widget.plot.fit(widget._positions)
    pixel = _canvas_pixel(widget, 2.0, 0.0)  # row 3: lapse label 3 at t=1
    canvas.events.mouse_press(pos=pixel, button=1, modifiers=())
    canvas.events.mouse_release(pos=pixel, button=1, modifiers=())
    assert widget.selected_rows.tolist() == [3]
    assert widget.viewer.dims.current_step[0] == 1  # the click also moved the viewer to its frame
    widget.form.tool_combo.setCurrentText("lasso")
    corners = [_canvas_pixel(widget, x, y) for x, y in [(-1.5, -1.5), (0.5, -1.5), (0.5, 0.5), (-1.5, 0.5)]]
    press = canvas.events.mouse_press(pos=corners[0], button=1, modifiers=())
    for corner in corners[1:]:
        canvas.events.mouse_move(pos=corner, button=1, modifiers=(), press_event=press)
    canvas.events.mouse_release(pos=corners[-1], button=1, modifiers=())
    assert widget.selected_rows.tolist() == [0, 2, 5]


def test_points_layer_source_highlights_selected_points_and_click_selects(make_napari_viewer):
    viewer = make_napari_viewer()
    coords = np.array([[5.0, 5.0], [20.0, 30.0], [40.0, 10.0]])
    features = pd.DataFrame({"mu_0": [0.0, 1.0, 2.0], "mu_1": [2.0, 1.0, 0.0]})
    viewer.add_points(coords, features=features, name="centres", size=4)
    widget = ScatterWidget(viewer)
    widget.set_sources(["centres"])
    widget.select_rows([0, 2])
    assert np.array_equal(viewer.layers["selected points"].data, coords[[0, 2]])
    assert widget.select_at_image_position((20.0, 30.0)).tolist() == [1]
    assert np.array_equal(viewer.layers["selected points"].data, coords[[1]])


def test_points_highlight_layer_comes_with_the_first_selection_and_its_rings_follow_the_point_size(
    make_napari_viewer, dock
):
    viewer = make_napari_viewer()
    coords = np.array([[5.0, 5.0], [20.0, 30.0], [40.0, 10.0]])
    features = pd.DataFrame({"mu_0": [0.0, 1.0, 2.0], "mu_1": [2.0, 1.0, 0.0]})
    viewer.add_points(coords, features=features, name="centres", size=4)
    widget = dock(viewer, "Scatter")
    widget.set_sources(["centres"])
    assert [layer.name for layer in viewer.layers] == ["centres"]  # plotting adds no empty layer
    widget.select_rows([0, 2])
    highlight = viewer.layers["selected points"]
    assert np.array_equal(highlight.data, coords[[0, 2]])
    assert highlight.size.tolist() == [6.0, 6.0]  # rings 1.5 x the source's points
    assert viewer.layers.selection.active is viewer.layers["centres"]  # the user's active layer is kept
    widget.select_rows([])
    assert viewer.layers["selected points"] is highlight and len(highlight.data) == 0  # it stays, emptied
    viewer.layers["centres"].size = 8
    widget.select_rows([0, 1, 2])
    assert np.array_equal(highlight.data, coords) and highlight.size.tolist() == [12.0, 12.0, 12.0]


@pytest.fixture
def linked(make_napari_viewer):
    """One still image whose features carry crop ids 10..13, and its 3D crop set (1 channel, 3 x 6 x 8) in the
    session."""
    viewer = make_napari_viewer()
    labels = np.zeros((20, 20), np.uint16)
    for label, (y, x) in zip([1, 2, 3, 4], [(0, 0), (0, 10), (10, 0), (10, 10)], strict=True):
        labels[y : y + 5, x : x + 5] = label
    features = pd.DataFrame(
        {"index": [1, 2, 3, 4], "crop_id": [10, 11, 12, 13], "mu_0": [0.0, 1.0, 0.0, 1.0], "mu_1": [0.0, 0.0, 1.0, 1.0]}
    )
    viewer.add_labels(labels, name="cells", features=features)
    table = pd.DataFrame(
        {
            "crop_id": [13, 12, 11, 10],
            "source": "cells",
            "label_id": [4, 3, 2, 1],
            "t": 0,
            "group": ["b", "a", "b", "a"],
        }
    )  # not in plot order: looked up by crop id
    images = np.random.default_rng(3).random((4, 1, 3, 6, 8)).astype(np.float32)
    session_for(viewer).crop_set = CropSet(images, table, ["dna"], (1.0, 0.5, 0.5))
    widget = ScatterWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_sources(["cells"])
    widget.set_axes("mu_0", "mu_1")
    return widget


def _pixmap_rgb(pixmap: QPixmap) -> np.ndarray:
    image = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB888)
    pointer = image.constBits()
    pointer.setsize(image.sizeInBytes())
    rows = np.frombuffer(pointer, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()  # before the QImage goes


def test_lasso_publishes_crop_ids_to_the_session_and_back(linked):
    session = session_for(linked.viewer)
    heard = []
    session.selection_changed.connect(heard.append)
    linked.select_polygon(np.array([[0.5, -0.5], [1.5, -0.5], [1.5, 1.5], [0.5, 1.5]]))  # the right column: rows 1, 3
    assert session.selection.tolist() == [11, 13]
    assert len(heard) == 1
    session.selection = [10, 99]  # another widget selects crop 10 (and one not plotted)
    assert linked.selected_rows.tolist() == [0]
    assert session.selection.tolist() == [10, 99]  # the plot shows what it can and does not write back
    assert np.array_equal(
        np.asarray(linked.viewer.layers["selected cells"].data), (linked.viewer.layers["cells"].data == 1)
    )


def test_rows_without_crop_ids_are_not_published(widget):
    widget.select_rows([0, 4])
    assert session_for(widget.viewer).selection.tolist() == []
    widget.save_selection("mixed")
    assert session_for(widget.viewer).named_selections == {}


def test_clicking_a_point_shows_its_crop(linked):
    canvas = linked.plot.canvas
    canvas.size = (400, 400)
    canvas.render()
    linked.plot.fit(linked._positions)
    pixel = _canvas_pixel(linked, 0.0, 1.0)  # row 2: crop 12, the second crop of the set
    canvas.events.mouse_press(pos=pixel, button=1, modifiers=())
    canvas.events.mouse_release(pos=pixel, button=1, modifiers=())
    assert session_for(linked.viewer).selection.tolist() == [12]
    crop = session_for(linked.viewer).crop_set.images[1, 0]
    expected = np.repeat((crop.max(axis=0) * 255).astype(np.uint8)[..., None], 3, axis=-1)  # grey max projection
    shown = _pixmap_rgb(linked.crops.thumbnail.pixmap())
    # a pixmap takes the display's colour depth (16 bits under pytest-xvfb): compare with the expected picture
    # made into a pixmap the same way, and with the picture itself to within that depth
    picture = QImage(expected.tobytes(), 8, 6, 24, QImage.Format.Format_RGB888)
    assert np.array_equal(shown, _pixmap_rgb(QPixmap.fromImage(picture)))
    assert np.abs(shown.astype(int) - expected).max() <= 8
    assert (linked.crops.thumbnail.width(), linked.crops.thumbnail.height()) == (96, 72)  # 8 x 6 crop, aspect kept
    assert linked.crops.caption.text().startswith("crop 12 · group a")


def test_named_selection_is_kept_in_the_session_and_comes_back(linked):
    session = session_for(linked.viewer)
    linked.select_rows([0, 3])
    linked.save_selection("diagonal")
    assert session.named_selections == {"diagonal": (10, 13)}
    session.named_selections = {"diagonal": (10, 13), "top": (10, 11)}  # e.g. an opened analysis
    assert [
        linked.selections.selection_list.item(i).text() for i in range(linked.selections.selection_list.count())
    ] == ["diagonal", "top"]
    assert linked.recall_selection("top").tolist() == [0, 1]
    assert session.selection.tolist() == [10, 11]


def test_clusters_and_embeddings_go_to_the_session_table_and_from_there_to_the_features(linked, qtbot):
    session = session_for(linked.viewer)
    session.latents = pd.DataFrame(
        {"crop_id": [10, 11, 12, 13], "mu_0": [0.0, 0.1, 5.0, 5.1], "mu_1": [0.0, 0.1, 5.0, 5.2]}
    )
    assert linked.compute_row.embed_button.text() == "Embed μ"  # a model's latent means
    linked.plot.fit(np.array([[100.0, 100.0], [101.0, 101.0]]))  # the user zoomed somewhere
    zoom = linked.plot.view.camera.rect
    assert (
        linked.compute_row.compute_clusters("kmeans", 2) is not None
    )  # a fast worker can finish before a waitSignal connects
    qtbot.waitUntil(lambda: linked._color_by == "cluster", timeout=20000)
    clusters = session.cells.set_index("crop_id")["cluster"]
    assert clusters[10] == clusters[11] != clusters[12] == clusters[13]
    assert linked.viewer.layers["cells"].features["cluster"].tolist() == clusters[[10, 11, 12, 13]].tolist()
    assert linked.plot.view.camera.rect == zoom  # new columns do not move the user's view
    assert linked.compute_row.compute_embedding("PCA") is not None
    qtbot.waitUntil(lambda: "PCA_1" in session.cells, timeout=20000)
    assert linked._axes == ("PCA_0", "PCA_1")
    assert session.latents[["PCA_0", "PCA_1", "cluster"]].notna().all().all()
    np.testing.assert_allclose(linked._positions[:, 0], session.latents["PCA_0"].to_numpy()[::-1], rtol=1e-5)
