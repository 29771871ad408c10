"""The "Cells" widget: choose sources, crop and preprocessing settings, preview, build a crop set.

All computing is in :mod:`napari_morphospace.core.crops` and
:mod:`napari_morphospace.core.preprocess`; this widget reads layers and
settings, shows the live preview, and runs the build in a background worker
that sends typed messages back.
"""

from __future__ import annotations

import inspect
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal, get_args, get_type_hints

import dask.array as da
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, PushButton, Widget, create_widget
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QImage, QPixmap
from superqt import QCollapsible
from qtpy.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.config import save_config
from ..core.crop_job import CropJob
from ..core.crops import (
    CropCancelled, CropSettings, CropSource, ObjectPreview, PatchSettings, build_crop_set, summed_notes,
)  # fmt: skip
from ..core.data import CropSet, crop_set_folder
from ..core.errors import InputError
from ..core.io import Stack
from ..core.gallery import composite_rgb, crop_montage
from ..core.pairing import (
    LayerInfo, Pairing, folder_name, looks_like_labels, pair_layers, pair_patches, source_stem,
    channel_names as named_channels,
)  # fmt: skip
from ..core.preprocess import STEPS, PreprocessPipeline, PreprocessStep, apply_pipeline
from .docking import tab_with_other_docks
from .forms import field_widget, read_form, settings_form
from ..viewer.layers import layer_file
from ..viewer.session import session_for
from .tasks import Tasks
from .workers import Progress

ObjectKind = Literal["labels", "points", "shapes", "patches"]

#: Steps in the order the editor applies them. It covers both published
#: pipelines (macrophage: grayscale, resize, CLAHE, sharpen, min-max;
#: Statistical Cell: subtract mode, align, centre); a config file may order
#: steps freely.
STEP_ORDER = (
    "to_grayscale", "resize", "subtract_mode", "clahe", "unsharp_mask", "align_major_axis", "center_on_channel",
    "mask_object", "normalize_percentile", "normalize_minmax",
)  # fmt: skip
PRESETS = {
    "none": (),
    "macrophage study": ("to_grayscale", "resize", "clahe", "unsharp_mask", "normalize_minmax"),
    "Statistical Cell": ("subtract_mode", "align_major_axis", "center_on_channel"),
}
PREVIEW_PX = 150
#: The sources table's columns: the pairing first; image channels, group and axes can be edited.
COLUMNS = ("use", "objects", "image channels", "group", "axes")
TABLE_ROWS_SHOWN = 8  # the table grows up to this many rows, then scrolls


@dataclass
class Source:
    """One row of the sources table: objects layer, its channel layers, their axes, a group."""

    objects: str
    channels: list[str]
    axes: str
    group: str
    use: bool = True


@dataclass
class BuildWarnings:
    """Warnings the builders raised (skipped or cut objects, NaN pixels), for a notification."""

    messages: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading layers


def layer_axes(layer: Image) -> str:
    """Axes of an image layer without channels: the reader's metadata, else guessed from ndim."""
    axes = layer.metadata.get("axes") if isinstance(layer.metadata, dict) else None
    if isinstance(axes, str) and len(axes.replace("C", "")) == layer.ndim:
        return axes.replace("C", "")
    return {2: "YX", 3: "ZYX", 4: "TZYX"}.get(layer.ndim, "")


def layer_info(layer: Any) -> LayerInfo | None:
    """What :mod:`core.pairing` needs of a layer; ``None`` for layers that are no source (RGB, multiscale images).

    The origin is the reader's ``metadata["source"]`` (our readers, samples,
    analysis folders), else napari's source path, together with the sample
    dataset the layer came from (samples share group names and shapes).
    """
    metadata = layer.metadata if isinstance(layer.metadata, dict) else {}
    if isinstance(layer, Image):
        if layer.rgb or layer.multiscale:
            return None
        kind, shape = "image", tuple(layer.data.shape)
    elif isinstance(layer, Labels):
        kind, shape = "labels", tuple((layer.data[0] if layer.multiscale else layer.data).shape)
    elif isinstance(layer, (Points, Shapes)):
        kind, shape = ("points" if isinstance(layer, Points) else "shapes"), (0,) * layer.ndim  # only ndim counts
    else:
        return None
    where, sample = metadata.get("source") or layer.source.path, layer.source.sample
    origin = None if where is None and sample is None else f"{':'.join(sample or ())}|{where or ''}"
    integer = kind == "image" and np.issubdtype(layer.data.dtype, np.integer)
    group = metadata.get("group")
    return LayerInfo(layer.name, kind, shape, origin=origin, group=str(group) if group else None,
                     folder=folder_name(layer_file(layer)), integer=integer)  # fmt: skip


