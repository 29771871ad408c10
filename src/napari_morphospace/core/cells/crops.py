"""Single-cell crops from Labels, Points and boxes, and a patch grid over z-slices.

Every builder returns a :class:`~napari_morphospace.core.cells.crop_set.CropSet`: crops
``(N, C, [Z,] Y, X)`` float32 in [0, 1] and one table row per crop whose
bounding box (``[z_start, z_stop,] y_start, y_stop, x_start, x_stop``, in
source pixels, stop exclusive) is the region of the source the crop shows
before any resize.

Axes are explicit: pass a :class:`~napari_morphospace.core.io.stacks.Stack`, or an
array with an ``axes`` string drawn from ``TCZYX`` (any order; a plain 2D array
needs none). Labels, points and boxes use the image's axes without ``C``, in
``[T,] [Z,] Y, X`` order.

Intensities are scaled to [0, 1] with one range per channel computed once for
the whole source (``normalise="percentiles"``: the 0.1 and 99.9 percentiles of
all its pixels, all time points and slices; ``"dtype"``: the integer dtype's
range, or identity for float images already in [0, 1]), never per crop, so
brightness differences between cells survive. An optional
:class:`~napari_morphospace.core.cells.preprocess.PreprocessPipeline` then runs on
each crop with the object's mask. Pixels outside the image are 0 in the crop.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage import filters, segmentation, transform, util

from ..config import to_dict
from ..errors import InputError
from ..io.stacks import AXES_ORDER, Stack
from . import crop_set as data_module
from .crop_set import CropFormat, CropSet, CropSetWriter, check_crop_set_target, check_joinable, concat_crop_sets

if TYPE_CHECKING:
    from .preprocess import PreprocessPipeline

ProgressCallback = Callable[[int, int], None]

# Percentiles and Otsu thresholds are computed from at most this many pixels per channel
# (a regular Y/X subsample of larger sources), so a lazy stack is read once, coarsely.
_INTENSITY_SAMPLE = 2**24
# Crops are cut, scaled and handed on in batches of at most this many bytes (float32 crops).
_BATCH_BYTES = 2**25
# A lazy image is read in regions of whole chunks up to about this size (all channels).
_REGION_BYTES = 2**27
# Objects are measured (np.bincount) over slabs of a label image of about this many pixels.
_SLAB_PIXELS = 2**22
# Crops are scaled to [0, 1] (in float64) this many pixels at a time.
_SCALE_PIXELS = 2**18
# Labels with larger ids are relabelled first, so find_objects does not list millions of unused ids.
_MAX_DIRECT_LABEL = 2**20


class CropCancelled(Exception):
    """Raised when ``stop_event`` is set: the crop builder stopped and wrote nothing."""


@dataclass
class CropSettings:
    """How to cut one crop per object (Labels), point or box.

    Attributes
    ----------
    size : int or tuple of int
        Output spatial size in pixels; an int is used for every spatial axis,
        a tuple gives ``(Y, X)`` or ``(Z, Y, X)``.
    mode : {"fixed", "fit"}
        ``"fixed"``: a box of exactly ``size`` source pixels centred on the
        object's centroid, not resampled, so object size is preserved (larger
        objects are cut, with a warning). ``"fit"``: the object's bounding box
        plus ``padding``, widened to the aspect ratio of ``size`` (square or
        cubic for an int) and resized to ``size``, so shape is preserved but
        not size.
    padding : int
        Pixels added around the bounding box in ``"fit"`` mode.
    mask_neighbours : bool
        Zero pixels of other labels inside the crop; background stays.
    mask_background : bool
        Zero everything outside the object (implies masking neighbours).
    min_area : int
        Objects with fewer pixels (voxels) are skipped, with a warning counting them.
    exclude_border : bool
        Skip objects touching the image border (they are cut off by the image).
    channels : list of int, optional
        Channel indices to keep, in this order; all channels when ``None``.
    normalise : {"percentiles", "dtype"}
        How raw intensities become [0, 1], per channel, once per source
        (see the module docstring).
    percentiles : tuple of float
        Low and high percentiles for ``normalise="percentiles"``.
    """

    size: int | tuple[int, ...] = 64
    mode: Literal["fixed", "fit"] = "fixed"
    padding: int = 4
    mask_neighbours: bool = True
    mask_background: bool = False
    min_area: int = 10
    exclude_border: bool = False
    channels: list[int] | None = None
    normalise: Literal["percentiles", "dtype"] = "percentiles"
    percentiles: tuple[float, float] = (0.1, 99.9)

    def __post_init__(self) -> None:
        sizes = (self.size,) if isinstance(self.size, int) else tuple(self.size)
        if not sizes or len(sizes) > 3 or any(int(s) < 1 for s in sizes):
            raise InputError(f"crop size {self.size!r} must be a positive int or a (Y, X) / (Z, Y, X) tuple of them")
        if self.mode not in ("fixed", "fit"):
            raise InputError(f"crop mode {self.mode!r} is not one of 'fixed', 'fit'")
        if self.padding < 0 or self.min_area < 0:
            raise InputError(f"padding ({self.padding}) and min_area ({self.min_area}) must not be negative")
        _check_intensity_settings(self.normalise, self.percentiles)


@dataclass
class PatchSettings:
    """A regular grid of 2D patches over every z-slice, kept where there is enough foreground.

    Attributes
    ----------
    patch_size : int
        Side of a square patch in source pixels (no resampling).
    patch_stride : int, optional
        Step between patch origins; ``None`` means ``patch_size`` (no overlap).
    min_foreground : float
        Keep a patch when at least this fraction of its pixels is foreground:
        above the channel's Otsu threshold, computed once over the whole stack,
        in any channel.
    channels, normalise, percentiles
        As in :class:`CropSettings`.
    """

    patch_size: int = 64
    patch_stride: int | None = None
    min_foreground: float = 0.1
    channels: list[int] | None = None
    normalise: Literal["percentiles", "dtype"] = "percentiles"
    percentiles: tuple[float, float] = (0.1, 99.9)

    def __post_init__(self) -> None:
        if self.patch_size < 1 or (self.patch_stride is not None and self.patch_stride < 1):
            raise InputError(f"patch_size ({self.patch_size}) and patch_stride ({self.patch_stride}) must be positive")
        if not 0 <= self.min_foreground <= 1:
            raise InputError(f"min_foreground {self.min_foreground} must be a fraction between 0 and 1")
        _check_intensity_settings(self.normalise, self.percentiles)


def _check_intensity_settings(normalise: str, percentiles: Sequence[float]) -> None:
    if normalise not in ("percentiles", "dtype"):
        raise InputError(f"normalise {normalise!r} is not one of 'percentiles', 'dtype'")
    if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
        raise InputError(f"percentiles {tuple(percentiles)} must be (low, high) with 0 <= low < high <= 100")


# --------------------------------------------------------------------------- the source image


@dataclass
class _Source:
    """An image brought to ``(T, C, [Z,] Y, X)`` (numpy or dask; length-1 T/C added when missing)."""

    data: Any
    has_time: bool
    channel_names: list[str]
    scale: tuple[float, ...]  # physical pixel size per spatial axis; () when the image gives none
    name: str
    low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    high: np.ndarray = field(default_factory=lambda: np.ones(0))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape[2:])

    @property
    def spatial_ndim(self) -> int:
        return self.data.ndim - 2

    @property
    def object_shape(self) -> tuple[int, ...]:
        """Shape labels must have: ``[T,] [Z,] Y, X``."""
        return ((int(self.data.shape[0]),) if self.has_time else ()) + self.spatial_shape

    @property
    def lazy(self) -> bool:
        """True for a dask image (a large file opened lazily), which is read region by region."""
        return not isinstance(self.data, np.ndarray)

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """Spatial chunk size of a lazy image (its largest chunk per axis); the whole image otherwise."""
        chunks = getattr(self.data, "chunks", None)
        if self.lazy and chunks and isinstance(chunks[0], tuple):
            return tuple(max(c) for c in chunks[2:])
        return self.spatial_shape


def _as_source(image: Stack | Any, axes: str | None, channels: list[int] | None, source: str) -> _Source:
    """Check the axes, move them to ``TCZYX`` order and select channels."""
    if isinstance(image, Stack):
        data, axes = image.data, image.axes
        names, scale, name = list(image.channel_names), _known_scale(image), source or image.source
    else:
        data, names, scale, name = image, [], {}, source
        if not hasattr(data, "ndim") or not hasattr(data, "shape"):
            data = np.asarray(data)
    axes = _check_axes(axes, data.shape)
    if np.dtype(data.dtype).kind not in "biuf":
        raise InputError(f"image dtype {data.dtype} is not supported; give an integer or float image")
    if 0 in data.shape:
        raise InputError(f"the image of shape {tuple(data.shape)} is empty; give an image with pixels")
    try:
        str(name).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"the file name {str(name).encode('utf-8', 'surrogateescape')!r} is not valid UTF-8 text, "
            "so the crop table "
            "cannot record where the crops come from; rename the file (letters, digits, spaces are fine)"
        ) from None
    present = [a for a in AXES_ORDER if a in axes]
    data = data.transpose([axes.index(a) for a in present])
    if "C" not in axes:
        data = data[:, None] if "T" in axes else data[None]
    if "T" not in axes:
        data = data[None]
    n_channels = int(data.shape[1])
    if len(names) != n_channels:
        names = [f"channel {i}" for i in range(n_channels)]
    if channels is not None:
        bad = [c for c in channels if not -n_channels <= c < n_channels]
        if bad or not channels:
            raise InputError(
                f"channels {channels} do not select from an image with {n_channels} channel(s); "
                f"choose indices 0 to {n_channels - 1}"
            )
        data = data[:, list(channels)]
        names = [names[c] for c in channels]
    return _Source(
        data=data,
        has_time="T" in axes,
        channel_names=names,
        scale=tuple(float(scale.get(a, 1.0)) for a in "ZYX" if a in axes) if scale else (),
        name=str(name),
    )


def _known_scale(image: Stack) -> dict[str, float]:
    """The pixel size of a stack, or ``{}`` when the file gives none (crops then record no spacing).

    A reader sets 1.0 where a file has no pixel size; a size is known when
    it has a unit or differs from 1.0, so 1 µm is never invented.
    """
    spatial = [a for a in "ZYX" if a in image.axes]
    known = any(a in image.units or image.scale.get(a, 1.0) != 1.0 for a in spatial)
    return dict(image.scale) if known else {}


def _check_axes(axes: str | None, shape: tuple[int, ...]) -> str:
    """Validate an axes string against the array shape, with a hint for RGB(A) images."""
    shape = tuple(int(s) for s in shape)
    rgb_hint = (
        f"; its last axis of length {shape[-1]} looks like RGB colour channels: move it to the front "
        "(np.moveaxis(image, -1, 0)) and name it C"
        if shape and shape[-1] in (3, 4)
        else ""
    )
    if axes is None:
        if len(shape) != 2:
            raise InputError(
                f"the image has shape {shape}; say which axis is which with axes= (letters from {AXES_ORDER}, "
                f"e.g. 'CYX', 'ZYX' or 'TCZYX'){rgb_hint}"
            )
        axes = "YX"
    axes = axes.upper()
    if len(axes) != len(shape):
        raise InputError(
            f"axes {axes!r} name {len(axes)} axes but the image has {len(shape)} (shape {shape}){rgb_hint}"
        )
    if any(a not in AXES_ORDER for a in axes) or len(set(axes)) != len(axes) or not {"Y", "X"} <= set(axes):
        raise InputError(f"axes {axes!r} must be distinct letters from {AXES_ORDER} and include Y and X")
    if axes[-1] == "X" and shape[-1] in (3, 4):
        raise InputError(f"the image (shape {shape}, axes {axes!r}) is only {shape[-1]} pixels wide{rgb_hint}")
    return axes


def _set_intensity_range(src: _Source, normalise: str, percentiles: Sequence[float]) -> None:
    """Fix the per-channel [low, high] that maps raw intensities to [0, 1], once for the whole source."""
    dtype = np.dtype(src.data.dtype)
    if normalise == "dtype" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        src.low = np.full(src.data.shape[1], float(info.min))
        src.high = np.full(src.data.shape[1], float(info.max))
        return
    if normalise == "dtype" and dtype.kind == "b":
        src.low, src.high = np.zeros(src.data.shape[1]), np.ones(src.data.shape[1])
        return
    samples = _channel_samples(src.data)
    if normalise == "dtype":
        low, high = min(s.min() for s in samples), max(s.max() for s in samples)
        if low < 0 or high > 1:
            raise InputError(
                f"the float image has values {low:g}..{high:g}, but normalise='dtype' needs a float image in [0, 1]; "
                "use normalise='percentiles'"
            )
        src.low, src.high = np.zeros(len(samples)), np.ones(len(samples))
        return
    src.low, src.high = np.array([_percentiles(s, percentiles) for s in samples]).T
    flat = [i for i, (a, b) in enumerate(zip(src.low, src.high, strict=True)) if not b > a]
    if flat:
        warnings.warn(
            f"{src.name or 'the image'}: channel(s) {', '.join(map(str, flat))} have the same value at the "
            f"{percentiles[0]} and {percentiles[1]} percentiles (a constant or nearly empty channel), so their crops "
            "carry little or no information; check the image or choose other channels",
            stacklevel=4,
        )


def _percentiles(values: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, percentiles)``, computed from a histogram for 8- and 16-bit integers.

    Sorting millions of pixels per channel was a large part of cutting a
    field; counting them gives the same order statistics, and the
    interpolation below is numpy's ("linear") step for step, so the result
    is identical.
    """
    if values.dtype.kind not in "ub" or values.dtype.itemsize > 2:
        return np.percentile(values, percentiles)
    cumulative = np.cumsum(np.bincount(values.ravel()))
    n = values.size
    q = np.true_divide(percentiles, 100)
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    gamma = virtual - previous
    ranks = np.clip(np.stack([previous, previous + 1]), 0, n - 1)
    lower, upper = np.searchsorted(cumulative, ranks, side="right").astype(float)  # the values of those ranks
    difference = upper - lower
    return np.where(gamma >= 0.5, upper - difference * (1 - gamma), lower + difference * gamma)


