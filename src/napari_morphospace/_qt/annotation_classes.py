"""The Annotate widget's Classes group: the classes with their colours, a name field and Add, Rename, Colour, Remove.

Shows what it is given (:meth:`ClassList.show_classes`) and hands every click
to the widget, which changes the annotation store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from ..core.project.annotations import AnnotationClass


class ClassList(QGroupBox):
    """The class list (a colour swatch per class) over the buttons that edit it."""

    def __init__(
        self,
        *,
        add: Callable[[str], object],
        rename: Callable[[], object],
        colour: Callable[[], object],
        remove: Callable[[], object],
    ) -> None:
        super().__init__("Classes")
        box = QVBoxLayout(self)
        self.list = QListWidget()
        box.addWidget(self.list)
        row = QHBoxLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("new class name")
        add_button = QPushButton("Add")
        add_button.clicked.connect(lambda: add(self.name_edit.text()))
        row.addWidget(self.name_edit)
        row.addWidget(add_button)
        box.addLayout(row)
        row = QHBoxLayout()
        for text, slot in (("Rename…", rename), ("Colour…", colour), ("Remove", remove)):
            button = QPushButton(text)
            button.clicked.connect(lambda _checked=False, slot=slot: slot())
            row.addWidget(button)
        box.addLayout(row)

    def current(self) -> str | None:
        item = self.list.currentItem()
        return item.text() if item is not None else None

    def show_classes(self, classes: Sequence[AnnotationClass], select: str | None = None) -> None:
        """Show ``classes``; the current one stays current (or ``select``), else the first."""
        current = select or self.current()
        self.list.clear()
        for cls in classes:
            pixmap = QPixmap(12, 12)
            pixmap.fill(QColor(cls.colour))
            item = QListWidgetItem(QIcon(pixmap), cls.name)
            self.list.addItem(item)
            if cls.name == current:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