def layer_pairing(layers: Any, kind: ObjectKind) -> Pairing:
    """Pair the objects layers of ``kind`` with their image layers (see :mod:`core.pairing`)."""
    infos = [info for info in map(layer_info, layers) if info is not None]
    return pair_patches(infos) if kind == "patches" else pair_layers(infos, kind)


def find_sources(layers: Any, kind: ObjectKind, pairing: Pairing | None = None) -> list[Source]:
    """The sources table's rows: every objects layer of ``kind`` with its image's channel layers.

    Objects layers that could not be paired come with no channels (``pairing.problems`` says why).
    For a patch grid every image is a source.
    """
    pairing = pairing or layer_pairing(layers, kind)
    found = []
    for paired in pairing.sources:
        axes = layer_axes(layers[paired.channels[0]]) if paired.channels else ""
        found.append(Source(paired.objects, list(paired.channels), axes, paired.group))
    return found


def row_key(source: Source) -> str:
    """What identifies a row of the sources table across refreshes: its objects layer, else its channels."""
    return source.objects or ", ".join(source.channels)


def channel_names(source: Source) -> list[str]:
    """Channel names from the layer names without the source's stem: "control membrane" -> "membrane"."""
    return named_channels(source.channels, source_stem(source.objects, source.channels))


def source_stack(layers: Any, source: Source, names: list[str] | None = None) -> Stack:
    """The channel layers of ``source`` stacked as one :class:`Stack` (lazily when any is dask).

    The layers' ``scale`` becomes the physical pixel size, so crops record it.
    ``names`` overrides the channel names (all sources of one crop set must
    share them: channels are matched by their order in the Channels column).
    """
    if not source.channels:
        raise InputError(f"source {source.objects or source.group!r} has no image layers; name them in the Channels column")
    missing = [name for name in source.channels if name not in layers]
    if missing:
        raise InputError(f"no image layer named {', '.join(map(repr, missing))}; check the Channels column")
    arrays = [layers[name].data for name in source.channels]
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"the channel layers of {source.group!r} have different shapes {sorted(shapes)}; choose layers of one image")
    if len(source.axes) != arrays[0].ndim or set(source.axes) - set("TZYX") or len(set(source.axes)) != len(source.axes):
        raise InputError(
            f"axes {source.axes!r} do not fit image layers with {arrays[0].ndim} dimensions; "
            "write one letter from TZYX per dimension in the Axes column"
        )
    names = names or channel_names(source)
    if len(names) != len(arrays):
        raise InputError(
            f"source {source.group!r} has {len(arrays)} channel layers but the first source has {len(names)}; "
            "give every source the same channels, in the same order"
        )
    stack = da.stack if any(isinstance(a, da.Array) for a in arrays) else np.stack
    scale = {axis: float(step) for axis, step in zip(source.axes, layers[source.channels[0]].scale)}
    return Stack(stack(arrays), "C" + source.axes, scale=scale, channel_names=list(names), source=source.objects)


def _to_image_coordinates(coords: np.ndarray, objects_layer: Any, image_layer: Image) -> np.ndarray:
    """Map coordinates from an objects layer's data space to an image layer's (scale and translate)."""
    world = coords * np.asarray(objects_layer.scale) + np.asarray(objects_layer.translate)
    return (world - np.asarray(image_layer.translate)) / np.asarray(image_layer.scale)


def source_objects(layers: Any, source: Source, kind: ObjectKind) -> tuple[Any, str]:
    """The objects of ``source`` in the image's pixel coordinates, and the builder kind to use."""
    layer = layers[source.objects]
    if kind == "labels":
        return np.asarray(layer.data), "labels"
    image_layer = layers[source.channels[0]]
    if kind == "points":
        return _to_image_coordinates(np.asarray(layer.data, dtype=float), layer, image_layer), "points"
    if len(layer.data) == 0:
        raise InputError(f"the Shapes layer {layer.name!r} has no shapes; draw rectangles around cells first")
    boxes = [np.stack([np.min(s, axis=0), np.max(s, axis=0)]) for s in layer.data]
    return _to_image_coordinates(np.asarray(boxes, dtype=float), layer, image_layer), "boxes"


