"""The Annotate widget: click-to-annotate, overlay equals the brute-force mask, undo, features, autosave.

Annotations go into the session's per-cell table; its writer puts them into
the layers' features, and one "annotations" layer shows the classes.
"""

import os
import socket
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_morphospace._qt.annotation_widget import OVERLAY_NAME, AnnotationWidget
from napari_morphospace._qt.scatter_widget import ScatterWidget
from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.io.stacks import read_stack
from napari_morphospace.core.project.annotations import read_annotations
from napari_morphospace.viewer.session import session_for


def _labels() -> np.ndarray:
    labels = np.zeros((30, 30), np.uint16)
    labels[2:8, 2:8] = 1
    labels[10:16, 10:16] = 2
    labels[20:28, 3:9] = 3
    labels[20:28, 20:28] = 5
    return labels


def _crop_set() -> CropSet:
    ids = [1, 2, 3, 5]
    table = pd.DataFrame(
        {
            "crop_id": [10, 11, 12, 13],
            "source": "cells",
            "label_id": ids,
            "t": 0,
            "group": ["control", "control", "treated", "treated"],
            "annotation": "",
            "y_start": 0,
            "y_stop": 4,
            "x_start": 0,
            "x_stop": 4,
        }
    )
    images = np.random.default_rng(0).random((4, 1, 4, 4)).astype(np.float32)
    return CropSet(images, table, ["dna"], (0.5, 0.5))


@pytest.fixture
def widget(make_napari_viewer, tmp_path):
    """Crops of the 'cells' layer, embedded (the session's latents), and two classes."""
    viewer = make_napari_viewer()
    viewer.add_labels(_labels(), name="cells")
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_crop_set(_crop_set(), tmp_path / "crops")
    session_for(viewer).latents = pd.DataFrame({"crop_id": [10, 11, 12, 13], "mu_0": [0.0, 1.0, 2.0, 3.0]})
    widget.add_class("round", "#ff0000")
    widget.add_class("spiky", "#0000ff")
    yield widget
    widget._close_store()


def _click(widget, layer, position):
    widget._on_click(layer, SimpleNamespace(type="mouse_press", position=position))


def test_default_folder_is_sibling_analysis_and_autosaves(widget, tmp_path):
    assert widget.analysis_folder() == tmp_path / "analysis"
    widget.assign([11], "spiky")
    annotations, classes = read_annotations(tmp_path / "analysis")
    assert annotations.to_dict() == {10: "", 11: "spiky", 12: "", 13: ""}
    assert [c.name for c in classes] == ["round", "spiky"]


def test_click_assigns_current_class_and_undo_restores(widget):
    layer = widget.viewer.layers["cells"]
    widget.set_click_mode(True)
    assert widget._on_click in layer.mouse_drag_callbacks
    widget.class_list.setCurrentRow(1)  # "spiky"
    _click(widget, layer, (12.0, 12.0))  # label 2 -> crop 11
    _click(widget, layer, (0.0, 0.0))  # background: nothing
    assert widget.store.annotations.to_dict() == {10: "", 11: "spiky", 12: "", 13: ""}
    assert session_for(widget.viewer).cells["annotation"].tolist() == ["", "spiky", "", ""]
    assert layer.features["annotation"].tolist() == ["", "spiky", "", ""]
    widget.undo()
    assert widget.store.annotations.tolist() == ["", "", "", ""]
    assert layer.features["annotation"].tolist() == ["", "", "", ""]
    widget.redo()
    assert layer.features["annotation"].tolist() == ["", "spiky", "", ""]
    widget.set_click_mode(False)
    assert widget._on_click not in layer.mouse_drag_callbacks
    assert widget.store.count("spiky") == 1


def test_overlay_equals_brute_force_mask(widget):
    widget.assign([10, 13], "round")
    widget.assign([12], "spiky")
    overlay = widget.viewer.layers[OVERLAY_NAME]
    assert [layer.name for layer in widget.viewer.layers] == ["cells", OVERLAY_NAME]
    labels = _labels()
    expected = np.zeros_like(labels)
    expected[np.isin(labels, [1, 5])] = 1
    expected[labels == 3] = 2
    np.testing.assert_array_equal(overlay.data, expected)
    np.testing.assert_allclose(overlay.colormap.map(np.array([1]))[0], [1, 0, 0, 1])
    np.testing.assert_allclose(overlay.colormap.map(np.array([2]))[0], [0, 0, 1, 1])
    widget.undo()
    expected[labels == 3] = 0
    np.testing.assert_array_equal(overlay.data, expected)


