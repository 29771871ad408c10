"""Preprocessing of single-cell crops: small per-channel steps composed into a serialisable pipeline.

Every step is a plain function over a channel-first image, ``(C, Y, X)`` or
``(C, Z, Y, X)``, that serves 2D and 3D alike and works channel by channel
(normalisation is per channel, so a dim channel is not drowned by a bright one).
A :class:`PreprocessPipeline` lists steps by name with their parameters; it
turns into a JSON-ready dict and back, so a model can record exactly how its
training crops were prepared and inference can never prepare them differently.

Input conventions, shared by every step and by :func:`apply_pipeline` (see
:func:`as_float_image`): unsigned integer images are scaled by their dtype's
maximum, float images already in [0, 1] are kept, other float images are
min–max rescaled per channel; non-finite pixels are replaced first. Every step
returns float32 in [0, 1] and never NaN or inf.

The two published orders are :func:`macrophage_pipeline` (grayscale → resize →
CLAHE → sharpen → min–max) and :func:`statistical_cell_pipeline` (subtract
mode, clip, rescale → align on the major axis → centre on a channel).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from skimage import exposure, filters, measure, transform

from .. import config
from ..errors import InputError

#: Step parameters that are data handed over by :func:`apply_pipeline`, never configuration.
_RUNTIME_PARAMETERS = ("mask",)


# --------------------------------------------------------------------------- input


def as_float_image(image: np.ndarray) -> np.ndarray:
    """Validate a channel-first image and bring it to float32 in [0, 1].

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Unsigned integer, bool or float (any range) values.

    Returns
    -------
    ndarray of float32 in [0, 1], same shape.
        Unsigned integers and bools are divided by their dtype's maximum (so a
        dim uint16 image stays dim, as in ``skimage.util.img_as_float32``).
        Float or signed channels already within [0, 1] are kept; any other
        channel is min–max rescaled on its own (a constant one becomes 0),
        because there is no dtype range to relate it to.

    Notes
    -----
    Non-finite pixels are replaced per channel before anything else: NaN and
    -inf by the channel's smallest finite value (NaN usually marks missing,
    background pixels), +inf by its largest (saturation). A channel with no
    finite pixel at all carries no information and is refused.
    """
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise InputError(
            f"expected a channel-first image (C, Y, X) or (C, Z, Y, X), got shape {image.shape}; "
            "add a channel axis for a single-channel image (image[np.newaxis])"
        )
    if image.size == 0:
        raise InputError(f"the image of shape {image.shape} is empty; give an image with at least one pixel per axis")
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.unsignedinteger):
        return (image / np.float32(np.iinfo(image.dtype).max)).astype(np.float32)
    if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.signedinteger)):
        raise InputError(f"image dtype {image.dtype} is not supported; give an integer or float image")
    # np.stack makes a new array, so no step ever returns (or changes) the caller's array.
    return np.stack([_finite_unit_channel(channel, index) for index, channel in enumerate(image)])


def _finite_unit_channel(channel: np.ndarray, index: int) -> np.ndarray:
    """One channel as float32 with non-finite pixels replaced, rescaled to [0, 1] when outside it.

    Works in the input's precision until the end, so float64 values beyond the
    float32 range are rescaled rather than turned into inf.
    """
    finite = np.isfinite(channel)
    if not finite.all():
        if not finite.any():
            raise InputError(
                f"channel {index} has no finite pixel (all NaN or inf); "
                "remove that channel or fill the missing values before preprocessing"
            )
        low, high = channel[finite].min(), channel[finite].max()
        channel = np.nan_to_num(channel, nan=low, posinf=high, neginf=low)
    low, high = channel.min(), channel.max()
    if low >= 0 and high <= 1:
        return channel.astype(np.float32)
    return _rescale(channel, low, high)


def _rescale(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly to [0, 1] and clip; a zero-width range gives zeros (no contrast)."""
    if not high > low:
        return np.zeros(channel.shape, dtype=np.float32)
    # float64: in float32, x - low overflows to inf for ranges near the float32 limits (inf / inf = NaN).
    scaled = (channel.astype(np.float64) - float(low)) / (float(high) - float(low))
    return np.clip(scaled, 0, 1, out=scaled).astype(np.float32)


