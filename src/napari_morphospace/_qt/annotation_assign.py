"""The "Assign" box of the Annotate dock: buttons that give cells the current class, click mode, undo and redo.

A form only: it holds the controls and calls what it is given;
:class:`~._qt.annotation_widget.AnnotationWidget` does the assigning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from magicgui.widgets import CheckBox
from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout


class AssignPanel(QGroupBox):
    """Assign or clear the selected cells, assign a named selection, click-to-annotate, undo/redo, and a status line.

    Each ``on_*`` is called when its control is used: ``on_named`` with the
    chosen selection's name, ``on_click_mode`` with the box's new state.
    """

    def __init__(
        self,
        *,
        on_assign: Callable[[], Any],
        on_clear: Callable[[], Any],
        on_named: Callable[[str], Any],
        on_click_mode: Callable[[bool], Any],
        on_undo: Callable[[], Any],
        on_redo: Callable[[], Any],
    ) -> None:
        super().__init__("Assign")
        box = QVBoxLayout(self)
        assign_button, clear_button = QPushButton("Assign to selected"), QPushButton("Clear selected")
        assign_button.clicked.connect(lambda: on_assign())
        clear_button.clicked.connect(lambda: on_clear())
        box.addLayout(_row(assign_button, clear_button))
        self.named_combo = QComboBox()
        self.named_combo.setToolTip("Selections kept in the scatter plot (or opened with an analysis)")
        named_button = QPushButton("Assign to named selection")
        named_button.clicked.connect(lambda: on_named(self.named_combo.currentText()))
        box.addLayout(_row(self.named_combo, named_button))
        self.click_mode = CheckBox(text="click a cell to annotate it with the current class", value=False)
        self.click_mode.changed.connect(on_click_mode)
        box.addWidget(self.click_mode.native)
        self.undo_button, self.redo_button = QPushButton("Undo"), QPushButton("Redo")
        self.undo_button.clicked.connect(lambda: on_undo())
        self.redo_button.clicked.connect(lambda: on_redo())
        box.addLayout(_row(self.undo_button, self.redo_button))
        self.status = QLabel("no crop set yet")
        box.addWidget(self.status)

    def list_named(self, names: Sequence[str]) -> None:
        """Offer these named selections; the chosen one stays chosen while it exists."""
        current = self.named_combo.currentText()
        self.named_combo.clear()
        self.named_combo.addItems(list(names))
        if current in names:
            self.named_combo.setCurrentText(current)


def _row(first: Any, second: Any) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(first, stretch=1)
    row.addWidget(second)
    return row
