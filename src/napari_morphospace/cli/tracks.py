"""``morphospace tracks``: per-track statistics of tracked cells' paths through latent space."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .flags import HelpFormatter

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tracks",
        help="per-track statistics of tracked cells' paths through latent space",
        description="Speed, path length, net displacement, straightness and time to a region of every track "
        "(cells with a track_id, see 'morphospace crops --track-ids'), and a comparison of two groups of tracks.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "cells",
        type=Path,
        metavar="ANALYSIS_DIR|TABLE",
        help="analysis folder, or a latent table (.csv/.parquet) with track_id, t and mu_* columns",
    )
    parser.add_argument(
        "--columns",
        default="mu",
        metavar="PREFIX",
        help="coordinates of the paths: mu (latent means, default) or a 2D embedding (PCA, UMAP, TSNE)",
    )
    parser.add_argument(
        "--track-column",
        default=None,
        metavar="NAME",
        help="take the track ids from this column of the table (e.g. a tracker's TRACK_ID)",
    )
    parser.add_argument("--frame-interval", type=float, default=1.0, help="time between frames (speeds per this unit)")
    parser.add_argument("--group-column", default="group", help="condition/outcome column to compare tracks by")
    parser.add_argument("--groups", nargs=2, default=None, metavar=("A", "B"), help="the two groups to compare")
    region = parser.add_mutually_exclusive_group()
    region.add_argument(
        "--region-cluster",
        type=int,
        default=None,
        metavar="K",
        help="time for each track to reach cluster K (the cluster column)",
    )
    region.add_argument(
        "--region-selection",
        default=None,
        metavar="NAME",
        help="time for each track to reach the named selection NAME of the analysis",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the per-track statistics (.csv/.parquet)")
    parser.add_argument("--figure", type=Path, default=None, help="write a figure of the paths (.png/.svg)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--allow-external",
        action="store_true",
        help="also read data the analysis folder refers to outside itself (only for folders you trust)",
    )
    parser.set_defaults(run=run)


def _cells_and_selections(path: Path, allow_external: bool) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    from ..core.errors import InputError
    from ..core.project.analysis_folder import is_analysis_folder, open_analysis
    from ..core.project.export import read_table

    if is_analysis_folder(path):
        analysis = open_analysis(path, load_model=False, allow_external=allow_external)
        for problem in analysis.problems:
            print(f"morphospace tracks: warning: {problem}", file=sys.stderr)
        if analysis.latents is None:
            raise InputError(f"{path} has no latent table; embed the cells first")
        return analysis.latents, analysis.selections
    if not path.is_file():
        raise InputError(f"{path} is neither an analysis folder nor a table file; check the path")
    return read_table(path), {}


def _columns(cells: pd.DataFrame, prefix: str) -> list[str]:
    from ..core.analysis.cell_table import mu_columns
    from ..core.errors import InputError

    columns = mu_columns(cells) if prefix == "mu" else [c for c in (f"{prefix}_0", f"{prefix}_1") if c in cells.columns]
    if not columns or (prefix != "mu" and len(columns) < 2):
        raise InputError(f"the cells have no {prefix}_* columns; use --columns mu or compute that embedding first")
    return columns


def _region(args: argparse.Namespace, cells: pd.DataFrame, selections: dict[str, list[int]]) -> np.ndarray | None:
    import numpy as np

    from ..core.errors import InputError

    if args.region_cluster is not None:
        if "cluster" not in cells.columns:
            raise InputError(
                "the cells have no cluster column; cluster them (Scatter widget) or use --region-selection"
            )
        return cells.loc[cells["cluster"] == args.region_cluster, "crop_id"].to_numpy()
    if args.region_selection is not None:
        if args.region_selection not in selections:
            names = ", ".join(selections) or "none"
            raise InputError(f"no named selection {args.region_selection!r} in the analysis (it has: {names})")
        return np.asarray(selections[args.region_selection], dtype=np.int64)
    return None


def run(args: argparse.Namespace) -> int:
    from ..core.analysis import tracks
    from ..core.cells import track_ids
    from ..core.errors import InputError
    from ..core.figures.render import render_figure
    from ..core.figures.tracks import paths_figure
    from ..core.project.export import export_table

    for target in (args.out, args.figure):
        if target is not None and target.exists() and not args.overwrite:
            raise InputError(f"{target} already exists; choose another file or pass --overwrite")
    cells, selections = _cells_and_selections(args.cells, args.allow_external)
    if args.track_column is not None:
        cells = track_ids.with_track_ids(cells, track_ids.track_ids_from_column(cells, args.track_column))
    columns = _columns(cells, args.columns)
    statistics = tracks.track_statistics(
        cells,
        columns,
        frame_interval=args.frame_interval,
        region=_region(args, cells, selections),
        group_column=args.group_column,
    )
    print(f"{track_ids.describe_tracks(cells)}; coordinates {columns[0]}..{columns[-1]}")
    summary = statistics[[m for m in (*tracks.MEASURES, "time_to_region") if m in statistics.columns]]
    print(summary.describe().loc[["mean", "50%", "std"]].rename(index={"50%": "median"}).to_string(float_format="%.4g"))
    if args.group_column in statistics.columns:
        try:
            comparison = tracks.compare_track_groups(statistics, args.group_column, args.groups)
        except InputError as err:
            print(f"groups of tracks not compared: {err}")
        else:
            a, b = comparison.attrs["groups"]
            print(
                f"\n{a} against {b} (one sample per track; d > 0: higher in {a}; bootstrap interval of d; "
                "permutation p; Benjamini-Hochberg q):"
            )
            print(comparison.to_string(index=False, float_format="%.4g"))
            for note in comparison.attrs["notes"]:
                print(f"note: {note}")
    if args.out is not None:
        export_table(statistics, args.out, overwrite=args.overwrite)
        print(f"wrote {len(statistics)} tracks to {args.out}")
    if args.figure is not None:
        figure = paths_figure(cells, columns[:2], colour_by=None)
        file_format = "svg" if args.figure.suffix.lower() == ".svg" else "png"
        args.figure.write_bytes(render_figure(figure, format=file_format, dpi=120))
        print(f"wrote {args.figure}")
    return 0
