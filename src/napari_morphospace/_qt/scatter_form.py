"""The forms of the Scatter dock: what is plotted and how, and the named selections.

Forms only: they hold the controls and say what is chosen;
:class:`~._qt.scatter_widget.ScatterWidget` wires them to its methods.
"""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .track_overlay import MODES as TRACK_MODES

TOOLS = ("pan/zoom", "lasso", "rectangle")


class PlotForm(QWidget):
    """Which layers, axes and colour column are plotted, and how points look and are picked."""

    def __init__(self) -> None:
        super().__init__()
        self.source_list = QListWidget()
        self.source_list.setMaximumHeight(80)
        self.x_combo, self.y_combo, self.color_combo = QComboBox(), QComboBox(), QComboBox()
        self.size_spin = QDoubleSpinBox(minimum=1.0, maximum=30.0, value=4.0, singleStep=1.0)
        self.opacity_spin = QDoubleSpinBox(minimum=0.05, maximum=1.0, value=0.8, singleStep=0.05)
        self.density_check = QCheckBox("density view (2D histogram)")
        self.tool_combo = QComboBox()
        self.tool_combo.addItems(list(TOOLS))
        self.track_combo = QComboBox()
        self.track_combo.addItems(TRACK_MODES)
        self.track_combo.setToolTip(
            "Draw the paths of tracked cells (a track_id column); a click on a path selects its track"
        )
        self.thumbnail_check = QCheckBox("show the crop under the cursor")
        self.thumbnail_check.setChecked(True)
        self.thumbnail_check.setToolTip("hovering a point shows its cell's crop (from the crop set in this viewer)")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        for label, widget in (
            ("cell layers", self.source_list),
            ("x", self.x_combo),
            ("y", self.y_combo),
            ("colour by", self.color_combo),
            ("point size", self.size_spin),
            ("opacity", self.opacity_spin),
            ("", self.density_check),
            ("tool", self.tool_combo),
            ("track paths", self.track_combo),
            ("hover", self.thumbnail_check),
        ):
            form.addRow(label, widget)

    def list_sources(self, names: Sequence[str], ticked: Sequence[str]) -> None:
        """Offer these layers, ticking those in ``ticked`` (no signals)."""
        self.source_list.blockSignals(True)
        self.source_list.clear()
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in ticked else Qt.CheckState.Unchecked)
            self.source_list.addItem(item)
        self.source_list.blockSignals(False)

    def ticked_sources(self) -> list[str]:
        """The names of the ticked layers, in list order."""
        items = [self.source_list.item(i) for i in range(self.source_list.count())]
        return [item.text() for item in items if item.checkState() == Qt.CheckState.Checked]

    def offer_columns(self, axes: Sequence[str], colors: Sequence[str]) -> None:
        """Fill the axis and colour combos (no signals), keeping the current choices that are still offered."""
        for combo, items in ((self.x_combo, axes), (self.y_combo, axes), (self.color_combo, colors)):
            combo.blockSignals(True)
            current = combo.currentText()
            combo.clear()
            combo.addItems(list(items))
            if current in items:
                combo.setCurrentText(current)
            combo.blockSignals(False)

    def set_density(self, on: bool) -> None:
        """Tick or untick the density view without redrawing."""
        self.density_check.blockSignals(True)
        self.density_check.setChecked(on)
        self.density_check.blockSignals(False)


class SelectionPanel(QWidget):
    """How many points are selected, and the selections kept under a name."""

    def __init__(self) -> None:
        super().__init__()
        self.selection_count = QLabel("0 selected")
        self.selection_name = QLineEdit(placeholderText="name of the current selection")
        self.keep_button = QPushButton("Keep")
        self.selection_list = QListWidget()
        self.selection_list.setMaximumHeight(70)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.selection_count)
        name_row = QHBoxLayout()
        name_row.addWidget(self.selection_name)
        name_row.addWidget(self.keep_button)
        layout.addLayout(name_row)
        layout.addWidget(self.selection_list)

    def list_names(self, names: Sequence[str]) -> None:
        """Show the names of the kept selections."""
        self.selection_list.clear()
        self.selection_list.addItems(list(names))
