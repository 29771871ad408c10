"""How a scatter plot colours its points: categories get a palette and a legend, numbers a colormap and a bar.

Qt-free presentation rules (the Scatter widget shows the legend text and the
bar image; a script can use the same colours, e.g. for a matplotlib plot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps

DEFAULT_COLOR = (0.4, 0.7, 1.0, 1.0)
DIMMED_ALPHA = 0.12  # points of other time frames than the one shown
MAX_CATEGORIES = 20  # integer columns with at most this many values are categories; the legend names this many
MISSING_COLOR = (0.5, 0.5, 0.5, 1.0)  # a NaN of a numeric column


@dataclass
class PointColors:
    """RGBA per point, the legend (HTML), and the colour bar (an RGB image) of a numeric column (else None)."""

    colors: np.ndarray
    legend: str
    colorbar: np.ndarray | None = None


def point_colors(
    values: np.ndarray | None, name: str = "", *, n: int | None = None, opacity: float = 1.0
) -> PointColors:
    """Colours for the points from one column's ``values`` (None: ``n`` points in one colour), alpha × ``opacity``.

    Booleans, text and integer columns with at most :data:`MAX_CATEGORIES`
    values are categories (tab10/tab20, sorted); other numbers are scaled
    from their minimum to their maximum on viridis, NaN grey.
    """
    if values is None:
        result = PointColors(np.tile(np.asarray(DEFAULT_COLOR, np.float32), (int(n or 0), 1)), "")
    else:
        series = pd.Series(values)
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if numeric and not (pd.api.types.is_integer_dtype(series) and series.nunique() <= MAX_CATEGORIES):
            result = _numeric_colors(series.to_numpy(dtype=float), name)
        else:
            result = _category_colors(series)
    result.colors[:, 3] *= opacity
    return result


def _category_colors(values: pd.Series) -> PointColors:
    codes, categories = pd.factorize(values.astype("string").fillna("<missing>"), sort=True)
    palette = colormaps["tab10" if len(categories) <= 10 else "tab20"]
    table = np.asarray(palette(np.arange(len(categories)) % palette.N), np.float32)
    swatches = " ".join(
        f'<span style="color:rgb({int(255 * r)},{int(255 * g)},{int(255 * b)})">■</span> {name}'
        for (r, g, b, _), name in zip(table[:MAX_CATEGORIES], categories[:MAX_CATEGORIES], strict=True)
    )
    more = f" … and {len(categories) - MAX_CATEGORIES} more" if len(categories) > MAX_CATEGORIES else ""
    return PointColors(table[codes].copy(), swatches + more)


def _numeric_colors(values: np.ndarray, name: str) -> PointColors:
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    colors = np.asarray(colormaps["viridis"](np.nan_to_num(scaled, nan=0.0)), np.float32)
    colors[~np.isfinite(values)] = MISSING_COLOR
    bar = (colormaps["viridis"](np.linspace(0, 1, 256))[None, :, :3] * 255).astype(np.uint8).repeat(10, axis=0)
    return PointColors(colors, f"{name}: {low:.3g} (left) … {high:.3g} (right)", bar)


def dim_other_frames(colors: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """``colors`` with the points not at the shown frame (``shown`` False) faded to :data:`DIMMED_ALPHA`."""
    if shown.all():
        return colors
    colors = colors.copy()
    colors[~shown, 3] *= DIMMED_ALPHA
    return colors


__all__ = ["DEFAULT_COLOR", "DIMMED_ALPHA", "MAX_CATEGORIES", "PointColors", "dim_other_frames", "point_colors"]
