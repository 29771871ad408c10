"""Grad-CAM with our own hooks, for 2D and 3D networks on any device.

Grad-CAM (Selvaraju et al. 2017) shows which image regions raise a scalar
output: with activations A (N, K, [Z,] Y, X) of a convolutional layer and
gradients G of the target with respect to them, the weight of feature map k is
the spatial mean of G_k and the map is ReLU(Σ_k w_k·A_k), resized to the input.
The ``grad-cam`` package needs torchvision and OpenCV and has gaps in 3D, so
the forty lines below are ours.

Conventions
-----------
* Eval mode: BatchNorm uses running statistics and dropout is off, so the map
  of one sample does not depend on the other samples in the batch; the
  gradient of the *sum* of per-sample targets gives every sample its own
  gradient.
* Encoder maps target μ_k, the posterior mean, never a sampled z. A latent's
  sign is arbitrary and the ReLU discards negative evidence, so ask for both
  ``sign=+1`` and ``sign=-1``.
* Maps are normalised per image to [0, 1]; an all-zero map stays zero.
* Crop-sized maps are placed in the source image with :func:`place_in_source`
  (napari ``translate``/``scale``) or :func:`paste_into_source` (a full-size array).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from skimage.transform import resize

from ..cells.crop_set import bbox_columns
from ..errors import InputError
from ..models import MorphoVAE
from .traversal import evaluating, model_device

_INTERPOLATION = {2: "bilinear", 3: "trilinear"}


def _as_batch(x: Any) -> torch.Tensor:
    tensor = x.detach() if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    if tensor.ndim not in (4, 5):
        raise InputError(f"Grad-CAM needs a batch (N, C, Y, X) or (N, C, Z, Y, X); got shape {tuple(tensor.shape)}")
    return tensor.to(dtype=torch.float32)


def _resolve_layer(model: torch.nn.Module, layer: torch.nn.Module | None) -> torch.nn.Module:
    if layer is not None:
        return layer
    feature_layer = getattr(model, "feature_layer", None)
    if feature_layer is None:
        raise InputError(f"{type(model).__name__} has no feature_layer(): pass the convolutional layer as layer=")
    return feature_layer()


def gradcam(
    model: torch.nn.Module,
    x: Any,
    target: Callable[[torch.Tensor], torch.Tensor],
    *,
    layer: torch.nn.Module | None = None,
    normalize: bool = True,
    batch_size: int = 32,
) -> np.ndarray:
    """Grad-CAM of the per-sample scalar ``target(x)`` (shape (N,)) at ``layer``.

    Parameters
    ----------
    model : torch.nn.Module
        The network; put in eval mode for the call (its mode is restored after).
    x : array-like or torch.Tensor
        Input batch ``(N, C, [Z,] Y, X)``, float32; a selection of many cells is
        processed ``batch_size`` at a time (maps are batch-independent, so
        chunking changes nothing but memory use).
    target : callable
        Maps an input batch to one scalar per sample, e.g. ``lambda x: model.encode(x)[0][:, k]``.
    layer : torch.nn.Module, optional
        Layer whose output activations are used; ``model.feature_layer()`` when omitted.
    normalize : bool
        Divide each map by its maximum so it spans [0, 1]. Without it, maps
        keep their raw magnitude (to compare layers or channels of one model).

    Returns
    -------
    np.ndarray
        Maps ``(N, [Z,] Y, X)``, float32, non-negative, same spatial shape as ``x``.
    """
    layer = _resolve_layer(model, layer)
    device = model_device(model)
    with evaluating(model):
        maps = [
            _gradcam_batch(model, part.to(device), target, layer, normalize) for part in _as_batch(x).split(batch_size)
        ]
    return np.concatenate(maps)


def _gradcam_batch(
    model: torch.nn.Module,
    batch: torch.Tensor,
    target: Callable[[torch.Tensor], torch.Tensor],
    layer: torch.nn.Module,
    normalize: bool,
) -> np.ndarray:
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    with torch.enable_grad():
        batch = batch.requires_grad_(True)  # so activations need a gradient even in a frozen model
        try:
            scores = target(batch)
        finally:
            handle.remove()
        if not captured:
            raise InputError(
                f"the layer {type(layer).__name__} was not used when computing the target: "
                "choose a layer of this network"
            )
        activations = captured[-1]
        (gradients,) = torch.autograd.grad(scores.sum(), activations)
    spatial_axes = tuple(range(2, activations.ndim))
    weights = gradients.mean(dim=spatial_axes, keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=batch.shape[2:], mode=_INTERPOLATION[len(spatial_axes)], align_corners=False)[:, 0]
    if normalize:
        peak = cam.flatten(1).amax(dim=1).reshape(-1, *[1] * (cam.ndim - 1))
        cam = torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))
    return cam.cpu().numpy().astype(np.float32, copy=False)


def gradcam_encoder(
    model: MorphoVAE,
    x: Any,
    dim: int,
    *,
    sign: int = 1,
    layer: torch.nn.Module | None = None,
    cond: Any = None,
    normalize: bool = True,
) -> np.ndarray:
    """Grad-CAM of ``sign · μ_dim`` of a VAE encoder: the regions that push latent ``dim`` up (or down for ``sign=-1``).

    ``model.encode(x, cond=None)`` must return ``(mu, logvar)``. Returns maps
    ``(N, [Z,] Y, X)`` in [0, 1] (see :func:`gradcam`).
    """
    if sign not in (1, -1):
        raise InputError(f"sign must be +1 or -1 (the direction of the latent dimension); got {sign}")

    def target(batch: torch.Tensor) -> torch.Tensor:
        mu = model.encode(batch)[0] if cond is None else model.encode(batch, cond=cond)[0]
        if not 0 <= dim < mu.shape[1]:
            raise InputError(
                f"latent dimension {dim} does not exist: the encoder has dimensions 0 to {mu.shape[1] - 1}"
            )
        return sign * mu[:, dim]

    return gradcam(model, x, target, layer=layer, normalize=normalize)


def gradcam_classifier(
    model: torch.nn.Module,
    x: Any,
    class_index: int,
    *,
    layer: torch.nn.Module | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Grad-CAM of the logit of class ``class_index`` (``model(x)`` returns logits ``(N, n_classes)``)."""

    def target(batch: torch.Tensor) -> torch.Tensor:
        logits = model(batch)
        if not 0 <= class_index < logits.shape[1]:
            raise InputError(
                f"class {class_index} does not exist: the classifier has classes 0 to {logits.shape[1] - 1}"
            )
        return logits[:, class_index]

    return gradcam(model, x, target, layer=layer, normalize=normalize)


