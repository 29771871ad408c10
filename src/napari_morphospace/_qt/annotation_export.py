"""The Annotate widget's Export group: crops (all, selected or per class) as TIFF files, and the per-cell table.

A form and two buttons; the writing is the widget's ``export_crops`` and
``export_table`` (:mod:`core.project.export`). An existing export is replaced only
after the user agreed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, FileEdit
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from ..core.errors import InputError
from ..core.project.export import MANIFEST_NAME
from .errors import report_errors


class ExportForm(QGroupBox):
    """Which crops, their format, the crops folder and the table file, with "Export crops" and "Export table"."""

    def __init__(
        self, export_crops: Callable[..., list[Path]], export_table: Callable[..., Path], ask: Callable[[str], bool]
    ) -> None:
        super().__init__("Export")
        self._export_crops, self._export_table, self._ask = export_crops, export_table, ask
        box = QVBoxLayout(self)
        self.which = ComboBox(choices=["all", "selected", "per-class"], value="per-class", label="crops")
        self.file_format = ComboBox(choices=["ome-tiff", "tiff"], value="ome-tiff", label="format")
        self.folder = FileEdit(mode="d", label="crops folder", value="")
        self.table_path = FileEdit(mode="w", label="table file", value="", filter="Tables (*.csv *.parquet *.h5ad)")
        for widget in (self.which, self.file_format, self.folder, self.table_path):
            row = QHBoxLayout()
            row.addWidget(QLabel(widget.label))
            row.addWidget(widget.native)
            box.addLayout(row)
        row = QHBoxLayout()
        for text, clicked in (("Export crops", self.export_crops_clicked), ("Export table", self.export_table_clicked)):
            button = QPushButton(text)
            button.clicked.connect(lambda _checked=False, clicked=clicked: report_errors(clicked)())
            row.addWidget(button)
        box.addLayout(row)

    def export_crops_clicked(self) -> Any:
        folder = str(self.folder.value)
        if folder in ("", "."):
            raise InputError("choose a folder for the exported crops")
        overwrite = (Path(folder) / MANIFEST_NAME).exists()
        if overwrite and not self._ask(f"{folder} already holds an export. Replace its files?"):
            return None
        files = self._export_crops(
            folder, which=self.which.value, file_format=self.file_format.value, overwrite=overwrite
        )
        show_info(f"{len(files)} crops written to {folder}")
        return files

    def export_table_clicked(self) -> Any:
        path = str(self.table_path.value)
        if path in ("", "."):
            raise InputError("choose a file for the table (.csv, .parquet or .h5ad)")
        overwrite = Path(path).exists()
        if overwrite and not self._ask(f"{path} exists. Replace it?"):
            return None
        written = self._export_table(path, overwrite=overwrite)
        show_info(f"table written to {written}")
        return written
