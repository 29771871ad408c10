"""The Cells widget's sources table: one row per objects layer with its image's channels, a group and axes.

Rows come from :func:`viewer.sources.find_sources`; the user may uncheck a
row and edit its channels, group and axes, and :meth:`SourcesTable.sources`
reads the rows back as :class:`~napari_morphospace.viewer.sources.Source`.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from ..viewer.sources import Source, row_key

#: The columns: the pairing first; image channels, group and axes can be edited.
COLUMNS = ("use", "objects", "image channels", "group", "axes")
TABLE_ROWS_SHOWN = 8  # the table grows up to this many rows, then scrolls
PATCH_GRID = "(patch grid)"


class SourcesTable(QTableWidget):
    """Sources as editable rows; every cell shows its whole text (the table scrolls sideways when it must)."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(list(COLUMNS))
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.setWordWrap(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.verticalHeader().setVisible(False)

    def show_sources(self, found: list[Source]) -> None:
        """Show ``found``, keeping the groups the user edited; sources without channels come unchecked."""
        edited = {row_key(s): s.group for s in self.sources()}
        self.blockSignals(True)
        self.setRowCount(len(found))
        for row, source in enumerate(found):
            use = QTableWidgetItem()
            use.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            use.setCheckState(Qt.CheckState.Checked if source.channels else Qt.CheckState.Unchecked)
            use.setToolTip("build crops from this source")
            objects = QTableWidgetItem(source.objects or PATCH_GRID)
            objects.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            objects.setToolTip(source.objects or "a grid of patches over the image")
            group = QTableWidgetItem(edited.get(row_key(source), source.group))
            group.setToolTip("the condition (group) of these cells; type to change it")
            axes = QTableWidgetItem(source.axes)
            axes.setToolTip("one letter per image axis, from TZYX")
            channels = QTableWidgetItem(", ".join(source.channels))
            channels.setToolTip("\n".join(source.channels) or "no image: type its channel layers, separated by commas")
            cells = {"use": use, "objects": objects, "group": group, "axes": axes, "image channels": channels}
            for column, name in enumerate(COLUMNS):
                self.setItem(row, column, cells[name])
        self.blockSignals(False)
        self._fit_height()
        if found and self.currentRow() < 0:
            self.setCurrentCell(0, COLUMNS.index("objects"))  # the row to preview; the table stays scrolled left

    def sources(self) -> list[Source]:
        """The rows as :class:`Source` (unchecked rows have ``use=False``)."""
        rows = []
        for row in range(self.rowCount()):
            cells = {name: self.item(row, column) for column, name in enumerate(COLUMNS)}
            if any(item is None for item in cells.values()):
                continue
            objects = cells["objects"].text()
            rows.append(
                Source(
                    objects="" if objects == PATCH_GRID else objects,
                    channels=[c.strip() for c in cells["image channels"].text().split(",") if c.strip()],
                    axes=cells["axes"].text().strip().upper(),
                    group=cells["group"].text().strip(),
                    use=cells["use"].checkState() == Qt.CheckState.Checked,
                )
            )
        return rows

    def set_group(self, row: int, group: str) -> None:
        """Name the condition of source ``row`` (as editing the table cell does)."""
        self.item(row, COLUMNS.index("group")).setText(group)

    def _fit_height(self) -> None:
        """Tall enough for up to ``TABLE_ROWS_SHOWN`` rows (and the sideways scroll bar), then it scrolls."""
        rows = max(1, min(self.rowCount(), TABLE_ROWS_SHOWN)) * self.verticalHeader().defaultSectionSize()
        height = self.horizontalHeader().sizeHint().height() + rows + 2 * self.frameWidth()
        self.setFixedHeight(height + self.horizontalScrollBar().sizeHint().height())
