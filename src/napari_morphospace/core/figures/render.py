"""Figures as file contents: PNG, SVG or PDF bytes for reports, packages and exports."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

FORMATS = ("png", "svg", "pdf")


def render_figure(figure: Figure, *, format: str = "png", dpi: int = 90, tight: bool = False) -> bytes:
    """``figure`` rendered as ``format`` bytes, without pyplot or a GUI.

    matplotlib picks the canvas for the format (Agg for PNG) for this one
    render, so a figure shown on a Qt canvas stays there. ``tight`` crops the
    white border around the axes (``bbox_inches="tight"``).
    """
    if format not in FORMATS:
        raise ValueError(f"figure format {format!r} is not supported; use {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=format, dpi=dpi, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


__all__ = ["FORMATS", "render_figure"]
