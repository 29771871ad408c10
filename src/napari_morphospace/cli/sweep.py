"""``morphospace sweep``: train a grid of models from one config and compare them on one held-out test split.

``--config`` is a YAML file with ``model:`` and ``training:`` sections (as for
``morphospace train``), a ``grid:`` of lists and the test split::

    model: {latent_dim: 8}
    training: {epochs: 30}
    grid:
      model: [beta-vae, beta-tcvae, me-vae]
      beta: [0.5, 1, 4]
    test_fraction: 0.2

On one machine the command runs every grid point, then writes
``comparison.csv``, ``figures/`` and ``report.html`` into ``--out``. On a
cluster, run one grid point per job with ``--index K`` (e.g. a SLURM array,
``--index $SLURM_ARRAY_TASK_ID``; ``--list`` prints the grid), then
``morphospace sweep --collect DIR``. The exit status is 1 when a grid point
failed (its message is in the table), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import InputError
from .flags import HelpFormatter

if TYPE_CHECKING:
    from ..core.project.sweep import SweepProgress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train a grid of models (model, beta, latent size, depth, block) and compare them on held-out crops",
        description="Train a grid of models from one config, each an ordinary training run with its own bundle, "
        "score them on one held-out test split, and write a comparison table, figures and an HTML report.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None, help="sweep YAML: model:, training:, grid:, test_fraction")
    parser.add_argument("--crops", type=Path, default=None, help="crop-set folder (from 'morphospace crops')")
    parser.add_argument("--out", type=Path, default=None, help="sweep folder to write (or to continue)")
    parser.add_argument(
        "--index",
        type=int,
        default=None,
        metavar="K",
        help="run only grid point K (0-based), e.g. --index $SLURM_ARRAY_TASK_ID; collect afterwards",
    )
    parser.add_argument("--list", action="store_true", help="print the grid points of --config and exit")
    parser.add_argument(
        "--collect",
        type=Path,
        default=None,
        metavar="DIR",
        help="build comparison.csv, figures and report.html of a sweep folder from its finished runs",
    )
    parser.set_defaults(run=run)


def print_progress(message: SweepProgress) -> None:
    """One line per finished epoch and per finished grid point."""
    where = f"[{message.index + 1}/{message.total}] {message.name}"
    if message.status == "training":
        if message.epoch:
            print(f"{where}: epoch {message.epoch}/{message.epochs}", flush=True)
        return
    detail = f": {message.message}" if message.message else ""
    print(f"{where}: {message.status}{detail}", flush=True)


def _finish(table, folder: Path) -> int:
    failed = table[table["status"] == "failed"]
    missing = table[table["status"] != "ok"]
    print(
        f"{int((table['status'] == 'ok').sum())} of {len(table)} runs finished; table, figures and report in {folder}",
        file=sys.stderr,
    )
    for _, row in failed.iterrows():
        print(f"failed: {row['name']}: {row['message']}", file=sys.stderr)
    for _, row in table[(table["status"] == "ok") & (table["warnings"] != "")].iterrows():
        print(f"warning: {row['name']}: {row['warnings']} (what to try: report.html)", file=sys.stderr)
    if len(missing) > len(failed):
        print(f"{len(missing) - len(failed)} run(s) not finished yet", file=sys.stderr)
    return 1 if len(failed) else 0


def run(args: argparse.Namespace) -> int:
    from ..core.cells.crop_set import load_crop_set
    from ..core.project.sweep import (
        collect_sweep,
        grid_points,
        load_sweep_settings,
        read_run_record,
        run_sweep,
    )

    if args.collect is not None:
        if args.config or args.crops or args.out or args.index is not None:
            raise InputError("--collect DIR takes no other option; it reads everything from the sweep folder")
        return _finish(collect_sweep(args.collect), args.collect)
    if args.config is None:
        raise InputError("give --config SWEEP.yaml (with --crops and --out), or --collect DIR")
    settings = load_sweep_settings(args.config)
    if args.list:
        for point in grid_points(settings):
            print(f"{point.index}\t{point.name}")
        return 0
    if args.crops is None or args.out is None:
        raise InputError("a sweep needs --crops CROP_SET and --out SWEEP_FOLDER")
    crop_set = load_crop_set(args.crops)
    table = run_sweep(
        crop_set,
        settings,
        args.out,
        index=args.index,
        crop_set_origin=str(args.crops.resolve()),
        on_update=print_progress,
    )
    if table is not None:
        return _finish(table, args.out)
    record = read_run_record(args.out, grid_points(settings)[args.index]) or {}
    print(
        f"grid point {args.index}: {record.get('status', 'not finished')}; when every job is done: "
        f"morphospace sweep --collect {args.out}",
        file=sys.stderr,
    )
    return 1 if record.get("status") == "failed" else 0
