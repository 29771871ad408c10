"""Crops as pictures: channel composites, 3D projections and montages for previews and reports."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from skimage.util import montage

# Additive colours per channel (green, magenta, cyan, yellow), as napari shows split channels.
CHANNEL_COLOURS = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=np.float32)


def composite_rgb(crop: np.ndarray) -> np.ndarray:
    """One crop ``(C, [Z,] Y, X)`` in [0, 1] as an RGB uint8 picture ``(Y, X, 3)``.

    A single channel is grey; several channels add up in :data:`CHANNEL_COLOURS`
    (at most four are shown). A 3D crop is shown as its maximum projection
    along Z, which keeps every bright structure visible.
    """
    crop = np.asarray(crop, dtype=np.float32)
    if crop.ndim not in (3, 4):
        raise ValueError(f"expected a crop (C, Y, X) or (C, Z, Y, X), got shape {crop.shape}")
    if crop.ndim == 4:
        crop = crop.max(axis=1)
    crop = np.nan_to_num(np.clip(crop, 0.0, 1.0))
    if crop.shape[0] == 1:
        rgb = np.repeat(crop[0][..., None], 3, axis=-1)
    else:
        channels = crop[: len(CHANNEL_COLOURS)]
        rgb = np.einsum("cyx,ck->yxk", channels, CHANNEL_COLOURS[: len(channels)])
    return (np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def crop_montage(crops: np.ndarray, *, n_columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Crops ``(N, C, [Z,] Y, X)`` side by side as one RGB uint8 picture, white gaps between them."""
    pictures = np.stack([composite_rgb(c) for c in crops])
    n = len(pictures)
    columns = n_columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    padded = np.pad(pictures, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=255)
    return montage(padded, grid_shape=(rows, columns), channel_axis=-1, fill=(255, 255, 255)).astype(np.uint8)


def gallery_figure(images: np.ndarray, groups: list[str], *, per_group: int = 8, seed: int = 0) -> Figure:
    """A figure with one row of example crops per group, picked at random with ``seed``."""
    groups = list(groups)
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    figure = Figure(figsize=(1.2 * per_group, 1.3 * len(names) + 0.3), layout="constrained")
    axes = figure.subplots(len(names), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        members = np.flatnonzero(np.asarray(groups) == name)
        chosen = np.sort(rng.choice(members, size=min(per_group, len(members)), replace=False))
        ax.imshow(crop_montage(np.stack([np.asarray(images[i]) for i in chosen]), n_columns=per_group))
        ax.set_title(f"{name} ({len(members)} crops)", fontsize=9, loc="left")
        ax.set_axis_off()
    return figure
