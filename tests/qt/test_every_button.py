"""Every button of every widget, docked from the Plugins menu and clicked with nothing loaded, raises nothing.

QPushButton.clicked passes ``checked``: a slot that cannot take it (a
0-argument lambda behind a ``*args`` wrapper) raised a TypeError only when a
user clicked. Here each button is clicked as a user clicks it; what comes
back must be a message (nothing is loaded yet), never an exception.
"""

import pytest
from npe2 import PluginManifest
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QApplication, QColorDialog, QFileDialog, QInputDialog, QMessageBox, QPushButton

WIDGETS = [w.display_name for w in PluginManifest.from_distribution("napari-morphospace").contributions.widgets]


@pytest.fixture
def no_dialogs(monkeypatch):
    """Dialogs answer as a user who cancels them."""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.No))
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("", False)))
    monkeypatch.setattr(QColorDialog, "getColor", staticmethod(lambda *a, **k: QColor()))


@pytest.mark.parametrize("name", WIDGETS)
def test_every_button_answers_a_click_without_an_exception(
    name, make_napari_viewer, dock, napari_hooks, qtbot, no_dialogs
):
    viewer = make_napari_viewer()
    widget = dock(viewer, name)
    # magicgui's file fields ("Choose directory", "Select file") open its own dialog, which the patches above do not
    # reach (magicgui keeps its own references to QFileDialog's functions): they are magicgui's, not ours to test
    magicgui_file_buttons = ("Choose directory", "Select file", "Select files")
    buttons = [b for b in widget.findChildren(QPushButton) if b.isEnabled() and b.text() not in magicgui_file_buttons]
    assert buttons, f"{name} has no button"
    for button in buttons:
        if button.isEnabled():
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
            QApplication.processEvents()
    qtbot.wait(200)  # workers started by a click report back
    exceptions = [n for n in napari_hooks.notifications() if getattr(n, "exception", None) is not None]
    assert not exceptions, [f"{type(n.exception).__name__}: {n.exception}" for n in exceptions]
    napari_hooks.take_errors()  # "build crops first" and the like: the expected answers with nothing loaded
