"""Result images in the viewer: maps placed on their cells in the source fields, and layers updated in place.

Qt-free, so a script with a viewer does what the Latent space and Classifier
widgets do:

* :func:`place_maps` — crop-sized maps (Grad-CAM) of cells grouped into one
  overlay per source layer (and frame), in that layer's world coordinates
  (:func:`~napari_morphospace.core.analysis.gradcam.source_overlay` does the pixel
  arithmetic). The one implementation both widgets use.
* :class:`GradcamOverlay` — the one "Grad-CAM" layer: keeps the placed maps
  of every field and shows those of the field shown now (fields opened from
  files lie over each other at the origin; one layer per field would stack
  them there), at the frame shown now.
* :func:`put_image` — show an image under a name: the layer of that name is
  updated in place (its style stays the user's), else added without taking
  the active layer from the user.
* :func:`channel_colormaps_of` — one colormap per channel, the one the user's
  image layer of that channel already has when there is one.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image

from ..core.analysis.gradcam import source_overlay
from ..core.analysis.traversal import find_cell
from ..core.errors import InputError
from .layers import SourceOverlay, add_quietly, source_layers, unwrap

GRADCAM = "Grad-CAM"
SCATTER_SELECTION = "scatter selection"  # Grad-CAM cells: the session's selection (crop ids)

#: Properties of a result layer that follow its data; its style (colormap, opacity, blending) is the user's once shown.
PLACEMENT = ("scale", "translate", "contrast_limits")


@dataclass
class PlacedMap:
    """The maps of the cells of one source layer (and frame) as one overlay, placed in that layer's world."""

    source: Any  # the source layer
    frame: int | None  # the frame (data index on the layer's first axis) of a [T,] layer; None without one
    data: np.ndarray
    translate: tuple[float, ...]
    scale: tuple[float, ...]
    label_ids: list[int]


def place_maps(layers: Any, maps: Sequence[np.ndarray], rows: pd.DataFrame) -> list[PlacedMap]:
    """Group crop-sized maps ``([Z,] Y, X)`` by the source layer (and frame ``t``) of their crop table rows.

    ``maps[i]`` belongs to ``rows.iloc[i]`` (``source``, ``label_id``,
    bounding box, optional ``t``). One cell of a source is a crop-sized map
    on its box; several are pasted into one map of the source's size (larger
    value wins where boxes overlap).

    Raises
    ------
    InputError
        When a source layer is missing, or has other axes than ``[T,]`` plus the maps' spatial axes.
    """
    if len(maps) != len(rows):
        raise InputError(f"{len(maps)} maps for {len(rows)} crop table rows: give one map per cell")
    rows = rows.reset_index(drop=True)
    by_name = source_layers(layers, rows)
    spatial = np.ndim(maps[0]) if len(maps) else 0
    keyed = rows.assign(source=rows["source"].astype(str))
    keys = ["source", "t"] if "t" in rows.columns else ["source"]
    placed = []
    for key, part in keyed.groupby(keys, sort=False):
        name = key[0] if isinstance(key, tuple) else key
        layer = by_name[name]
        shape = tuple(layer.level_shapes[0]) if layer.multiscale else tuple(layer.data.shape)
        leading = len(shape) - spatial
        if leading not in (0, 1):
            raise InputError(
                f"layer {name!r} has {len(shape)} axes; Grad-CAM overlays support [T,] {'ZYX'[3 - spatial :]} layers"
            )
        index = (int(part["t"].iloc[0]),) if leading == 1 and "t" in part.columns else (0,) * leading
        data, translate, scale = source_overlay(
            [maps[i] for i in part.index],
            part,
            layer_shape=shape,
            layer_scale=layer.scale,
            layer_translate=layer.translate,
            leading_index=index,
        )
        frame = index[0] if leading else None
        placed.append(PlacedMap(layer, frame, data, translate, scale, part["label_id"].tolist()))
    return placed


def chosen_cells(
    crop_set: Any, cells: str, *, selection: Sequence[int] = (), selected: tuple[str, int, int | None] | None = None
) -> np.ndarray:
    """Positions in ``crop_set`` of the cells Grad-CAM runs on.

    ``cells`` is ``"selected cell"`` (``selected``: ``(source, label_id, t)``,
    e.g. from :func:`~napari_morphospace.viewer.layers.selected_cell`),
    ``"scatter selection"`` (the crop ids in ``selection``, all of which must
    be in the crop set), ``"group: <name>"`` or ``"all cells"``.
    """
    if crop_set is None:
        raise InputError("Grad-CAM needs the crops: build or load a crop set in the Cells widget first")
    table = crop_set.table
    if cells == "selected cell":
        if selected is None:
            raise InputError("no cell is selected: pick a cell's label in its Labels layer")
        return np.array([find_cell(table, *selected)])
    if cells == SCATTER_SELECTION:
        if not len(selection):
            raise InputError("no cells are selected in the scatter plot: lasso, box or click points there first")
        rows = np.flatnonzero(table["crop_id"].isin(selection).to_numpy())
        if rows.size < len(selection):
            raise InputError(
                f"{len(selection) - rows.size} selected cell(s) are not in the crop set of this viewer; "
                "plot the latents of this crop set in the scatter plot and select again"
            )
        return rows
    if cells == "all cells":
        return np.arange(len(table))
    if cells.startswith("group: "):
        group = cells.removeprefix("group: ")
        rows = np.flatnonzero(table["group"].astype(str).to_numpy() == group)
        if rows.size == 0:
            raise InputError(f"no crop of group {group!r} in the crop set")
        return rows
    raise InputError(
        f"unknown cell choice {cells!r}; use 'selected cell', {SCATTER_SELECTION!r}, 'group: <name>' or 'all cells'"
    )


