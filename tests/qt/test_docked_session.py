"""One session per viewer, whichever way and in whichever order the widgets are docked, closed and reopened."""

import gc
import weakref

from qtpy.QtWidgets import QApplication

from napari_morphospace._sample_data import sample_layer_data
from napari_morphospace.core.cells.sample_data import SampleSettings, make_sample_data
from napari_morphospace.viewer.session import session_for


def _close(widget) -> weakref.ref:
    """Close a dock with its "x" as the user does; returns a weak reference to the widget."""
    widget.parent().destroyOnClose()
    closed = weakref.ref(widget)
    QApplication.processEvents()  # Qt deletes the dock later
    return closed


def _build(cells, qtbot):
    """Press the Cells widget's Build and wait for its crop set."""
    cells.build()
    qtbot.waitUntil(lambda: not cells.tasks.busy, timeout=60000)
    return cells.crop_set


def test_widgets_docked_from_the_menu_share_crop_set_model_latents_and_selections(make_napari_viewer, dock, qtbot):
    viewer = make_napari_viewer()
    for data, kwargs, kind in sample_layer_data(make_sample_data(SampleSettings(n_cells=6, seed=2))):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    scatter = dock(viewer, "Scatter")  # the first to ask for the session, through its own proxy of the viewer
    assert scatter.viewer is not viewer
    cells = dock(viewer, "Cells")
    crop_set = _build(cells, qtbot)
    assert crop_set is not None and len(crop_set) == 12
    scatter.session.named_selections = {"first": (0, 1)}
    closed = _close(scatter)
    del scatter
    gc.collect()
    assert closed() is None  # gone, and with it the proxy napari handed it
    _close(cells)
    del cells
    gc.collect()

    annotate = dock(viewer, "Annotate")  # another order than the work's
    embed = dock(viewer, "Embed")
    train = dock(viewer, "Train")
    scatter = dock(viewer, "Scatter")
    for widget in (annotate, embed, train, scatter):
        assert widget.session is session_for(viewer)
        assert widget.session.crop_set is crop_set
    assert "12 crops" in embed.session_info.text()
    assert annotate.assign_panel.named_combo.currentText() == "first"
    assert [
        scatter.selections.selection_list.item(i).text() for i in range(scatter.selections.selection_list.count())
    ] == ["first"]
