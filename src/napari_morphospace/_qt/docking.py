"""Morphospace docks open as tabs of one dock, not stacked until the window is taller than the screen.

napari's Plugins menu docks a widget with ``tabify=False``: each new dock in
the right-hand area takes a slice of its height, so after four or five
widgets every one of them is squeezed to a few rows (issue 9). Every
Morphospace widget calls :func:`tab_with_other_docks` in its ``__init__``;
when napari has docked it (whichever way: the Plugins menu,
``add_plugin_dock_widget``, ``add_dock_widget``), it joins the tabs of the
Morphospace docks already in the same area and comes to the front, unless
whoever docked it has already put it in tabs. The user can still drag a tab
out; only the first docking is arranged.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

#: Set on every Morphospace widget, so its dock can be recognised among napari's and other plugins' docks.
MARKER = "morphospace_dock"


def tab_with_other_docks(widget: QWidget) -> None:
    """Arrange ``widget``'s dock as a tab of the other Morphospace docks once napari has docked it."""
    widget.setProperty(MARKER, True)
    widget.installEventFilter(_TabWhenDocked(widget))


def dock_of(widget: QWidget) -> QDockWidget | None:
    """The dock holding ``widget`` (napari sets it as the dock's widget), else None."""
    parent = widget.parentWidget()
    return parent if isinstance(parent, QDockWidget) and parent.widget() is widget else None


def morphospace_docks(window: QMainWindow) -> list[QDockWidget]:
    """The docks of ``window`` that hold a Morphospace widget, in the order they were added."""
    return [
        dock
        for dock in window.findChildren(QDockWidget)
        if dock.widget() is not None and dock.widget().property(MARKER)
    ]


def tab_into_place(dock: QDockWidget) -> None:
    """Put ``dock`` into the tabs of a visible Morphospace dock in its area and raise it."""
    window = dock.parentWidget()
    if not isinstance(window, QMainWindow) or dock.isFloating() or window.tabifiedDockWidgets(dock):
        return  # floating, or already tabbed by whoever docked it (the demo arranges its own tabs)
    area = window.dockWidgetArea(dock)
    others = [
        other
        for other in morphospace_docks(window)
        if other is not dock and not other.isFloating() and other.isVisible() and window.dockWidgetArea(other) == area
    ]
    if others:
        window.tabifyDockWidget(others[0], dock)
    dock.show()
    dock.raise_()


class _TabWhenDocked(QObject):
    """Waits for the widget's first dock, then tabs it (after napari has finished adding the dock)."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self._widget = widget

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ParentChange and isinstance(self._widget.parentWidget(), QDockWidget):
            self._widget.removeEventFilter(self)
            # napari re-parents the widget into its dock first and adds the dock to the window afterwards.
            QTimer.singleShot(0, self._arrange)
        return False

    def _arrange(self) -> None:
        dock = dock_of(self._widget)
        if dock is not None:
            tab_into_place(dock)
