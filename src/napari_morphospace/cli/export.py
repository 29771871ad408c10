"""``morphospace export``: crops as OME-TIFF/TIFF, the table as CSV/Parquet, latents as AnnData.

Every target is checked before the first file is written, so a refused
export (an existing file without ``--overwrite``, a bad name) writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from .flags import HelpFormatter


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export crops, the cell table and latents for other tools",
        description="Write crops as OME-TIFF (or ImageJ TIFF) with pixel sizes and channel names, all of them, "
        "a selection, or one folder per annotation class; optionally the table (crop id, source, bounding box, "
        "group, annotation, latents, embeddings) as CSV/Parquet and the latents as AnnData .h5ad.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--crops", type=Path, required=True, help="crop-set folder")
    parser.add_argument("--latents", type=Path, help="latent table from 'morphospace embed' (.csv or .parquet)")
    parser.add_argument(
        "--annotations",
        type=Path,
        metavar="ANALYSIS_DIR",
        help="analysis folder holding annotations.csv (default: the crop table's annotation column)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the crop files and manifest.csv")
    parser.add_argument(
        "--which",
        choices=("all", "selected", "per-class"),
        default="all",
        help="all crops, the crops listed in --ids, or annotated crops in one folder per class",
    )
    parser.add_argument(
        "--ids",
        type=Path,
        help="for --which selected: a file with one crop id per line, or a CSV with a crop_id column",
    )
    parser.add_argument(
        "--format", choices=("ome-tiff", "tiff"), default="ome-tiff", help="OME-TIFF (default) or ImageJ TIFF for Fiji"
    )
    parser.add_argument("--no-crops", action="store_true", help="write only --table/--anndata, no crop files")
    parser.add_argument("--table", type=Path, help="also write the cell table: .csv or .parquet")
    parser.add_argument("--anndata", type=Path, help="also write the latents as AnnData .h5ad (needs --latents)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(run=run)


def read_crop_ids(path: Path) -> np.ndarray:
    """Crop ids from a file: a CSV with a ``crop_id`` column, or one integer per line (``#`` comments)."""
    import pandas as pd

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read the id file {path} ({err.strerror or err}); check the path") from err
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    if lines and lines[0].split(",")[0].strip() == "crop_id":
        try:
            column = pd.read_csv(path)["crop_id"]
        except (ValueError, pd.errors.ParserError) as err:
            raise InputError(f"cannot read {path} as a CSV table ({err}); write one crop id per line instead") from err
        ids = pd.to_numeric(column, errors="coerce")
        if column.empty or not (ids.notna() & (ids == ids.round())).all():
            raise InputError(f"{path}: the crop_id column must hold whole numbers and at least one; fix the file")
        return ids.to_numpy(dtype=np.int64)
    ids = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            ids.append(int(line))
        except ValueError:
            raise InputError(f"{path} line {number}: {line!r} is not a crop id; write one integer per line") from None
    if not ids:
        raise InputError(f"{path} lists no crop ids; write one crop id per line")
    return np.asarray(ids, dtype=np.int64)


def run(args: argparse.Namespace) -> int:
    from ..core.cells.crop_set import load_crop_set
    from ..core.project.annotations import read_annotations
    from ..core.project.export import (
        MANIFEST_NAME,
        analysis_table,
        check_anndata_target,
        check_export_folder,
        check_latent_table,
        check_table_target,
        export_anndata,
        export_crops,
        export_table,
        read_table,
    )

    if args.which == "selected" and args.ids is None:
        raise InputError("--which selected needs --ids FILE listing the crop ids to export")
    if args.ids is not None and args.which != "selected":
        raise InputError("--ids is used only with --which selected")
    if args.anndata is not None and args.latents is None:
        raise InputError("--anndata needs --latents (the table written by 'morphospace embed')")
    if args.no_crops and args.table is None and args.anndata is None:
        raise InputError("--no-crops leaves nothing to write; add --table FILE and/or --anndata FILE")
    # Every target and optional dependency is checked before the first file is written.
    if args.table is not None:
        check_table_target(args.table, args.overwrite)
    if args.anndata is not None:
        check_anndata_target(args.anndata, args.overwrite)
    if not args.no_crops:
        check_export_folder(args.out, args.overwrite)

    crop_set = load_crop_set(args.crops)
    latents = check_latent_table(read_table(args.latents), str(args.latents)) if args.latents is not None else None
    annotations = None
    if args.annotations is not None:
        annotations, _classes = read_annotations(args.annotations)
        if annotations.empty:
            raise InputError(f"{args.annotations} holds no annotations.csv; annotate cells first or drop --annotations")
    crop_ids = read_crop_ids(args.ids) if args.ids is not None else None
    table = analysis_table(crop_set.table, latents, annotations)

    if not args.no_crops:
        files = export_crops(
            crop_set,
            args.out,
            which=args.which,
            crop_ids=crop_ids,
            annotations=annotations,
            format=args.format,
            overwrite=args.overwrite,
        )
        print(f"{len(files)} crops written to {args.out} (list: {args.out / MANIFEST_NAME})", file=sys.stderr)
    if args.table is not None:
        export_table(table, args.table, overwrite=args.overwrite)
        print(f"table of {len(table)} crops written to {args.table}", file=sys.stderr)
    if args.anndata is not None:
        has_latents = table[[c for c in table.columns if c.startswith("mu_")]].notna().all(axis=1)
        export_anndata(table[has_latents.to_numpy()], args.anndata, overwrite=args.overwrite)
        print(f"AnnData of {int(has_latents.sum())} crops written to {args.anndata}", file=sys.stderr)
    return 0
