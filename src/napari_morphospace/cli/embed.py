"""``morphospace embed``: latent coordinates of every crop of a crop set, from a model bundle.

Works on crop sets the model never saw (e.g. treated cells embedded with a
model trained on controls), as long as the crops have the model's channels and
size. Writes CSV or Parquet (by the ``--out`` suffix) atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .crops import add_cluster_options
from .flags import HelpFormatter


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="write the latent coordinates of every crop",
        description="Encode every crop of a crop set with a trained model bundle and write one row per crop: "
        "crop_id, mu_0..mu_{D-1}, logvar_0..logvar_{D-1} and the crop table's columns.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder (from 'morphospace train')")
    parser.add_argument("--crops", type=Path, required=True, help="crop-set folder")
    parser.add_argument("--out", type=Path, required=True, help="output table: .csv or .parquet")
    parser.add_argument("--batch-size", type=int, default=256, help="crops encoded at once")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda:0, mps")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--allow-preprocessing-mismatch",
        action="store_true",
        help="embed crops made with other crop or preprocessing settings than the model's training "
        "crops (the differences are printed as a warning)",
    )
    add_cluster_options(parser, "encode blocks of crops")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core.analysis.embed import check_device, embed, embed_on_cluster
    from ..core.cells.crop_set import load_crop_set
    from ..core.parallel import dask_client
    from ..core.project.export import check_table_target, export_table
    from ..core.training.bundle import load_bundle

    check_table_target(args.out, args.overwrite)
    device = check_device(args.device)
    bundle = load_bundle(args.model, map_location=device)
    allow = args.allow_preprocessing_mismatch
    with dask_client(workers=args.workers, scheduler=args.scheduler) as client:
        if client is None:
            table = embed(
                bundle,
                load_crop_set(args.crops),
                batch_size=args.batch_size,
                device=device,
                allow_preprocessing_mismatch=allow,
            )
        else:
            table = embed_on_cluster(
                client,
                args.model,
                args.crops,
                batch_size=args.batch_size,
                device=args.device,
                allow_preprocessing_mismatch=allow,
            )
    export_table(table, args.out, overwrite=args.overwrite)
    print(f"{len(table)} crops embedded in {bundle.latent_dim} dimensions; written to {args.out}", file=sys.stderr)
    return 0