def test_assign_selected_with_nothing_selected_annotates_nothing(widget):
    """napari's "selected label" is 1 on a new layer: it is no selection, and cell 1 must not be annotated."""
    widget.viewer.layers.selection.active = widget.viewer.layers["cells"]
    assert widget.viewer.layers["cells"].selected_label == 1
    with pytest.raises(InputError, match="no cells are selected"):
        widget.assign_selected()
    assert (widget.store.annotations == "").all()


def _scatter(widget) -> ScatterWidget:
    """A scatter plot of the 'cells' layer, embedded with points at (mu_0, mu_1)."""
    latents = pd.DataFrame({"crop_id": [10, 11, 12, 13], "mu_0": [0.0, 1.0, 2.0, 3.0], "mu_1": [0.0, 1.0, 0.0, 1.0]})
    session_for(widget.viewer).latents = latents
    scatter = ScatterWidget(widget.viewer)
    scatter.set_sources(["cells"])
    scatter.set_axes("mu_0", "mu_1")
    return scatter


def test_assign_selected_takes_the_scatter_selection_first(widget):
    scatter = _scatter(widget)
    scatter.select_polygon(np.array([[0.5, 0.5], [3.5, 0.5], [3.5, 1.5], [0.5, 1.5]]))  # points 1 and 3: crops 11, 13
    widget.class_list.setCurrentRow(1)  # "spiky"
    assert widget.assign_selected() == 2
    assert widget.store.annotations.to_dict() == {10: "", 11: "spiky", 12: "", 13: "spiky"}
    scatter.select_rows([])
    with pytest.raises(InputError, match="no cells are selected"):
        widget.assign_selected()


def test_assign_to_named_selection(widget):
    scatter = _scatter(widget)
    scatter.select_rows([0, 2])
    scatter.save_selection("left")
    scatter.select_rows([1])
    assert [widget.assign_panel.named_combo.itemText(i) for i in range(widget.assign_panel.named_combo.count())] == [
        "left"
    ]
    assert widget.assign_named(widget.assign_panel.named_combo.currentText(), "round") == 2
    assert widget.store.annotations.to_dict() == {10: "round", 11: "", 12: "round", 13: ""}
    with pytest.raises(InputError, match="no selection named 'right'"):
        widget.assign_named("right")


def test_reopen_restores_annotations_in_a_new_widget(widget, make_napari_viewer, tmp_path):
    widget.assign([10, 12], "spiky")
    widget._close_store()
    viewer = make_napari_viewer()
    viewer.add_labels(_labels(), name="cells")
    again = AnnotationWidget(viewer)
    again.set_crop_set(_crop_set(), tmp_path / "crops")
    assert again.store.annotations.to_dict() == {10: "spiky", 11: "", 12: "spiky", 13: ""}
    assert [again.class_list.item(i).text() for i in range(again.class_list.count())] == ["round", "spiky"]
    again._close_store()


def test_second_widget_on_same_folder_is_refused(widget, make_napari_viewer, tmp_path, monkeypatch):
    other = AnnotationWidget(make_napari_viewer())
    monkeypatch.setattr(other, "_ask", lambda question: pytest.fail(f"asked {question!r}: nothing to take over"))
    holder = f"process {os.getpid()} on {socket.gethostname()} since "
    with pytest.raises(InputError, match=f"being written by another viewer \\({holder}.*\\); close it first"):
        other.set_crop_set(_crop_set(), tmp_path / "crops")
    assert other.store is None
    status = other.assign_panel.status.text()  # says why, not "there are no cells to annotate"
    assert status.startswith("annotations not opened: ") and "being written by another viewer" in status
    widget._close_store()  # the first viewer closes: the second one may write now
    other.set_crop_set(_crop_set(), tmp_path / "crops")
    assert other.store is not None
    other._close_store()


def test_export_buttons_call_core(widget, tmp_path):
    widget.assign([11, 13], "spiky")
    files = widget.export_crops(tmp_path / "export", which="per-class")
    assert sorted(str(f.relative_to(tmp_path / "export")) for f in files) == [
        "spiky/crop_000011.ome.tif",
        "spiky/crop_000013.ome.tif",
    ]
    stack = read_stack(files[0])  # one channel: the reader drops the length-1 C axis
    np.testing.assert_array_equal(stack.data, widget.crop_set.images[1][0])
    assert stack.channel_names == ["dna"] and stack.scale == {"Y": 0.5, "X": 0.5}
    session_for(widget.viewer).latents = pd.DataFrame({"crop_id": [10, 11, 12, 13], "mu_0": [0.5, 1.5, 2.5, 3.5]})
    path = widget.export_table(tmp_path / "cells.parquet")
    table = pd.read_parquet(path)
    assert table["annotation"].tolist() == ["", "spiky", "", "spiky"]
    assert table["mu_0"].tolist() == [0.5, 1.5, 2.5, 3.5]
