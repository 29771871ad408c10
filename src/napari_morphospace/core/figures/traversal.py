"""Latent traversals as figures: one row per dimension (or per group's start), one column per step.

The decoded grids come from :mod:`~napari_morphospace.core.analysis.traversal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..analysis.traversal import traversal_values
from ..errors import InputError


def _display_image(image: np.ndarray, channel: int) -> np.ndarray:
    """One 2D picture of a decoded image (C, [Z,] Y, X): the chosen channel, max-projected along Z in 3D."""
    plane = image[channel]
    return plane.max(axis=0) if plane.ndim == 3 else plane


def traversal_figure(
    grid: np.ndarray,
    *,
    dims: Sequence[int] | None = None,
    values: Any = None,
    channel: int = 0,
    panel_size: float = 1.2,
) -> Figure:
    """A matplotlib figure of a traversal grid: one row per dimension, one column per step.

    Parameters
    ----------
    grid : np.ndarray
        ``(n_dims, n_steps, C, [Z,] Y, X)`` from
        :func:`~napari_morphospace.core.analysis.traversal.traversal_grid`, values in [0, 1].
    dims : sequence of int, optional
        Row labels (the latent dimensions); 0..n_dims-1 when omitted.
    values : array-like, optional
        Column labels (the traversal values); ``linspace(-3, 3, n_steps)`` when omitted.
    channel : int
        The channel shown. Volumes are shown as their maximum projection along Z.

    Returns
    -------
    matplotlib.figure.Figure
        A figure not attached to any GUI backend; save it with ``fig.savefig("grid.png")``.
    """
    if grid.ndim not in (5, 6):
        raise InputError(f"expected a traversal grid (dims, steps, C, [Z,] Y, X); got an array of shape {grid.shape}")
    n_dims, n_steps = grid.shape[:2]
    if not 0 <= channel < grid.shape[2]:
        raise InputError(f"channel {channel} does not exist: the decoded images have {grid.shape[2]} channel(s)")
    dims = list(range(n_dims)) if dims is None else list(dims)
    steps = traversal_values(n_steps) if values is None else np.asarray(values).reshape(-1)
    figure = Figure(figsize=(panel_size * n_steps + 0.6, panel_size * n_dims + 0.4))
    axes = figure.subplots(n_dims, n_steps, squeeze=False)
    for row in range(n_dims):
        for col in range(n_steps):
            ax = axes[row, col]
            ax.imshow(_display_image(grid[row, col], channel), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{steps[col]:+.1f}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"dim {dims[row]}", fontsize=8)
    figure.tight_layout()
    return figure


def group_traversal_figure(traversals: Mapping[Any, np.ndarray], *, values: Any = None, channel: int = 0) -> Figure:
    """Traversals of one dimension from several groups' means, one row per group (labelled with the group).

    ``traversals`` is :func:`~napari_morphospace.core.analysis.traversal.group_traversals`.
    """
    if not traversals:
        raise InputError("no group traversals to draw: the latent table needs a group column with values")
    grid = np.stack(list(traversals.values()))
    figure = traversal_figure(grid, values=values, channel=channel)
    n_steps = grid.shape[1]
    for row, group in enumerate(traversals):
        figure.axes[row * n_steps].set_ylabel(str(group), fontsize=8)
    return figure


__all__ = ["group_traversal_figure", "traversal_figure"]
