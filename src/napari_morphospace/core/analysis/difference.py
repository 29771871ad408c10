"""Difference maps between two decoded images: where and how much a latent change alters the cell.

Two maps, as in the macrophage study: the absolute difference (how much each
pixel changed) and 1 − SSIM (where local structure changed, insensitive to a
uniform brightness shift). SSIM is scikit-image's, with the settings of Wang et
al. 2004 (Gaussian window, σ 1.5, population covariance) and a fixed
``data_range`` so that maps from different dimensions and models compare.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from skimage.metrics import structural_similarity

from ..errors import InputError
from ..models import MorphoVAE
from .traversal import TRAVERSAL_EXTENT, decode_latents, group_means, latent_vector, traverse

# scikit-image truncates its Gaussian SSIM window at 3.5 σ.
SSIM_TRUNCATE = 3.5


def ssim_window_size(sigma: float = 1.5) -> int:
    """Side of the Gaussian SSIM window scikit-image uses for ``sigma``: 2·int(3.5σ + 0.5) + 1 (11 at σ 1.5)."""
    return 2 * int(SSIM_TRUNCATE * sigma + 0.5) + 1


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise InputError(f"the two images must have the same shape to be compared; got {a.shape} and {b.shape}")


def absolute_difference(a: Any, b: Any) -> np.ndarray:
    """Pixel-wise ``|a − b|`` as float32, same shape as the inputs."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    _check_same_shape(a, b)
    return np.abs(a - b)


def _check_window_fits(shape: tuple[int, ...], channel_axis: int | None, sigma: float) -> None:
    """Refuse images smaller than the SSIM window along any spatial axis, naming the axis."""
    spatial = [n for i, n in enumerate(shape) if channel_axis is None or i != channel_axis % len(shape)]
    if len(spatial) not in (2, 3):
        raise InputError(
            f"SSIM maps need 2D (Y, X) or 3D (Z, Y, X) images, one channel or with channel_axis set; got shape {shape}"
        )
    window = ssim_window_size(sigma)
    for name, size in zip("ZYX"[3 - len(spatial) :], spatial, strict=True):
        if size < window:
            raise InputError(
                f"the image has {size} pixels along {name}, fewer than the {window}-pixel SSIM window "
                f"(Gaussian, sigma {sigma}). For a thin volume compute slice-wise 2D maps "
                f"(ssim_map on each z-slice); otherwise use a smaller sigma or larger images."
            )