# --------------------------------------------------------------------------- the preprocessing editor


def _step_value_widget(name: str, annotation: Any, default: Any, crop_size: tuple[int, ...]) -> Widget:
    """An editor for one step parameter; sequences become fixed-length tuples of their default."""
    if name == "shape":
        return create_widget(value=tuple(crop_size), name=name, label=name)
    if isinstance(default, tuple):
        return create_widget(value=default, name=name, label=name)
    if default is None:
        return field_widget(name, int | None, None, {"min": 1, "max": 4096})
    options: dict[str, Any] = {}
    if isinstance(default, float):
        options = {"min": 0.0, "max": 1000.0, "step": 0.005 if default < 0.1 else 0.1}
    elif isinstance(default, int):
        options = {"min": 0, "max": 100000}
    return create_widget(value=default, annotation=type(default), name=name, label=name.replace("_", " "), options=options)


class StepEditor(Container):
    """Check boxes for the preprocessing steps in :data:`STEP_ORDER`, each with its parameters."""

    def __init__(self, crop_size: tuple[int, ...] = (64, 64)) -> None:
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self._params: dict[str, Container] = {}
        self._checks: dict[str, CheckBox] = {}
        for step in STEP_ORDER:
            function = STEPS[step]
            hints = get_type_hints(function)
            widgets = [
                _step_value_widget(key, hints.get(key), p.default if p.default is not p.empty else None, crop_size)
                for key, p in inspect.signature(function).parameters.items()
                if p.kind is p.KEYWORD_ONLY and key != "mask"
            ]
            check = CheckBox(value=False, text=step.replace("_", " "), name=step)
            params = Container(widgets=widgets, name=f"{step}_params", visible=False)
            params.margins = (16, 0, 0, 0)
            check.changed.connect(lambda on, params=params: setattr(params, "visible", on))
            self._checks[step], self._params[step] = check, params
            self.extend([check, params])

    def pipeline(self) -> PreprocessPipeline:
        """The checked steps with their parameters, validated like a config file."""
        steps = []
        for step, check in self._checks.items():
            if check.value:
                params = {}
                for widget in self._params[step]:
                    if isinstance(widget, Container):  # an optional value with its on/off box
                        params[widget.name] = widget["value"].value if widget["enabled"].value else None
                    else:
                        value = widget.value
                        params[widget.name] = list(value) if isinstance(value, tuple) else value
                steps.append(PreprocessStep(step, {k: v for k, v in params.items() if v is not None}))
        return PreprocessPipeline.from_dict(PreprocessPipeline(steps).to_dict())

    def set_steps(self, names: tuple[str, ...]) -> None:
        for step, check in self._checks.items():
            check.value = step in names

    def set_resize_shape(self, shape: tuple[int, ...]) -> None:
        """Show ``shape`` as the resize target; a new box when the number of axes changes (2D <-> 3D)."""
        params, shape = self._params["resize"], tuple(shape)
        current = params["shape"]
        if len(current.value) == len(shape):
            current.value = shape
            return
        index = params.index(current)
        params.remove(current)
        params.insert(index, _step_value_widget("shape", tuple[int, ...], None, shape))


