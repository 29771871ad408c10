"""Lookups on napari layers, and the few layers the plugin adds to show something on the sources.

A session often has many sources (14 fields of view, each a Labels layer).
Showing a selection, the annotations or a Grad-CAM map with one layer per
source floods the layer list, and layers of fields opened from files all sit
at the origin, stacked over each other. So the plugin adds **one layer per
kind** (:class:`SourceOverlay`: "selected cells", "annotations",
"Grad-CAM", ...), which shows its content for the source shown now
(:func:`shown_source`): the active layer when it is a source, else the
topmost visible source. Selecting another field's layer in the layer list,
hiding the top one, or clicking a cell in the scatter plot moves the overlay
to that field. Fields laid out side by side (an opened analysis, the demo)
are all shown: the overlay also covers every visible source beside the shown
one that overlaps no other shown source, pasted into one layer (sources of
one pixel size, aligned on its grid). The overlay sits right above the shown
source in the layer list, so fields drawn over that source cover its overlay
too: an overlay is never drawn over another field than its own.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import wrapt
from napari.layers import Labels

from ..core.errors import InputError
from .features import OVERLAY_KEY, is_overlay

#: What a :class:`SourceOverlay`'s ``render`` returns: the layer data and its placement (``scale``, ``translate``...).
Rendered = tuple[Any, dict[str, Any]]
_LAYER_EVENTS = {"visible", "inserted", "removed", "moved", "reordered"}


def unwrap(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy`` (a ``wrapt`` proxy, handed to plugin widgets), or ``obj``.

    Proxies compare equal to what they wrap but are other objects: identity
    checks (``layer is removed``) and dictionaries keyed on layers need the
    real thing.
    """
    while isinstance(obj, wrapt.ObjectProxy):
        obj = obj.__wrapped__
    return obj


def layer_file(layer: Any) -> Path | None:
    """The file a layer was read from: napari's source path or our readers' ``metadata["source"]``."""
    metadata = layer.metadata if isinstance(layer.metadata, dict) else {}
    for candidate in (layer.source.path, metadata.get("source")):
        if candidate and Path(str(candidate)).is_file():
            return Path(str(candidate)).resolve()
    return None


def source_layers(layers: Any, rows: pd.DataFrame) -> dict[str, Any]:
    """The layer of each crop's ``source`` (the crop table names the layer it was cut from), refusing missing ones."""
    if "source" not in rows.columns:
        raise InputError("the crop table has no source column: it cannot say which layer a crop came from")
    names = [str(s) for s in pd.unique(rows["source"].astype(str))]
    missing = [name for name in names if name not in layers]
    if missing:
        raise InputError(
            f"no layer named {', '.join(map(repr, missing))}: open the image the crops were cut from "
            "(the crop table's source column names the layer)"
        )
    return {name: layers[name] for name in names}


def selected_cell(viewer: Any, spatial_ndim: int, layer: Any = None) -> tuple[str, int, int | None]:
    """``(source, label_id, t)`` of the label selected in a Labels layer (the active one, else the first, by default).

    ``layer`` may be a layer or its name. ``t`` is the shown frame when the
    layer has one axis more than ``spatial_ndim``, else None.
    """
    if isinstance(layer, str):
        layer = viewer.layers[layer]
    if layer is None:
        active = viewer.layers.selection.active
        candidates = [active] + [lay for lay in viewer.layers if lay is not active]
        layer = next(
            (lay for lay in candidates if isinstance(lay, Labels) and not lay.name.endswith(" selection")), None
        )
    if not isinstance(layer, Labels):
        raise InputError(
            "no Labels layer to take the selected cell from: add the cells' Labels layer and select a label"
        )
    label = int(layer.selected_label)
    if label == 0:
        raise InputError(f"label 0 (background) is selected in {layer.name!r}: pick a cell with the label picker")
    t = int(round(layer.world_to_data(viewer.dims.point)[0])) if layer.ndim - spatial_ndim == 1 else None
    return layer.name, label, t


