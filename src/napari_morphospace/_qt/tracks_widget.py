"""The "Tracks" dock: give the session's cells their track ids, and measure the tracks' paths through latent space.

Track ids come from the label ids of tracked (time-lapse) Labels layers, a
napari Tracks layer or a column of the cells (:func:`viewer.tracks.give_track_ids`);
they go into the per-cell table's ``track_id`` column, so the layers'
features, the scatter plot ("track paths"), exports and the analysis folder
carry them. The statistics (:func:`viewer.tracks.summarise_tracks`, computed
in a background task) have one row per track; clicking a row selects the
track's cells (highlighted in the image and the scatter plot) and moves the
time slider to its first frame (:func:`viewer.tracks.show_track`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Tracks
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.analysis import tracks
from ..core.analysis.cell_table import CLUSTER, ID_COLUMNS
from ..core.cells import track_ids
from ..core.errors import InputError
from ..viewer.session import session_for
from ..viewer.tracks import TrackSummary, give_track_ids, show_track, summarise_tracks
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .errors import report_errors
from .tasks import Tasks

FROM_LABELS = "label ids (tracked labels)"
COLUMN = "column: "
NO_REGION = "none"
NO_GROUPS = "none"


class TracksWidget(QWidget):
    """Track ids for the cells, per-track statistics and a comparison of two groups of tracks.

    Scriptable: ``give_track_ids``, ``compute`` (returns its task), ``select_track``; without the widget, the
    functions of :mod:`viewer.tracks`.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        tab_with_other_docks(self)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.statistics: pd.DataFrame | None = None
        self.comparison: pd.DataFrame | None = None

        self.source_combo = QComboBox()
        give = QPushButton("Give track ids")
        give.setToolTip("Write each cell's track id into the per-cell table (and the layers' features)")
        give.clicked.connect(lambda _checked=False: report_errors(self.give_track_ids)(self.source_combo.currentText()))
        self.region_combo = QComboBox()
        self.region_combo.setToolTip("Time for each track to first reach these cells (a named selection or a cluster)")
        self.group_combo = QComboBox()
        self.interval_spin = QDoubleSpinBox(minimum=1e-6, maximum=1e6, value=1.0, decimals=3)
        self.interval_spin.setToolTip("Time between frames: speeds and times are given per this unit")
        self.compute_button = compute = QPushButton("Track statistics")
        compute.clicked.connect(lambda _checked=False: self.compute())
        self.status = QLabel("give the cells track ids, then compute their statistics")
        self.status.setWordWrap(True)
        self.tasks = Tasks(
            "Tracks", status=self.status.setText, on_busy=lambda busy: compute.setEnabled(not busy), parent=self
        )
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(200)
        self.table.cellClicked.connect(lambda row, _column: self._on_row_clicked(row))
        self.comparison_label = QLabel()
        self.comparison_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("track ids from", self.source_combo)
        form.addRow("", give)
        form.addRow("region", self.region_combo)
        form.addRow("compare by", self.group_combo)
        form.addRow("frame interval", self.interval_spin)
        form.addRow("", compute)
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(self.comparison_label)
        scroll_in_dock(self, content)

        self.viewer.layers.events.inserted.connect(self._refresh_choices)
        self.viewer.layers.events.removed.connect(self._refresh_choices)
        self.session.cells_changed.connect(self._refresh_choices)
        self.session.named_selections_changed.connect(self._refresh_choices)
        self._refresh_choices()

    def _refresh_choices(self, *_: Any) -> None:
        """Offer the Tracks layers, the named selections and clusters, and the cells' text columns."""
        cells = self.session.cells
        sources = [FROM_LABELS] + [layer.name for layer in self.viewer.layers if isinstance(layer, Tracks)]
        if cells is not None:  # track columns another tool put into the table (e.g. a tracker's TRACK_ID)
            sources += [
                f"{COLUMN}{c}"
                for c in cells.columns
                if "track" in str(c).lower() and c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(cells[c])
            ]
        _refill(self.source_combo, sources)
        regions = [NO_REGION] + [f"selection: {name}" for name in self.session.named_selections]
        groups = [NO_GROUPS]
        if cells is not None:
            if CLUSTER in cells.columns:
                regions += [f"cluster {int(k)}" for k in sorted(pd.unique(cells[CLUSTER].dropna()))]
            groups += [c for c in ("group", "annotation") if c in cells.columns]
        _refill(self.region_combo, regions)
        _refill(self.group_combo, groups)

    def give_track_ids(self, source: str = FROM_LABELS) -> int:
        """Give every cell of the session its track id from ``source`` (:data:`FROM_LABELS`, a Tracks layer name,
        or ``"column: NAME"``, a whole-number column of the cells); returns the number of tracks."""
        if source.startswith(COLUMN):
            count = give_track_ids(self.viewer, column=source.removeprefix(COLUMN))
        else:
            count = give_track_ids(self.viewer, None if source == FROM_LABELS else self.viewer.layers[source])
        self.status.setText(track_ids.describe_tracks(self.session.cells))
        return count

    def _region(self) -> np.ndarray | None:
        choice = self.region_combo.currentText()
        if choice.startswith("selection: "):
            return np.asarray(self.session.named_selections[choice.removeprefix("selection: ")], dtype=np.int64)
        if choice.startswith("cluster "):
            cells = self.session.cells
            return cells.loc[cells[CLUSTER] == int(choice.removeprefix("cluster ")), "crop_id"].to_numpy()
        return None

    def compute(self) -> Any:
        """Per-track statistics of the embedded cells (and the comparison of two groups) in a background task,
        then shown in the table; returns the task (None when refused)."""
        try:
            latents = self.session.latents
            if latents is None:
                raise InputError("the cells have no latents yet; embed them (Embed widget) first")
            group = self.group_combo.currentText()
            region = self._region()
        except InputError as err:
            self.tasks.report(err)
            return None
        return self.tasks.start(
            summarise_tracks,
            latents,
            frame_interval=self.interval_spin.value(),
            region=region,
            group_column=None if group == NO_GROUPS else group,
            on_done=self._show_summary,
            action="Track statistics",
            busy_text="Computing the track statistics…",
        )

    def _show_summary(self, summary: TrackSummary) -> None:
        self.statistics, self.comparison = summary.statistics, summary.comparison
        self._show_table(summary.statistics)
        real, shuffled = summary.mean_step, summary.shuffled_step
        self.status.setText(
            f"{track_ids.describe_tracks(self.session.latents)}. Mean latent step {real:.3g}, "
            f"{shuffled:.3g} with frames shuffled (ratio {real / shuffled:.2f})."
        )
        text = summary.note
        if summary.comparison is not None:
            comparison = summary.comparison
            a, b = comparison.attrs["groups"]
            text = (
                f"{a} vs {b} (one sample per track; d > 0: higher in {a}; permutation p, BH q):\n"
                + "\n".join(
                    f"{r.measure}: {r.mean_a:.3g} vs {r.mean_b:.3g}, d {r.d:.2f} [{r.d_low:.2f}, {r.d_high:.2f}], "
                    f"p {r.p_value:.2g}, q {r.q_value:.2g}"
                    for r in comparison.itertuples()
                )
                + "".join(f"\n{note}" for note in comparison.attrs["notes"])
            )
        self.comparison_label.setText(text)

    def _show_table(self, statistics: pd.DataFrame) -> None:
        self.table.clear()
        self.table.setRowCount(len(statistics))
        self.table.setColumnCount(statistics.shape[1])
        self.table.setHorizontalHeaderLabels(list(statistics.columns))
        for i, row in enumerate(statistics.itertuples(index=False)):
            for j, value in enumerate(row):
                text = f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def _on_row_clicked(self, row: int) -> None:
        if self.statistics is not None:
            self.select_track(int(self.statistics[tracks.TRACK_ID].iloc[row]))

    def select_track(self, track_id: int) -> np.ndarray:
        """Select the cells of track ``track_id`` (in every plot and image) and show its first frame;
        returns their crop ids."""
        if self.statistics is not None:
            rows = np.flatnonzero(self.statistics[tracks.TRACK_ID].to_numpy() == track_id)
            if len(rows):
                self.table.selectRow(int(rows[0]))
        return show_track(self.viewer, track_id)


def _refill(combo: QComboBox, items: list[str]) -> None:
    """Replace a combo's items, keeping its choice when it is still offered."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(items)
    if current in items:
        combo.setCurrentText(current)
    combo.blockSignals(False)