def ssim_map(a: Any, b: Any, *, data_range: float, sigma: float = 1.5, channel_axis: int | None = None) -> np.ndarray:
    """Local SSIM between two 2D or 3D images, one value per pixel in [-1, 1] (1 = identical).

    Parameters
    ----------
    a, b : array-like
        Images of the same shape: ``(Y, X)`` or ``(Z, Y, X)``, or with one
        channel axis (given by ``channel_axis``; each channel gets its own map).
    data_range : float
        The range the data can span (1.0 for images normalised to [0, 1]).
        Required: estimating it from each pair would make maps incomparable.
    sigma : float
        Standard deviation of the Gaussian window (1.5 as in Wang et al. 2004).
    channel_axis : int, optional
        Axis holding channels, if any.

    Returns
    -------
    np.ndarray
        The SSIM map, same shape as the inputs, float32 for float32 input.

    Notes
    -----
    Same as ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
    sigma=sigma, use_sample_covariance=False, data_range=data_range, full=True)``;
    values within ``(window − 1) / 2`` pixels of the border come from reflected
    padding. Every spatial axis must be at least :func:`ssim_window_size` long.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    _check_same_shape(a, b)
    if not data_range > 0:
        raise InputError(
            f"data_range must be positive (the span the data can take, 1.0 for [0, 1] images); got {data_range}"
        )
    _check_window_fits(a.shape, channel_axis, sigma)
    _, full = structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=sigma,
        use_sample_covariance=False,
        data_range=data_range,
        channel_axis=channel_axis,
        full=True,
    )
    return full


def dissimilarity_map(
    a: Any, b: Any, *, data_range: float, sigma: float = 1.5, channel_axis: int | None = None
) -> np.ndarray:
    """``1 − SSIM`` (see :func:`ssim_map`): 0 where the images agree locally, up to 2 where they are anti-correlated."""
    return 1.0 - ssim_map(a, b, data_range=data_range, sigma=sigma, channel_axis=channel_axis)


def threshold_map(difference: Any, *, quantile: float = 0.9) -> np.ndarray:
    """Keep the largest changes: values at or above the ``quantile`` of the map, zero elsewhere.

    Shown as an overlay, this hides the low-level changes that spread over the
    whole cell and leaves the regions that changed most.
    """
    if not 0.0 <= quantile <= 1.0:
        raise InputError(f"quantile must be between 0 and 1; got {quantile}")
    values = np.asarray(difference, dtype=np.float32)
    cutoff = np.quantile(values, quantile)
    return np.where(values >= cutoff, values, 0.0).astype(np.float32)


def compare_images(
    first: np.ndarray, second: np.ndarray, *, data_range: float = 1.0, sigma: float = 1.5
) -> dict[str, Any]:
    """Absolute difference and 1 − SSIM (per channel) of two decoded images ``(C, [Z,] Y, X)``.

    ``data_range`` defaults to 1.0, the range of the sigmoid decoders and of
    the [0, 1] training normalisation. A volume thinner than the SSIM window
    has no SSIM map: ``dissimilarity`` is then None and ``ssim_message`` says
    why (None otherwise), so the |Δ| map still stands.
    """
    result: dict[str, Any] = {"abs": absolute_difference(first, second), "dissimilarity": None, "ssim_message": None}
    try:
        result["dissimilarity"] = dissimilarity_map(first, second, data_range=data_range, sigma=sigma, channel_axis=0)
    except InputError as err:
        result["ssim_message"] = str(err)
    return result


def traversal_difference(
    model: MorphoVAE,
    dim: int,
    *,
    start: Any = None,
    extent: float = TRAVERSAL_EXTENT,
    cond: Any = None,
    data_range: float = 1.0,
    sigma: float = 1.5,
) -> dict[str, Any]:
    """Difference maps between the decodes at ``−extent`` and ``+extent`` of one latent dimension.

    Returns
    -------
    dict
        ``low`` and ``high`` (the two decodes, ``(C, [Z,] Y, X)``), then
        :func:`compare_images` of them (``abs``, ``dissimilarity``,
        ``ssim_message``) and ``what`` (``"dim 2: −3 vs +3"``). The other
        dimensions stay at ``start`` (zeros by default); ``extent`` is in units
        of the model's ``latent_scale`` (see :func:`traverse`).
    """
    low, high = traverse(model, int(dim), start=start, values=[-extent, extent], cond=cond)
    maps = compare_images(low, high, data_range=data_range, sigma=sigma)
    return {"low": low, "high": high, **maps, "what": f"dim {int(dim)}: −{extent:g} vs +{extent:g}"}


def group_difference(
    model: MorphoVAE,
    latent_table: pd.DataFrame,
    condition: Any,
    reference: Any,
    *,
    group_column: str = "group",
    cond: Any = None,
    data_range: float = 1.0,
    sigma: float = 1.5,
) -> dict[str, Any]:
    """Difference maps between the decodes of the reference's and the condition's mean μ.

    Returns ``reference`` and ``condition`` (the decodes), :func:`compare_images`
    of them and ``what`` (``"treated − control"``: the words and order of the
    Statistics panel and the report).

    Raises
    ------
    InputError
        When a group is not in ``group_column`` or both are the same.
    """
    means = group_means(latent_table, group_column)
    if condition not in means or reference not in means or condition == reference:
        raise InputError(
            f"choose two different groups of the latent table ({', '.join(map(str, means))}); "
            f"got condition {condition!r} and reference {reference!r}"
        )
    z = np.stack([latent_vector(model, means[reference]), latent_vector(model, means[condition])])
    decoded_reference, decoded_condition = decode_latents(model, z, cond=cond)
    maps = compare_images(decoded_reference, decoded_condition, data_range=data_range, sigma=sigma)
    what = f"{condition} − {reference}"
    return {"reference": decoded_reference, "condition": decoded_condition, **maps, "what": what}
