"""The "Cells" widget: choose sources, crop and preprocessing settings, preview, build a crop set.

All computing is in :mod:`napari_morphospace.core.cells.crops` and
:mod:`napari_morphospace.core.cells.preprocess`; which layers make a source and
how they are read is :mod:`napari_morphospace.viewer.sources` (a script
calls it with ``viewer.layers``). This widget composes the sources table
(:mod:`.sources_table`), the crop settings, the preprocessing editor
(:mod:`.step_editor`) and the live preview, and runs the build through its
:class:`~.tasks.Tasks`.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, PushButton
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..core.cells.crop_job import CropJob
from ..core.cells.crop_set import CropSet, crop_set_folder
from ..core.cells.crops import (
    CropCancelled,
    CropSettings,
    CropSource,
    ObjectPreview,
    PatchSettings,
    build_crop_set,
    summed_notes,
)
from ..core.cells.preprocess import PreprocessPipeline, apply_pipeline
from ..core.config import save_config
from ..core.errors import InputError
from ..core.figures.gallery import composite_rgb, crop_montage
from ..viewer.session import session_for
from ..viewer.sources import (
    ObjectKind,
    Source,
    convert_label_images,
    crop_job,
    crop_sources,
    find_sources,
    label_images,
    layer_pairing,
    source_objects,
    source_stack,
)
from .docking import tab_with_other_docks
from .forms import read_form, settings_form
from .sources_table import SourcesTable
from .step_editor import PRESETS, StepEditor
from .tasks import Tasks
from .workers import Progress

PREVIEW_PX = 150


@dataclass
class BuildWarnings:
    """Warnings the builders raised (skipped or cut objects, NaN pixels), for a notification."""

    messages: list[str] = field(default_factory=list)


def _pixmap(picture: np.ndarray, size: int = PREVIEW_PX) -> QPixmap:
    picture = np.ascontiguousarray(picture)
    height, width = picture.shape[:2]
    qimage = QImage(picture.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy()).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio)


class CellsWidget(QWidget):
    """Crop single cells from image layers, with a live preview of the preprocessing."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.crop_set: CropSet | None = None
        self._stop_event = threading.Event()
        self._preview_cache: tuple[Any, ObjectPreview] | None = None

        self.kind = ComboBox(choices=list(get_args(ObjectKind)), value="labels", label="objects")
        self.table = SourcesTable()
        self.pairing_info = QLabel("")
        self.pairing_info.setWordWrap(True)
        self.pairing_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.crop_form = settings_form(CropSettings(), hide=("channels",), options={"size": {"min": 4, "max": 1024}})
        self.patch_form = settings_form(
            PatchSettings(), hide=("channels",), options={"patch_size": {"min": 4, "max": 4096}}
        )
        self.patch_form.visible = False
        self.preset = ComboBox(choices=list(PRESETS), value="none", label="preset")
        self.steps = StepEditor((64, 64))

        self.object_index = QSpinBox()
        self.object_index.setMinimum(1)  # objects are counted from 1 here and in the preview text
        self.before, self.after, self.preview_info = QLabel(), QLabel(), QLabel()
        for label in (self.before, self.after):
            label.setFixedSize(PREVIEW_PX, PREVIEW_PX)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: black;")
        self.gallery = QLabel("Build a crop set to see a gallery of crops.")
        self.gallery.setWordWrap(True)
        self.output = FileEdit(mode="d", label="save to", value="")
        self.output.line_edit.native.setPlaceholderText("save to folder (optional)")
        self.build_button = PushButton(text="Build crop set")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.save_job_button = PushButton(text="Save job for the command line…")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.tasks = Tasks("Cells", status=self.status.setText, on_busy=self._set_busy, parent=self)

        self._layout()
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(60)
        self._preview_timer.timeout.connect(self.update_preview)
        self._connect()
        self.refresh_sources()

    # ----------------------------------------------------------------- layout and signals

    def _layout(self) -> None:
        """Sources and preview, then the build (button, status, gallery) in view; the settings below it."""
        sources = QGroupBox("Sources")
        box = QVBoxLayout(sources)
        box.addWidget(self.kind.native)
        box.addWidget(self.table)
        box.addWidget(self.pairing_info)
        preview = QGroupBox("Preview")
        grid = QGridLayout(preview)
        row = QHBoxLayout()
        row.addWidget(QLabel("object"))
        row.addWidget(self.object_index)
        row.addStretch()
        grid.addLayout(row, 0, 0, 1, 2)
        grid.addWidget(QLabel("before"), 1, 0)
        grid.addWidget(QLabel("after"), 1, 1)
        grid.addWidget(self.before, 2, 0)
        grid.addWidget(self.after, 2, 1)
        grid.addWidget(self.preview_info, 3, 0, 1, 2)
        build = QGroupBox("Crop set")
        box = QVBoxLayout(build)
        box.addWidget(self.output.native)
        buttons = QHBoxLayout()
        buttons.addWidget(self.build_button.native)
        buttons.addWidget(self.cancel_button.native)
        box.addLayout(buttons)
        box.addWidget(self.status)
        box.addWidget(self.gallery)
        box.addWidget(self.save_job_button.native)
        self.crop_section = crop = QCollapsible("Crop settings")
        crop.addWidget(self.crop_form.native)
        crop.addWidget(self.patch_form.native)
        crop.expand(animate=False)
        self.preprocessing_section = preprocessing = QCollapsible("Preprocessing")
        preprocessing.addWidget(self.preset.native)
        preprocessing.addWidget(self.steps.native)
        preprocessing.expand(animate=False)

        content = QWidget()
        column = QVBoxLayout(content)
        for section in (sources, preview, build, crop, preprocessing):
            column.addWidget(section)
        column.addStretch()
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)
        self.setMinimumWidth(520)  # the sources table shows a labels file, its image and its group side by side

    def _connect(self) -> None:
        self.kind.changed.connect(self._on_kind_changed)
        self.table.itemChanged.connect(self._schedule_preview)
        self.table.currentCellChanged.connect(self._schedule_preview)
        self.crop_form.changed.connect(self._on_crop_settings_changed)
        self.patch_form.changed.connect(self._schedule_preview)
        self.preset.changed.connect(self._on_preset)
        self.steps.changed.connect(self._schedule_preview)
        self.object_index.valueChanged.connect(self._schedule_preview)
        self.build_button.clicked.connect(self.build)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_job_button.clicked.connect(self._choose_job_path)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.renamed):  # renaming can pair a layer
            event.connect(self.refresh_sources)

    def _on_kind_changed(self) -> None:
        patches = self.kind.value == "patches"
        self.patch_form.visible = patches
        self.crop_form.visible = not patches
        self.refresh_sources()

    def _on_crop_settings_changed(self) -> None:
        try:
            size = read_form(self.crop_form, CropSettings()).size
        except InputError:
            return
        ndim = 3 if any(len(s.axes.replace("T", "")) == 3 for s in self.sources()) else 2
        self.steps.set_resize_shape((size,) * ndim if isinstance(size, int) else tuple(size))
        self._schedule_preview()

    def _on_preset(self) -> None:
        self.steps.set_steps(PRESETS[self.preset.value])

    def _schedule_preview(self, *_: Any) -> None:
        self._preview_timer.start()

    # ----------------------------------------------------------------- sources table

    def refresh_sources(self, *_: Any) -> None:
        """Rebuild the sources table from the viewer's layers, keeping edited groups.

        Objects layers that could not be paired are listed unchecked, with no
        channels, and the reason is shown under the table.
        """
        if label_images(self.viewer.layers):  # not while napari is still inserting the layer
            QTimer.singleShot(0, lambda: convert_label_images(self.viewer))
        pairing = layer_pairing(self.viewer.layers, self.kind.value)
        self.table.show_sources(find_sources(self.viewer.layers, self.kind.value, pairing))
        self.pairing_info.setText("\n".join(f"⚠ not paired: {p}" for p in pairing.problems))
        self.pairing_info.setVisible(bool(pairing.problems))
        self._preview_cache = None
        self._schedule_preview()

    def sources(self) -> list[Source]:
        """The rows of the sources table as :class:`Source` (unchecked rows have ``use=False``)."""
        return self.table.sources()

    def set_group(self, row: int, group: str) -> None:
        """Name the condition of source ``row`` (as editing the table cell does)."""
        self.table.set_group(row, group)

    def crop_job(self) -> CropJob:
        """The current sources and settings as a :class:`CropJob` that ``morphospace crops --config`` runs."""
        return crop_job(
            self.viewer.layers,
            self.sources(),
            self.kind.value,
            read_form(self.crop_form, CropSettings()),
            read_form(self.patch_form, PatchSettings()),
            self.steps.pipeline(),
        )

    # ----------------------------------------------------------------- preview

    def _preview_source(self) -> Source | None:
        sources = self.sources()
        if not sources:
            return None
        row = self.table.currentRow()
        return sources[row] if 0 <= row < len(sources) else sources[0]

    def _object_preview(self, source: Source) -> ObjectPreview:
        settings = read_form(self.crop_form, CropSettings())
        key = (source.objects, tuple(source.channels), source.axes, repr(settings))
        if self._preview_cache is None or self._preview_cache[0] != key:
            image = source_stack(self.viewer.layers, source)
            objects, kind = source_objects(self.viewer.layers, source, self.kind.value)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._preview_cache = (key, ObjectPreview(image, objects, kind, settings, group=source.group))
        return self._preview_cache[1]

    def update_preview(self) -> None:
        """Show the current object's crop before and after the preprocessing steps."""
        source = self._preview_source()
        if source is None or self.kind.value == "patches":
            self.preview_info.setText("No preview for a patch grid." if source else "Add an image and a Labels layer.")
            return
        started = time.perf_counter()
        try:
            preview = self._object_preview(source)
            self.object_index.setMaximum(max(len(preview), 1))
            number = min(self.object_index.value(), len(preview))  # counted from 1, as the text says
            result = preview.crop(number - 1)
            if result is None:
                self.preview_info.setText("This object is skipped (smaller than min area).")
                return
            crop, mask, row = result
            after = apply_pipeline(crop, self.steps.pipeline(), mask=mask)
        except InputError as err:
            self.preview_info.setText(f"⚠ {err}")
            return
        self.before.setPixmap(_pixmap(composite_rgb(crop)))
        self.after.setPixmap(_pixmap(composite_rgb(after)))
        elapsed = (time.perf_counter() - started) * 1000
        shape = "×".join(str(s) for s in after.shape[1:])
        self.preview_info.setText(
            f"{source.group}: object {number} of {len(preview)} (label {row['label_id']}, t={row['t']}); "
            f"{shape}, {elapsed:.0f} ms"
        )

    # ----------------------------------------------------------------- building

    def build(self) -> Any:
        """Build the crop set of every checked source in a background worker; returns it (None when refused)."""
        try:
            kind = self.kind.value
            settings = (
                read_form(self.patch_form, PatchSettings())
                if kind == "patches"
                else read_form(self.crop_form, CropSettings())
            )
            plan = crop_sources(self.viewer.layers, self.sources(), kind, settings)
        except InputError as err:
            self.tasks.report(err)
            return None
        self._stop_event = threading.Event()
        pipeline = self.steps.pipeline()
        return self.tasks.start(
            build_crops,
            plan,
            pipeline if pipeline.steps else None,
            self._stop_event,
            self._output_folder(),
            on_done=self._on_built,
            action="Building the crop set",
            busy_text="Building…",
            progress="Building crop set",
            on_message=self._on_message,
        )

    def _set_busy(self, busy: bool) -> None:
        self.build_button.enabled, self.cancel_button.enabled = not busy, busy

    def cancel(self) -> None:
        """Stop the build; takes effect before the next object and writes nothing."""
        self._stop_event.set()
        self.status.setText("Cancelling…")

    def save_job(self, path: str | Path) -> Path | None:
        """Write :meth:`crop_job` as YAML; a problem becomes a notification and nothing is written."""
        try:
            written = save_config(self.crop_job(), path)
        except InputError as err:
            self.tasks.report(err)
            return None
        self.status.setText(
            f"Saved the crop job to {written}: run it with morphospace crops --config {written} --out DIR"
        )
        return written

    def _choose_job_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save crop job", "crop_job.yaml", "YAML (*.yaml *.yml)")
        if path:
            self.save_job(path)

    def _output_folder(self) -> Path | None:
        value = str(self.output.value)
        return Path(value) if value not in ("", ".") else None

    def _on_message(self, message: Any) -> None:
        """Show the builders' warnings, one notification per build."""
        if isinstance(message, BuildWarnings) and message.messages:
            show_warning("\n".join(message.messages))

    def _on_built(self, crop_set: CropSet | None) -> None:
        if crop_set is None:
            self.status.setText("Cancelled: no crop set was made.")
            return
        self.crop_set = crop_set
        output = self._output_folder() or crop_set_folder(crop_set)  # a large set without one went to a temp folder
        self.session.crop_set_folder = output
        self.session.crop_set = crop_set
        counts = crop_set.table["group"].value_counts().to_dict()
        shape = "×".join(str(s) for s in crop_set.images.shape[1:])
        text = f"{len(crop_set)} crops ({shape}): " + ", ".join(f"{g} {n}" for g, n in counts.items())
        self.status.setText(text + (f"; saved to {output}" if output else ""))
        show_info(f"Crop set ready: {text}")
        self._show_gallery(crop_set)

    def _show_gallery(self, crop_set: CropSet, n: int = 24) -> None:
        chosen = np.linspace(0, len(crop_set) - 1, min(n, len(crop_set))).astype(int)
        picture = crop_montage(np.stack([np.asarray(crop_set.images[i]) for i in chosen]), n_columns=6)
        pixmap = _pixmap(picture, size=340)
        self.gallery.setWordWrap(False)  # a wrapping label computes a height for text and hides the picture
        self.gallery.setPixmap(pixmap)
        self.gallery.setMinimumSize(pixmap.size())


def build_crops(
    send: Callable[[Any], None],
    sources: list[CropSource],
    pipeline: PreprocessPipeline | None,
    stop_event: threading.Event,
    output: Path | None,
) -> CropSet | None:
    """Crop every source with the core's ``build_crop_set``, as the command line does; None when cancelled.

    Runs off the GUI thread and sends its progress and, once, the builders'
    notes summed over the sources (as ``morphospace crops`` prints them).
    With a "save to" folder the crops stream there; without, they stay in
    memory unless they would not fit comfortably (the core then streams them
    to a temporary folder).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            crop_set = build_crop_set(
                sources,
                pipeline=pipeline,
                output=output,
                stop_event=stop_event,
                on_progress=lambda name, done, total: send(Progress(f"Cropping {name}", done, total)),
            )
        except CropCancelled:
            return None
    send(BuildWarnings(summed_notes([str(w.message) for w in caught])))
    return crop_set
