"""Tracked cells' paths through latent space as a figure (:mod:`~napari_morphospace.core.analysis.tracks`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ..analysis.tracks import TRACK_ID, track_paths, track_statistics
from ..errors import InputError


def paths_figure(
    cells: pd.DataFrame, columns: Sequence[str], *, colour_by: str | None = None, max_tracks: int = 200
) -> Figure:
    """The tracks' paths through two coordinates: grey cells behind, one line per track, a dot at its start.

    Lines are coloured by time (viridis, early to late) or, with ``colour_by``,
    by each track's last non-empty value of that column (outcome or condition), as
    :func:`~napari_morphospace.core.analysis.tracks.track_statistics` gives it.
    """
    if len(columns) != 2:
        raise InputError(f"a path figure draws two coordinates; got {list(columns)}")
    paths = track_paths(cells, columns)
    figure = Figure(figsize=(5.0, 4.2))
    axes = figure.add_subplot()
    axes.scatter(cells[columns[0]], cells[columns[1]], s=4, c="0.8", linewidths=0)
    chosen = list(paths)[:max_tracks]
    if colour_by is None:
        segments = [np.stack([z[:-1], z[1:]], axis=1) for _, z in (paths[k] for k in chosen) if len(z) > 1]
        times = [t[1:] for t, z in (paths[k] for k in chosen) if len(z) > 1]
        if segments:
            lines = LineCollection(list(np.concatenate(segments)), cmap="viridis", linewidths=1.0)
            lines.set_array(np.concatenate(times).astype(float))
            axes.add_collection(lines)
            figure.colorbar(lines, ax=axes, label="frame")
    else:
        last = track_statistics(cells, columns, group_column=colour_by).set_index(TRACK_ID)[colour_by]
        palette = {value: f"C{i % 10}" for i, value in enumerate(sorted(pd.unique(last.astype(str))))}
        for key in chosen:
            _, z = paths[key]
            axes.plot(z[:, 0], z[:, 1], lw=1.0, color=palette[str(last[key])])
        for value, colour in palette.items():
            axes.plot([], [], color=colour, label=value)
        axes.legend(title=colour_by, fontsize=7)
    starts = np.array([paths[k][1][0] for k in chosen]) if chosen else np.zeros((0, 2))
    axes.scatter(starts[:, 0], starts[:, 1], s=10, c="k", marker="o", linewidths=0, label=None)
    axes.set_xlabel(columns[0])
    axes.set_ylabel(columns[1])
    title = f"{len(chosen)} track paths" + (f" (of {len(paths)})" if len(paths) > len(chosen) else "")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


__all__ = ["paths_figure"]
