"""Single-cell crops from Labels, Points and boxes, and a patch grid over z-slices.

Every builder returns a :class:`~napari_morphospace.core.data.CropSet`: crops
``(N, C, [Z,] Y, X)`` float32 in [0, 1] and one table row per crop whose
bounding box (``[z_start, z_stop,] y_start, y_stop, x_start, x_stop``, in
source pixels, stop exclusive) is the region of the source the crop shows
before any resize.

Axes are explicit: pass a :class:`~napari_morphospace.core.io.Stack`, or an
array with an ``axes`` string drawn from ``TCZYX`` (any order; a plain 2D array
needs none). Labels, points and boxes use the image's axes without ``C``, in
``[T,] [Z,] Y, X`` order.

Intensities are scaled to [0, 1] with one range per channel computed once for
the whole source (``normalise="percentiles"``: the 0.1 and 99.9 percentiles of
all its pixels, all time points and slices; ``"dtype"``: the integer dtype's
range, or identity for float images already in [0, 1]), never per crop, so
brightness differences between cells survive. An optional
:class:`~napari_morphospace.core.preprocess.PreprocessPipeline` then runs on
each crop with the object's mask. Pixels outside the image are 0 in the crop.
"""

from __future__ import annotations

import math
import os
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

from .config import to_dict
from .data import CropSet, CropSetWriter, bbox_columns, concat_crop_sets, open_crop_set_writer
from .errors import InputError
from .io import AXES_ORDER, Stack

if TYPE_CHECKING:
    from .preprocess import PreprocessPipeline

ProgressCallback = Callable[[int, int], None]

# Percentiles and Otsu thresholds are computed from at most this many pixels per channel
# (a regular Y/X subsample of larger sources), so a lazy stack is read once, coarsely.
_INTENSITY_SAMPLE = 2**24
# Crops are handed to a streaming writer in batches of this many.
_WRITE_BATCH = 64
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
    scale: tuple[float, ...]
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


def _as_source(image: Stack | Any, axes: str | None, channels: list[int] | None, source: str) -> _Source:
    """Check the axes, move them to ``TCZYX`` order and select channels."""
    if isinstance(image, Stack):
        data, axes = image.data, image.axes
        names, scale, name = list(image.channel_names), image.scale, source or image.source
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
            f"the file name {str(name).encode('utf-8', 'surrogateescape')!r} is not valid UTF-8 text, so the crop table "
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
        scale=tuple(float(scale.get(a, 1.0)) for a in "ZYX" if a in axes),
        name=str(name),
    )


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
    src.low = np.array([np.percentile(s, percentiles[0]) for s in samples])
    src.high = np.array([np.percentile(s, percentiles[1]) for s in samples])
    flat = [i for i, (a, b) in enumerate(zip(src.low, src.high)) if not b > a]
    if flat:
        warnings.warn(
            f"{src.name or 'the image'}: channel(s) {', '.join(map(str, flat))} have the same value at the "
            f"{percentiles[0]} and {percentiles[1]} percentiles (a constant or nearly empty channel), so their crops "
            "carry little or no information; check the image or choose other channels",
            stacklevel=4,
        )


def _channel_samples(data: Any) -> list[np.ndarray]:
    """The finite pixel values of each channel, over a regular Y/X subsample when the source is large."""
    per_channel = math.prod(int(s) for s in data.shape) // int(data.shape[1])
    step = max(1, math.ceil(math.sqrt(per_channel / _INTENSITY_SAMPLE)))
    sample = np.asarray(data[..., ::step, ::step])
    samples = []
    for index in range(sample.shape[1]):
        values = sample[:, index].ravel()
        if values.dtype == bool:
            values = values.astype(np.uint8)
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size == 0:
            raise InputError(f"channel {index} has no finite pixel (all NaN or inf); remove it with channels=")
        samples.append(values)
    return samples


# --------------------------------------------------------------------------- reading one box


