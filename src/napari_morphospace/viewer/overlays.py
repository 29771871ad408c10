"""Result images in the viewer: maps placed on their cells in the source fields, and layers updated in place.

Qt-free, so a script with a viewer does what the Latent space and Classifier
widgets do:

* :func:`place_maps` — crop-sized maps (Grad-CAM) of cells grouped into one
  overlay per source layer (and frame), in that layer's world coordinates
  (:func:`~napari_morphospace.core.overlays.source_overlay` does the pixel
  arithmetic). The one implementation both widgets use.
* :func:`put_image` — show an image under a name: the layer of that name is
  updated in place (its style stays the user's), else added without taking
  the active layer from the user.
* :func:`channel_colormaps_of` — one colormap per channel, the one the user's
  image layer of that channel already has when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image

from ..core.errors import InputError
from ..core.overlays import channel_colormaps, source_overlay
from .layers import add_quietly, source_layers

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
                f"layer {name!r} has {len(shape)} axes; Grad-CAM overlays support [T,] {'ZYX'[3 - spatial:]} layers"
            )
        index = (int(part["t"].iloc[0]),) if leading == 1 and "t" in part.columns else (0,) * leading
        data, translate, scale = source_overlay(
            [maps[i] for i in part.index], part, layer_shape=shape, layer_scale=layer.scale,
            layer_translate=layer.translate, leading_index=index,
        )  # fmt: skip
        frame = index[0] if leading else None
        placed.append(PlacedMap(layer, frame, data, translate, scale, part["label_id"].tolist()))
    return placed


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


__all__ = ["PLACEMENT", "PlacedMap", "channel_colormaps_of", "place_maps", "put_image"]
