"""Decoded cells in the viewer: where they appear, and the traversal grids and difference maps that go with them.

Qt-free: the Latent space widget shows its results with these functions, and a
script with a viewer can too. The decoded cell appears where the user looks
(:func:`decoded_translate`): next to the cell it starts from, else in the
corner of the current view, else beside all data. Traversal grids lie right of
the decoded cell (:func:`show_grid`), difference maps on it
(:func:`show_difference`), so the eye does not travel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Labels

from ..core.analysis.difference import threshold_map
from .features import source_names
from .layers import place_in_view
from .overlays import channel_colormaps_of, put_image

DECODED = "decoded cell"
GRID = "traversal grid"
GROUP_GRID = "group traversals"
ABS_DIFFERENCE = "difference |Δ|"
SSIM_DIFFERENCE = "difference 1−SSIM"
#: The difference overlays: layer name, key of :func:`~napari_morphospace.core.analysis.difference.compare_images`,
#: colormap.
DIFFERENCE_LAYERS = ((ABS_DIFFERENCE, "abs", "inferno"), (SSIM_DIFFERENCE, "dissimilarity", "magma"))
GAP = 0.15  # between the decoded cell and what lies beside it, as a share of its width


def crop_spacing(crop_set: Any, spatial_ndim: int) -> tuple[float, ...]:
    """Physical size of one crop pixel, from ``crop_set`` when it has one of this dimensionality (else 1 each)."""
    spacing = tuple(getattr(crop_set, "spacing", ()) or ())
    return tuple(float(s) for s in spacing) if len(spacing) == spatial_ndim else (1.0,) * spatial_ndim


def decoded_layer(viewer: Any) -> Image | None:
    """The (first channel's) decoded-cell layer, or None before the first decode."""
    return next((lay for lay in viewer.layers if lay.name.startswith(DECODED) and isinstance(lay, Image)), None)


def show_decoded(
    viewer: Any,
    image: np.ndarray,
    channel_names: Sequence[str] = (),
    *,
    spacing: Sequence[float] | None = None,
    name: str = DECODED,
) -> list[Image]:
    """Show a decoded image ``(C, [Z,] Y, X)``: one layer ``name`` (one channel) or ``"name <channel>"`` per channel.

    Layers that exist are updated in place (live decoding); several channels
    get the colormaps of the user's channel layers, blended additively.
    """
    spacing = tuple(spacing) if spacing is not None else (1.0,) * (image.ndim - 1)
    if image.shape[0] == 1:
        return [put_image(viewer, name, image[0], colormap="gray", scale=spacing, contrast_limits=(0.0, 1.0))]
    names = list(channel_names) if len(channel_names) == image.shape[0] else [str(c) for c in range(image.shape[0])]
    colormaps = channel_colormaps_of(viewer, names)
    return [
        put_image(
            viewer,
            f"{name} {channel}",
            image[c],
            colormap=cmap,
            scale=spacing,
            contrast_limits=(0.0, 1.0),
            blending="additive",
        )
        for c, (channel, cmap) in enumerate(zip(names, colormaps, strict=True))
    ]


def cell_box(viewer: Any, row: Mapping[str, Any] | pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """World corners (top-left, bottom-right) of a cell of a crop or latent table row,
    when its layer is in the viewer."""
    if not {"source", "y_start", "y_stop", "x_start", "x_stop"} <= set(row.keys()):
        return None
    layer = next(
        (lay for lay in viewer.layers if isinstance(lay, Labels) and str(row["source"]) in source_names(lay)), None
    )
    if layer is None:
        return None
    leading = [int(row["t"])] if layer.ndim > 2 and "t" in row.keys() else [0] * (layer.ndim - 2)
    corners = [
        [*leading, row["y_start"] - 0.5, row["x_start"] - 0.5],
        [*leading, row["y_stop"] - 0.5, row["x_stop"] - 0.5],
    ]
    low, high = (np.asarray(layer.data_to_world(c), float) for c in corners)
    return low, high


def decoded_translate(viewer: Any, layer: Image, anchor: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Where a decoded-cell ``layer`` goes: right of ``anchor`` (a :func:`cell_box`), else the view's top-left corner.

    In 3D or before the canvas has a size the view is unknown: then just
    left of every other layer's extent.
    """
    if layer.ndim >= 2:
        size = np.asarray(layer.data.shape[-2:], float) * np.asarray(layer.scale[-2:], float)
        corner = place_in_view(viewer, size, anchor)
        if corner is not None:
            translate = np.zeros(layer.ndim)
            translate[-2:] = corner
            return translate
    return beside_data(viewer, layer)


def beside_data(viewer: Any, layer: Image) -> np.ndarray:
    """A translate that puts ``layer`` just left of every other layer's extent (world coordinates)."""
    others = [other for other in viewer.layers if other is not layer and not other.name.startswith(DECODED)]
    if not others:
        return np.zeros(layer.ndim)
    extents = [other.extent.world[0][-layer.ndim :] for other in others if other.ndim >= layer.ndim]
    translate = np.array(np.min(extents or [np.zeros(layer.ndim)], axis=0), dtype=float)
    translate[-1] -= (1 + GAP) * layer.data.shape[-1] * layer.scale[-1]
    return translate


def place_decoded(viewer: Any, layers: Sequence[Image], anchor: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Move the decoded-cell layers (one per channel) to where the user looks (:func:`decoded_translate`)."""
    for layer in layers:
        layer.translate = decoded_translate(viewer, layer, anchor)


def show_grid(
    viewer: Any,
    grid: np.ndarray,
    *,
    name: str = GRID,
    row_axis: str = "dimension",
    spacing: Sequence[float] | None = None,
) -> Image:
    """A traversal grid ``(rows, steps, C, [Z,] Y, X)`` as layer ``name``,
    right of the decoded cell when there is one (2D)."""
    spatial = grid.ndim - 3
    labels = (row_axis, "step", "channel", *("zyx"[3 - spatial :]))
    scale = (1.0, 1.0, 1.0, *(spacing if spacing is not None else (1.0,) * spatial))
    translate = np.zeros(grid.ndim)
    decoded = decoded_layer(viewer)
    if decoded is not None and spatial == 2:  # right of the decoded cell, where the user is looking
        width = decoded.data.shape[-1] * decoded.scale[-1]
        translate[-2:] = np.asarray(decoded.translate[-2:], float) + [0.0, (1 + GAP) * width]
    layer = put_image(
        viewer,
        name,
        grid,
        colormap="gray",
        scale=scale,
        contrast_limits=(0.0, 1.0),
        axis_labels=labels,
        translate=translate,
    )
    layer.axis_labels = labels
    return layer


def show_difference(
    viewer: Any, maps: Mapping[str, Any], *, quantile: float = 0.9, spacing: Sequence[float] | None = None
) -> list[Image]:
    """The difference maps (:func:`~napari_morphospace.core.analysis.difference.compare_images`) on the decoded cell.

    The maps' channels ``(C, [Z,] Y, X)`` are reduced by their maximum, so
    one overlay shows where any channel changed most. Each map shows only
    changes at or above its ``quantile`` (0 shows everything), in
    ``"difference |Δ|"`` and ``"difference 1−SSIM"``; a map that could not be
    computed (SSIM of a thin volume) removes its layer. ``maps["what"]``,
    when given, goes into each layer's ``metadata["difference"]``.
    """
    shown = []
    for name, key, colormap in DIFFERENCE_LAYERS:
        if maps[key] is None:
            if name in viewer.layers:
                viewer.layers.remove(name)
            continue
        raw = np.asarray(maps[key]).max(axis=0)
        decoded = decoded_layer(viewer)  # the maps lie on the decoded cell: where it changes
        translate = decoded.translate if decoded is not None and decoded.ndim == raw.ndim else np.zeros(raw.ndim)
        layer = put_image(
            viewer,
            name,
            threshold_map(raw, quantile=quantile),
            colormap=colormap,
            blending="additive",
            opacity=0.8,
            scale=spacing if spacing is not None else (1.0,) * raw.ndim,
            contrast_limits=(0.0, max(float(raw.max()), 1e-3)),
            translate=translate,
        )
        layer.metadata["difference"] = maps.get("what", "")
        shown.append(layer)
    return shown


__all__ = [
    "ABS_DIFFERENCE",
    "DECODED",
    "GRID",
    "GROUP_GRID",
    "SSIM_DIFFERENCE",
    "beside_data",
    "cell_box",
    "crop_spacing",
    "decoded_layer",
    "decoded_translate",
    "place_decoded",
    "show_decoded",
    "show_difference",
    "show_grid",
]