def shown_source(viewer: Any, sources: Sequence[Any]) -> Any:
    """The source the user looks at: the active layer if it is one of ``sources``, else the topmost visible one."""
    real = [unwrap(layer) for layer in sources]
    active = unwrap(viewer.layers.selection.active)
    if any(active is layer for layer in real):
        return active
    for layer in reversed(list(viewer.layers)):  # the last layer is drawn on top
        layer = unwrap(layer)
        if layer.visible and any(layer is source for source in real):
            return layer
    return None


def focus_on(viewer: Any, layer: Any, world: Sequence[float]) -> None:
    """Show world position ``world`` of ``layer``: the layer visible and active, its frame and z set,
    the camera centred there.

    Fields opened from files lie over each other: making the layer active
    makes it the one shown (with its overlays).
    """
    layer.visible = True
    viewer.layers.selection.active = layer
    leading = viewer.dims.ndim - layer.ndim
    displayed = list(viewer.dims.displayed)
    hidden = [axis for axis in range(leading, viewer.dims.ndim) if axis not in displayed]
    if hidden:
        viewer.dims.set_point(hidden, [world[axis - leading] for axis in hidden])
    # napari 0.9 moved the camera to viewer.scene; older versions (>= 0.5) keep viewer.camera
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = tuple(world[axis - leading] for axis in displayed)