class GradcamOverlay:
    """The one Grad-CAM layer of a viewer: the maps of the field (and frame) shown now, of all fields placed.

    ``show(placed, **about)`` keeps :func:`place_maps`' overlays and shows the
    one of the source the user looks at (the active source layer, else the
    topmost visible one); ``about`` (e.g. ``dim``, ``sign``) goes into the
    layer's ``metadata`` with ``source`` and ``label_ids``.
    """

    def __init__(self, viewer: Any, name: str = GRADCAM) -> None:
        self._viewer = weakref.ref(unwrap(viewer))
        self.maps: dict[str, dict[int | None, PlacedMap]] = {}
        self.about: dict[str, Any] = {}
        self.overlay = SourceOverlay(
            viewer,
            name,
            "image",
            self._render,
            colormap="inferno",
            blending="additive",
            opacity=0.7,
            contrast_limits=(0.0, 1.0),
        )
        unwrap(viewer).dims.events.current_step.connect(self._on_frame_changed)

    @property
    def layer(self) -> Image | None:
        """The Grad-CAM layer (None while nothing is shown)."""
        return self.overlay.layer

    def show(self, placed: Sequence[PlacedMap], **about: Any) -> Image | None:
        """Keep these overlays (replacing earlier ones) and show the one of the field shown now."""
        maps: dict[str, dict[int | None, PlacedMap]] = {}
        for part in placed:
            maps.setdefault(part.source.name, {})[part.frame] = part
        self.maps, self.about = maps, about
        self.overlay.set_sources(list({id(unwrap(part.source)): part.source for part in placed}.values()))
        return self.overlay.layer

    def _render(self, layer: Any, _current: Any) -> tuple[np.ndarray, dict] | None:
        """The overlay of the shown source layer at its shown frame (None: no map there)."""
        frames = self.maps.get(layer.name)
        viewer = self._viewer()
        if not frames or viewer is None:
            return None
        frame = None if None in frames else int(round(layer.world_to_data(viewer.dims.point)[0]))
        if frame not in frames:
            return None
        part = frames[frame]
        metadata = {**self.about, "source": layer.name, "label_ids": part.label_ids}
        return part.data, {"translate": part.translate, "scale": part.scale, "metadata": metadata}

    def _on_frame_changed(self, _event: Any = None) -> None:
        if any(None not in frames for frames in self.maps.values()):
            self.overlay.refresh()

    def remove(self) -> None:
        """Remove the layer and stop following the viewer."""
        viewer = self._viewer()
        if viewer is not None:
            viewer.dims.events.current_step.disconnect(self._on_frame_changed)
        self.overlay.remove()


def put_image(viewer: Any, name: str, data: np.ndarray, **kwargs: Any) -> Image:
    """Show ``data`` as image layer ``name``: updated in place when it exists with as many axes, else added.

    An updated layer takes the new data and :data:`PLACEMENT` from
    ``kwargs``; the rest of ``kwargs`` (colormap, blending, opacity...) is
    used only when the layer is added, so a style the user chose stays. The
    user's active layer stays active.
    """
    layers = viewer.layers
    if name in layers and isinstance(layers[name], Image) and layers[name].ndim == np.ndim(data):
        layer = layers[name]
        layer.data = data
        for key in PLACEMENT:
            if key in kwargs:
                setattr(layer, key, kwargs[key])
        return layer
    if name in layers:
        layers.remove(name)
    return add_quietly(viewer, "image", data, name=name, **kwargs)


def channel_colormaps_of(viewer: Any, channel_names: Sequence[str]) -> list[str]:
    """A colormap per channel: that of the user's image layer named like the channel, else a distinct default."""
    known = {layer.name: layer.colormap.name for layer in viewer.layers if isinstance(layer, Image) and not layer.rgb}
    return channel_colormaps(list(channel_names), known)


DEFAULT_CHANNEL_COLORMAPS = ("gray", "green", "magenta", "cyan", "yellow", "red", "blue")


def channel_colormaps(channel_names: Sequence[str], known: Mapping[str, str]) -> list[str]:
    """A colormap per decoded channel: the one of a shown layer named like the channel, else a default.

    ``known`` maps layer names to colormap names; a layer matches a channel
    when its name is the channel name or ends with ``" " + channel name``
    (the ``"<group> <channel>"`` layers of the readers and sample data). One
    channel defaults to gray; several channels cycle through green, magenta, cyan, …
    """
    defaults = DEFAULT_CHANNEL_COLORMAPS if len(channel_names) == 1 else DEFAULT_CHANNEL_COLORMAPS[1:]
    colormaps = []
    for index, channel in enumerate(channel_names):
        match = next((cmap for name, cmap in known.items() if name == channel or name.endswith(f" {channel}")), None)
        colormaps.append(match or defaults[index % len(defaults)])
    return colormaps


__all__ = [
    "GRADCAM",
    "GradcamOverlay",
    "PLACEMENT",
    "SCATTER_SELECTION",
    "chosen_cells",
    "PlacedMap",
    "channel_colormaps",
    "channel_colormaps_of",
    "place_maps",
    "put_image",
]