def _bbox(bbox_row: Any, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    columns = bbox_columns(ndim)
    try:
        values = np.array([float(bbox_row[c]) for c in columns]).reshape(ndim, 2)
    except KeyError as err:
        raise InputError(
            f"the crop table row has no bounding-box column {err}; a {ndim}D map needs {', '.join(columns)}"
        ) from err
    start, stop = values[:, 0], values[:, 1]
    if np.any(stop <= start):
        raise InputError(
            f"the bounding box {dict(zip(columns, values.reshape(-1), strict=True))} is empty: "
            "every stop must exceed its start"
        )
    return start, stop


def place_in_source(cam: np.ndarray, bbox_row: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Where a crop-sized map ``([Z,] Y, X)`` lies in source pixel coordinates, as napari ``(translate, scale)``.

    A crop shows exactly the bounding box ``[start, stop)`` of the crop table,
    resized to the crop size ``n``; one crop pixel spans ``s = (stop − start) / n``
    source pixels and the centre of crop pixel ``i`` sits at source coordinate
    ``start − 0.5 + s·(i + 0.5)`` (napari puts pixel centres on integer
    coordinates). So ``scale = s`` and ``translate = start − 0.5 + s/2``.
    Both are in source pixels: for a source layer with a physical scale,
    multiply both by that scale (and add the source layer's translate).
    """
    shape = np.asarray(np.shape(cam), dtype=float)
    if shape.size not in (2, 3):
        raise InputError(f"expected one 2D or 3D map; got shape {np.shape(cam)}")
    start, stop = _bbox(bbox_row, shape.size)
    scale = (stop - start) / shape
    translate = start - 0.5 + scale / 2
    return tuple(float(t) for t in translate), tuple(float(s) for s in scale)


def paste_into_source(cam: np.ndarray, bbox_row: Any, source_shape: tuple[int, ...], *, order: int = 1) -> np.ndarray:
    """Resample a crop-sized map into a zero array of the source's spatial shape, at the crop's bounding box.

    The map is resized to the box size with ``skimage.transform.resize``
    (``order`` 1: linear, 0: nearest) — the same pixel-area alignment as
    :func:`place_in_source` — and the part of the box inside the image is
    written (boxes of padded crops may extend past the edge). For export; in
    the viewer :func:`place_in_source` avoids the full-size copy.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != len(source_shape):
        raise InputError(
            f"the map has {cam.ndim} axes but the source shape {tuple(source_shape)} has {len(source_shape)}"
        )
    start, stop = _bbox(bbox_row, cam.ndim)
    start, stop = np.round(start).astype(int), np.round(stop).astype(int)
    resized = resize(cam, tuple(stop - start), order=order, mode="edge", anti_aliasing=False, preserve_range=True)
    out = np.zeros(tuple(source_shape), dtype=np.float32)
    lo = np.maximum(start, 0)
    hi = np.minimum(stop, source_shape)
    if np.any(hi <= lo):
        return out
    target = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    source = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
    out[target] = resized[source]
    return out


# --------------------------------------------------------------------------- maps on their cells in a source layer


def overlay_on_layer(
    cam: np.ndarray,
    bbox_row: Any,
    *,
    layer_scale: Sequence[float],
    layer_translate: Sequence[float],
    leading_index: Sequence[int] = (),
) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """Put a crop-sized map on its cell in a source layer: data, napari ``translate`` and ``scale`` in world units.

    Parameters
    ----------
    cam : np.ndarray
        One crop-sized map ``([Z,] Y, X)``.
    bbox_row : mapping
        The crop's row of the crop table (bounding box in source pixels).
    layer_scale, layer_translate : sequence of float
        The source layer's ``scale`` and ``translate`` (one per layer axis;
        rotation, shear and affine of the source layer are not supported).
    leading_index : sequence of int
        Data positions on the source layer's axes before the spatial ones
        (e.g. the time frame ``t`` of a ``(T, Y, X)`` layer). One per extra axis.

    Returns
    -------
    data : np.ndarray
        ``cam`` with a length-1 axis per leading index, so the overlay shows at that frame only.
    translate, scale : tuple of float
        With :func:`place_in_source` giving the
        map's placement ``(t_px, s_px)`` in source pixels, a map pixel ``i`` lies at
        world ``layer_translate + layer_scale · (t_px + s_px · i)``, so
        ``translate = layer_translate + layer_scale · t_px`` and ``scale = layer_scale · s_px``.
    """
    cam = np.asarray(cam)
    world_scale = np.asarray(layer_scale, dtype=float)
    world_translate = np.asarray(layer_translate, dtype=float)
    n_leading = len(layer_scale) - cam.ndim
    if n_leading < 0 or len(layer_translate) != len(layer_scale):
        raise InputError(
            f"a {cam.ndim}D map cannot be placed on a layer with {len(layer_scale)} axes; "
            "choose the source layer the crops were cut from"
        )
    if len(leading_index) != n_leading:
        raise InputError(
            f"the source layer has {n_leading} axis/axes before the spatial ones; give one index for each (e.g. t)"
        )
    place_translate, place_scale = place_in_source(cam, bbox_row)
    pixel_translate = np.r_[np.asarray(leading_index, dtype=float), place_translate]
    pixel_scale = np.r_[np.ones(n_leading), place_scale]
    translate = world_translate + world_scale * pixel_translate
    scale = world_scale * pixel_scale
    data = cam.reshape((1,) * n_leading + cam.shape)
    return data, tuple(float(v) for v in translate), tuple(float(v) for v in scale)


def paste_maps(cams: Sequence[np.ndarray], bbox_rows: Sequence[Any], source_shape: Sequence[int]) -> np.ndarray:
    """Paste crop-sized maps at their bounding boxes into one map of the source's spatial shape.

    Where boxes overlap, the larger value wins (``np.maximum``), so a cell's
    hot region is never hidden by a neighbour's cold one. Float32, zeros outside the boxes.
    """
    out = np.zeros(tuple(int(n) for n in source_shape), np.float32)
    for cam, row in zip(cams, bbox_rows, strict=True):
        np.maximum(out, paste_into_source(cam, row, tuple(out.shape)), out=out)
    return out


def source_overlay(
    maps: Sequence[np.ndarray],
    rows: pd.DataFrame,
    *,
    layer_shape: Sequence[int],
    layer_scale: Sequence[float],
    layer_translate: Sequence[float],
    leading_index: Sequence[int] = (),
) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """Crop-sized maps of cells of one source (and frame) as one overlay: data, napari ``translate``, ``scale``.

    One cell: the crop-sized map placed on its bounding box
    (:func:`overlay_on_layer`). Several: the
    maps pasted at their boxes into one map of the layer's spatial shape
    (larger value wins where boxes overlap) with the layer's own placement.
    ``layer_shape`` is the source layer's data shape (leading axes included);
    ``leading_index`` the position on each axis before the spatial ones (e.g. ``t``).
    """
    if len(maps) != len(rows) or len(maps) == 0:
        raise InputError(f"{len(maps)} maps for {len(rows)} crop table rows: give one map per cell, at least one")
    spatial = np.ndim(maps[0])
    n_leading = len(layer_shape) - spatial
    if len(leading_index) != n_leading:
        raise InputError(
            f"the source layer has {n_leading} axis/axes before the spatial ones; give one index for each (e.g. t)"
        )
    if len(maps) == 1:
        return overlay_on_layer(
            maps[0], rows.iloc[0], layer_scale=layer_scale, layer_translate=layer_translate, leading_index=leading_index
        )
    pasted = paste_maps(list(maps), [row for _, row in rows.iterrows()], tuple(layer_shape)[n_leading:])
    scale = tuple(float(s) for s in layer_scale)
    index = (*leading_index, *(0,) * spatial)
    translate = tuple(float(t) + float(s) * i for t, s, i in zip(layer_translate, layer_scale, index, strict=True))
    return pasted.reshape((1,) * n_leading + pasted.shape), translate, scale