def _clip_box(
    start: Sequence[int], stop: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the part of box [start, stop) inside an image of ``shape``, and where it lands in the crop."""
    source, target = [], []
    for lo, hi, n in zip(start, stop, shape):
        a, b = min(max(lo, 0), n), max(min(hi, n), 0)
        b = max(a, b)
        source.append(slice(a, b))
        target.append(slice(a - lo, b - lo))
    return tuple(source), tuple(target)


def _read_crop(src: _Source, t: int, start: Sequence[int], stop: Sequence[int], tally: Counter) -> np.ndarray:
    """The normalised crop ``(C, *box)`` of box [start, stop) at time ``t``; 0 outside the image.

    Only the box is read, so a dask source loads just this region. Non-finite
    pixels become 0 and are counted in ``tally["nonfinite"]``.
    """
    source_slices, target_slices = _clip_box(start, stop, src.spatial_shape)
    raw = np.asarray(src.data[(t, slice(None)) + source_slices], dtype=np.float64)
    low = src.low.reshape((-1,) + (1,) * src.spatial_ndim)
    span = np.where(src.high > src.low, src.high - src.low, 1.0).reshape(low.shape)
    scaled = np.clip((raw - low) / span, 0, 1)
    finite = np.isfinite(raw)
    if not finite.all():
        if not finite.any():
            raise InputError(
                f"the crop at t={t}, box {tuple(start)}..{tuple(stop)} has no finite pixel (all NaN or inf); "
                "fill the missing values in the image or remove that object"
            )
        tally["nonfinite"] += int((~finite).sum())
        scaled[~finite] = 0
    crop = np.zeros((scaled.shape[0],) + tuple(b - a for a, b in zip(start, stop)), dtype=np.float32)
    crop[(slice(None),) + target_slices] = scaled
    return crop


def _read_labels(labels_t: np.ndarray, start: Sequence[int], stop: Sequence[int]) -> np.ndarray:
    """Labels of box [start, stop), 0 (background) outside the image."""
    source_slices, target_slices = _clip_box(start, stop, labels_t.shape)
    region = np.zeros(tuple(b - a for a, b in zip(start, stop)), dtype=labels_t.dtype)
    region[target_slices] = labels_t[source_slices]
    return region


def _resize(crop: np.ndarray, mask: np.ndarray | None, size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize a crop (linear, anti-aliased when shrinking) and its mask (nearest) to ``size``."""
    if crop.shape[1:] == size:
        return crop, mask
    resized = transform.resize(crop, crop.shape[:1] + size, order=1, preserve_range=True).astype(np.float32)
    if mask is not None:
        mask = transform.resize(mask, size, order=0, anti_aliasing=False, preserve_range=True).astype(bool)
    return resized, mask


def _aspect_box(start: Sequence[int], stop: Sequence[int], size: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Widen box [start, stop) around its centre to the aspect ratio of ``size`` (square for equal sizes)."""
    extents = [b - a for a, b in zip(start, stop)]
    scale = max(Fraction(e, s) for e, s in zip(extents, size))
    new_extents = [math.ceil(scale * s) for s in size]
    new_start = [a - (n - e) // 2 for a, e, n in zip(start, extents, new_extents)]
    return new_start, [a + n for a, n in zip(new_start, new_extents)]


def _centred_box(centre: Sequence[float], size: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """A box of exactly ``size`` pixels whose centre pixel (index size // 2) is the rounded centre."""
    start = [math.floor(c + 0.5) - s // 2 for c, s in zip(centre, size)]
    return start, [a + s for a, s in zip(start, size)]


def _spatial_size(size: int | tuple[int, ...], src: _Source) -> tuple[int, ...]:
    """The crop's spatial size for ``src``, refused when crops that large would not fit in memory."""
    ndim = src.spatial_ndim
    if isinstance(size, int):
        size = (size,) * ndim
    if len(size) != ndim:
        raise InputError(f"crop size {tuple(size)} has {len(size)} values but the image has {ndim} spatial axes")
    size = tuple(int(s) for s in size)
    # A batch of float32 crops waits for the writer, plus float64 working copies of the crop being made.
    per_crop = int(src.data.shape[1]) * math.prod(size)
    needed = per_crop * (4 * _WRITE_BATCH + 32)
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


# --------------------------------------------------------------------------- assembling the crop set


@dataclass
class _Crop:
    image: np.ndarray
    row: dict[str, Any]
    mask: np.ndarray | None = None


def _collect(
    crops: Iterator[_Crop | None],
    total: int,
    what: str,
    src: _Source,
    tally: Counter,
    *,
    settings: Any,
    pipeline: PreprocessPipeline | None,
    spacing: tuple[float, ...],
    output: str | Path | None,
    overwrite: bool,
    on_progress: ProgressCallback | None,
    stop_event: threading.Event | None,
) -> CropSet:
    """Run the pipeline on each crop and gather crops and rows in memory or stream them to ``output``.

    ``crops`` yields ``None`` for a skipped candidate, so progress counts every
    candidate (``total`` of them, named ``what``); ``tally`` counts why candidates
    were skipped, for the warnings.
    """
    images: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    made = 0
    crop_shape: tuple[int, ...] = ()
    writer = None
    preprocess = {"crops": to_dict(settings), "pipeline": pipeline.to_dict() if pipeline is not None else None}
    try:
        for done, crop in enumerate(crops, start=1):
            if stop_event is not None and stop_event.is_set():
                raise CropCancelled("crop making was stopped")
            if crop is not None:
                image = _apply_pipeline(crop, pipeline)
                if not image.any():
                    tally["blank"] += 1
                if crop_shape and image.shape != crop_shape:
                    raise InputError("the preprocessing pipeline gives crops of different shapes; add a resize step")
                crop_shape = image.shape
                crop.row["crop_id"] = made
                made += 1
                images.append(image)
                rows.append(crop.row)
            if output is not None and len(images) >= _WRITE_BATCH:
                writer = writer or _open_writer(output, crop_shape, src, spacing, preprocess, overwrite)
                writer.append(np.stack(images), _table(rows, src.spatial_ndim))
                images, rows = [], []
            if on_progress is not None:
                on_progress(done, total)
        _warn_skipped(tally, total, what)
        if not made:
            raise InputError(f"no crops were made: all {total} {what} were skipped; see the warnings for why")
        if output is None:
            return CropSet(
                images=np.stack(images),
                table=_table(rows, src.spatial_ndim),
                channel_names=_channel_names(src, crop_shape[0]),
                spacing=spacing,
                preprocess=preprocess,
            )
        writer = writer or _open_writer(output, crop_shape, src, spacing, preprocess, overwrite)
        if images:
            writer.append(np.stack(images), _table(rows, src.spatial_ndim))
        return writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


def _apply_pipeline(crop: _Crop, pipeline: PreprocessPipeline | None) -> np.ndarray:
    if pipeline is None:
        return crop.image
    from .preprocess import apply_pipeline

    return apply_pipeline(crop.image, pipeline, mask=crop.mask)


def _open_writer(
    output: str | Path,
    crop_shape: tuple[int, ...],
    src: _Source,
    spacing: tuple[float, ...],
    preprocess: dict[str, Any],
    overwrite: bool,
) -> CropSetWriter:
    names = _channel_names(src, crop_shape[0])
    return open_crop_set_writer(output, crop_shape, names, spacing=spacing, preprocess=preprocess, overwrite=overwrite)


def _channel_names(src: _Source, n_channels: int) -> list[str]:
    """The source's channel names, or one merged name when the pipeline made one channel (grayscale)."""
    if n_channels == len(src.channel_names):
        return list(src.channel_names)
    return [" + ".join(src.channel_names)] if n_channels == 1 else [f"channel {i}" for i in range(n_channels)]


def _table(rows: list[dict[str, Any]], spatial_ndim: int) -> pd.DataFrame:
    """The crop table: required columns first, bounding box next, extra columns after."""
    table = pd.DataFrame(rows)
    first = ["crop_id", "source", "label_id", "t", "group", "annotation"] + bbox_columns(spatial_ndim)
    return table[first + [c for c in table.columns if c not in first]]


def _row(src: _Source, group: str, label_id: int, t: int, start: Sequence[int], stop: Sequence[int]) -> dict[str, Any]:
    row: dict[str, Any] = {"source": src.name, "label_id": int(label_id), "t": int(t), "group": group, "annotation": ""}
    for axis, a, b in zip("zyx"[3 - len(start) :], start, stop):
        row[f"{axis}_start"], row[f"{axis}_stop"] = int(a), int(b)
    return row


def _output_spacing(
    scale: Sequence[float], box: tuple[int, ...], pipeline: PreprocessPipeline | None
) -> tuple[float, ...]:
    """Physical size of one crop pixel when every crop shows ``box`` source pixels of size ``scale``.

    A ``resize`` step in the pipeline changes the pixel count, so the pixel size changes with it.
    """
    resizes = [tuple(step.params["shape"]) for step in pipeline.steps if step.name == "resize"] if pipeline else []
    shape = resizes[-1] if resizes else box
    return tuple(s * b / n for s, b, n in zip(scale, box, shape))


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
            warnings.warn(f"{tally[key]} of {total} {what} {text}", stacklevel=4)
    if tally["nonfinite"]:
        warnings.warn(
            f"{tally['nonfinite']} NaN or inf pixels in the crops were replaced by 0; check the image", stacklevel=4
        )


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
        A dask image is read one object region at a time.
    labels : ndarray of int, shape ``[T,] [Z,] Y, X``
        0 is background; each other value one object. Same shape as the
        image without its channel axis.
    settings : CropSettings
    pipeline : PreprocessPipeline, optional
        Run on each crop after normalisation, with the object's mask.
    group, source : str
        Written to every row (condition, and file or layer name; ``source``
        defaults to the Stack's).
    output : path, optional
        Stream crops into this crop-set folder instead of memory (see
        :func:`~napari_morphospace.core.data.open_crop_set_writer`); the
        returned set is then read from it.
    on_progress : callable(done, total), optional
        Called after each object.
    stop_event : threading.Event, optional
        Checked before each object; when set, :class:`CropCancelled` is raised
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
    src = _as_source(image, axes, settings.channels, source)
    size = _spatial_size(settings.size, src)
    labels = _check_labels(labels, src)
    objects = [(t, label_id, slices) for t in range(labels.shape[0]) for label_id, slices in _find_objects(labels[t])]
    if not objects:
        raise InputError("the labels contain no objects (all 0); segment the image or choose another Labels layer")
    _set_intensity_range(src, settings.normalise, settings.percentiles)
    tally: Counter = Counter()
    crops = _label_crops(src, labels, objects, settings, size, group, tally)
    spacing = _output_spacing(src.scale, size, pipeline) if settings.mode == "fixed" else ()
    return _collect(
        crops, len(objects), "objects", src, tally, settings=settings, pipeline=pipeline, spacing=spacing,
        output=output, overwrite=overwrite, on_progress=on_progress, stop_event=stop_event,
    )  # fmt: skip


def _check_labels(labels: Any, src: _Source) -> np.ndarray:
    """Labels as an integer array ``(T, [Z,] Y, X)``, refusing wrong shape, type or negative ids."""
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
    labels = np.asarray(labels)
    if labels.min() < 0:
        raise InputError(f"labels must not be negative (found {labels.min()}); 0 is background, objects are 1, 2, ...")
    return labels if src.has_time else labels[None]


def _find_objects(labels_t: np.ndarray) -> list[tuple[int, tuple[slice, ...]]]:
    """(label id, bounding-box slices) of every object at one time point, in id order."""
    max_label = int(labels_t.max())
    if max_label > _MAX_DIRECT_LABEL:
        relabelled, _, inverse = segmentation.relabel_sequential(labels_t)
        return [(int(inverse[i]), s) for i, s in enumerate(ndimage.find_objects(relabelled), 1) if s is not None]
    return [(i, s) for i, s in enumerate(ndimage.find_objects(labels_t, max_label=max_label), 1) if s is not None]


def _label_crops(
    src: _Source,
    labels: np.ndarray,
    objects: list[tuple[int, int, tuple[slice, ...]]],
    settings: CropSettings,
    size: tuple[int, ...],
    group: str,
    tally: Counter,
) -> Iterator[_Crop | None]:
    """Yield the crop of each object, or ``None`` for a skipped one."""
    for t, label_id, slices in objects:
        inside = labels[t][slices] == label_id
        area = int(np.count_nonzero(inside))
        if area < settings.min_area:
            tally["small"] += 1
            yield None
            continue
        lo = [s.start for s in slices]
        hi = [s.stop for s in slices]
        if settings.exclude_border and (min(lo) == 0 or any(b == n for b, n in zip(hi, src.spatial_shape))):
            tally["border"] += 1
            yield None
            continue
        if settings.mode == "fixed":
            centre = [c + a for c, a in zip(ndimage.center_of_mass(inside), lo)]
            start, stop = _centred_box(centre, size)
            tally["cut"] += any(b - a > s for a, b, s in zip(lo, hi, size))
        else:
            start, stop = _aspect_box([a - settings.padding for a in lo], [b + settings.padding for b in hi], size)
        image = _read_crop(src, t, start, stop, tally)
        region = _read_labels(labels[t], start, stop)
        mask = region == label_id
        if settings.mask_background:
            image[:, ~mask] = 0
        elif settings.mask_neighbours:
            image[:, (region != 0) & ~mask] = 0
        image, mask = _resize(image, mask, size)
        row = _row(src, group, label_id, t, start, stop)
        row["area"] = area
        yield _Crop(image, row, mask)


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
    src = _as_source(image, axes, settings.channels, source)
    size = _spatial_size(settings.size, src)
    points = _check_points(points, src)
    _set_intensity_range(src, settings.normalise, settings.percentiles)
    tally: Counter = Counter()
    crops = _point_crops(src, points, range(len(points)), size, group, tally)
    return _collect(
        crops, len(points), "points", src, tally, settings=settings, pipeline=pipeline,
        spacing=_output_spacing(src.scale, size, pipeline),
        output=output, overwrite=overwrite, on_progress=on_progress, stop_event=stop_event,
    )  # fmt: skip


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
    src = _as_source(image, axes, settings.channels, source)
    size = _spatial_size(settings.size, src)
    boxes = _check_boxes(boxes, src)
    _set_intensity_range(src, settings.normalise, settings.percentiles)
    tally: Counter = Counter()
    crops = _box_crops(src, boxes, range(len(boxes)), size, group, tally)
    return _collect(
        crops, len(boxes), "boxes", src, tally, settings=settings, pipeline=pipeline, spacing=(),
        output=output, overwrite=overwrite, on_progress=on_progress, stop_event=stop_event,
    )  # fmt: skip


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


def _point_crops(
    src: _Source, points: np.ndarray, indices: Iterable[int], size: tuple[int, ...], group: str, tally: Counter
) -> Iterator[_Crop]:
    """The fixed box around each point of ``indices``."""
    for index in indices:
        point = points[index]
        t = int(np.floor(point[0] + 0.5)) if src.has_time else 0
        start, stop = _centred_box(point[-src.spatial_ndim :], size)
        yield _Crop(_read_crop(src, t, start, stop, tally), _row(src, group, index + 1, t, start, stop))


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


def _box_crops(
    src: _Source, boxes: np.ndarray, indices: Iterable[int], size: tuple[int, ...], group: str, tally: Counter
) -> Iterator[_Crop]:
    """Each box of ``indices`` widened to the aspect ratio of ``size`` and resized to it."""
    for index in indices:
        t = int(np.floor(boxes[index, 0, 0] + 0.5)) if src.has_time else 0
        start, stop = _aspect_box(*_box_corners(boxes[index], src), size)
        image, _ = _resize(_read_crop(src, t, start, stop, tally), None, size)
        yield _Crop(image, _row(src, group, index + 1, t, start, stop))


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
    if any(h <= 0 or lo >= n for lo, h, n in zip(low, high, src.spatial_shape)):
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
    organelle classification study). Only whole patches are taken.

    Returns
    -------
    CropSet
        Crops ``(N, C, P, P)``; ``label_id`` is the 1-based index of the kept
        patch; extra columns ``z`` (0 for a 2D source) and ``foreground``
        (the fraction); a 3D source's rows have ``z_start = z, z_stop = z + 1``.
    """
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

    def crops() -> Iterator[_Crop | None]:
        kept = 0
        for t in range(src.data.shape[0]):
            for z in range(n_slices):
                plane = (z,) if src.spatial_ndim == 3 else ()
                raw = np.asarray(src.data[(t, slice(None)) + plane])
                foreground = (raw > thresholds.reshape(-1, 1, 1)).any(axis=0)
                fractions = util.view_as_windows(foreground, (patch, patch), step=stride).mean(axis=(-2, -1))
                for (row_index, col_index), fraction in np.ndenumerate(fractions):
                    if fraction < settings.min_foreground:
                        tally["background"] += 1
                        yield None
                        continue
                    kept += 1
                    y, x = row_index * stride, col_index * stride
                    start, stop = [*plane, y, x], [*(p + 1 for p in plane), y + patch, x + patch]
                    image = _read_crop(src, t, start, stop, tally)
                    row = _row(src, group, kept, t, start, stop)
                    row["z"], row["foreground"] = z, float(fraction)
                    yield _Crop(image[:, 0] if plane else image, row)

    return _collect(
        crops(), src.data.shape[0] * n_slices * n_grid, "patches", src, tally, settings=settings, pipeline=pipeline,
        spacing=_output_spacing(src.scale[-2:], (patch, patch), pipeline),
        output=output, overwrite=overwrite, on_progress=on_progress, stop_event=stop_event,
    )  # fmt: skip


__all__ = [
    "CropCancelled",
    "CropSettings",
    "PatchSettings",
    "concat_crop_sets",
    "crops_from_boxes",
    "crops_from_labels",
    "crops_from_points",
    "patch_grid",
]


# --------------------------------------------------------------------------- live preview


class ObjectPreview:
    """One object's crop at a time, exactly as a full run would cut it, for the widget's live preview.

    The expensive part of a run, the source's intensity range, is computed
    once here; each :meth:`crop` then reads only one box, so the preview can
    follow every parameter change.

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
        if kind == "labels":
            self._objects = _check_labels(objects, self._src)
            self._items: list[Any] = [
                (t, label_id, slices) for t in range(self._objects.shape[0]) for label_id, slices in _find_objects(self._objects[t])
            ]  # fmt: skip
        elif kind == "points":
            self._objects = _check_points(objects, self._src)
            self._items = list(range(len(self._objects)))
        elif kind == "boxes":
            self._objects = _check_boxes(objects, self._src)
            self._items = list(range(len(self._objects)))
        else:
            raise InputError(f"unknown object kind {kind!r}; choose 'labels', 'points' or 'boxes'")
        if not self._items:
            raise InputError(f"there are no {kind} to preview; add objects to the layer first")
        _set_intensity_range(self._src, settings.normalise, settings.percentiles)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def channel_names(self) -> list[str]:
        return list(self._src.channel_names)

    def crop(self, index: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]] | None:
        """``(crop, mask, row)`` of object ``index`` before any pipeline, or None when a run would skip it."""
        tally: Counter = Counter()
        if self.kind == "labels":
            crops = _label_crops(self._src, self._objects, [self._items[index]], self.settings, self._size, self.group, tally)
        elif self.kind == "points":
            crops = _point_crops(self._src, self._objects, [index], self._size, self.group, tally)
        else:
            crops = _box_crops(self._src, self._objects, [index], self._size, self.group, tally)
        crop = next(crops)
        return None if crop is None else (crop.image, crop.mask, crop.row)