# --------------------------------------------------------------------------- the widget


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
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        # Every cell shows its whole text (the table scrolls sideways when it must); tooltips repeat it.
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setWordWrap(False)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.verticalHeader().setVisible(False)
        self.pairing_info = QLabel("")
        self.pairing_info.setWordWrap(True)
        self.pairing_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.crop_form = settings_form(CropSettings(), hide=("channels",), options={"size": {"min": 4, "max": 1024}})
        self.patch_form = settings_form(PatchSettings(), hide=("channels",), options={"patch_size": {"min": 4, "max": 4096}})
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
        if self._label_images():
            QTimer.singleShot(0, self.convert_label_images)  # not while napari is still inserting the layer
        edited = {row_key(s): s.group for s in self.sources()}
        pairing = layer_pairing(self.viewer.layers, self.kind.value)
        found, problems = find_sources(self.viewer.layers, self.kind.value, pairing), pairing.problems
        self.table.blockSignals(True)
        self.table.setRowCount(len(found))
        for row, source in enumerate(found):
            use = QTableWidgetItem()
            use.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            use.setCheckState(Qt.CheckState.Checked if source.channels else Qt.CheckState.Unchecked)
            use.setToolTip("build crops from this source")
            objects = QTableWidgetItem(source.objects or "(patch grid)")
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
                self.table.setItem(row, column, cells[name])
        self.table.blockSignals(False)
        self._fit_table_height()
        self.pairing_info.setText("\n".join(f"⚠ not paired: {p}" for p in problems))
        self.pairing_info.setVisible(bool(problems))
        if found and self.table.currentRow() < 0:
            self.table.setCurrentCell(0, COLUMNS.index("objects"))  # the row to preview; the table stays scrolled left
        self._preview_cache = None
        self._schedule_preview()

    def _fit_table_height(self) -> None:
        """Tall enough for up to ``TABLE_ROWS_SHOWN`` rows (and the sideways scroll bar), then it scrolls."""
        rows = max(1, min(self.table.rowCount(), TABLE_ROWS_SHOWN)) * self.table.verticalHeader().defaultSectionSize()
        height = self.table.horizontalHeader().sizeHint().height() + rows + 2 * self.table.frameWidth()
        self.table.setFixedHeight(height + self.table.horizontalScrollBar().sizeHint().height())

    def _label_images(self) -> list[Image]:
        """Integer image layers named like label images (``X_labels``): label files opened by a plain image reader."""
        return [layer for layer in self.viewer.layers
                if isinstance(layer, Image) and (info := layer_info(layer)) is not None and looks_like_labels(info)]  # fmt: skip

    def convert_label_images(self) -> list[str]:
        """Turn integer image layers named like label images into Labels layers, with a note; returns their names.

        napari's built-in reader opens ``X_labels.tif`` as an image; the
        Cells widget (and Embed, Scatter, which write and read
        ``layer.features``) need a Labels layer. Name, data, scale, translate
        and place in the layer list are kept; the file is remembered in
        ``metadata["source"]`` so a crop job can still name it.
        """
        converted = []
        for image in self._label_images():
            index = list(self.viewer.layers).index(image)
            metadata = dict(image.metadata) if isinstance(image.metadata, dict) else {}
            file = layer_file(image)
            if file is not None:
                metadata.setdefault("source", str(file))
            name = image.name
            self.viewer.layers.remove(image)
            labels = self.viewer.add_labels(image.data, name=name, scale=image.scale, translate=image.translate,
                                            metadata=metadata)  # fmt: skip
            self.viewer.layers.move(list(self.viewer.layers).index(labels), index)
            converted.append(name)
        if converted:
            show_info(
                f"{', '.join(map(repr, converted))} held object ids but came in as image layers (napari's built-in "
                "reader); Morphospace turned them into Labels layers. Open label files with the Morphospace reader "
                "(File > Open with Plugin > Morphospace) to get Labels layers directly."
            )
        return converted

    def sources(self) -> list[Source]:
        """The rows of the sources table as :class:`Source` (unchecked rows have ``use=False``)."""
        rows = []
        for row in range(self.table.rowCount()):
            cells = {name: self.table.item(row, column) for column, name in enumerate(COLUMNS)}
            if any(item is None for item in cells.values()):
                continue
            objects = cells["objects"].text()
            rows.append(
                Source(
                    objects="" if objects == "(patch grid)" else objects,
                    channels=[c.strip() for c in cells["image channels"].text().split(",") if c.strip()],
                    axes=cells["axes"].text().strip().upper(),
                    group=cells["group"].text().strip(),
                    use=cells["use"].checkState() == Qt.CheckState.Checked,
                )
            )
        return rows

    def set_group(self, row: int, group: str) -> None:
        """Name the condition of source ``row`` (as editing the table cell does)."""
        self.table.item(row, COLUMNS.index("group")).setText(group)

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
            plan = self._build_plan()
        except InputError as err:
            self.tasks.report(err)
            return None
        self._stop_event = threading.Event()
        pipeline = self.steps.pipeline()
        return self.tasks.start(build_crops, plan, pipeline if pipeline.steps else None, self._stop_event,
                                self._output_folder(), on_done=self._on_built, action="Building the crop set",
                                busy_text="Building…", progress="Building crop set", on_message=self._on_message)

    def _set_busy(self, busy: bool) -> None:
        self.build_button.enabled, self.cancel_button.enabled = not busy, busy

    def cancel(self) -> None:
        """Stop the build; takes effect before the next object and writes nothing."""
        self._stop_event.set()
        self.status.setText("Cancelling…")

    def crop_job(self) -> CropJob:
        """The current sources and settings as a :class:`CropJob` that ``morphospace crops --config`` runs.

        Every layer must come from a file, and each source's channel layers
        from one file (all its channels, as the reader splits them).
        """
        kind = self.kind.value
        if kind not in ("labels", "patches"):
            raise InputError("the command line crops from Labels files or a patch grid; points and boxes stay in the viewer")
        images, labels, groups = [], [], []
        for source in (s for s in self.sources() if s.use):
            files = {layer_file(self.viewer.layers[name]) for name in source.channels}
            if len(files) != 1 or None in files:
                raise InputError(
                    f"the channel layers of {source.group!r} do not all come from one file; open the image "
                    "file in napari (or save the layers as one OME-TIFF) to make a job the command line can run"
                )
            images.append(str(files.pop()))
            groups.append(source.group)
            if kind == "labels":
                label_file = layer_file(self.viewer.layers[source.objects])
                if label_file is None:
                    raise InputError(
                        f"the Labels layer {source.objects!r} was not opened from a file; save it "
                        "(File > Save Selected Layers) and open that file, then save the job"
                    )
                labels.append(str(label_file))
        if not images:
            raise InputError("no source is checked; check at least one row of the sources table")
        return CropJob(
            images=images, labels=labels, groups=groups, objects=kind,
            crop=read_form(self.crop_form, CropSettings()), patches=read_form(self.patch_form, PatchSettings()),
            preprocess=self.steps.pipeline(),
        )  # fmt: skip

    def save_job(self, path: str | Path) -> Path | None:
        """Write :meth:`crop_job` as YAML; a problem becomes a notification and nothing is written."""
        try:
            written = save_config(self.crop_job(), path)
        except InputError as err:
            self.tasks.report(err)
            return None
        self.status.setText(f"Saved the crop job to {written}: run it with morphospace crops --config {written} --out DIR")
        return written

    def _choose_job_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save crop job", "crop_job.yaml", "YAML (*.yaml *.yml)")
        if path:
            self.save_job(path)

    def _output_folder(self) -> Path | None:
        value = str(self.output.value)
        return Path(value) if value not in ("", ".") else None

    def _build_plan(self) -> list[CropSource]:
        """What each checked source needs, read on the GUI thread; the worker only computes."""
        sources = [s for s in self.sources() if s.use]
        if not sources:
            raise InputError("no source is checked; add an image with a Labels layer (or points/boxes) and check it")
        kind = self.kind.value
        settings = read_form(self.patch_form if kind == "patches" else self.crop_form, PatchSettings() if kind == "patches" else CropSettings())
        plan = []
        names = channel_names(sources[0])
        for source in sources:
            image = source_stack(self.viewer.layers, source, names)
            objects, builder = (None, "patches") if kind == "patches" else source_objects(self.viewer.layers, source, kind)
            plan.append(CropSource(image, objects, builder, settings, group=source.group,
                                   source=source.objects or source.channels[0]))  # fmt: skip
        return plan

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



def build_crops(send: Callable[[Any], None], sources: list[CropSource], pipeline: PreprocessPipeline | None,
                stop_event: threading.Event, output: Path | None) -> CropSet | None:  # fmt: skip
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
            crop_set = build_crop_set(sources, pipeline=pipeline, output=output, stop_event=stop_event,
                                      on_progress=lambda name, done, total: send(Progress(f"Cropping {name}", done, total)))  # fmt: skip
        except CropCancelled:
            return None
    send(BuildWarnings(summed_notes([str(w.message) for w in caught])))
    return crop_set
