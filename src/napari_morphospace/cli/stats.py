"""``morphospace stats``: do two conditions differ in the latent space? Permutation tests, FDR, bootstrap, distance.

Reads a latent table (from ``morphospace embed``), compares two groups of one
column and writes ``inference.csv`` (one row per dimension: mean difference,
Cohen's d, their bootstrap intervals, p, Benjamini–Hochberg q, significant)
and ``inference.json`` (the same, plus the whole-space distance, the settings
and the notes) into ``--out``. The core is imported inside :func:`run` so
that ``morphospace --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.errors import InputError

TABLE_NAME = "inference.csv"
JSON_NAME = "inference.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="test whether two conditions differ in the latent space",
        description="Per-dimension permutation tests of the difference between two groups with Benjamini-Hochberg "
        "FDR control, bootstrap confidence intervals of the mean difference and Cohen's d, and a permutation test of "
        "the energy distance (or MMD) between the groups in the whole latent space. Cells of one image are not "
        "independent: with several images per condition, use --by-image.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--latents", type=Path, help="latent table from 'morphospace embed' (.csv or .parquet)")
    source.add_argument(
        "--table",
        type=Path,
        help="or a table of features measured elsewhere, one row per object (CellProfiler, DINO...: "
        ".csv, .tsv, .parquet, .h5ad); see docs/external-tables.md",
    )
    parser.add_argument(
        "--features",
        default="",
        help="with --table: feature columns, names or patterns separated by commas ('AreaShape_*'); "
        "default: every numeric measurement",
    )
    parser.add_argument(
        "--image-table",
        default="",
        help="with --table: CellProfiler's image table for an ImageNumber key (default: the "
        "…Image.csv beside the table)",
    )
    parser.add_argument("--group-by", default="group", help="column whose values are the conditions (default: group)")
    parser.add_argument(
        "--groups",
        nargs=2,
        metavar=("A", "B"),
        help="the two groups to compare, effects > 0 when A is higher (needed with more than two groups)",
    )
    parser.add_argument(
        "--by-image",
        action="store_true",
        help="permute the condition labels between whole images and resample whole images: the right "
        "test with several images per condition, since cells of one image are not independent",
    )
    parser.add_argument("--image-column", default="source", help="column naming each cell's image (default: source)")
    parser.add_argument("--permutations", type=int, default=2000, help="random relabellings per test (default: 2000)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    parser.add_argument("--fdr", type=float, default=0.05, help="Benjamini-Hochberg level q (default: 0.05)")
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="confidence level of the intervals (default: 0.95)"
    )
    parser.add_argument(
        "--distance",
        choices=("energy", "mmd"),
        default="energy",
        help="whole-space distance: energy distance, or MMD with a Gaussian kernel (median heuristic)",
    )
    parser.add_argument(
        "--distance-cells",
        type=int,
        default=500,
        help="at most this many random cells per group enter the distance (default: 500)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the permutations, resamples and subsamples")
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {TABLE_NAME} and {JSON_NAME}")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.set_defaults(run=run)


def choose_groups(values: list, requested: list[str] | None, column: str) -> tuple:
    """The two group values to compare (with the table's dtype), from ``--groups`` or the only two there are."""
    by_text = {str(v): v for v in values}
    if requested is None:
        if len(by_text) != 2:
            raise InputError(
                f"column {column!r} has {len(by_text)} group(s) ({', '.join(by_text) or 'none'}); "
                "choose the two to compare with --groups A B"
            )
        return tuple(by_text.values())
    missing = [g for g in requested if g not in by_text]
    if missing:
        raise InputError(
            f"column {column!r} has no group {', '.join(map(repr, missing))}; its groups are {', '.join(by_text)}"
        )
    return by_text[requested[0]], by_text[requested[1]]


def run(args: argparse.Namespace) -> int:
    from ..core.analysis.inference import InferenceSettings, compare_groups
    from ..core.analysis.latent_summary import group_choices
    from ..core.files import atomic_write_text
    from ..core.project.export import export_table

    targets = [args.out / TABLE_NAME, args.out / JSON_NAME]
    existing = [t.name for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise InputError(f"{args.out} already has {', '.join(existing)}; choose another --out or pass --overwrite")
    settings = InferenceSettings(
        permutations=args.permutations,
        resamples=args.resamples,
        fdr=args.fdr,
        confidence=args.confidence,
        distance=args.distance,
        distance_cells=args.distance_cells,
        by_image=args.by_image,
        image_column=args.image_column,
        seed=args.seed,
    )
    table, group_by = _read_cells(args)
    if group_by not in table.columns:
        raise InputError(
            f"{args.latents or args.table} has no column {group_by!r}; "
            f"choose one of {', '.join(map(str, table.columns))}"
        )
    a, b = choose_groups(group_choices(table, group_by), args.groups, group_by)
    result = compare_groups(table, group_by, a, b, settings)
    args.out.mkdir(parents=True, exist_ok=True)
    export_table(result.dimensions.to_frame(), targets[0], overwrite=True)
    atomic_write_text(targets[1], json.dumps(result.to_json(), indent=2))
    print("\n".join(result.summary_lines()))
    print(f"written: {targets[0]} and {targets[1]}")
    return 0


def _read_cells(args: argparse.Namespace) -> tuple:
    """The cells to compare and the name of their condition column: a latent table, or a table measured elsewhere."""
    from ..core.analysis.external_table import TableSettings, open_external_table
    from ..core.project.export import read_table

    if args.latents is not None:
        if not args.latents.is_file():
            raise InputError(f"{args.latents} is not a file; pass the table written by 'morphospace embed'")
        return read_table(args.latents), args.group_by
    # The default finds the table's condition column by name (group, condition, Metadata_Condition...).
    group = "" if args.group_by == "group" else args.group_by
    settings = TableSettings(features=args.features, group_column=group, image_table=args.image_table)
    result = open_external_table(args.table, settings)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return result.table, "group"