def view_box(viewer: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """World ``(y, x)`` of the top-left and bottom-right corners the canvas shows now; None in 3D or before a canvas."""
    size = getattr(getattr(viewer, "canvas", None), "size", None)  # (height, width) in screen pixels
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    if viewer.dims.ndisplay != 2 or not size or min(size) <= 1 or camera.zoom <= 0:
        return None
    half = np.asarray(size, float) / camera.zoom / 2
    centre = np.asarray(camera.center[-2:], float)
    return centre - half, centre + half


def place_in_view(viewer: Any, size: Sequence[float], anchor: tuple[Any, Any] | None = None) -> np.ndarray | None:
    """World ``(y, x)`` of the top-left corner for an image of world ``size`` ``(height, width)`` where the user looks.

    Right of ``anchor`` (world ``(top-left, bottom-right)`` of the cell being
    inspected), or left of it when the right side is out of view; without an
    anchor, the top-left corner of the view. None when the view is not known
    (3D view, no canvas yet): the caller then places it by the data.
    """
    view = view_box(viewer)
    if view is None:
        return None
    low, high = view
    gap = 0.1 * size[1]
    if anchor is None:
        return low + 0.05 * (high - low)
    top_left, bottom_right = (np.asarray(a, float)[-2:] for a in anchor)
    right = np.array([top_left[0], bottom_right[1] + gap])
    if right[1] + size[1] <= high[1]:
        return right
    return np.array([top_left[0], top_left[1] - gap - size[1]])


def _world_box(layer: Any) -> np.ndarray:
    """World extent ``(2, 2)``: (low, high) of the last two axes (y, x)."""
    return np.asarray(layer.extent.world, float)[:, -2:]


def sources_beside(viewer: Any, shown: Any, sources: Sequence[Any]) -> list[Any]:
    """Visible sources, top first, whose field overlaps neither ``shown`` nor another one taken before it."""
    real = [unwrap(layer) for layer in sources]
    boxes = [_world_box(shown)]
    beside = []
    for layer in reversed([unwrap(layer) for layer in viewer.layers]):
        if layer is shown or not layer.visible or not any(layer is source for source in real):
            continue
        box = _world_box(layer)
        if all((box[1] <= other[0]).any() or (other[1] <= box[0]).any() for other in boxes):
            beside.append(layer)
            boxes.append(box)
    return beside


def paste_side_by_side(rendered: Sequence[Rendered]) -> Rendered | None:
    """Renders of several sources as one image on their common pixel grid, or None when they do not share one.

    They share one when their data have the same number of axes and dtype,
    the same ``scale``, and ``translate`` offsets that are whole pixels apart.
    The first render's other properties (colormap, metadata...) are kept.
    """
    datas = [np.asarray(data) for data, _ in rendered]
    scales = [
        np.asarray(placement.get("scale", np.ones(d.ndim)), float)[-d.ndim :]
        for d, (_, placement) in zip(datas, rendered, strict=True)
    ]
    translates = [
        np.asarray(placement.get("translate", np.zeros(d.ndim)), float)[-d.ndim :]
        for d, (_, placement) in zip(datas, rendered, strict=True)
    ]
    if len({(d.ndim, d.dtype) for d in datas}) != 1 or not all(np.allclose(s, scales[0]) for s in scales):
        return None
    offsets = [(t - translates[0]) / scales[0] for t in translates]
    if not all(np.allclose(o, np.round(o)) for o in offsets):
        return None
    starts = [np.round(o).astype(int) for o in offsets]
    low = np.min(starts, axis=0)
    high = np.max([s + d.shape for s, d in zip(starts, datas, strict=True)], axis=0)
    out = np.zeros(tuple(high - low), dtype=datas[0].dtype)
    for start, data in zip(starts, datas, strict=True):
        index = tuple(slice(a - b, a - b + n) for a, b, n in zip(start, low, data.shape, strict=True))
        out[index] = np.maximum(out[index], data)
    placement = {**rendered[0][1], "scale": scales[0], "translate": translates[0] + low * scales[0]}
    return out, placement


def _differs(current: Any, value: Any) -> bool:
    """Whether setting a layer property to ``value`` would change it (arrays compared by value, scalars broadcast)."""
    if isinstance(value, dict):
        try:
            return bool(current != value)
        except ValueError:  # values that compare element by element (arrays): set it
            return True
    current = np.asarray(current)
    try:
        return not np.array_equal(current, np.broadcast_to(value, current.shape))
    except ValueError:
        return True


def add_quietly(viewer: Any, kind: str, data: Any, **kwargs: Any) -> Any:
    """``viewer.add_<kind>(data, **kwargs)`` without taking the active layer from the user.

    napari makes every layer it inserts the active one, and making the user's
    layer active again swaps the layer controls a second time (a third of the
    time of adding the "selected points" layer); its layer list's
    ``_activate_on_insert`` switch skips both. Should a napari version lack
    the switch, the active layer is restored afterwards.
    """
    layers = unwrap(viewer).layers
    active = layers.selection.active
    switch = hasattr(layers, "_activate_on_insert")
    if switch:
        layers._activate_on_insert = False
    try:
        layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
    finally:
        if switch:
            layers._activate_on_insert = True
    if active is not None and active in layers and layers.selection.active is not active:
        layers.selection.active = active
    return layer


class SourceOverlay:
    """One layer of one kind that shows, for the source shown now, what ``render(source, current)`` returns.

    Parameters
    ----------
    viewer : napari Viewer (or its proxy)
    name : str
        The layer's name (``"selected cells"``, ``"annotations"``, ...).
    kind : {"labels", "image", "points"}
    render : callable
        ``render(source_layer, current_data)`` -> ``(data, placement)`` or
        None (nothing to show for that source). ``current_data`` is the
        overlay's data now (None before it exists), to be written in place
        when it has the right shape; ``placement`` holds ``scale``,
        ``translate`` and any other layer properties that follow the source
        (``metadata`` is kept with the overlay's own mark).
    style : dict
        Properties the layer is created with (colormap, opacity, blending...).
    """

    def __init__(self, viewer: Any, name: str, kind: str, render: Callable[[Any, Any], Rendered | None], **style: Any):
        self._viewer = weakref.ref(unwrap(viewer))
        self.name = name
        self.kind = kind
        self.render = render
        self.style = style
        self.sources: list[Any] = []
        self.layer: Any = None
        self.shown: Any = None  # the source shown in the overlay now
        self._refreshing = False
        viewer = self._viewer()
        viewer.layers.events.connect(self._on_layers_event)
        viewer.layers.selection.events.active.connect(self._on_active)

    def set_sources(self, sources: Sequence[Any]) -> None:
        """Show the overlay for one of ``sources`` (the one shown now), or remove it when there are none."""
        self.sources = [unwrap(layer) for layer in sources]
        self.refresh()

    def _on_layers_event(self, event: Any) -> None:
        if event.type in _LAYER_EVENTS and self._following():
            value = getattr(event, "value", None)
            if event.type == "removed" and value is not None:
                self.sources = [layer for layer in self.sources if layer is not unwrap(value)]
            self.refresh()

    def _on_active(self, _event: Any = None) -> None:
        if self._following():
            self.refresh()

    def _following(self) -> bool:
        """Whether viewer events should re-render: not while rendering, and not after our layer was removed.

        The user deleting the overlay layer (or the viewer closing, which
        removes every layer) stops it until the owner sets sources again:
        re-adding it from the removal's own events would never let it go.
        """
        viewer = self._viewer()
        if self._refreshing or not self.sources or viewer is None:
            return False
        if self.layer is not None and self.layer not in viewer.layers:
            self.layer, self.sources = None, []
            return False
        return True

    def refresh(self) -> None:
        """Render the overlay for the source shown now (removing it when there is nothing to show)."""
        viewer = self._viewer()
        if viewer is None or self._refreshing:
            return
        self._refreshing = True
        try:
            source = shown_source(viewer, self.sources)
            current = self.layer.data if self.layer is not None and self.layer in viewer.layers else None
            rendered = None if source is None else self._render_shown(viewer, source, current)
            if rendered is None:
                self.shown = None
                self._remove_layer(viewer)
                return
            self.shown = source
            self._show(viewer, *rendered)
            self._keep_above(viewer, source)
        finally:
            self._refreshing = False

    def _render_shown(self, viewer: Any, source: Any, current: Any) -> Rendered | None:
        """The shown source's render, with those of the visible sources beside it pasted in when they fit one grid."""
        beside = sources_beside(viewer, source, self.sources) if self.kind != "points" else []
        if not beside:
            return self.render(source, current)
        first = self.render(source, None)
        if first is None:
            return None
        others = [rendered for rendered in (self.render(layer, None) for layer in beside) if rendered is not None]
        return paste_side_by_side([first, *others]) or first

    def _keep_above(self, viewer: Any, source: Any) -> None:
        """Move the overlay right above ``source`` in the layer list (drawn over it, under the fields above it)."""
        layers = [unwrap(layer) for layer in viewer.layers]
        here = next(i for i, layer in enumerate(layers) if layer is self.layer)
        below = next(i for i, layer in enumerate(layers) if layer is source)
        if here != below + 1:
            viewer.layers.move(here, below + 1)

    def _show(self, viewer: Any, data: Any, placement: dict[str, Any]) -> None:
        layer = self.layer
        reuse = layer is not None and layer in viewer.layers and np.ndim(layer.data) == np.ndim(data)
        if reuse and self.kind == "points":
            reuse = layer.ndim == placement.get("ndim", layer.ndim)
        placement = {**placement, "metadata": {**placement.get("metadata", {}), OVERLAY_KEY: self.name}}
        if not reuse:
            self._remove_layer(viewer)
            self.layer = add_quietly(viewer, self.kind, data, name=self.name, **{**self.style, **placement})
            return
        if layer.data is data:
            layer.refresh()
        else:
            layer.data = data
        # after the data, so that a Points size reaches the points just added; only what changed, since
        # napari refreshes the layer on every property set (three needless refreshes per selection before)
        for key, value in placement.items():
            if key != "ndim" and _differs(getattr(layer, key), value):
                setattr(layer, key, value)

    def _remove_layer(self, viewer: Any) -> None:
        layer, self.layer = self.layer, None
        if layer is not None and layer in viewer.layers:
            viewer.layers.remove(layer)

    def remove(self) -> None:
        """Remove the overlay layer and stop following the viewer (the widget that owns it is closing)."""
        viewer = self._viewer()
        self.sources = []
        if viewer is None:
            return
        viewer.layers.events.disconnect(self._on_layers_event)
        viewer.layers.selection.events.active.disconnect(self._on_active)
        self._remove_layer(viewer)


__all__ = [
    "Rendered",
    "SourceOverlay",
    "add_quietly",
    "is_overlay",
    "focus_on",
    "layer_file",
    "place_in_view",
    "selected_cell",
    "shown_source",
    "source_layers",
    "unwrap",
    "view_box",
]
