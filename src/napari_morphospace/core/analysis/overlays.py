"""What the latent-space viewer needs besides decoding: which dimensions, where to start, where overlays go.

Pure functions over tables and arrays, used by the "Latent space" widget and
usable from a script:

* :func:`ranked_dimensions` / :func:`top_dimensions` — which latent dimensions
  to give sliders, most informative first (KL to the prior, or |Cohen's d|
  between two groups).
* :func:`find_cell`, :func:`start_vector`, :func:`latent_from_sliders` — the
  point a traversal starts from and the latent vector a set of slider values
  stands for (slider units are multiples of the model's ``latent_scale``).
* :func:`overlay_on_layer` — napari ``translate``/``scale`` that put a
  crop-sized map (Grad-CAM) on its cell in a source layer that has its own
  physical scale and translate (and possibly a time axis).
* :func:`paste_maps` — a batch of crop-sized maps pasted into one map of the
  source's size, for batch Grad-CAM.

The difference maps between two decodes are in :mod:`.difference`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import InputError
from .cell_table import require_mu_columns
from .gradcam import paste_into_source, place_in_source
from .statistics import cohens_d, group_arrays, kl_per_dimension, rank_dimensions
from .traversal import group_means

RankBy = Literal["kl", "cohens_d", "index"]


# --------------------------------------------------------------------------- choosing dimensions


def logvar_columns(latent_table: pd.DataFrame) -> list[str]:
    """The ``logvar_0 .. logvar_{D-1}`` columns in dimension order, or [] when the table has none."""
    found = {int(m.group(1)): c for c in latent_table.columns if (m := re.fullmatch(r"logvar_(\d+)", str(c)))}
    return [found[i] for i in range(len(found))] if sorted(found) == list(range(len(found))) else []


def ranked_dimensions(
    latent_table: pd.DataFrame,
    *,
    by: RankBy = "kl",
    groups: Sequence[Any] = (),
    group_column: str = "group",
) -> tuple[np.ndarray, np.ndarray]:
    """All latent dimensions, most informative first, with the score they were ranked by.

    Parameters
    ----------
    latent_table : pandas.DataFrame
        ``mu_0..mu_{D-1}`` (and ``logvar_*`` for ``by="kl"``), one row per cell.
    by : {"kl", "cohens_d", "index"}
        ``"kl"``: decreasing mean KL(q(z_k|x) ‖ N(0, 1)) (needs the log-variances);
        ``"cohens_d"``: decreasing |Cohen's d| between ``groups[0]`` and ``groups[1]``
        of ``group_column`` (undefined d last); ``"index"``: natural order.

    Returns
    -------
    order : np.ndarray of int
        Dimension indices, best first.
    score : np.ndarray of float
        The score of every dimension in dimension order (KL in nats, Cohen's d
        with its sign, or NaN for ``"index"``).
    """
    mu_cols = require_mu_columns(latent_table)
    if by == "index":
        return np.arange(len(mu_cols)), np.full(len(mu_cols), np.nan)
    if by == "kl":
        lv_cols = logvar_columns(latent_table)
        if len(lv_cols) != len(mu_cols):
            raise InputError(
                "ranking by KL needs logvar_0, logvar_1, ... next to the mu columns; "
                "embed the crops with the model again, or rank by Cohen's d between two groups"
            )
        kl = kl_per_dimension(latent_table[mu_cols].to_numpy(float), latent_table[lv_cols].to_numpy(float))
        return np.argsort(-kl, kind="stable"), kl
    if by == "cohens_d":
        if len(groups) != 2:
            raise InputError(f"ranking by Cohen's d needs two groups to compare; got {list(groups)}")
        a, b = group_arrays(latent_table, mu_cols, group_column, list(groups))
        d = cohens_d(a, b, names=mu_cols).d
        return rank_dimensions(d), d
    raise InputError(f"unknown ranking {by!r}; choose 'kl', 'cohens_d' or 'index'")


def top_dimensions(latent_table: pd.DataFrame, k: int | None, **ranking: Any) -> np.ndarray:
    """The ``k`` best dimensions of :func:`ranked_dimensions` (all of them when ``k`` is None)."""
    order, _ = ranked_dimensions(latent_table, **ranking)
    if k is not None and k < 1:
        raise InputError(f"show at least one dimension (got k={k})")
    return order if k is None else order[:k]


# --------------------------------------------------------------------------- start points and slider values


def find_cell(table: pd.DataFrame, source: str, label_id: int, t: int | None = None) -> int:
    """Position (``iloc``) of the row of cell ``label_id`` of ``source`` (at frame ``t``) in a crop or latent table.

    ``t`` is ignored when the table has no ``t`` column or ``t`` is None.

    Raises
    ------
    InputError
        When no row matches, naming what was looked for.
    """
    missing = [c for c in ("source", "label_id") if c not in table.columns]
    if missing:
        raise InputError(f"the table has no {', '.join(missing)} column: it does not say which cell each row is")
    match = (table["source"].astype(str) == str(source)).to_numpy() & (table["label_id"].to_numpy() == int(label_id))
    if t is not None and "t" in table.columns:
        match &= table["t"].to_numpy() == int(t)
    rows = np.flatnonzero(match)
    if rows.size == 0:
        where = f" at t={t}" if t is not None and "t" in table.columns else ""
        raise InputError(
            f"label {label_id} of {source!r}{where} is not in the table; select a cell that was cropped "
            "(label 0 is background), or build and embed the crops of this layer first"
        )
    return int(rows[0])


def start_vector(
    latent_table: pd.DataFrame | None,
    latent_dim: int,
    *,
    kind: Literal["origin", "group mean", "cell"] = "origin",
    group: Any = None,
    row: int | None = None,
    group_column: str = "group",
) -> np.ndarray:
    """The latent vector a traversal starts from: the origin, a group's mean μ, or one cell's μ (table row ``row``)."""
    if kind == "origin":
        return np.zeros(latent_dim, np.float32)
    if latent_table is None:
        raise InputError(f"starting from a {kind} needs a latent table: embed the crops with the model first")
    columns = require_mu_columns(latent_table)
    if len(columns) != latent_dim:
        raise InputError(
            f"the latent table has {len(columns)} dimensions but the model has {latent_dim}: embed with this model"
        )
    if kind == "group mean":
        means = group_means(latent_table, group_column)
        if group not in means:
            raise InputError(f"group {group!r} is not in column {group_column!r}; groups: {', '.join(map(str, means))}")
        return means[group]
    if kind == "cell":
        if row is None or not 0 <= row < len(latent_table):
            raise InputError("no cell is chosen: select a cell in a Labels layer and press 'Use selected cell'")
        return latent_table[columns].iloc[row].to_numpy(np.float32)
    raise InputError(f"unknown start {kind!r}; choose 'origin', 'group mean' or 'cell'")


def latent_from_sliders(start: Any, dims: Sequence[int], values: Sequence[float], latent_scale: Any) -> np.ndarray:
    """``start`` with ``z[dims[i]] = values[i] · latent_scale[dims[i]]``:
    slider values are in units of the latent's spread.

    Sliders span −3…+3 of ``latent_scale`` (the prior SD, 1, for the β-VAEs;
    the empirical SD of the combined latent for the multi-encoder VAE), the
    same convention as :func:`~napari_morphospace.core.analysis.traversal.traverse`.
    """
    z = np.array(start, dtype=np.float32).reshape(-1)
    scale = np.ones_like(z) if latent_scale is None else np.asarray(latent_scale, dtype=np.float32).reshape(-1)
    index = np.asarray(dims, dtype=np.int64)
    z[index] = np.asarray(values, dtype=np.float32) * scale[index]
    return z


def slider_values(z: Any, dims: Sequence[int], latent_scale: Any) -> np.ndarray:
    """Inverse of :func:`latent_from_sliders`: the slider positions that show ``z`` (not clipped)."""
    z = np.asarray(z, dtype=np.float32).reshape(-1)
    scale = np.ones_like(z) if latent_scale is None else np.asarray(latent_scale, dtype=np.float32).reshape(-1)
    index = np.asarray(dims, dtype=np.int64)
    return z[index] / scale[index]


# --------------------------------------------------------------------------- overlays in source coordinates


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
        With :func:`~napari_morphospace.core.analysis.gradcam.place_in_source` giving the
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


# --------------------------------------------------------------------------- difference maps for display


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
    (:func:`~napari_morphospace.core.analysis.overlays.overlay_on_layer`). Several: the
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


# --------------------------------------------------------------------------- colours


DEFAULT_CHANNEL_COLORMAPS = ("gray", "green", "magenta", "cyan", "yellow", "red", "blue")


def channel_colormaps(channel_names: Sequence[str], known: Mapping[str, str]) -> list[str]:
    """A colormap per decoded channel: the one of a shown layer named like the channel, else a default.

    ``known`` maps layer names to colormap names; a layer matches a channel
    when its name is the channel name or ends with ``" " + channel name``
    (the ``"<group> <channel>"`` layers of the readers and sample data). One
    channel defaults to gray; several channels cycle through green, magenta, cyan, …
    """
    defaults = DEFAULT_CHANNEL_COLORMAPS if len(channel_names) == 1 else DEFAULT_CHANNEL_COLORMAPS[1:]
    colormaps = []
    for index, channel in enumerate(channel_names):
        match = next((cmap for name, cmap in known.items() if name == channel or name.endswith(f" {channel}")), None)
        colormaps.append(match or defaults[index % len(defaults)])
    return colormaps


__all__ = [
    "logvar_columns",
    "ranked_dimensions",
    "top_dimensions",
    "find_cell",
    "start_vector",
    "latent_from_sliders",
    "slider_values",
    "overlay_on_layer",
    "paste_maps",
    "channel_colormaps",
]
