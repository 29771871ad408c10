"""``morphospace analysis``: gather a crop set, a model bundle and its latents into one analysis folder.

The step between ``embed`` and ``report`` on the command line: the folder it
writes is the one the Analysis widget saves and opens, and the one
``morphospace report`` turns into HTML. The crop set and the model are copied
into the folder (``crops/``, ``model/``), so it stays complete when the
working files are deleted or moved; the source images are only referenced.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import InputError
from .flags import HelpFormatter

if TYPE_CHECKING:
    import pandas as pd

    from ..core.cells.crop_job import CropJob
    from ..core.cells.crop_set import CropSet
    from ..core.training.bundle import Bundle

CROP_JOB_NAME = "crop_job.yaml"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analysis",
        help="gather crops, model and latents into an analysis folder (for 'report' and napari)",
        description="Write an analysis folder from the outputs of 'crops', 'train' and 'embed': the crop set and "
        "the model bundle are copied in, the latent table is saved, and the source images (with their label "
        "images and groups) are referenced. 'morphospace report' turns the folder into an HTML report; napari "
        "opens it with File > Open Folder.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--crops", type=Path, required=True, help="crop-set folder (from 'morphospace crops')")
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder (from 'morphospace train')")
    parser.add_argument("--latents", type=Path, required=True, help="latent table (from 'morphospace embed')")
    parser.add_argument(
        "--crop-job",
        type=Path,
        default=None,
        metavar="YAML",
        help="the crop job (from 'morphospace crops --save-config'): names the label image of "
        "each source and is shown in the report",
    )
    parser.add_argument("--out", type=Path, required=True, help="analysis folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing analysis folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core.cells.crop_job import CropJob
    from ..core.cells.crop_set import load_crop_set
    from ..core.config import load_config, save_config
    from ..core.project.analysis_folder import create_analysis, save_analysis
    from ..core.training.bundle import check_compatible, load_bundle

    crop_set = load_crop_set(args.crops)
    bundle = load_bundle(args.model)
    check_compatible(bundle, crop_set)
    latents = _read_latents(args.latents, crop_set)
    job = load_config(args.crop_job, CropJob) if args.crop_job is not None else None
    images, labels, groups = _sources(crop_set, job)
    manifest = create_analysis(args.out, images=images, labels=labels, groups=groups, overwrite=args.overwrite)
    if job is not None:
        save_config(job, args.out / CROP_JOB_NAME)
    save_analysis(
        manifest,
        crop_set=crop_set,
        model=args.model,
        latents=latents,
        crop_job=args.out / CROP_JOB_NAME if job is not None else None,
    )
    print(
        f"analysis folder {args.out}: {len(crop_set)} crops, {len(images)} source image(s), model and latents; "
        f"write its report with: morphospace report {shlex.quote(str(args.out))}",
        file=sys.stderr,
    )
    _say_what_the_model_learned(bundle)
    return 0


def _say_what_the_model_learned(bundle: Bundle) -> None:
    """The model's end-of-training probe and warnings (collapsed, learned little, worse than pixel PCA), if any."""
    learned = bundle.diagnostics
    if learned is None:
        return
    if learned.probe is not None:
        print(f"what the model's latents know about the cells: {learned.probe.summary()}", file=sys.stderr)
    for warning in learned.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)


def _read_latents(path: Path, crop_set: CropSet) -> pd.DataFrame:
    """The latent table, refused when it names crops this crop set does not have (another crop set's latents)."""
    from ..core.project.export import read_table

    try:
        latents = read_table(path)
    except (OSError, ValueError) as err:
        raise InputError(
            f"cannot read the latent table {path} ({err}); pass the file written by 'morphospace embed'"
        ) from err
    if "crop_id" not in latents.columns or not any(str(c).startswith("mu_") for c in latents.columns):
        raise InputError(f"{path} has no crop_id and mu_* columns; pass the table written by 'morphospace embed'")
    unknown = sorted(set(latents["crop_id"].astype(int)) - set(crop_set.table["crop_id"].astype(int)))
    if unknown:
        raise InputError(
            f"{path} names {len(unknown)} crop id(s) that the crop set has not (e.g. {unknown[:5]}); "
            "embed this crop set with 'morphospace embed' and pass that table"
        )
    return latents


def _sources(crop_set: CropSet, job: CropJob | None) -> tuple[list[str], list[str | None], list[str]]:
    """Source images with their label images and groups: from the crop job, else from the crop table."""
    if job is not None:
        labels: list[str | None] = list(job.labels) if job.labels else [None] * len(job.images)
        return list(job.images), labels, [job.group_of(i) for i in range(len(job.images))]
    first = crop_set.table.drop_duplicates("source")
    images = [str(s) for s in first["source"]]
    return images, [None] * len(images), [str(g) for g in first["group"]]