def _channel_samples(data: Any) -> list[np.ndarray]:
    """The finite pixel values of each channel, from a regular sample of at most ``_INTENSITY_SAMPLE`` pixels.

    A small source is used whole. A larger one gives evenly spaced planes
    (time points and z-slices), each on a regular Y/X subsample when one
    plane alone is too large, so a lazy stack reads only the sampled planes.
    """
    shape = tuple(int(s) for s in data.shape)
    height, width = shape[-2:]
    step = max(1, math.ceil(math.sqrt(height * width / _INTENSITY_SAMPLE)))
    per_plane = math.ceil(height / step) * math.ceil(width / step)
    plane_counts = (shape[0],) + shape[2:-2]  # T, and Z for a 3D source
    n_planes = math.prod(plane_counts)
    n_sampled = min(n_planes, max(1, _INTENSITY_SAMPLE // per_plane))
    chosen = np.unique(np.linspace(0, n_planes - 1, n_sampled).round().astype(np.int64))
    planes = []
    for flat in chosen:
        t, *z = (int(i) for i in np.unravel_index(flat, plane_counts))
        plane = (t, slice(None), *z, slice(None, None, step), slice(None, None, step))
        planes.append(np.asarray(data[plane]))
    samples = []
    for index in range(shape[1]):
        values = np.concatenate([plane[index].ravel() for plane in planes])
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size == 0:
            raise InputError(f"channel {index} has no finite pixel (all NaN or inf); remove it with channels=")
        samples.append(values)
    return samples


# --------------------------------------------------------------------------- cutting boxes


def _clip_box(
    start: Sequence[int], stop: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the part of box [start, stop) inside an image of ``shape``, and where it lands in the crop."""
    source, target = [], []
    for lo, hi, n in zip(start, stop, shape, strict=True):
        a, b = min(max(lo, 0), n), max(min(hi, n), 0)
        b = max(a, b)
        source.append(slice(a, b))
        target.append(slice(a - lo, b - lo))
    return tuple(source), tuple(target)


def _regions(src: _Source, t: int, start: np.ndarray, stop: np.ndarray) -> Iterator[tuple[np.ndarray, Any, np.ndarray]]:
    """``(positions, region, origin)``: the image at ``t`` under the boxes at ``positions``, read once for all.

    An in-memory image is one region, the whole image (no copy). A lazy
    image is read one region per group of boxes that start in the same block
    of whole chunks (as large as ``_REGION_BYTES`` allows), so each chunk is
    decoded about once, not once per box: a TIFF page is one chunk, and
    reading crop by crop decoded the whole page of every channel per crop.
    """
    if not src.lazy:
        yield np.arange(len(start)), src.data[t], np.zeros(src.spatial_ndim, np.int64)
        return
    shape = np.array(src.spatial_shape)
    block = _read_block(src, (stop - start).max(axis=0))
    keys = np.clip(start, 0, shape - 1) // block
    order = np.lexsort(keys.T[::-1])
    boundaries = np.flatnonzero((np.diff(keys[order], axis=0) != 0).any(axis=1)) + 1
    for positions in np.split(order, boundaries):
        low = np.clip(start[positions].min(axis=0), 0, shape)
        high = np.clip(stop[positions].max(axis=0), 0, shape)
        region = np.asarray(src.data[(t, slice(None)) + tuple(slice(a, b) for a, b in zip(low, high, strict=True))])
        yield positions, region, low


def _read_block(src: _Source, box: np.ndarray) -> np.ndarray:
    """Spatial size of the blocks a lazy source is read in: whole chunks, doubled while the region fits."""
    shape = np.array(src.spatial_shape)
    chunk = np.maximum(np.array(src.chunk_shape), 1)
    itemsize = np.dtype(src.data.dtype).itemsize * int(src.data.shape[1])
    block = chunk.copy()
    while (block < shape).any():
        wider = np.minimum(block * 2, shape)
        if math.prod(int(b) for b in np.minimum(wider + box, shape)) * itemsize > _REGION_BYTES:
            break
        block = wider
    return block


def _cut(
    region: np.ndarray, origin: np.ndarray, start: np.ndarray, box: tuple[int, ...]
) -> tuple[np.ndarray, list[tuple[int, tuple[slice, ...]]]]:
    """The boxes of shape ``box`` starting at ``start`` cut from ``region`` (whose first pixel is ``origin``).

    ``region`` has a leading channel axis; the result is ``(n, C, *box)`` in
    the region's dtype, 0 outside the image. Boxes inside the image are
    gathered in one indexing operation on a sliding-window view; the few cut
    off by the image edge are copied one by one, and returned as
    ``(i, target slices)`` so they can be zeroed outside the image later.
    """
    n, spatial = len(start), region.shape[1:]
    local = start - origin
    out = np.zeros((n, region.shape[0]) + box, region.dtype)
    inside = (local >= 0).all(axis=1) & (local + np.array(box) <= np.array(spatial)).all(axis=1)
    if inside.any():
        windows = np.lib.stride_tricks.sliding_window_view(region, box, axis=tuple(range(1, region.ndim)))
        out[inside] = np.moveaxis(windows[(slice(None),) + tuple(local[inside].T)], 0, 1)
    partial = []
    for i in np.flatnonzero(~inside).tolist():
        source, target = _clip_box(local[i], local[i] + np.array(box), spatial)
        out[(i, slice(None)) + target] = region[(slice(None),) + source]
        partial.append((i, target))
    return out, partial


def _normalise(
    raw: np.ndarray,
    partial: list[tuple[int, tuple[slice, ...]]],
    src: _Source,
    t: int,
    start: np.ndarray,
    tally: Counter,
) -> np.ndarray:
    """Scale raw crops ``(n, C, *box)`` to float32 in [0, 1] with the source's range; 0 outside the image.

    Computed in float64, a few thousand pixels per crop at a time so the
    temporaries stay small. Non-finite pixels become 0 and are counted in
    ``tally["nonfinite"]``; a crop with no finite pixel inside the image is refused.
    """
    shape = (1, -1) + (1,) * src.spatial_ndim
    low = src.low.reshape(shape)
    span = np.where(src.high > src.low, src.high - src.low, 1.0).reshape(shape)
    scaled = np.empty(raw.shape, np.float32)
    step = max(1, _SCALE_PIXELS // max(1, raw[0].size))
    for first in range(0, len(raw), step):
        block = np.subtract(raw[first : first + step], low, dtype=np.float64)
        block /= span
        np.clip(block, 0, 1, out=block)
        scaled[first : first + step] = block
    edges = dict(partial)
    if raw.dtype.kind == "f":
        finite = np.isfinite(raw)  # pixels outside the image are 0 in ``raw``, so finite
        if not finite.all():
            for i in np.flatnonzero(~finite.reshape(len(raw), -1).all(axis=1)).tolist():
                if not finite[i][(slice(None),) + edges.get(i, ())].any():
                    box = tuple(int(e) for e in raw.shape[2:])
                    raise InputError(
                        f"the crop at t={t}, box {tuple(start[i])}..{tuple(start[i] + box)} has no finite pixel "
                        "(all NaN or inf); fill the missing values in the image or remove that object"
                    )
            tally["nonfinite"] += int((~finite).sum())
            scaled[~finite] = 0
    for i, target in partial:
        inside = np.zeros(scaled.shape[2:], bool)
        inside[target] = True
        scaled[i][:, ~inside] = 0
    return scaled


def _cut_crops(
    src: _Source,
    t: int,
    start: np.ndarray,
    stop: np.ndarray,
    size: tuple[int, ...],
    tally: Counter,
    labels_t: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    settings: CropSettings | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The normalised crops ``(n, C, *size)`` of boxes [start, stop) at ``t``, resized to ``size`` where needed.

    With ``labels_t`` and ``ids`` also the object masks ``(n, *size)``, and
    other labels (or the whole background) masked as ``settings`` say.
    Boxes of one shape are cut, scaled and masked together, as arrays.
    """
    n, channels = len(start), int(src.data.shape[1])
    images = np.empty((n, channels) + size, np.float32)
    masks = np.empty((n,) + size, bool) if labels_t is not None else None
    extents = stop - start
    for positions, region, origin in _regions(src, t, start, stop):
        for same in _same_shape_groups(extents[positions]):
            p = positions[same]
            box = tuple(int(e) for e in extents[p[0]])
            raw, partial = _cut(region, origin, start[p], box)
            crops = _normalise(raw, partial, src, t, start[p], tally)
            del raw
            mask = None
            if labels_t is not None:
                assert ids is not None and settings is not None  # given together with labels_t
                found = _cut(labels_t[None], np.zeros_like(origin), start[p], box)[0][:, 0]
                mask = found == ids[p].reshape((-1,) + (1,) * len(box))
                if settings.mask_background:
                    crops *= mask[:, None]
                elif settings.mask_neighbours:
                    crops *= ((found == 0) | mask)[:, None]
            if box == size:
                images[p] = crops
                if masks is not None:
                    masks[p] = mask
                continue
            for k, i in enumerate(p):
                images[i], resized = _resize(crops[k], None if mask is None else mask[k], size)
                if masks is not None:
                    masks[i] = resized
    return images, masks


def _same_shape_groups(extents: np.ndarray) -> list[np.ndarray]:
    """Positions of boxes with the same extents, one array per shape."""
    if (extents == extents[0]).all():
        return [np.arange(len(extents))]
    _, inverse = np.unique(extents, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [np.flatnonzero(inverse == k) for k in range(int(inverse.max()) + 1)]


def _resize(crop: np.ndarray, mask: np.ndarray | None, size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize a crop (linear, anti-aliased when shrinking) and its mask (nearest) to ``size``."""
    if crop.shape[1:] == size:
        return crop, mask
    resized = transform.resize(crop, crop.shape[:1] + size, order=1, preserve_range=True).astype(np.float32)
    if mask is not None:
        mask = transform.resize(mask, size, order=0, anti_aliasing=False, preserve_range=True).astype(bool)
    return resized, mask


def _aspect_box(
    start: Sequence[int] | np.ndarray, stop: Sequence[int] | np.ndarray, size: tuple[int, ...]
) -> tuple[list[int], list[int]]:
    """Widen box [start, stop) around its centre to the aspect ratio of ``size`` (square for equal sizes)."""
    extents = [b - a for a, b in zip(start, stop, strict=True)]
    scale = max(Fraction(int(e), s) for e, s in zip(extents, size, strict=True))
    new_extents = [math.ceil(scale * s) for s in size]
    new_start = [int(a) - (n - int(e)) // 2 for a, e, n in zip(start, extents, new_extents, strict=True)]
    return new_start, [a + n for a, n in zip(new_start, new_extents, strict=True)]


def _centred_boxes(centres: np.ndarray, size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of exactly ``size`` pixels whose centre pixel (index size // 2) is each rounded centre."""
    start = np.floor(np.asarray(centres, dtype=float) + 0.5).astype(np.int64) - np.array(size) // 2
    return start, start + np.array(size)


def _spatial_size(size: int | tuple[int, ...], src: _Source) -> tuple[int, ...]:
    """The crop's spatial size for ``src``, refused when crops that large would not fit in memory."""
    ndim = src.spatial_ndim
    if isinstance(size, int):
        size = (size,) * ndim
    if len(size) != ndim:
        raise InputError(f"crop size {tuple(size)} has {len(size)} values but the image has {ndim} spatial axes")
    size = tuple(int(s) for s in size)
    # At least one crop per batch, with float64 working copies of it while it is cut and preprocessed.
    per_crop = int(src.data.shape[1]) * math.prod(size)
    needed = max(_BATCH_BYTES, per_crop * 4) + per_crop * 32
    available = available_memory()
    if needed > available:
        raise InputError(
            f"crops of {' x '.join(map(str, size))} pixels with {src.data.shape[1]} channel(s) take "
            f"{per_crop * 4 / 2**20:.0f} MiB each and about {needed / 2**30:.1f} GiB while cropping, more than the "
            f"{available / 2**30:.1f} GiB of memory available; choose a smaller crop size"
        )
    return size


def available_memory() -> int:
    """Bytes of memory available to this process: Linux's MemAvailable, else all physical memory, else 8 GiB."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 8 * 2**30


# --------------------------------------------------------------------------- candidates and batches


@dataclass
class _Candidates:
    """Every candidate box of one source, skipped ones included, with the table columns they bring."""

    t: np.ndarray  # (n,) time point
    label_id: np.ndarray  # (n,) Labels id, or 1-based point / box / patch number
    start: np.ndarray  # (n, ndim) first source pixel of the box
    stop: np.ndarray  # (n, ndim) end of the box (exclusive)
    keep: np.ndarray  # (n,) False for skipped candidates
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # extra table columns (area, z, ...)

    def __len__(self) -> int:
        return len(self.t)

    @staticmethod
    def join(parts: list[_Candidates], ndim: int) -> _Candidates:
        if not parts:
            empty = np.zeros(0, np.int64)
            return _Candidates(empty, empty, np.zeros((0, ndim), np.int64), np.zeros((0, ndim), np.int64), empty > 0)

        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        return _Candidates(
            joined("t"),
            joined("label_id"),
            joined("start"),
            joined("stop"),
            joined("keep"),
            columns={key: np.concatenate([p.columns[key] for p in parts]) for key in parts[0].columns},
        )


@dataclass
class _Batch:
    """Crops of consecutive candidates, before the pipeline, with their table rows (no ``crop_id`` yet)."""

    images: np.ndarray  # (n, C, *size) float32 in [0, 1]
    masks: np.ndarray | None  # (n, *size) the object's pixels, for Labels
    table: pd.DataFrame
    done: int  # candidates handled so far, skipped ones included


def _windows(positions: np.ndarray, crop_bytes: int) -> Iterator[np.ndarray]:
    """``positions`` in consecutive runs whose crops take at most ``_BATCH_BYTES`` (at least one crop)."""
    step = max(1, _BATCH_BYTES // max(1, crop_bytes))
    for first in range(0, len(positions), step):
        yield positions[first : first + step]


def _table(src: _Source, group: str, candidates: _Candidates, positions: np.ndarray) -> pd.DataFrame:
    """The crop table rows of ``positions``: required columns, bounding box, then extra columns."""
    n = len(positions)
    columns: dict[str, Any] = {
        "source": [src.name] * n,
        "label_id": candidates.label_id[positions].astype(np.int64),
        "t": candidates.t[positions].astype(np.int64),
        "group": [group] * n,
        "annotation": [""] * n,
    }
    for axis, name in enumerate("zyx"[3 - src.spatial_ndim :]):
        columns[f"{name}_start"] = candidates.start[positions, axis].astype(np.int64)
        columns[f"{name}_stop"] = candidates.stop[positions, axis].astype(np.int64)
    for name, values in candidates.columns.items():
        columns[name] = values[positions]
    return pd.DataFrame(columns)


def _batches(
    src: _Source,
    candidates: _Candidates,
    size: tuple[int, ...],
    group: str,
    tally: Counter,
    cut: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray | None]],
) -> Iterator[_Batch]:
    """Batches of the kept candidates, in order, one time point and a bounded number of crops at a time."""
    crop_bytes = int(src.data.shape[1]) * math.prod(size) * 4
    kept = np.flatnonzero(candidates.keep)
    for t in dict.fromkeys(candidates.t[kept].tolist()):
        for positions in _windows(kept[candidates.t[kept] == t], crop_bytes):
            images, masks = cut(int(t), positions)
            yield _Batch(images, masks, _table(src, group, candidates, positions), int(positions[-1]) + 1)


# --------------------------------------------------------------------------- assembling the crop set


@dataclass
class _Plan:
    """What one source will give: its batches (made when iterated), and how to describe and count them."""

    src: _Source
    batches: Iterator[_Batch]
    total: int
    what: str
    tally: Counter
    spacing: tuple[float, ...]
    preprocess: dict[str, Any]


class _Sink:
    """Where finished crops go: streamed to a crop-set folder (``output``), or kept in memory.

    Without ``output``, crops stay in memory only while they take at most
    ``IN_MEMORY_LIMIT_BYTES``; past that they move to a new folder in the
    system's temporary directory and stream there, so a set that would not
    fit comfortably in memory never sits there (the returned set says where:
    its images are a zarr array on disk).

    The first source fixes crop shape, channel names and settings; every
    later source must agree, as for :func:`concat_crop_sets`, and ``crop_id``
    runs on across sources.
    """

    def __init__(self, output: str | Path | None, overwrite: bool) -> None:
        self.output, self.overwrite = output, overwrite
        self.writer: CropSetWriter | None = None
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []
        self.tables: list[pd.DataFrame] = []
        self.count = 0
        self.first: CropFormat | None = None
        self.spacings: set[tuple[float, ...]] = set()

    def add(self, images: np.ndarray, table: pd.DataFrame, plan: _Plan, masks: np.ndarray | None) -> None:
        names = _channel_names(plan.src, images.shape[1])
        crops = CropFormat(plan.src.name, tuple(images.shape[1:]), tuple(names), plan.preprocess)
        if self.first is None:
            self.first = crops
            if self.output is not None:
                self._open_writer(
                    self.output, images.shape[1:], names, plan.preprocess, self.overwrite, masks is not None
                )
        check_joinable(crops, self.first)
        self.spacings.add(plan.spacing)
        table.insert(0, "crop_id", np.arange(self.count, self.count + len(table), dtype=np.int64))
        self.count += len(table)
        if self.writer is None and (self.count * images[0].nbytes > data_module.IN_MEMORY_LIMIT_BYTES):
            folder = Path(tempfile.mkdtemp(prefix="morphospace-crops-")) / "crops"
            self._open_writer(
                folder,
                images.shape[1:],
                names,
                plan.preprocess,
                False,
                all(m is not None for m in [*self.masks, masks]),
            )
            writer = self.writer
            assert writer is not None  # opened just above
            for kept, rows, kept_masks in zip(self.images, self.tables, self.masks, strict=True):
                writer.append(kept, rows, kept_masks)
            self.images, self.tables, self.masks = [], [], []
        if self.writer is not None:
            self.writer.append(images, table, masks)
        else:
            self.images.append(images)
            self.tables.append(table)
            self.masks.append(masks)

    def _open_writer(
        self,
        folder: str | Path,
        shape: tuple[int, ...],
        names: list[str],
        preprocess: dict[str, Any],
        overwrite: bool,
        masks: bool,
    ) -> None:
        self.writer = CropSetWriter(folder, shape, names, preprocess=preprocess, overwrite=overwrite, masks=masks)

    def finish(self) -> CropSet:
        spacing = next(iter(self.spacings)) if len(self.spacings) == 1 else ()
        if self.writer is not None:
            self.writer.spacing = spacing
            return self.writer.close()
        assert self.first is not None  # _make refuses a run without sources before finishing it
        table = pd.concat(self.tables, ignore_index=True)
        kept_masks = [m for m in self.masks if m is not None]
        masks = np.concatenate(kept_masks) if len(kept_masks) == len(self.masks) else None
        first = self.first
        return CropSet(np.concatenate(self.images), table, list(first.channel_names), spacing, first.preprocess, masks)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def _make(
    plans: Iterable[_Plan],
    pipeline: PreprocessPipeline | None,
    *,
    output: str | Path | None,
    overwrite: bool,
    on_progress: Callable[[str, int, int], None] | None,
    stop_event: threading.Event | None,
) -> CropSet:
    """Run the pipeline on every crop of every plan and gather them in memory or stream them to ``output``.

    ``on_progress(name, done, total)`` counts each plan's candidates (skipped
    ones too) after each batch; a set ``stop_event`` raises
    :class:`CropCancelled` before the next batch, and nothing is written.
    """
    if output is not None:
        check_crop_set_target(Path(output), overwrite)  # before any work, not after the first batch
    sink = _Sink(output, overwrite)
    try:
        for plan in plans:
            _drain(plan, pipeline, sink, on_progress, stop_event)
            del plan  # let the source go before the next one is read
        if sink.first is None:
            raise InputError("no sources to crop; give at least one image")
        return sink.finish()
    except BaseException:
        sink.abort()
        raise


def _drain(
    plan: _Plan,
    pipeline: PreprocessPipeline | None,
    sink: _Sink,
    on_progress: Callable[[str, int, int], None] | None,
    stop_event: threading.Event | None,
) -> None:
    made = done = 0
    for batch in plan.batches:
        if stop_event is not None and stop_event.is_set():
            raise CropCancelled("crop making was stopped")
        images, masks = _apply_pipeline(batch.images, batch.masks, pipeline)
        plan.tally["blank"] += int((~images.reshape(len(images), -1).any(axis=1)).sum())
        sink.add(images, batch.table, plan, masks)
        made, done = made + len(images), batch.done
        if on_progress is not None:
            on_progress(plan.src.name, done, plan.total)
    if stop_event is not None and stop_event.is_set():
        raise CropCancelled("crop making was stopped")
    _warn_skipped(plan.tally, plan.total, plan.what)
    if not made:
        raise InputError(
            f"no crops were made from {plan.src.name or 'the image'}: all {plan.total} {plan.what} were skipped; "
            "see the warnings for why"
        )
    if on_progress is not None and done < plan.total:
        on_progress(plan.src.name, plan.total, plan.total)  # skipped candidates after the last batch


def _apply_pipeline(
    images: np.ndarray, masks: np.ndarray | None, pipeline: PreprocessPipeline | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The pipeline run on each crop with its object mask: ``(crops, masks)``, the masks moved as the crops were."""
    if pipeline is None:
        return images, masks
    from .preprocess import apply_pipeline_with_mask

    done = [
        apply_pipeline_with_mask(image, pipeline, mask=None if masks is None else masks[i])
        for i, image in enumerate(images)
    ]
    crops = [crop for crop, _ in done]
    if any(c.shape != crops[0].shape for c in crops):
        raise InputError("the preprocessing pipeline gives crops of different shapes; add a resize step")
    moved = [mask for _, mask in done if mask is not None]
    return np.stack(crops), np.stack(moved) if masks is not None and len(moved) == len(done) else None


def _preprocess_record(settings: Any, pipeline: PreprocessPipeline | None) -> dict[str, Any]:
    return {"crops": to_dict(settings), "pipeline": pipeline.to_dict() if pipeline is not None else None}


def _channel_names(src: _Source, n_channels: int) -> list[str]:
    """The source's channel names, or one merged name when the pipeline made one channel (grayscale)."""
    if n_channels == len(src.channel_names):
        return list(src.channel_names)
    return [" + ".join(src.channel_names)] if n_channels == 1 else [f"channel {i}" for i in range(n_channels)]


def _output_spacing(
    scale: Sequence[float], box: tuple[int, ...], pipeline: PreprocessPipeline | None
) -> tuple[float, ...]:
    """Physical size of one crop pixel when every crop shows ``box`` source pixels of size ``scale``.

    A ``resize`` step in the pipeline changes the pixel count, so the pixel size changes with it.
    An image without a pixel size (``scale`` empty) gives crops without one.
    """
    if not scale:
        return ()
    resizes = [tuple(step.params["shape"]) for step in pipeline.steps if step.name == "resize"] if pipeline else []
    shape = resizes[-1] if resizes else box
    return tuple(s * b / n for s, b, n in zip(scale, box, shape, strict=True))


def _warn_skipped(tally: Counter, total: int, what: str) -> None:
    """Tell the user what was skipped or changed, with the setting to change."""
    notes = {
        "small": "were smaller than min_area and skipped (lower min_area to keep them)",
        "border": "touched the image border and were skipped (exclude_border=False keeps them)",
        "cut": "were larger than the crop and were cut (increase size or use mode='fit')",
        "background": "had less foreground than min_foreground and were skipped (lower it to keep them)",
        "blank": "gave crops that are entirely 0 (a constant or empty region of the image: check the image, its "
        "channels and contrast; such crops carry no information)",
    }
    for key, text in notes.items():
        if tally[key]:
            warnings.warn(f"{tally[key]} of {total} {what} {text}", stacklevel=5)
    if tally["nonfinite"]:
        warnings.warn(
            f"{tally['nonfinite']} NaN or inf pixels in the crops were replaced by 0; check the image", stacklevel=5
        )


#: A note of :func:`_warn_skipped`, maybe prefixed with its image ("a.tif: 2 of 107 objects were ..."): count, text.
COUNTED_NOTE = re.compile(r"(?:.+?: )?(\d+) of \d+ (.+)")


def summed_notes(messages: list[str]) -> list[str]:
    """The crop builder's notes per image ("a.tif: 2 of 107 objects were smaller than ...") summed over the images.

    One line per reason for a whole build ("9 objects were smaller than
    ..."); messages that are no such note are kept once each, as they are.
    """
    counts: dict[str, int] = {}
    for message in messages:
        match = COUNTED_NOTE.fullmatch(message)
        key = match[2] if match else message
        counts[key] = counts.get(key, 0) + (int(match[1]) if match else 0)
    return [f"{n} {text}" if n else text for text, n in counts.items()]


# --------------------------------------------------------------------------- one entry point for many sources


@dataclass
class CropSource:
    """One image and the objects to crop from it: one entry of :func:`build_crop_set`.

    Attributes
    ----------
    image : Stack or array
        numpy or dask; an array needs ``axes`` (see the module docstring).
    objects : array, optional
        Labels ``[T,] [Z,] Y, X`` (``kind="labels"``), points ``(N, ndim)``,
        boxes ``(N, 2, ndim)``; unused for ``"patches"``.
    kind : {"labels", "points", "boxes", "patches"}
    settings : CropSettings or PatchSettings
        ``PatchSettings`` for ``"patches"``, ``CropSettings`` otherwise.
    group, source : str
        Written to every row (condition; file or layer name, defaulting to the Stack's).
    axes : str, optional
        Axes of an array ``image``.
    """

    image: Stack | Any
    objects: Any = None
    kind: Literal["labels", "points", "boxes", "patches"] = "labels"
    settings: CropSettings | PatchSettings = field(default_factory=CropSettings)
    group: str = ""
    source: str = ""
    axes: str | None = None


def build_crop_set(
    sources: Iterable[CropSource],
    *,
    pipeline: PreprocessPipeline | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
    stop_event: threading.Event | None = None,
) -> CropSet:
    """Crop every source and join them into one crop set, in memory or streamed to ``output``.

    The one way crops are made, by the widget and the command line alike.
    Sources are taken one at a time (``sources`` may be a generator that
    reads each file only when its turn comes), and with ``output`` every
    batch of crops goes to disk at once, so memory holds one source and one
    batch, however many crops there are. Without ``output`` the crops stay
    in memory up to ``IN_MEMORY_LIMIT_BYTES`` and stream to a new folder in
    the temporary directory beyond it. ``crop_id`` runs over all sources;
    all must give the same crop shape, channels and settings (as
    :func:`concat_crop_sets` requires).

    Parameters
    ----------
    on_progress : callable(name, done, total), optional
        After each batch: the source's name and its candidates done / total.
    stop_event : threading.Event, optional
        Checked before each batch; when set, :class:`CropCancelled` is
        raised and nothing is written.
    """

    def plans() -> Iterator[_Plan]:
        for source in sources:
            if stop_event is not None and stop_event.is_set():
                raise CropCancelled("crop making was stopped")
            plan = _plan(source, pipeline)
            del source  # only the plan holds the image now
            yield plan
            del plan  # done with: let it go before the next source is read

    return _make(plans(), pipeline, output=output, overwrite=overwrite, on_progress=on_progress, stop_event=stop_event)


def _plan(source: CropSource, pipeline: PreprocessPipeline | None) -> _Plan:
    """The plan of one source, by its kind."""
    settings = source.settings
    if source.kind == "patches":
        if not isinstance(settings, PatchSettings):
            raise InputError(f"patches are cut with PatchSettings, got {type(settings).__name__}")
        return _patches_plan(
            source.image, settings, pipeline=pipeline, group=source.group, source=source.source, axes=source.axes
        )
    if source.kind not in ("labels", "points", "boxes"):
        raise InputError(f"unknown object kind {source.kind!r}; choose 'labels', 'points', 'boxes' or 'patches'")
    if not isinstance(settings, CropSettings):
        raise InputError(f"{source.kind} are cropped with CropSettings, got {type(settings).__name__}")
    if source.kind == "labels":
        return _labels_plan(
            source.image,
            source.objects,
            settings,
            pipeline=pipeline,
            group=source.group,
            source=source.source,
            axes=source.axes,
        )
    return _marks_plan(
        source.kind,
        source.image,
        source.objects,
        settings,
        pipeline=pipeline,
        group=source.group,
        source=source.source,
        axes=source.axes,
    )


def _single(
    make_plan: Callable[[], _Plan],
    pipeline: PreprocessPipeline | None,
    output: str | Path | None,
    overwrite: bool,
    on_progress: ProgressCallback | None,
    stop_event: threading.Event | None,
) -> CropSet:
    """Make the crop set of one source (the single-source builders); the plan is made once ``output`` is checked."""
    progress = None if on_progress is None else (lambda name, done, total: on_progress(done, total))
    plans = (make() for make in (make_plan,))
    return _make(plans, pipeline, output=output, overwrite=overwrite, on_progress=progress, stop_event=stop_event)


# --------------------------------------------------------------------------- labels


def crops_from_labels(
    image: Stack | Any,
    labels: Any,
    settings: CropSettings,
    *,
    pipeline: PreprocessPipeline | None = None,
    group: str = "",
    source: str = "",
    axes: str | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
) -> CropSet:
    """One crop per labelled object (per time point for a time-lapse).

    Parameters
    ----------
    image : Stack or array
        numpy or dask; with ``axes`` for an array (e.g. ``"CYX"``, ``"TZYX"``).
        A dask image is read one region per chunk block, each chunk about once.
    labels : array of int, shape ``[T,] [Z,] Y, X``
        0 is background; each other value one object. Same shape as the
        image without its channel axis. numpy, or dask (one time point is
        loaded at a time).
    settings : CropSettings
    pipeline : PreprocessPipeline, optional
        Run on each crop after normalisation, with the object's mask.
    group, source : str
        Written to every row (condition, and file or layer name; ``source``
        defaults to the Stack's).
    output : path, optional
        Stream crops into this crop-set folder instead of memory (see
        :class:`~napari_morphospace.core.cells.crop_set.CropSetWriter`); the
        returned set is then read from it.
    on_progress : callable(done, total), optional
        Called after each batch of objects (a few hundred to thousands).
    stop_event : threading.Event, optional
        Checked before each batch; when set, :class:`CropCancelled` is raised
        and nothing is written.

    Returns
    -------
    CropSet
        Table columns besides the required ones: ``area`` (object pixels).
        In ``"fixed"`` mode, ``images[i]`` equals the normalised source region
        given by the row's bounding box, pixel for pixel (masking aside).

    Warns
    -----
    UserWarning
        Counting objects skipped (``min_area``, ``exclude_border``), cut
        (larger than a ``"fixed"`` crop) and NaN/inf pixels set to 0.
    """

    def make_plan() -> _Plan:
        return _labels_plan(image, labels, settings, pipeline=pipeline, group=group, source=source, axes=axes)

    return _single(make_plan, pipeline, output, overwrite, on_progress, stop_event)


def _labels_plan(
    image: Stack | Any,
    labels: Any,
    settings: CropSettings,
    *,
    pipeline: PreprocessPipeline | None,
    group: str,
    source: str,
    axes: str | None,
) -> _Plan:
    src = _as_source(image, axes, settings.channels, source)
    size = _spatial_size(settings.size, src)
    labels = _check_labels(labels, src)
    tally: Counter = Counter()
    candidates = _label_candidates(src, labels, settings, size, tally)
    if not len(candidates):
        raise InputError("the labels contain no objects (all 0); segment the image or choose another Labels layer")
    _set_intensity_range(src, settings.normalise, settings.percentiles)
    loaded: dict[int, np.ndarray] = {}

    def cut(t: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if t not in loaded:  # one time point of (possibly lazy) labels in memory at a time
            loaded.clear()
            loaded[t] = _labels_at(labels, t)
        return _cut_crops(
            src,
            t,
            candidates.start[positions],
            candidates.stop[positions],
            size,
            tally,
            loaded[t],
            candidates.label_id[positions],
            settings,
        )

    return _Plan(
        src,
        _batches(src, candidates, size, group, tally, cut),
        len(candidates),
        "objects",
        tally,
        _output_spacing(src.scale, size, pipeline) if settings.mode == "fixed" else (),
        _preprocess_record(settings, pipeline),
    )


def _check_labels(labels: Any, src: _Source) -> Any:
    """Labels ``(T, [Z,] Y, X)`` (numpy, or dask read per time point), refusing wrong shape or type."""
    if not hasattr(labels, "shape"):
        labels = np.asarray(labels)
    if tuple(labels.shape) != src.object_shape:
        raise InputError(
            f"labels have shape {tuple(labels.shape)} but the image has shape {src.object_shape} without its "
            "channel axis; give labels of the same [T,] [Z,] Y, X shape (same axes order as the image, no C)"
        )
    if np.dtype(labels.dtype).kind not in "iu":
        raise InputError(
            f"labels must be integers, got {labels.dtype}; give a Labels layer or a label image "
            "(skimage.measure.label turns a mask into one)"
        )
    if not hasattr(labels, "compute"):
        labels = np.asarray(labels)
    return labels if src.has_time else labels[None]


def _labels_at(labels: Any, t: int) -> np.ndarray:
    """The labels of time point ``t`` in memory, refusing negative ids."""
    labels_t = np.asarray(labels[t])
    if labels_t.size and labels_t.min() < 0:
        raise InputError(
            f"labels must not be negative (found {labels_t.min()}); 0 is background, objects are 1, 2, ..."
        )
    return labels_t


def _label_candidates(
    src: _Source, labels: Any, settings: CropSettings, size: tuple[int, ...], tally: Counter
) -> _Candidates:
    """The box of every object at every time point, with its area, and which objects are skipped (counted)."""
    parts = []
    shape = np.array(src.spatial_shape)
    for t in range(int(labels.shape[0])):
        labels_t = _labels_at(labels, t)
        ids, low, high, area, centre = _measure_objects(labels_t, with_centres=settings.mode == "fixed")
        keep = area >= settings.min_area
        tally["small"] += int((~keep).sum())
        if settings.exclude_border:
            border = keep & ((low == 0).any(axis=1) | (high == shape).any(axis=1))
            tally["border"] += int(border.sum())
            keep &= ~border
        if settings.mode == "fixed":
            start, stop = _centred_boxes(centre, size)
            tally["cut"] += int((keep & ((high - low) > np.array(size)).any(axis=1)).sum())
        else:
            boxes = [
                _aspect_box(lo - settings.padding, hi + settings.padding, size)
                for lo, hi in zip(low, high, strict=True)
            ]
            start = np.array([b[0] for b in boxes], np.int64).reshape(len(ids), -1)
            stop = np.array([b[1] for b in boxes], np.int64).reshape(len(ids), -1)
        parts.append(_Candidates(np.full(len(ids), t, np.int64), ids, start, stop, keep, {"area": area}))
    return _Candidates.join(parts, src.spatial_ndim)


def _measure_objects(labels_t: np.ndarray, *, with_centres: bool) -> tuple[np.ndarray, ...]:
    """Id, bounding box ``[low, high)``, pixel count and centroid of every object at one time point, in id order.

    Counts and coordinate sums come from ``np.bincount`` over slabs of the
    image (bounded memory), not from one call per object; the centroid is
    the mean pixel coordinate, as ``ndimage.center_of_mass`` of the object.
    """
    ndim = labels_t.ndim
    max_label = int(labels_t.max()) if labels_t.size else 0
    relabelled, original_ids = labels_t, None
    if max_label > _MAX_DIRECT_LABEL:
        relabelled, _, inverse = segmentation.relabel_sequential(labels_t)
        original_ids, max_label = np.asarray(inverse), int(relabelled.max())
    slices = ndimage.find_objects(relabelled, max_label=max_label)
    present = np.array([i for i, s in enumerate(slices, 1) if s is not None], np.int64)
    bounds = np.array([(s.start, s.stop) for box in slices if box is not None for s in box], np.int64).reshape(-1, 2)
    low, high = bounds[:, 0].reshape(-1, ndim), bounds[:, 1].reshape(-1, ndim)
    counts = np.zeros(max_label + 1)
    sums = np.zeros((ndim, max_label + 1))
    rows_per_slab = max(1, _SLAB_PIXELS // max(1, math.prod(relabelled.shape[1:])))
    for first in range(0, relabelled.shape[0], rows_per_slab):
        slab = relabelled[first : first + rows_per_slab]
        where = np.flatnonzero(slab)  # object pixels only: the background is often most of the image
        ids = slab.ravel()[where]
        counts += np.bincount(ids, minlength=max_label + 1)
        if with_centres:
            for axis, coordinate in enumerate(np.unravel_index(where, slab.shape)):
                sums[axis] += np.bincount(ids, weights=coordinate, minlength=max_label + 1)
            sums[0] += first * np.bincount(ids, minlength=max_label + 1)
    area = counts[present].astype(np.int64)
    centre = (sums[:, present] / np.maximum(counts[present], 1)).T if with_centres else np.zeros((len(present), ndim))
    object_ids = original_ids[present] if original_ids is not None else present
    return object_ids.astype(np.int64), low, high, area, centre


# --------------------------------------------------------------------------- points and boxes


def crops_from_points(
    image: Stack | Any,
    points: Any,
    settings: CropSettings,
    *,
    pipeline: PreprocessPipeline | None = None,
    group: str = "",
    source: str = "",
    axes: str | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
) -> CropSet:
    """A ``size`` box of source pixels centred on each point (as ``"fixed"`` mode; no masking).

    ``points`` is ``(N, ndim)`` in pixel coordinates ``[t,] [z,] y, x`` (a
    Points layer's data in data coordinates); ``label_id`` is the 1-based
    point index. Other parameters as in :func:`crops_from_labels`.
    """

    def make_plan() -> _Plan:
        return _marks_plan("points", image, points, settings, pipeline=pipeline, group=group, source=source, axes=axes)

    return _single(make_plan, pipeline, output, overwrite, on_progress, stop_event)


def _marks_plan(
    kind: Literal["points", "boxes"],
    image: Stack | Any,
    marks: Any,
    settings: CropSettings,
    *,
    pipeline: PreprocessPipeline | None,
    group: str,
    source: str,
    axes: str | None,
) -> _Plan:
    """The plan of crops around points (a fixed box each) or of boxes (resized to ``size``): marks, not labels."""
    src = _as_source(image, axes, settings.channels, source)
    size = _spatial_size(settings.size, src)
    check, locate = (_check_points, _point_candidates) if kind == "points" else (_check_boxes, _box_candidates)
    marks = check(marks, src)
    _set_intensity_range(src, settings.normalise, settings.percentiles)
    candidates = locate(src, marks, size)
    tally: Counter = Counter()

    def cut(t: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return _cut_crops(src, t, candidates.start[positions], candidates.stop[positions], size, tally)

    # Boxes are resized to ``size`` by their own factors: their crops share no pixel size.
    spacing = _output_spacing(src.scale, size, pipeline) if kind == "points" else ()
    return _Plan(
        src,
        _batches(src, candidates, size, group, tally, cut),
        len(marks),
        kind,
        tally,
        spacing,
        _preprocess_record(settings, pipeline),
    )


def crops_from_boxes(
    image: Stack | Any,
    boxes: Any,
    settings: CropSettings,
    *,
    pipeline: PreprocessPipeline | None = None,
    group: str = "",
    source: str = "",
    axes: str | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
) -> CropSet:
    """One crop per box (e.g. rectangles of a Shapes layer), resized to ``size``.

    ``boxes`` is ``(N, 2, ndim)``, or a list of ``(start, stop)`` corner
    pairs, in pixel coordinates ``[t,] [z,] y, x``; corners may come in any
    order and are rounded outwards (stop exclusive). Each box is widened
    around its centre to the aspect ratio of ``size`` (square for an int) so
    cells are not stretched, then resized; the bounding box in the table is
    the widened box. ``label_id`` is the 1-based box index. Other parameters
    as in :func:`crops_from_labels`.
    """

    def make_plan() -> _Plan:
        return _marks_plan("boxes", image, boxes, settings, pipeline=pipeline, group=group, source=source, axes=axes)

    return _single(make_plan, pipeline, output, overwrite, on_progress, stop_event)


def _check_points(points: Any, src: _Source) -> np.ndarray:
    """Points as a float array ``(N, [t,] [z,] y, x)``, refusing points outside the image."""
    points = _check_coordinates(np.asarray(points, dtype=float), src, "points", (len(src.object_shape),))
    rounded = np.floor(points + 0.5).astype(np.int64)
    outside = np.flatnonzero(((rounded < 0) | (rounded >= np.array(src.object_shape))).any(axis=1))
    if outside.size:
        raise InputError(
            f"point {outside[0]} at {tuple(points[outside[0]])} lies outside the image of shape {src.object_shape} "
            f"({outside.size} points outside); remove it or check the point coordinates"
        )
    return points


def _point_candidates(src: _Source, points: np.ndarray, size: tuple[int, ...]) -> _Candidates:
    """The fixed box around each point."""
    n = len(points)
    t = np.floor(points[:, 0] + 0.5).astype(np.int64) if src.has_time else np.zeros(n, np.int64)
    start, stop = _centred_boxes(points[:, -src.spatial_ndim :], size)
    return _Candidates(t, np.arange(1, n + 1, dtype=np.int64), start, stop, np.ones(n, bool))


def _check_boxes(boxes: Any, src: _Source) -> np.ndarray:
    """Boxes as a float array ``(N, 2, [t,] [z,] y, x)``, refusing empty, time-spanning or outside boxes."""
    boxes = _check_coordinates(np.asarray(boxes, dtype=float), src, "boxes", (2, len(src.object_shape)))
    for index in range(len(boxes)):
        low, high = _box_corners(boxes[index], src)
        _check_box(index, boxes[index], low, high, src)
    return boxes


def _box_corners(box: np.ndarray, src: _Source) -> tuple[np.ndarray, np.ndarray]:
    """Spatial low and high corners of one box, rounded outwards (high exclusive)."""
    low = np.floor(box.min(axis=0)).astype(np.int64)[-src.spatial_ndim :]
    high = np.ceil(box.max(axis=0)).astype(np.int64)[-src.spatial_ndim :]
    return low, high


def _box_candidates(src: _Source, boxes: np.ndarray, size: tuple[int, ...]) -> _Candidates:
    """Each box widened to the aspect ratio of ``size``."""
    n = len(boxes)
    t = np.floor(boxes[:, 0, 0] + 0.5).astype(np.int64) if src.has_time else np.zeros(n, np.int64)
    widened = [_aspect_box(*_box_corners(box, src), size) for box in boxes]
    start = np.array([w[0] for w in widened], np.int64).reshape(n, -1)
    stop = np.array([w[1] for w in widened], np.int64).reshape(n, -1)
    return _Candidates(t, np.arange(1, n + 1, dtype=np.int64), start, stop, np.ones(n, bool))


def _check_coordinates(values: np.ndarray, src: _Source, what: str, item_shape: tuple[int, ...]) -> np.ndarray:
    axes = ("t, " if src.has_time else "") + ", ".join("zyx"[3 - src.spatial_ndim :])
    if values.ndim != len(item_shape) + 1 or values.shape[1:] != item_shape or len(values) == 0:
        raise InputError(
            f"{what} have shape {values.shape}; expected (N, {', '.join(map(str, item_shape))}) with coordinates "
            f"({axes}) for this image of shape {src.object_shape} (without channels), and at least one"
        )
    if not np.isfinite(values).all():
        raise InputError(f"{what} contain NaN or inf coordinates; remove them")
    return values


def _check_box(index: int, box: np.ndarray, low: np.ndarray, high: np.ndarray, src: _Source) -> None:
    """Refuse a box with no extent, different time points at its corners, or entirely outside the image."""
    names = "ZYX"[3 - src.spatial_ndim :]
    flat = [names[a] for a in range(src.spatial_ndim) if high[a] <= low[a]]
    if flat:
        raise InputError(
            f"box {index} has zero size along {', '.join(flat)}; draw a box with an extent on every spatial axis"
        )
    if src.has_time:
        t = np.floor(box[:, 0] + 0.5)
        if t[0] != t[1] or not 0 <= t[0] < src.data.shape[0]:
            raise InputError(
                f"box {index} has corners at time points {tuple(t)}; a box must lie in one existing time point"
            )
    if any(h <= 0 or lo >= n for lo, h, n in zip(low, high, src.spatial_shape, strict=True)):
        raise InputError(
            f"box {index} ({tuple(low)}..{tuple(high)}) lies outside the image of shape {src.spatial_shape}"
        )


# --------------------------------------------------------------------------- patch grid


def patch_grid(
    image: Stack | Any,
    settings: PatchSettings,
    *,
    pipeline: PreprocessPipeline | None = None,
    group: str = "",
    source: str = "",
    axes: str | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
) -> CropSet:
    """Square 2D patches on a regular grid over every z-slice (and time point), filtered by foreground.

    Each channel gets one Otsu threshold (``skimage.filters.threshold_otsu``)
    from the whole stack; a pixel is foreground when it is above the
    threshold in any channel, and a patch is kept when its foreground
    fraction is at least ``min_foreground`` (the sparsity filter of the
    organelle classification study). Only whole patches are taken. Each
    slice is read once, for its foreground and its patches.

    Returns
    -------
    CropSet
        Crops ``(N, C, P, P)``; ``label_id`` is the 1-based index of the kept
        patch; extra columns ``z`` (0 for a 2D source) and ``foreground``
        (the fraction); a 3D source's rows have ``z_start = z, z_stop = z + 1``.
    """

    def make_plan() -> _Plan:
        return _patches_plan(image, settings, pipeline=pipeline, group=group, source=source, axes=axes)

    return _single(make_plan, pipeline, output, overwrite, on_progress, stop_event)


def _patches_plan(
    image: Stack | Any,
    settings: PatchSettings,
    *,
    pipeline: PreprocessPipeline | None,
    group: str,
    source: str,
    axes: str | None,
) -> _Plan:
    src = _as_source(image, axes, settings.channels, source)
    patch, stride = settings.patch_size, settings.patch_stride or settings.patch_size
    height, width = src.spatial_shape[-2:]
    if patch > min(height, width):
        raise InputError(f"patch_size {patch} is larger than the image slices ({height} x {width}); lower patch_size")
    thresholds = np.array([filters.threshold_otsu(s) for s in _channel_samples(src.data)])
    _set_intensity_range(src, settings.normalise, settings.percentiles)
    n_slices = src.spatial_shape[0] if src.spatial_ndim == 3 else 1
    n_grid = ((height - patch) // stride + 1) * ((width - patch) // stride + 1)
    tally: Counter = Counter()

    def batches() -> Iterator[_Batch]:
        kept = 0
        crop_bytes = int(src.data.shape[1]) * patch * patch * 4
        for t in range(src.data.shape[0]):
            for z in range(n_slices):
                plane = (z,) if src.spatial_ndim == 3 else ()
                raw = np.asarray(src.data[(t, slice(None)) + plane])  # read once: foreground, then patches
                foreground = (raw > thresholds.reshape(-1, 1, 1)).any(axis=0)
                fractions = util.view_as_windows(foreground, (patch, patch), step=stride).mean(axis=(-2, -1))
                rows, cols = np.nonzero(fractions >= settings.min_foreground)
                tally["background"] += fractions.size - len(rows)
                n = len(rows)
                start = np.stack([np.full(n, z)] * len(plane) + [rows * stride, cols * stride], axis=1).astype(np.int64)
                stop = start + np.array([1] * len(plane) + [patch, patch])
                candidates = _Candidates(
                    np.full(n, t, np.int64),
                    np.arange(kept + 1, kept + n + 1, dtype=np.int64),
                    start,
                    stop,
                    np.ones(n, bool),
                    {"z": np.full(n, z, np.int64), "foreground": fractions[rows, cols].astype(float)},
                )
                kept += n
                done = (t * n_slices + z + 1) * n_grid
                region, origin = (
                    raw.reshape(raw.shape[:1] + (1,) * len(plane) + raw.shape[1:]),
                    np.array(plane + (0, 0)),
                )
                box = (1,) * len(plane) + (patch, patch)
                for positions in _windows(np.arange(n), crop_bytes):
                    cut, _ = _cut(region, origin, start[positions], box)  # whole patches: never cut off
                    images = _normalise(cut, [], src, t, start[positions], tally)
                    images = images.reshape((len(positions), raw.shape[0], patch, patch))
                    yield _Batch(images, None, _table(src, group, candidates, positions), done)

    return _Plan(
        src,
        batches(),
        src.data.shape[0] * n_slices * n_grid,
        "patches",
        tally,
        _output_spacing(src.scale[-2:], (patch, patch), pipeline),
        _preprocess_record(settings, pipeline),
    )


__all__ = [
    "CropCancelled",
    "CropSettings",
    "CropSource",
    "PatchSettings",
    "build_crop_set",
    "concat_crop_sets",
    "crops_from_boxes",
    "crops_from_labels",
    "crops_from_points",
    "patch_grid",
]


# --------------------------------------------------------------------------- live preview


class ObjectPreview:
    """One object's crop at a time, exactly as a full run would cut it, for the widget's live preview.

    The expensive parts of a run, finding the objects and the source's
    intensity range, are done once here; each :meth:`crop` then reads only
    one box, so the preview can follow every parameter change.

    Parameters
    ----------
    image : Stack or array
        As in :func:`crops_from_labels`.
    objects : array
        Labels ``[T,] [Z,] Y, X`` for ``kind="labels"``, points ``(N, ndim)``
        for ``"points"``, boxes ``(N, 2, ndim)`` for ``"boxes"``.
    kind : {"labels", "points", "boxes"}
    settings : CropSettings
    axes : str, optional
        Axes of an array ``image``.
    """

    def __init__(
        self,
        image: Stack | Any,
        objects: Any,
        kind: Literal["labels", "points", "boxes"],
        settings: CropSettings,
        *,
        axes: str | None = None,
        group: str = "",
        source: str = "",
    ) -> None:
        self.kind, self.settings, self.group = kind, settings, group
        self._src = _as_source(image, axes, settings.channels, source)
        self._size = _spatial_size(settings.size, self._src)
        self._labels = None
        if kind == "labels":
            self._labels = _check_labels(objects, self._src)
            self._candidates = _label_candidates(self._src, self._labels, settings, self._size, Counter())
        elif kind == "points":
            self._candidates = _point_candidates(self._src, _check_points(objects, self._src), self._size)
        elif kind == "boxes":
            self._candidates = _box_candidates(self._src, _check_boxes(objects, self._src), self._size)
        else:
            raise InputError(f"unknown object kind {kind!r}; choose 'labels', 'points' or 'boxes'")
        if not len(self._candidates):
            raise InputError(f"there are no {kind} to preview; add objects to the layer first")
        _set_intensity_range(self._src, settings.normalise, settings.percentiles)

    def __len__(self) -> int:
        return len(self._candidates)

    @property
    def channel_names(self) -> list[str]:
        return list(self._src.channel_names)

    def crop(self, index: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]] | None:
        """``(crop, mask, row)`` of object ``index`` before any pipeline, or None when a run would skip it."""
        candidates = self._candidates
        if not candidates.keep[index]:
            return None
        t, positions = int(candidates.t[index]), np.array([index])
        labels_t = None if self._labels is None else _labels_at(self._labels, t)
        images, masks = _cut_crops(
            self._src,
            t,
            candidates.start[positions],
            candidates.stop[positions],
            self._size,
            Counter(),
            labels_t,
            candidates.label_id[positions],
            self.settings,
        )
        row = _table(self._src, self.group, candidates, positions).iloc[0].to_dict()
        return images[0], None if masks is None else masks[0], row