def _check_mask(mask: Any, image: np.ndarray) -> np.ndarray:
    """A boolean object mask with the image's spatial shape (nonzero = object)."""
    mask = np.asarray(mask)
    if mask.shape != image.shape[1:]:
        raise InputError(
            f"the mask has shape {mask.shape} but the image's spatial shape is {image.shape[1:]}; "
            "give one mask value per pixel, without a channel axis"
        )
    return mask != 0


def _check_number(value: Any, what: str) -> float:
    """A step parameter read from a config file: refuse text, None and booleans with a clear message."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{what} must be a number, got {value!r}")
    return float(value)


def _check_channel(reference_channel: int, image: np.ndarray | None = None) -> int:
    if (
        isinstance(reference_channel, bool)
        or not isinstance(reference_channel, (int, np.integer))
        or reference_channel < 0
    ):
        raise InputError(
            f"reference_channel must be a channel index (an integer, 0 or more), got {reference_channel!r}"
        )
    if image is not None and not reference_channel < image.shape[0]:
        raise InputError(
            f"reference_channel {reference_channel} does not exist in an image with {image.shape[0]} channel(s); "
            f"choose 0 to {image.shape[0] - 1}"
        )
    return reference_channel


def _per_channel(image: np.ndarray, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.stack([function(channel) for channel in image]).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- intensity steps


def to_grayscale(image: np.ndarray, *, weights: Sequence[float] = (0.2125, 0.7154, 0.0721)) -> np.ndarray:
    """Combine RGB or RGBA channels into one luminance channel.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        C = 3 (RGB) or 4 (RGBA, alpha is ignored); a single channel is
        returned unchanged (already grayscale). Any supported dtype.
    weights : three non-negative numbers
        Relative weights of R, G and B; divided by their sum so the result
        stays in [0, 1]. The default is ITU-R BT.709, as in ``skimage.color.rgb2gray``.

    Returns
    -------
    ndarray of float32 in [0, 1], shape (1, ...).
    """
    image = as_float_image(image)
    channels = image.shape[0]
    if channels == 1:
        return image
    if channels not in (3, 4):
        raise InputError(
            f"to_grayscale needs a 3-channel (RGB) or 4-channel (RGBA) image, got {channels} channels; "
            "remove this step for multi-channel fluorescence images"
        )
    checked = _check_weights(weights)
    gray = np.tensordot(checked / checked.sum(), image[:3], axes=1)
    return np.clip(gray, 0, 1)[np.newaxis].astype(np.float32, copy=False)


def _check_weights(weights: Any) -> np.ndarray:
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or len(weights) != 3:
        raise InputError(f"to_grayscale weights must be three numbers for R, G, B, got {weights!r}")
    checked = np.array([_check_number(w, "to_grayscale weights") for w in weights], dtype=np.float32)
    if (checked < 0).any() or checked.sum() <= 0:
        raise InputError(f"to_grayscale weights must be non-negative and not all 0, got {checked.tolist()}")
    return checked


def clahe(image: np.ndarray, *, clip_limit: float = 0.01, kernel_size: int | Sequence[int] | None = None) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation, per channel, in 2D or 3D.

    Brings out texture in dim regions (cell edges in phase contrast) without
    amplifying noise without limit, as in the macrophage study.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Any supported dtype.
    clip_limit : float in (0, 1]
        Higher gives more contrast (``skimage.exposure.equalize_adapthist``).
    kernel_size : int, sequence of one int per spatial axis, or None
        Size of the contextual regions; None uses 1/8 of each spatial axis.

    Returns
    -------
    ndarray of float32 in [0, 1], same shape. A constant channel has no
    contrast to equalise and becomes 0 (the library would turn it white).
    """
    image = as_float_image(image)
    _check_clahe(clip_limit, kernel_size)
    spatial = image.ndim - 1
    if kernel_size is None:
        kernel = [max(s // 8, 1) for s in image.shape[1:]]
    elif isinstance(kernel_size, (int, np.integer)):
        kernel = [int(kernel_size)] * spatial
    else:
        kernel = list(kernel_size)
    if len(kernel) != spatial:
        raise InputError(
            f"clahe kernel_size must be a positive integer or one per spatial axis ({spatial}), got {kernel_size!r}"
        )

    def equalize(channel: np.ndarray) -> np.ndarray:
        if channel.min() == channel.max():
            return np.zeros_like(channel)
        if channel.ndim == 3 and channel.shape[-1] in (3, 4):
            # equalize_adapthist takes such a volume for an RGB(A) image and drops a "channel"; an extra
            # trailing axis of length 1 (kernel 1) leaves CLAHE unchanged. Only here: it doubles the cost.
            padded = channel[..., np.newaxis]
            return exposure.equalize_adapthist(padded, kernel_size=(*kernel, 1), clip_limit=clip_limit)[..., 0]
        return exposure.equalize_adapthist(channel, kernel_size=kernel, clip_limit=clip_limit)

    return _per_channel(image, equalize)


def _check_clahe(clip_limit: Any, kernel_size: Any) -> None:
    if not 0 < _check_number(clip_limit, "clahe clip_limit") <= 1:
        raise InputError(f"clahe clip_limit must be in (0, 1], got {clip_limit}")
    kernel = [kernel_size] if isinstance(kernel_size, (int, np.integer)) else kernel_size
    if kernel is None:
        return
    if (
        isinstance(kernel, (str, bytes))
        or not isinstance(kernel, Sequence)
        or len(kernel) not in (1, 2, 3)
        or not all(_is_whole(k) and k >= 1 for k in kernel)
    ):
        raise InputError(f"clahe kernel_size must be a positive integer or one per spatial axis, got {kernel_size!r}")


def _is_whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def unsharp_mask(image: np.ndarray, *, radius: float = 1.0, amount: float = 1.0) -> np.ndarray:
    """Sharpen edges by adding back the difference to a Gaussian blur, per channel, in 2D or 3D.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Any supported dtype.
    radius : float > 0
        Gaussian sigma in pixels (the same on every spatial axis).
    amount : float
        Strength of the sharpening (``skimage.filters.unsharp_mask``).

    Returns
    -------
    ndarray of float32 in [0, 1], same shape; overshoot is clipped.
    """
    image = as_float_image(image)
    _check_unsharp(radius, amount)
    return _per_channel(
        image, lambda channel: np.clip(filters.unsharp_mask(channel, radius=radius, amount=amount), 0, 1)
    )


def _check_unsharp(radius: Any, amount: Any) -> None:
    _check_number(amount, "unsharp_mask amount")
    if not _check_number(radius, "unsharp_mask radius") > 0:
        raise InputError(f"unsharp_mask radius must be positive, got {radius}")


def normalize_minmax(image: np.ndarray) -> np.ndarray:
    """Stretch each channel so its smallest value is 0 and its largest 1.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Any supported dtype.

    Returns
    -------
    ndarray of float32 in [0, 1], same shape; a constant channel becomes 0.
    """
    image = as_float_image(image)
    return _per_channel(image, lambda channel: _rescale(channel, channel.min(), channel.max()))


def normalize_percentile(image: np.ndarray, *, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Map each channel's ``low`` and ``high`` percentiles to 0 and 1 and clip.

    Robust to a few hot or dead pixels, which would set the range of a min–max
    stretch.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Any supported dtype.
    low, high : float, 0 <= low < high <= 100
        Percentiles.

    Returns
    -------
    ndarray of float32 in [0, 1], same shape. Where the two percentiles
    coincide (a mostly constant channel) the channel is min–max stretched
    instead, so that rare bright pixels are not lost; a constant channel becomes 0.
    """
    image = as_float_image(image)
    low, high = _check_percentiles(low, high)

    def normalize(channel: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(channel, [low, high])
        if hi > lo:
            return _rescale(channel, lo, hi)
        return _rescale(channel, channel.min(), channel.max())

    return _per_channel(image, normalize)


def _check_percentiles(low: Any, high: Any) -> tuple[float, float]:
    low, high = _check_number(low, "normalize_percentile low"), _check_number(high, "normalize_percentile high")
    if not 0 <= low < high <= 100:
        raise InputError(f"normalize_percentile needs 0 <= low < high <= 100, got low={low}, high={high}")
    return low, high


def subtract_mode(image: np.ndarray, *, bins: int = 256) -> np.ndarray:
    """Subtract each channel's most frequent intensity, clip negatives, rescale to [0, 1].

    The Statistical Cell background removal: in a crop the background is the
    most common intensity, so subtracting it leaves only the object's signal.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Any supported dtype.
    bins : int >= 2
        The channel's range is split into this many equal bins; the mode is the
        mean of the pixels in the fullest bin. For images with at most ``bins``
        distinct levels (8-bit data with the default) that is exactly the most
        frequent value; for continuous data it is the value of the densest bin.

    Returns
    -------
    ndarray of float32 in [0, 1], same shape: ``max(x - mode, 0)`` divided by
    its maximum. A channel with nothing above its mode (e.g. constant) becomes 0.
    """
    image = as_float_image(image)
    _check_bins(bins)

    def subtract(channel: np.ndarray) -> np.ndarray:
        edges = np.histogram_bin_edges(channel, bins=bins)
        bin_index = np.digitize(channel, edges[1:-1])  # 0 .. bins-1, the maximum falls in the last bin
        fullest = np.argmax(np.bincount(bin_index.ravel(), minlength=bins))
        mode = channel[bin_index == fullest].mean(dtype=np.float64)
        foreground = np.clip(channel - np.float32(mode), 0, None)
        return _rescale(foreground, 0.0, foreground.max())

    return _per_channel(image, subtract)


def _check_bins(bins: Any) -> None:
    if not _is_whole(bins) or bins < 2:
        raise InputError(f"subtract_mode bins must be an integer of at least 2, got {bins!r}")


# --------------------------------------------------------------------------- steps that move pixels
# Each is written once as ``_..._with_mask(image, mask, ...) -> (image, mask)`` so that
# apply_pipeline can move the object mask exactly as the image moves; the public step
# function returns the image only.


def resize(image: np.ndarray, *, shape: Sequence[int]) -> np.ndarray:
    """Resample every channel to a new spatial shape (linear, with anti-aliasing), 2D or 3D.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Any supported dtype.
    shape : sequence of int
        New size of the spatial axes: (Y, X) or (Z, Y, X).

    Returns
    -------
    ndarray of float32 in [0, 1], shape (C, *shape). Downsampling smooths
    first (``skimage.transform.resize`` with ``anti_aliasing=True``, order 1),
    so the mean intensity of a smooth image is kept. In a pipeline the object
    mask is resized with nearest-neighbour interpolation (order 0).
    """
    return _resize_with_mask(image, None, shape=shape)[0]


def _resize_with_mask(
    image: np.ndarray, mask: np.ndarray | None, *, shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray | None]:
    image = as_float_image(image)
    shape = _check_shape(shape, image)
    if shape == image.shape[1:]:
        return image, mask
    resized = _per_channel(
        image, lambda channel: transform.resize(channel, shape, order=1, anti_aliasing=True, mode="edge")
    )
    if mask is not None:
        mask = transform.resize(mask, shape, order=0, anti_aliasing=False, preserve_range=True).astype(bool)
    return np.clip(resized, 0, 1), mask


def _check_shape(shape: Any, image: np.ndarray | None = None) -> tuple[int, ...]:
    """A resize shape: positive integers, one per spatial axis of ``image`` (2 or 3 when no image is given)."""
    spatial = image.ndim - 1 if image is not None else None
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or len(shape) not in ((spatial,) if spatial else (2, 3))
        or not all(_is_whole(s) and s > 0 for s in shape)
    ):
        axes = {2: "(Y, X)", 3: "(Z, Y, X)", None: "(Y, X) or (Z, Y, X)"}[spatial]
        count = f"{spatial} " if spatial else ""
        raise InputError(f"resize shape must be {count}positive integers, one per spatial axis {axes}, got {shape!r}")
    return tuple(int(s) for s in shape)


def align_major_axis(image: np.ndarray, *, mask: np.ndarray | None = None, reference_channel: int = 0) -> np.ndarray:
    """Rotate so the object's major axis lies along X; in 3D, rotate about Z.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Any supported dtype. Background should be near 0 (e.g. after
        :func:`subtract_mode`) when no mask is given, or it dominates the moments.
    mask : bool ndarray, shape (Y, X) or (Z, Y, X), optional
        The object's pixels. Its shape moments define the axis; without it the
        intensity moments of ``reference_channel`` do.
    reference_channel : int
        Channel used when no mask is given.

    Returns
    -------
    ndarray of float32 in [0, 1], same shape: all channels rotated together
    about the image centre (linear interpolation, zero fill; content rotated
    past the border is lost, so crop with a margin).

    Notes
    -----
    The axis is the direction of largest spread given by the second central
    moments of the weights (``skimage.measure.moments_central``; the axis of
    least inertia of the inertia tensor); in 3D the weights are summed along Z,
    which gives exactly the XY moments of the volume. Of the two rotations that
    put the axis along X, the one leaving the third central moment along X
    non-negative is used: the object's longer tail points to +X. For a round
    object (no major axis) X itself is taken as the axis; empty weights leave
    the image unrotated. This is a rotation, never a mirror, so handedness is kept.
    """
    return _align_with_mask(image, mask, reference_channel=reference_channel)[0]


def _align_with_mask(
    image: np.ndarray, mask: np.ndarray | None, *, reference_channel: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    image = as_float_image(image)
    if mask is not None:
        mask = _check_mask(mask, image)
        weights = mask.astype(np.float64)
    else:
        weights = image[_check_channel(reference_channel, image)].astype(np.float64)
    if weights.ndim == 3:
        weights = weights.sum(axis=0)
    angle = _alignment_angle(weights)
    if angle == 0.0:
        return image, mask
    plane = (image.ndim - 1, image.ndim - 2)  # (X, Y): a positive angle turns +Y (rows, down) towards +X
    rotated = ndimage.rotate(image, angle, axes=plane, reshape=False, order=1, mode="constant", cval=0.0)
    if mask is not None:
        mask = ndimage.rotate(mask, angle, axes=(mask.ndim - 1, mask.ndim - 2), reshape=False, order=0)
    return np.clip(rotated, 0, 1), mask


def _alignment_angle(weights: np.ndarray) -> float:
    """Rotation in degrees (for ``ndimage.rotate`` in the (X, Y) plane) bringing the major axis to +X."""
    if weights.sum() <= 0:
        return 0.0
    mu = measure.moments_central(weights, order=3)  # mu[p, q]: p = power of the row (Y), q = of the column (X)
    cov_yy, cov_xx, cov_xy = mu[2, 0], mu[0, 2], mu[1, 1]
    theta = 0.5 * np.arctan2(2 * cov_xy, cov_xx - cov_yy)  # axis direction (x, y) = (cos, sin), y pointing down
    c, s = np.cos(theta), np.sin(theta)
    skew = c**3 * mu[0, 3] + 3 * c**2 * s * mu[1, 2] + 3 * c * s**2 * mu[2, 1] + s**3 * mu[3, 0]
    angle = float(np.degrees(theta))
    if skew < 0:
        angle += 180.0
    return angle


def center_on_channel(image: np.ndarray, *, reference_channel: int = 0) -> np.ndarray:
    """Shift all channels so the reference channel's centre of mass is at the image centre.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Any supported dtype.
    reference_channel : int
        Channel whose intensity-weighted centre is moved (the nucleus, in
        Statistical Cell).

    Returns
    -------
    ndarray of float32 in [0, 1], same shape, shifted by a sub-pixel amount
    (``scipy.ndimage.shift``, linear interpolation, zero fill). The centre is
    ``(n - 1) / 2`` on each axis. An all-zero reference channel has no centre
    and the image is returned unshifted.
    """
    return _center_with_mask(image, None, reference_channel=reference_channel)[0]


def _center_with_mask(
    image: np.ndarray, mask: np.ndarray | None, *, reference_channel: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    image = as_float_image(image)
    reference = image[_check_channel(reference_channel, image)]
    if reference.sum() <= 0:
        return image, mask
    centre = (np.array(reference.shape) - 1) / 2
    offset = centre - np.array(ndimage.center_of_mass(reference))
    if not np.any(offset):
        return image, mask
    shifted = ndimage.shift(image, (0, *offset), order=1, mode="constant", cval=0.0)
    if mask is not None:
        mask = ndimage.shift(mask, offset, order=0, mode="constant", cval=False)
    return np.clip(shifted, 0, 1), mask


def mask_object(image: np.ndarray, *, mask: np.ndarray) -> np.ndarray:
    """Set every pixel outside the object to 0, in all channels.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Any supported dtype.
    mask : ndarray, shape (Y, X) or (Z, Y, X)
        Nonzero marks the object (a boolean mask or a crop of a Labels layer
        reduced to one object). In a pipeline it is the mask given to
        :func:`apply_pipeline`, moved by every earlier step.

    Returns
    -------
    ndarray of float32 in [0, 1], same shape.
    """
    image = as_float_image(image)
    return image * _check_mask(mask, image)


#: Every step a pipeline may name. Each function takes the image first and
#: only keyword parameters after it, and returns float32 in [0, 1].
STEPS: dict[str, Callable[..., np.ndarray]] = {
    "to_grayscale": to_grayscale,
    "clahe": clahe,
    "unsharp_mask": unsharp_mask,
    "resize": resize,
    "normalize_minmax": normalize_minmax,
    "normalize_percentile": normalize_percentile,
    "subtract_mode": subtract_mode,
    "align_major_axis": align_major_axis,
    "center_on_channel": center_on_channel,
    "mask_object": mask_object,
}

#: Steps that move pixels, in the form that moves the object mask along.
_MASK_MOVING_STEPS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray | None]]] = {
    "resize": _resize_with_mask,
    "align_major_axis": _align_with_mask,
    "center_on_channel": _center_with_mask,
}


# --------------------------------------------------------------------------- pipeline


@dataclass
class PreprocessStep:
    """One step of a pipeline: the name of a function in :data:`STEPS` and its keyword parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreprocessPipeline:
    """An ordered list of steps; its dict form is what crop sets and model bundles record."""

    steps: list[PreprocessStep] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"steps": [{"name": ..., "params": {...}}, ...]}`` (tuples become lists)."""
        return config.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessPipeline:
        """Rebuild a pipeline, refusing unknown steps, unknown parameters and missing required ones."""
        pipeline = config.from_dict(cls, data, where="preprocess")
        for step in pipeline.steps:
            _check_step(step)
        return pipeline


@functools.cache
def _signature(name: str) -> inspect.Signature:
    """A step's signature, read once: inspecting it per call cost ~7% of the pipeline on a small crop."""
    return inspect.signature(STEPS[name])


def _step_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The configurable keyword parameters of a step (runtime data such as the mask excluded)."""
    parameters = _signature(name).parameters
    return {key: p for key, p in parameters.items() if p.kind is p.KEYWORD_ONLY and key not in _RUNTIME_PARAMETERS}


def _check_step(step: PreprocessStep) -> None:
    if step.name not in STEPS:
        raise InputError(f"unknown preprocessing step {step.name!r}; valid steps are: {', '.join(sorted(STEPS))}")
    if not isinstance(step.params, dict):
        raise InputError(f"the parameters of step {step.name!r} must be a mapping, got {step.params!r}")
    parameters = _step_parameters(step.name)
    unknown = sorted(set(step.params) - set(parameters))
    if unknown:
        raise InputError(
            f"step {step.name!r} has no parameter(s) {', '.join(unknown)}; "
            f"valid parameters are: {', '.join(sorted(parameters)) or 'none'}"
        )
    missing = sorted(k for k, p in parameters.items() if p.default is p.empty and k not in step.params)
    if missing:
        raise InputError(f"step {step.name!r} needs the parameter(s) {', '.join(missing)}")
    values = {key: p.default for key, p in parameters.items() if p.default is not p.empty} | step.params
    if "reference_channel" in values:
        _check_channel(values["reference_channel"])
    check = _PARAMETER_CHECKS.get(step.name)
    if check is not None:
        check(values)


# The parameter checks of each step, run on the values of a config before any image is read; the
# steps run the same checks (and those that need the image, such as the number of channels).
_PARAMETER_CHECKS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "to_grayscale": lambda v: _check_weights(v["weights"]),
    "clahe": lambda v: _check_clahe(v["clip_limit"], v["kernel_size"]),
    "unsharp_mask": lambda v: _check_unsharp(v["radius"], v["amount"]),
    "normalize_percentile": lambda v: _check_percentiles(v["low"], v["high"]),
    "subtract_mode": lambda v: _check_bins(v["bins"]),
    "resize": lambda v: _check_shape(v["shape"]),
}


def apply_pipeline(
    image: np.ndarray,
    pipeline: PreprocessPipeline,
    *,
    mask: np.ndarray | None = None,
    reference_channel: int = 0,
) -> np.ndarray:
    """Run every step of ``pipeline`` on one channel-first image.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (C, Z, Y, X)
        Unsigned integer, bool or float image (see :func:`as_float_image`).
    pipeline : PreprocessPipeline
        Checked as a whole before any step runs.
    mask : ndarray, shape (Y, X) or (Z, Y, X), optional
        The object's pixels (nonzero). It travels through the pipeline: steps
        that move pixels (resize, align, centre) move it the same way, so a
        later ``mask_object`` or ``align_major_axis`` sees it aligned.
    reference_channel : int
        Given to steps that take a ``reference_channel`` unless the step sets
        its own (e.g. align on the membrane, centre on the DNA channel).

    Returns
    -------
    ndarray of float32 in [0, 1], channel-first, same number of dimensions;
    the spatial shape is the input's unless a ``resize`` step sets it, and
    ``to_grayscale`` leaves one channel. An empty pipeline only converts.
    """
    return apply_pipeline_with_mask(image, pipeline, mask=mask, reference_channel=reference_channel)[0]


def apply_pipeline_with_mask(
    image: np.ndarray,
    pipeline: PreprocessPipeline,
    *,
    mask: np.ndarray | None = None,
    reference_channel: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`apply_pipeline`, also returning the object mask as the steps moved it (bool, or None without one).

    Crop making keeps the moved mask with the crop, so the cell can be
    measured later in the crop the model sees.
    """
    for step in pipeline.steps:
        _check_step(step)
    image = as_float_image(image)
    if mask is not None:
        mask = _check_mask(mask, image)
    for step in pipeline.steps:
        image, mask = _run_step(step, image, mask, reference_channel)
    return image, None if mask is None else np.asarray(mask, dtype=bool)


def _run_step(
    step: PreprocessStep, image: np.ndarray, mask: np.ndarray | None, reference_channel: int
) -> tuple[np.ndarray, np.ndarray | None]:
    kwargs = dict(step.params)
    if "reference_channel" in _step_parameters(step.name):
        kwargs.setdefault("reference_channel", reference_channel)
    if step.name in _MASK_MOVING_STEPS:
        return _MASK_MOVING_STEPS[step.name](image, mask, **kwargs)
    if "mask" in _signature(step.name).parameters:
        if mask is None:
            raise InputError(f"step {step.name!r} needs the object mask; pass mask= or remove the step")
        kwargs["mask"] = mask
    return STEPS[step.name](image, **kwargs), mask


# --------------------------------------------------------------------------- published pipelines


def macrophage_pipeline(shape: Sequence[int] = (256, 256)) -> PreprocessPipeline:
    """The macrophage study's order: grayscale → resize → CLAHE → sharpen → min–max.

    The study's Methods resize the crops first, so CLAHE's tiles and the
    sharpening radius act on the 256 × 256 image the network sees (sharpening
    before a down-sizing would be partly averaged away by it).

    Parameters
    ----------
    shape : sequence of int
        Spatial output shape, (Y, X) or (Z, Y, X); the study used 256 × 256.
    """
    return PreprocessPipeline(
        [
            PreprocessStep("to_grayscale"),
            PreprocessStep("resize", {"shape": [int(s) for s in shape]}),
            PreprocessStep("clahe"),
            PreprocessStep("unsharp_mask"),
            PreprocessStep("normalize_minmax"),
        ]
    )


def statistical_cell_pipeline() -> PreprocessPipeline:
    """The Statistical Cell order: subtract mode, clip negatives, rescale → align → centre.

    Alignment uses the mask given to :func:`apply_pipeline` (the cell
    segmentation) or else the reference channel; centring uses
    ``apply_pipeline(..., reference_channel=)`` (the DNA channel).
    """
    return PreprocessPipeline(
        [
            PreprocessStep("subtract_mode"),
            PreprocessStep("align_major_axis"),
            PreprocessStep("center_on_channel"),
        ]
    )


#: Used when no pipeline is chosen: percentile normalisation per channel, which
#: suits any channel count, 2D or 3D, and keeps the crop's shape. A shared
#: object: copy it (``PreprocessPipeline.from_dict(DEFAULT_PIPELINE.to_dict())``) before changing it.
DEFAULT_PIPELINE = PreprocessPipeline([PreprocessStep("normalize_percentile")])


__all__ = [
    "DEFAULT_PIPELINE",
    "STEPS",
    "PreprocessPipeline",
    "PreprocessStep",
    "align_major_axis",
    "apply_pipeline",
    "as_float_image",
    "center_on_channel",
    "clahe",
    "macrophage_pipeline",
    "mask_object",
    "normalize_minmax",
    "normalize_percentile",
    "resize",
    "statistical_cell_pipeline",
    "subtract_mode",
    "to_grayscale",
    "unsharp_mask",
]
