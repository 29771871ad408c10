"""Cover images (2:1, as the BioImage Model Zoo asks) of the packages :mod:`core.project.zoo` writes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .gallery import crop_montage
from .traversal import traversal_figure

COVER_SIZE = (8, 4)


def encoder_cover(crops: np.ndarray, decoded: np.ndarray) -> Figure:
    """Test crops in a row above their decodes, labelled "crop" and "decoded"."""
    figure = Figure(figsize=COVER_SIZE)
    ax = figure.add_axes((0.12, 0.02, 0.86, 0.96))
    ax.imshow(crop_montage(np.concatenate([crops, decoded]), n_columns=len(crops)))
    ax.set_xticks([])
    ax.set_yticks([0.25 * ax.get_ylim()[0], 0.75 * ax.get_ylim()[0]], ["crop", "decoded"], fontsize=11)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return figure


def decoder_cover(grid: np.ndarray, dims: Sequence[int]) -> Figure:
    """A traversal grid (:func:`~napari_morphospace.core.figures.traversal.traversal_figure`) on the cover's size."""
    figure = traversal_figure(grid, dims=dims)
    figure.set_size_inches(*COVER_SIZE)
    figure.tight_layout()
    return figure


__all__ = ["decoder_cover", "encoder_cover"]
