"""Docks as the Plugins menu makes them: every Morphospace widget opens as a tab, none is squeezed."""

from napari._app_model import get_app_model
from qtpy.QtWidgets import QDockWidget

from napari_morphospace._qt.docking import dock_of

#: display_name -> command of every widget in napari.yaml, in the order a user might open them.
WIDGETS = {
    "Cells": "cells_widget",
    "Train": "train_widget",
    "Embed": "embed_widget",
    "Scatter": "scatter_widget",
    "Statistics": "statistics_widget",
    "Latent space": "latent_widget",
    "Classifier": "classifier_widget",
    "Annotate": "annotation_widget",
    "Analysis": "analysis_widget",
}


def _open_from_plugins_menu(viewer, qtbot, name: str):
    """What clicking Plugins > Morphospace > NAME does: napari's action, then its processor docks the widget."""
    get_app_model().commands.execute_command(f"napari-morphospace.{WIDGETS[name]}").result()
    qtbot.wait(50)  # the dock arranges itself on the next pass of the event loop
    return viewer.window.dock_widgets[f"{name} (Morphospace)"]


def _check_one_tab_group(viewer, widgets):
    window = viewer.window._qt_window
    docks = [dock_of(w) for w in widgets]
    assert all(isinstance(d, QDockWidget) for d in docks)
    assert set(window.tabifiedDockWidgets(docks[0])) == set(docks[1:])
    # The newest tab is the one in front, and it has the height of the whole dock area.
    front = docks[-1]
    assert not front.visibleRegion().isEmpty() and all(d.visibleRegion().isEmpty() for d in docks[:-1])
    assert front.height() > 0.6 * window.centralWidget().height()


def test_widgets_opened_from_the_plugins_menu_are_tabs_of_one_dock(make_napari_viewer, napari_hooks, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    widgets = [_open_from_plugins_menu(viewer, qtbot, name) for name in WIDGETS]
    _check_one_tab_group(viewer, widgets)


def test_widgets_docked_by_add_plugin_dock_widget_are_tabs_too(make_napari_viewer, dock, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    widgets = []
    for name in ("Cells", "Train", "Scatter"):
        widgets.append(dock(viewer, name))
        qtbot.wait(50)
    _check_one_tab_group(viewer, widgets)


def test_train_shows_start_and_the_loss_plot_above_the_settings(make_napari_viewer, dock, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    train = dock(viewer, "Train")
    qtbot.wait(50)
    run, model = train.sections["run"], train.sections["model"]
    assert run.geometry().bottom() < model.geometry().top()
    assert not train.sections["advanced"].isExpanded()
    # Start and the top of the loss plot are in view without scrolling.
    visible = train.visibleRegion()
    for part in (train.start_button.native, train.plot):
        assert visible.contains(part.mapTo(train, part.rect().topLeft())), part
