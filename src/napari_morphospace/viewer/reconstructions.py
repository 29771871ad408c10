"""The "reconstruction preview" layer of a training: validation crops over what the model makes of them.

napari-aware, Qt-free. The Train widget (or a script training with
``core.training.engine.train(..., on_update=...)``) hands each
:class:`~napari_morphospace.core.training.engine.ReconstructionPreview` to
:func:`show_reconstructions`. The layer is written in place (same array, no
new extent or contrast limits): a redraw of napari's canvas costs 100-200 ms
of GUI time with software OpenGL, and adding a layer about 250 ms, which
:func:`add_preview_layer` pays when training starts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.figures.gallery import crop_montage
from ..core.training.engine import PREVIEW_CROPS, ReconstructionPreview

PREVIEW_LAYER = "reconstruction preview"


def show_reconstructions(viewer: Any, preview: ReconstructionPreview) -> Any:
    """Validation crops (top row) over their reconstructions (bottom row), one RGB layer updated in place;
    returns it."""
    picture = crop_montage(
        np.concatenate([preview.originals, preview.reconstructions]), n_columns=len(preview.originals)
    )
    if PREVIEW_LAYER in viewer.layers:
        layer = viewer.layers[PREVIEW_LAYER]
        if (
            isinstance(layer.data, np.ndarray)
            and layer.data.shape == picture.shape
            and layer.data.dtype == picture.dtype
        ):
            # In place: setting .data would recompute dims, extent and contrast limits.
            layer.data[...] = picture
            layer.refresh(extent=False)
        else:
            layer.data = picture
    else:
        layer = viewer.add_image(picture, name=PREVIEW_LAYER, rgb=True, **preview_placement(viewer, picture))
    stage = "" if preview.stage == "model" else f" ({preview.stage} model)"
    layer.metadata["description"] = f"top: validation crops, bottom: reconstructions, epoch {preview.epoch + 1}{stage}"
    return layer


def preview_placement(viewer: Any, picture: np.ndarray) -> dict[str, Any]:
    """Scale and place the preview to the right of the other layers, about half their height."""
    others = [layer for layer in viewer.layers if layer.ndim >= 2]
    if not others:
        return {}
    extent = np.asarray(viewer.layers.extent.world)[:, -2:]
    height = float(extent[1, 0] - extent[0, 0])
    width = float(extent[1, 1] - extent[0, 1])
    if not (height > 0 and width > 0):
        return {}
    scale = 0.5 * height / picture.shape[0]
    return {"scale": (scale, scale), "translate": (float(extent[0, 0]), float(extent[1, 1] + 0.05 * width))}


def add_preview_layer(viewer: Any, crop_shape: tuple[int, ...], *, resume: bool) -> None:
    """Add an empty preview layer for this run, or mark the one there as from the previous run.

    Adding a layer costs napari about 250 ms of GUI time: paid on the click,
    not mid-training when the first reconstructions arrive (they are then
    written into this layer's array).
    """
    if PREVIEW_LAYER in viewer.layers:
        if not resume:
            viewer.layers[PREVIEW_LAYER].metadata["description"] = "from the previous run"
        return
    empty = np.zeros((2 * PREVIEW_CROPS, 1, *crop_shape[-2:]), np.float32)
    picture = crop_montage(empty, n_columns=PREVIEW_CROPS)
    layer = viewer.add_image(picture, name=PREVIEW_LAYER, rgb=True, **preview_placement(viewer, picture))
    layer.metadata["description"] = "waiting for the first reconstructions"
