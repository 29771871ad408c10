"""Maps over crops as figures: ±3 difference maps of a traversal and Grad-CAM of the top dimensions.

The maps are computed in :mod:`~napari_morphospace.core.analysis.difference`
and :mod:`~napari_morphospace.core.analysis.gradcam`; these figures lay them
out for the HTML report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..analysis.difference import threshold_map
from .gallery import composite_rgb


def _flat(image: np.ndarray) -> np.ndarray:
    """A map (C, [Z,] Y, X) as one 2D picture: maximum over channels and Z."""
    image = np.asarray(image, dtype=np.float32)
    return image.reshape(-1, *image.shape[-2:]).max(axis=0)


def difference_figure(maps: Sequence[tuple[int, dict[str, np.ndarray]]]) -> Figure:
    """One row per dimension: decodes at −3 and +3, |difference| and thresholded 1 − SSIM (max over channels/Z).

    ``maps`` pairs each dimension with its
    :func:`~napari_morphospace.core.analysis.difference.traversal_difference`.
    """
    figure = Figure(figsize=(8.0, 2.1 * len(maps)), layout="constrained")
    axes = figure.subplots(len(maps), 4, squeeze=False)
    titles = ("decode at −3", "decode at +3", "|difference|", "1 − SSIM (top 10 %)")
    for row, (dim, result) in enumerate(maps):
        ssim = result["dissimilarity"]  # None for a volume thinner than the SSIM window: the panel stays empty
        pictures = [
            composite_rgb(result["low"]),
            composite_rgb(result["high"]),
            _flat(result["abs"]),
            _flat(threshold_map(ssim) if ssim is not None else np.zeros_like(result["abs"])),
        ]
        for col, picture in enumerate(pictures):
            ax = axes[row, col]
            ax.imshow(picture, cmap=None if col < 2 else "magma")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=8)
        axes[row, 0].set_ylabel(f"dim {dim}", fontsize=8)
    return figure


def gradcam_figure(
    crops: np.ndarray, maps: dict[tuple[int, int], np.ndarray], dims: Sequence[int], labels: Sequence[str]
) -> Figure:
    """Rows: cells; columns: the crop, then the +μ_k and −μ_k Grad-CAM of every dimension in ``dims``.

    ``maps[(k, sign)]`` holds one map per crop, from
    :func:`~napari_morphospace.core.analysis.gradcam.gradcam_encoder`.
    """
    n_cols = 1 + 2 * len(dims)
    figure = Figure(figsize=(1.5 * n_cols, 1.6 * len(crops)), layout="constrained")
    axes = figure.subplots(len(crops), n_cols, squeeze=False)
    for row, crop in enumerate(crops):
        axes[row, 0].imshow(composite_rgb(crop))
        axes[row, 0].set_ylabel(labels[row], fontsize=7)
        col = 1
        for dim in dims:
            for sign in (1, -1):
                ax = axes[row, col]
                ax.imshow(composite_rgb(crop)[..., 1], cmap="gray")
                ax.imshow(_flat(maps[(dim, sign)][row][None]), cmap="jet", alpha=0.45, vmin=0, vmax=1)
                if row == 0:
                    ax.set_title(f"{'+' if sign > 0 else '−'}μ{dim}", fontsize=8)
                col += 1
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    return figure


__all__ = ["difference_figure", "gradcam_figure"]
