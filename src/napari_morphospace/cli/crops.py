"""``morphospace crops``: build and save a crop set from image and label files."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .flags import Flag, HelpFormatter, add_flags, apply_flags, name_flags, size_value

if TYPE_CHECKING:
    from ..core.cells.crop_job import CropJob
    from ..core.cells.preprocess import PreprocessPipeline

PRESETS = ("none", "macrophage", "statistical-cell")
#: The crop builder's per-image notes ("a.tif: 2 of 107 objects were ..."), summed over the images in the summary.
FLAGS = [
    Flag("--labels", ("labels",), "one label image per image, in the same order", kind="list", metavar="LABELS"),
    Flag(
        "--group",
        ("groups",),
        "condition of each image, repeated in image order, or once for all images (default: the file name)",
        kind="append",
        metavar="NAME",
    ),
    Flag("--objects", ("objects",), "crop labelled objects or a patch grid"),
    Flag(
        "--size",
        ("crop.size",),
        "crop size in pixels: one side for every spatial axis (64) or one per axis (64,64 or, for 3D, 16,64,64)",
        size_value,
        metavar="PX",
    ),
    Flag("--mode", ("crop.mode",), "a fixed box around the centroid, or fit the object's box and resize it"),
    Flag("--padding", ("crop.padding",), "pixels around the object in fit mode", int),
    Flag("--min-area", ("crop.min_area",), "skip objects with fewer pixels (voxels)", int),
    Flag("--exclude-border", ("crop.exclude_border",), "skip objects that touch the image border", kind="switch"),
    Flag(
        "--mask-neighbours", ("crop.mask_neighbours",), "zero the pixels of other objects inside a crop", kind="switch"
    ),
    Flag("--mask-background", ("crop.mask_background",), "zero everything outside the object", kind="switch"),
    Flag(
        "--channels",
        ("crop.channels", "patches.channels"),
        "channel indices to keep, in this order (default: all)",
        int,
        kind="list",
    ),
    Flag(
        "--normalise",
        ("crop.normalise", "patches.normalise"),
        "intensities to [0, 1] by the 0.1/99.9 percentiles of each image, or by the data type's range",
    ),
    Flag("--patch-size", ("patches.patch_size",), "patch side for --objects patches", int),
    Flag("--min-foreground", ("patches.min_foreground",), "foreground fraction a patch needs to be kept", float),
    Flag("--reader", ("reader",), "image reader"),
    Flag(
        "--axes",
        ("axes",),
        "axes of TIFF images without (or with wrong) axes metadata, one TCZYX letter per axis "
        "in file order, e.g. CYX for three channel planes (read as Z otherwise)",
        metavar="AXES",
    ),
    Flag(
        "--track-ids",
        ("track_ids",),
        "give each crop a track_id: its label id (tracked label images, ids persist "
        "over time) or the track of --tracks at its position",
    ),
    Flag(
        "--tracks",
        ("tracks",),
        "one tracks file per image (.csv/.npy: track id, t, [z,] y, x); implies --track-ids tracks",
        kind="list",
        metavar="TRACKS",
    ),
]


def _default_job() -> CropJob:
    from ..core.cells.crop_job import CropJob

    return CropJob()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "crops",
        help="build a crop set from image and label files",
        description="Crop every labelled object (or a patch grid) from each image and save one crop set. "
        "Options override the values of --config.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files (TIFF, OME-TIFF, ...)")
    add_flags(parser, FLAGS, _default_job)
    parser.add_argument("--preset", choices=PRESETS, default=None, help="preprocessing preset (default: none)")
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON crop job (e.g. saved by the widget)")
    parser.add_argument("--save-config", type=Path, default=None, help="write the effective job as YAML")
    parser.add_argument("--out", type=Path, required=True, help="output crop-set folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_cluster_options(parser, "crop the images")
    parser.set_defaults(run=run, flags=FLAGS)


def add_cluster_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--workers N`` (local processes) and ``--scheduler ADDRESS`` (a dask.distributed cluster)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=f"{what} in N worker processes on this machine (a dask LocalCluster; "
        "for many files: on one machine one process is often as fast)",
    )
    group.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help=f"{what} on the dask.distributed cluster at ADDRESS (e.g. tcp://head:8786); "
        "its workers must see the files at the same paths",
    )


def job_from_args(args: argparse.Namespace) -> CropJob:
    """The ``CropJob`` of ``--config`` (or the defaults) with every given option applied on top."""
    from ..core.cells.crop_job import CropJob
    from ..core.config import from_dict, load_config, to_dict

    data = to_dict(load_config(args.config, CropJob) if args.config else CropJob())
    if args.images:
        data["images"] = list(args.images)
    apply_flags(data, args, FLAGS)
    if args.tracks and args.track_ids is None:
        data["track_ids"] = "tracks"
    if args.preset is not None:
        data["preprocess"] = preset_pipeline(args.preset, data["crop"]["size"]).to_dict()
    return from_dict(CropJob, data)


def preset_pipeline(name: str, size: int | list[int]) -> PreprocessPipeline:
    """The preprocessing steps of a named preset; ``macrophage`` resizes to the crop size."""
    from ..core.cells.preprocess import (
        PreprocessPipeline,
        macrophage_pipeline,
        statistical_cell_pipeline,
    )

    if name == "none":
        return PreprocessPipeline()
    if name == "statistical-cell":
        return statistical_cell_pipeline()
    shape = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    return macrophage_pipeline(shape)


def run(args: argparse.Namespace) -> int:
    from ..core.cells.crop_job import run_crop_job
    from ..core.cells.crop_set import TRACK_ID, check_crop_set_target
    from ..core.cells.crops import COUNTED_NOTE, summed_notes
    from ..core.cells.track_ids import describe_tracks
    from ..core.config import save_config
    from ..core.outputs import check_output

    job = job_from_args(args)
    job.check()
    # Every output is checked before the first one is written and before any image is read.
    if args.save_config:
        check_output(args.save_config, what="config file", kind="file", overwrite=True)
    check_crop_set_target(args.out, args.overwrite)
    if args.save_config:
        save_config(job, args.save_config)
        print(f"wrote {args.save_config}")
    last = {"name": None}

    def progress(name: str, done: int, total: int) -> None:
        if name != last["name"] or done == total:
            last["name"] = name
            print(f"{name}: {done}/{total} objects", file=sys.stderr)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        crop_set = run_crop_job(
            job,
            args.out,
            overwrite=args.overwrite,
            workers=args.workers,
            scheduler=args.scheduler,
            on_progress=progress,
        )
    groups = crop_set.table["group"].value_counts(sort=False).to_dict()
    shape = "x".join(str(s) for s in crop_set.images.shape[1:])
    counted = [w for w in caught if issubclass(w.category, UserWarning) and COUNTED_NOTE.fullmatch(str(w.message))]
    notes = summed_notes([str(w.message) for w in counted])
    for other in (w for w in caught if w not in counted):  # a reader's warning about one file is said as it is
        warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    summary = f"wrote {len(crop_set)} crops ({shape}) to {args.out}: " + ", ".join(
        f"{g} {n}" for g, n in groups.items()
    )
    print(summary + "".join(f"; {name_flags(note, FLAGS)}" for note in notes))
    if TRACK_ID in crop_set.table.columns:
        print(describe_tracks(crop_set.table))
    return 0
