"""The "Statistics" dock: how the latent space is used, and how two groups of cells differ in it.

Reads the session's latent table or a Labels layer's features, lets the user
choose two groups, and shows the figures of :mod:`core.figures.statistics` (of the numbers of
:mod:`core.analysis.latent_summary`) in tabs: per-dimension KL, Cohen's d forest plot,
KDE curves and violin plots of the top dimensions, the linear probe, and the
inference between the groups (:mod:`core.analysis.inference`: permutation tests with
FDR control, bootstrap intervals, the whole-space distance; per cell or per
image). The computation runs in a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.analysis.cell_table import latent_columns, left_out_note, rows_with_latents
from ..core.analysis.inference import GroupComparison, InferenceSettings, compare_groups
from ..core.analysis.latent_summary import (
    GROUP_COLUMNS,
    LatentSummary,
    default_groups,
    group_choices,
    summarise_latents,
)
from ..core.errors import InputError
from ..core.figures.statistics import summary_figures
from ..core.project.export import export_figures
from ..viewer.session import session_for
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .tasks import Tasks

SESSION_TABLE = "latent table (this session)"
MIN_WIDTH_PX = 480  # the figures' titles and tick labels fit without clipping
TABS_MIN_HEIGHT_PX = 420  # a figure stays readable; the dock scrolls to it
TABS = {"kl": "KL", "forest": "Cohen's d", "kde": "KDE", "violin": "Violins"}


INFERENCE_COLUMNS = ("dimension", "d", "95 % CI of d", "p", "q (BH)", "significant")


def compare(
    table: pd.DataFrame, group_column: str, a: Any, b: Any, top: int, settings: InferenceSettings
) -> tuple[LatentSummary, dict[str, Figure | str], GroupComparison | str]:
    """Everything the dock shows: the summary of the latent space, its figures,
    and the inference between ``a`` and ``b``."""
    summary = summarise_latents(table, group_column, a, b)
    try:  # a refused inference (e.g. too few images) must not hide the other statistics
        inference: GroupComparison | str = compare_groups(table, group_column, a, b, settings)
    except InputError as err:
        inference = f"⚠ {err}"
    return summary, summary_figures(summary, top=top), inference


def _label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class StatisticsWidget(QWidget):
    """Latent statistics for two chosen groups, as dock tabs; figures exportable as PNG and SVG.

    Scriptable: ``set_table_source``, ``set_groups``, ``compute``, ``export_figures``.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.summary: LatentSummary | None = None
        self.inference: GroupComparison | str | None = None
        self.figures: dict[str, Figure | str] = {}
        self.table_combo = QComboBox()
        self.column_combo = QComboBox()
        self.a_combo, self.b_combo = QComboBox(), QComboBox()
        self.top_spin = QSpinBox(minimum=1, maximum=10, value=3)
        self.compute_button = QPushButton("Compute")
        self.export_button = QPushButton("Export figures…")
        self.export_button.setEnabled(False)
        self.status = _label()
        self.overview = _label("Compute to see the number of active units and the empirical KL to N(0, I).")
        self.tabs = QTabWidget()
        self.tab_pages: dict[str, QVBoxLayout] = {}
        self.probe_text = _label()
        self.per_image = QCheckBox("per image: permute condition labels between whole images")
        self.per_image.setToolTip(
            "Cells of one image are not independent; with several images per condition "
            "this is the right test. Needs the cells' 'source' column."
        )
        self.inference_text = _label("Compute to test the difference between the groups.")
        self.inference_table = QTableWidget(0, len(INFERENCE_COLUMNS))
        self.inference_table.setHorizontalHeaderLabels(INFERENCE_COLUMNS)
        self.inference_table.verticalHeader().setVisible(False)
        self.inference_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._recompute = False  # the per-image box changed while a computation ran
        self.tasks = Tasks("Statistics", status=self.status.setText, on_busy=self._on_busy, parent=self)
        self._layout()

        self.table_combo.currentTextChanged.connect(self._on_table_chosen)
        self.column_combo.currentTextChanged.connect(self._fill_groups)
        self.compute_button.clicked.connect(self.compute)
        self.per_image.toggled.connect(self._on_per_image_toggled)
        self.export_button.clicked.connect(self._choose_export_folder)
        self.session.latents_changed.connect(self._on_new_latents)
        self.viewer.layers.events.inserted.connect(self._refresh_tables)
        self.viewer.layers.events.removed.connect(self._refresh_tables)
        self._refresh_tables()

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("cells from", self.table_combo)
        form.addRow("compare by", self.column_combo)
        form.addRow("condition", self.a_combo)
        form.addRow("reference", self.b_combo)
        form.addRow("top dimensions", self.top_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.export_button)
        for key, title in TABS.items():
            page = QWidget()
            box = QVBoxLayout(page)
            box.setContentsMargins(0, 0, 0, 0)
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(page)
            self.tab_pages[key] = box
            self.tabs.addTab(scroll, title)
        probe = QWidget()
        QVBoxLayout(probe).addWidget(self.probe_text)
        probe.layout().addStretch()
        self.tabs.addTab(probe, "Probe")
        inference = QWidget()
        box = QVBoxLayout(inference)
        box.addWidget(self.per_image)
        box.addWidget(self.inference_text)
        box.addWidget(self.inference_table, stretch=1)
        self.tabs.addTab(inference, "Inference")
        self.tabs.setMinimumHeight(TABS_MIN_HEIGHT_PX)
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.overview)
        layout.addWidget(self.tabs, stretch=1)
        scroll_in_dock(self, content, min_width=MIN_WIDTH_PX)

    # ----------------------------------------------------------------- choosing the cells

    def _refresh_tables(self, _event: Any = None) -> None:
        current = self.table_combo.currentText()
        names = ([SESSION_TABLE] if self.session.latents is not None else []) + [
            layer.name for layer in self.viewer.layers if isinstance(layer, Labels)
        ]
        self.table_combo.blockSignals(True)
        self.table_combo.clear()
        self.table_combo.addItems(names)
        self.table_combo.blockSignals(False)
        chosen = current if current in names else (names[0] if names else "")
        self.table_combo.setCurrentText(chosen)
        self._on_table_chosen(chosen)

    def _on_new_latents(self, latents: Any) -> None:
        """A new embedding: describe it, rather than whichever table was chosen before."""
        self._refresh_tables()
        if latents is not None:
            self.set_table_source(SESSION_TABLE)

    def set_table_source(self, name: str) -> None:
        """Use the session's latent table (``SESSION_TABLE``) or the features of the Labels layer ``name``."""
        self.table_combo.setCurrentText(name)
        self._on_table_chosen(name)

    def table(self) -> pd.DataFrame:
        """The chosen table of cells: those that have a latent (see :meth:`left_out`)."""
        return self._table_and_left_out()[0]

    def left_out(self) -> int:
        """How many rows of the chosen table have no latent and are left out of the statistics."""
        return self._table_and_left_out()[1]

    def _table_and_left_out(self) -> tuple[pd.DataFrame, int]:
        name = self.table_combo.currentText()
        if name == SESSION_TABLE and self.session.latents is not None:
            return self.session.latents, 0  # the session's latents are the cells that have one
        if name in self.viewer.layers:
            features = self.viewer.layers[name].features
            if not latent_columns(features):
                raise InputError(
                    f"layer {name!r} has no mu_* features; embed its cells with the Embed widget first "
                    "(it writes the latents into the layer's features), or open a feature table in the Analysis widget"
                )
            return rows_with_latents(features)
        raise InputError("there are no cells to describe: embed a crop set with the Embed widget first")

    def _on_table_chosen(self, _name: str = "") -> None:
        try:
            table, left_out = self._table_and_left_out()
        except InputError:
            table, left_out = pd.DataFrame(), 0
        self.status.setText(left_out_note(left_out))
        columns = [c for c in GROUP_COLUMNS if c in table.columns]
        current = self.column_combo.currentText()
        self.column_combo.blockSignals(True)
        self.column_combo.clear()
        self.column_combo.addItems(columns)
        if current in columns:
            self.column_combo.setCurrentText(current)
        self.column_combo.blockSignals(False)
        self._fill_groups()

    def _fill_groups(self, _column: str = "") -> None:
        try:
            table, column = self.table(), self.column_combo.currentText()
            values = [str(v) for v in group_choices(table, column)]
            defaults = [str(g) for g in default_groups(table, column)] if values else []
        except InputError:
            values, defaults = [], []
        for index, combo in enumerate((self.a_combo, self.b_combo)):  # as the report: second group vs first
            current = combo.currentText()
            combo.clear()
            combo.addItems(values)
            if current in values:
                combo.setCurrentText(current)
            elif len(defaults) > index and defaults[index] in values:
                combo.setCurrentText(defaults[index])
            elif len(values) > index:
                combo.setCurrentIndex(index)

    def set_groups(self, a: Any, b: Any, column: str = "group") -> None:
        """Compare condition ``a`` with reference ``b`` of ``column`` (d > 0 when higher in ``a``)."""
        self.column_combo.setCurrentText(column)
        self.a_combo.setCurrentText(str(a))
        self.b_combo.setCurrentText(str(b))

    def _chosen_groups(self, table: pd.DataFrame, column: str) -> tuple[Any, Any]:
        """The group values (with their dtype in the table) shown in the two combo boxes."""
        by_text = {str(v): v for v in group_choices(table, column)}
        a, b = self.a_combo.currentText(), self.b_combo.currentText()
        if len(by_text) < 2:
            raise InputError(
                f"column {column!r} has {len(by_text)} group(s) ({', '.join(by_text) or 'none'}); "
                "choose two different groups: cells of at least two conditions are needed"
            )
        if a == b:
            raise InputError(f"the condition and the reference are both {a!r}; choose two different groups")
        return by_text[a], by_text[b]

    # ----------------------------------------------------------------- computing and showing

    def compute(self) -> Any:
        """Compute the statistics in a worker; returns the worker (None when the input was refused or one runs)."""
        if self.tasks.busy:
            return None
        try:
            table = self.table()
            column = self.column_combo.currentText()
            if not column:
                raise InputError(f"the cells have none of the columns {', '.join(GROUP_COLUMNS)} to form groups from")
            a, b = self._chosen_groups(table, column)
        except InputError as err:
            self.tasks.report(err)
            return None
        settings = InferenceSettings(by_image=self.per_image.isChecked())
        return self.tasks.start(
            compare,
            table.copy(),
            column,
            a,
            b,
            self.top_spin.value(),
            settings,
            on_done=self._show,
            action="Computing the statistics",
            busy_text=f"Computing {a!r} vs {b!r}…",
        )

    def _on_busy(self, busy: bool) -> None:
        self.compute_button.setEnabled(not busy)
        if not busy and self._recompute:
            self._recompute = False
            self.compute()

    def _on_per_image_toggled(self, _checked: bool) -> None:
        """Test again with the other unit once there are results (after the running computation, if any)."""
        if self.tasks.busy:
            self._recompute = True
        elif self.summary is not None:
            self.compute()

    def _show(self, result: tuple[LatentSummary, dict[str, Figure | str], GroupComparison | str]) -> None:
        self.summary, self.figures, self.inference = result
        self._show_inference(self.inference)
        summary = self.summary
        self.overview.setText(summary.overview_text())
        for key, box in self.tab_pages.items():
            while box.count():
                item = box.takeAt(0)
                if item.widget() is not None:
                    item.widget().deleteLater()
            figure = self.figures[key]
            if isinstance(figure, Figure):
                canvas = FigureCanvasQTAgg(figure)
                canvas.setMinimumHeight(int(figure.get_figheight() * figure.dpi * 0.75))
                box.addWidget(canvas, stretch=1)
            else:
                box.addWidget(_label(figure))
            if key == "forest":  # the numbers below the plot: the plot is what the tab is for
                box.addWidget(_label(summary.effect_text()), stretch=0)
            if not isinstance(figure, Figure):
                box.addStretch()
        self.probe_text.setText(summary.probe_text())
        self.export_button.setEnabled(any(isinstance(f, Figure) for f in self.figures.values()))
        text = f"{summary.condition!r} vs {summary.reference!r}" + (
            f": top dimension {summary.names[summary.ranking[0]]}" if summary.ranking else ""
        )
        try:
            note = left_out_note(self.left_out())
        except InputError:  # the layer went away meanwhile
            note = ""
        self.status.setText(f"{text}\n{note}" if note else text)

    def _show_inference(self, inference: GroupComparison | str) -> None:
        """The per-dimension table (smallest p first) and the summary lines, or why the inference was refused."""
        if isinstance(inference, str):
            self.inference_text.setText(inference)
            self.inference_table.setRowCount(0)
            return
        self.inference_text.setText("\n".join(inference.summary_lines()))
        dims = inference.dimensions
        order = dims.ranking()
        self.inference_table.setRowCount(len(order))
        for row, i in enumerate(order):
            ci = f"[{dims.d_low[i]:+.2f}, {dims.d_high[i]:+.2f}]"
            cells = (
                dims.names[i],
                f"{dims.d[i]:+.3f}",
                ci,
                f"{dims.p[i]:.3g}",
                f"{dims.q[i]:.3g}",
                "yes" if dims.significant[i] else "",
            )
            for column, text in enumerate(cells):
                self.inference_table.setItem(row, column, QTableWidgetItem(text))
        self.inference_table.resizeColumnsToContents()

    # ----------------------------------------------------------------- export

    def _choose_export_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export figures to folder")
        if not folder:
            return
        names = [f"{key}.{kind}" for key, f in self.figures.items() if isinstance(f, Figure) for kind in ("png", "svg")]
        existing = [n for n in names if (Path(folder) / n).exists()]
        overwrite = False
        if existing:
            answer = QMessageBox.question(
                self, "Replace figures?", f"{folder} already has {', '.join(existing)}. Replace them?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
            overwrite = True
        self.export_figures(folder, overwrite=overwrite)

    def export_figures(self, folder: str | Path, *, overwrite: bool = False) -> list[Path]:
        """Save every figure as PNG and SVG in ``folder`` (existing files only with ``overwrite``)."""
        try:
            paths = export_figures(self.figures, folder, overwrite=overwrite)
        except InputError as err:
            self.tasks.report(err)
            return []
        show_info(f"{len(paths)} figure files written to {folder}")
        return paths
