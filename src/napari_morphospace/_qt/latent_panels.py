"""The parts of the Latent space dock: the model box, the slider panel, and the traversal/difference/Grad-CAM panel.

Each is a form with its own widgets and no behaviour beyond showing what it is
given; :class:`~._qt.latent_widget.LatentWidget` composes them and wires their
buttons to its public methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from magicgui.widgets import FileEdit
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from ..core.analysis.traversal import TRAVERSAL_EXTENT
from ..viewer.latent_start import STARTS
from ..viewer.overlays import SCATTER_SELECTION
from .combos import fill_quietly

RANKINGS = {"KL to prior": "kl", "|Cohen's d| (condition − reference)": "cohens_d", "index": "index"}
DEFAULT_TOP_K = 8
SCALE_TOOLTIP = (
    "Latent dimension {dim}, from −3 to +3 in units of latent_scale[{dim}] = {scale:.3g}: "
    "the prior SD (1) for the β-VAEs; for the multi-encoder VAE the empirical SD of the combined latent "
    "(set when the model was calibrated). The other dimensions stay at the start point."
)


def _row(*widgets: QWidget | str) -> QHBoxLayout:
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(QLabel(widget) if isinstance(widget, str) else widget)
    return row


class ModelPanel(QGroupBox):
    """The bundle folder, its Load button, and what the model is."""

    def __init__(self) -> None:
        super().__init__("Model")
        self.bundle_path = FileEdit(mode="d", label="bundle", value="")
        self.load_button = QPushButton("Load model")
        self.info = QLabel("No model: train one, or load a bundle folder.")
        self.info.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow(_row(self.bundle_path.native, self.load_button))
        form.addRow(self.info)


class SliderPanel(QGroupBox):
    """How dimensions are ranked, where the walk starts, and one slider per shown dimension."""

    def __init__(self) -> None:
        super().__init__("Sliders")
        self.rank_combo = QComboBox()
        self.rank_combo.addItems(list(RANKINGS))
        self.condition, self.reference = QComboBox(), QComboBox()  # d = condition − reference, as in Statistics
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 512)
        self.top_k.setValue(DEFAULT_TOP_K)
        self.show_all = QCheckBox("show all")
        self.start_combo = QComboBox()
        self.start_combo.addItems(list(STARTS))
        self.start_group = QComboBox()
        self.cell_button = QPushButton("Use selected cell")
        self.cell_button.setToolTip(
            "Start from the μ of the cell picked in a Labels layer (its selected label), "
            "looked up in the latent table. "
            "With start = cell, clicking a cell in the Scatter plot (or in the image, with the Scatter dock open) "
            "starts from it too"
        )
        self.reset_button = QPushButton("Reset to start")
        self.slider_box = QWidget()
        self.slider_layout = QFormLayout(self.slider_box)
        self.slider_layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.slider_box)
        scroll.setMinimumHeight(160)
        self.sliders: dict[int, QLabeledDoubleSlider] = {}

        form = QFormLayout(self)
        form.addRow("rank by", _row(self.rank_combo, "top", self.top_k, self.show_all))
        form.addRow("condition", self.condition)
        form.addRow("reference", self.reference)
        form.addRow("start", _row(self.start_combo, self.start_group, self.cell_button))
        form.addRow(scroll)
        form.addRow(self.reset_button)

    def ranking(self) -> tuple[str, tuple[str, str]]:
        """The ranking chosen (``kl``, ``cohens_d``, ``index``) and the groups compared: (condition, reference)."""
        return RANKINGS[self.rank_combo.currentText()], (self.condition.currentText(), self.reference.currentText())

    def shown_count(self, n: int) -> int:
        """How many of ``n`` dimensions get a slider: all, or the top k."""
        return n if self.show_all.isChecked() else min(self.top_k.value(), n)

    def set_groups(self, groups: Sequence[str]) -> None:
        """Offer these groups (table order) as the Statistics dock does: condition the second, reference the first."""
        for combo, default in ((self.condition, 1), (self.reference, 0), (self.start_group, 0)):
            fill_quietly(combo, groups, default)

    def rebuild(
        self,
        dims: Sequence[int],
        positions: np.ndarray,
        latent_scale: np.ndarray,
        scores: np.ndarray,
        score_name: str | None,
        on_move: Callable[[int, float], None],
    ) -> None:
        """One slider per dimension of ``dims`` at ``positions`` (slider units), labelled with its score."""
        while self.slider_layout.rowCount():
            self.slider_layout.removeRow(0)
        self.sliders = {}
        for dim, position in zip(dims, positions, strict=True):
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(-TRAVERSAL_EXTENT, TRAVERSAL_EXTENT)
            slider.setDecimals(2)
            slider.setSingleStep(0.05)
            slider.setToolTip(SCALE_TOOLTIP.format(dim=dim, scale=float(latent_scale[dim])))
            slider.setValue(float(np.clip(position, -TRAVERSAL_EXTENT, TRAVERSAL_EXTENT)))
            slider.valueChanged.connect(lambda value, dim=dim: on_move(dim, value))
            label = f"dim {dim}" + (
                f" ({score_name} {scores[dim]:.2f})" if score_name and np.isfinite(scores[dim]) else ""
            )
            self.slider_layout.addRow(label, slider)
            self.sliders[dim] = slider


class ViewsPanel(QGroupBox):
    """The dimension and the buttons of traversal grids, difference maps and Grad-CAM."""

    def __init__(self) -> None:
        super().__init__("Traversal, differences, Grad-CAM")
        self.dim_combo = QComboBox()
        self.dim_combo.setToolTip("The dimension used by the difference maps, group traversals and Grad-CAM")
        self.dim_chosen = False  # set once the user picks a dimension (activated: user actions only)
        self.dim_combo.activated.connect(lambda _index: setattr(self, "dim_chosen", True))
        self.steps = QSpinBox()
        self.steps.setRange(2, 21)
        self.steps.setValue(7)
        self.grid_button = QPushButton("Traversal grid")
        self.group_grid_button = QPushButton("Group traversals")
        self.figure_button = QPushButton("Save figure…")
        self.difference_button = QPushButton("−3 vs +3")
        self.group_difference_button = QPushButton("condition − reference")
        self.group_difference_button.setToolTip(
            "Where the decodes of the condition's and the reference's mean μ differ"
        )
        self.quantile = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.quantile.setRange(0.0, 0.99)
        self.quantile.setDecimals(2)
        self.quantile.setValue(0.9)
        self.quantile.setToolTip("Show only changes at or above this quantile of each map (0 shows everything)")
        self.sign_combo = QComboBox()
        self.sign_combo.addItems(["+", "−"])
        self.sign_combo.setToolTip("A latent's sign is arbitrary: + shows what raises μ_k, − what lowers it")
        self.cells_combo = QComboBox()
        self.gradcam_button = QPushButton("Grad-CAM")

        form = QFormLayout(self)
        form.addRow("dimension", self.dim_combo)
        form.addRow(
            "traversal", _row("steps", self.steps, self.grid_button, self.group_grid_button, self.figure_button)
        )
        form.addRow("difference", _row(self.difference_button, self.group_difference_button))
        form.addRow("threshold quantile", self.quantile)
        form.addRow("Grad-CAM", _row(self.sign_combo, self.cells_combo, self.gradcam_button))

    def set_dimensions(self, order: Sequence[int]) -> None:
        """Offer the dimensions in ranked order; the user's choice stays, else the most informative one."""
        current = self.dim_combo.currentData()
        self.dim_combo.clear()
        for dim in order:
            self.dim_combo.addItem(f"dim {int(dim)}", int(dim))
        index = self.dim_combo.findData(current) if self.dim_chosen else 0
        self.dim_combo.setCurrentIndex(max(index, 0))

    def set_cell_choices(self, groups: Sequence[str]) -> None:
        """The cells Grad-CAM can run on: the selected cell, the scatter selection, each group, all."""
        current = self.cells_combo.currentText()
        self.cells_combo.clear()
        self.cells_combo.addItems(["selected cell", SCATTER_SELECTION, *[f"group: {g}" for g in groups], "all cells"])
        if current:
            self.cells_combo.setCurrentText(current)

    def sign(self) -> int:
        """+1 or −1, as chosen."""
        return 1 if self.sign_combo.currentText() == "+" else -1
