"""npe2 writer: save an image layer as OME-TIFF with its scale as physical pixel size.

A thin shell over :func:`napari_morphospace.core.io.stacks.write_stack`. The layer's
axes come from ``metadata["axes"]`` when our reader opened it, else from its
number of dimensions (``YX``, ``ZYX``, ``TZYX``, ``TCZYX``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.errors import InputError
from .core.io.stacks import Stack, write_stack

_AXES_BY_NDIM = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}
_NAPARI_TO_UNIT = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "second": "s", "millisecond": "ms"}


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one image layer (``data`` plus napari's layer ``meta``) to ``path``; return the written paths.

    napari's save dialog has already asked before replacing a file, so an
    existing file is overwritten.
    """
    if not path.lower().endswith((".tif", ".tiff")):
        path = f"{path}.ome.tif"
    stack = layer_to_stack(data, meta)
    return [str(write_stack(path, stack, overwrite=True))]


def layer_to_stack(data: Any, meta: dict[str, Any]) -> Stack:
    """A :class:`Stack` from image layer data and its napari attributes (name, scale, rgb, metadata, units)."""
    rgb = bool(meta.get("rgb", False))
    layer_ndim = data.ndim - 1 if rgb else data.ndim
    layer_axes = _layer_axes(meta, layer_ndim)
    scale_values = list(meta.get("scale") or [1.0] * layer_ndim)
    scale = {axis: float(value) for axis, value in zip(layer_axes, scale_values, strict=True)}
    units = _layer_units(meta, layer_axes)
    name = str(meta.get("name") or "image")
    if rgb:
        # RGB samples are the last array axis; a Stack keeps them as C in TCZYX order.
        axes = "".join(a for a in "TCZYX" if a in layer_axes + "C")
        data = np.moveaxis(data, -1, axes.index("C"))
        channel_names = ["red", "green", "blue", "alpha"][: data.shape[axes.index("C")]]
        return Stack(data=data, axes=axes, scale=scale, channel_names=channel_names, units=units, rgb=True)
    n_channels = data.shape[layer_axes.index("C")] if "C" in layer_axes else 1
    names = [name] if n_channels == 1 else [f"{name} ch{i}" for i in range(n_channels)]
    scale.pop("C", None)
    return Stack(data=data, axes=layer_axes, scale=scale, channel_names=names, units=units)


def _layer_axes(meta: dict[str, Any], ndim: int) -> str:
    """Axes from the layer's metadata when they fit its dimensions, else the usual order for that many dimensions."""
    axes = str((meta.get("metadata") or {}).get("axes", ""))
    if len(axes) == ndim and all(a in "TCZYX" for a in axes):
        return axes
    if ndim not in _AXES_BY_NDIM:
        raise InputError(f"cannot save a {ndim}-dimensional layer as OME-TIFF; it needs 2 to 5 dimensions (TCZYX)")
    return _AXES_BY_NDIM[ndim]


def _layer_units(meta: dict[str, Any], axes: str) -> dict[str, str]:
    """Units from our reader's metadata, else napari's per-axis units (``pixel`` means none)."""
    saved = (meta.get("metadata") or {}).get("units")
    if isinstance(saved, dict):
        return {a: str(u) for a, u in saved.items() if a in axes}
    napari_units = meta.get("units") or ()
    units = {}
    for axis, unit in zip(axes, napari_units, strict=False):  # no units in the layer's data: none to copy
        text = str(unit)
        if text not in ("pixel", "") and axis != "C":
            units[axis] = _NAPARI_TO_UNIT.get(text, text)
    return units
