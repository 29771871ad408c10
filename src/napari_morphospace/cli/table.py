"""``morphospace table``: features measured elsewhere (CellProfiler, DINO, another model) as an analysis folder.

Reads a table with one row per object (CSV, TSV, Parquet, AnnData), matches
its rows to the label images given with ``--labels`` (checking every label
id), chooses its feature columns and writes an analysis folder whose latent
table holds them as ``feature:<name>`` columns. ``morphospace report`` turns
that folder into an HTML report (Cohen's d, KDE and violin plots of the
measurements between the groups); napari opens it with File > Open Folder,
with the features in the Labels layers. The same matching as the Analysis
widget's "Open feature table…" (:mod:`core.analysis.external_table`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import InputError
from .flags import HelpFormatter


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "table",
        help="turn a table of features measured elsewhere (CellProfiler, DINO...) into an analysis folder",
        description="Read a table with one row per object (.csv, .tsv, .parquet or AnnData .h5ad) keyed by label "
        "id (label_id, label, ObjectNumber...) and image (source, image, FileName_*, or ImageNumber with "
        "CellProfiler's image table), check it against the label images, and write an analysis folder with its "
        "features standing where a model's latents stand. Then: morphospace report OUT --allow-external.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("table", type=Path, help="the table of per-object measurements")
    parser.add_argument(
        "--labels",
        type=Path,
        nargs="+",
        default=(),
        metavar="TIF",
        help="label images the measurements were made on (their ids are checked); without them "
        "the rows are taken as they are",
    )
    parser.add_argument(
        "--images",
        type=Path,
        nargs="+",
        default=(),
        metavar="TIF",
        help="the images of those label images (X.tif for X_labels.tif), recorded in the analysis",
    )
    parser.add_argument(
        "--features",
        default="",
        metavar="NAMES",
        help="feature columns: names or patterns separated by commas ('AreaShape_*, Intensity_*'); "
        "default: every numeric measurement",
    )
    parser.add_argument(
        "--group-column",
        default="",
        metavar="COLUMN",
        help="column with each cell's condition (default: group, condition, Metadata_Condition...)",
    )
    parser.add_argument(
        "--image-table",
        default="",
        metavar="CSV",
        help="CellProfiler's image table for an ImageNumber key (default: the …Image.csv beside TABLE)",
    )
    parser.add_argument("--out", type=Path, required=True, help="analysis folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing analysis folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..core.analysis.external_table import (
        LabelsObjects,
        TableSettings,
        image_stem,
        open_external_table,
    )
    from ..core.cells.crop_job import read_labels
    from ..core.cells.pairing import name_stem
    from ..core.project.analysis_folder import create_analysis, save_analysis

    if args.images and not args.labels:
        raise InputError("--images records the images of the label images: give --labels too")
    settings = TableSettings(features=args.features, group_column=args.group_column, image_table=args.image_table)
    layers = []
    for path in args.labels:
        ids = np.unique(np.asarray(read_labels(path)))
        layers.append(LabelsObjects(image_stem(path.name), ids[ids > 0]))
    result = open_external_table(args.table, settings, layers=layers or None)
    images = {image_stem(p.name): p for p in args.images}
    unpaired = [p.name for p in args.labels if name_stem(image_stem(p.name)) not in images] if args.images else []
    if unpaired:
        raise InputError(
            f"no image of --images goes with {', '.join(unpaired)} (X.tif for X_labels.tif); "
            "give one image per label image, or leave --images out"
        )
    sources = [(images[name_stem(image_stem(p.name))], p) for p in args.labels] if args.images else []
    groups = [_group_of(result.table, image_stem(labels.name)) for _image, labels in sources]
    manifest = create_analysis(
        args.out,
        images=[i for i, _l in sources],
        labels=[lab for _i, lab in sources],
        groups=groups,
        overwrite=args.overwrite,
    )
    save_analysis(manifest, latents=result.table)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"analysis folder {args.out}: {len(result.table)} cells with {len(result.feature_columns)} features; "
        f"write its report with: morphospace report {args.out}"
        + (" --allow-external (its images lie outside the folder)" if sources else "")
    )
    return 0


def _group_of(table, source: str) -> str:
    """The condition of one image's cells (its only group value), "" when the table has none or several."""
    if "group" not in table.columns:
        return ""
    values = table.loc[table["source"] == source, "group"].dropna().unique()
    return str(values[0]) if len(values) == 1 else ""
