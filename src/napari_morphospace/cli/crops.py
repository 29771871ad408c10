"""``morphospace crops``: build and save a crop set from image and label files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.config import from_dict, load_config, save_config, to_dict
from ..core.crop_job import CropJob, run_crop_job
from ..core.errors import InputError
from ..core.data import TRACK_ID
from ..core.tracks import describe_tracks
from ..core.preprocess import PreprocessPipeline, macrophage_pipeline, statistical_cell_pipeline

PRESETS = ("none", "macrophage", "statistical-cell")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "crops",
        help="build a crop set from image and label files",
        description="Crop every labelled object (or a patch grid) from each image and save one crop set. "
        "Options override the values of --config.",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files (TIFF, OME-TIFF, ...)")
    parser.add_argument("--labels", nargs="+", default=None, metavar="LABELS", help="one label image per image")
    parser.add_argument(
        "--group", action="append", default=None, metavar="NAME",
        help="condition of each image, repeated in image order (default: the file name)",
    )  # fmt: skip
    parser.add_argument("--objects", choices=("labels", "patches"), default=None, help="crop objects or a patch grid")
    parser.add_argument("--size", type=int, default=None, help="crop size in pixels (every spatial axis)")
    parser.add_argument("--mode", choices=("fixed", "fit"), default=None, help="fixed box, or fit the object and resize")
    parser.add_argument("--padding", type=int, default=None, help="pixels around the object in fit mode")
    parser.add_argument("--channels", type=int, nargs="+", default=None, help="channel indices to keep")
    parser.add_argument("--patch-size", type=int, default=None, help="patch side for --objects patches")
    parser.add_argument("--min-foreground", type=float, default=None, help="patch foreground fraction to keep it")
    parser.add_argument(
        "--track-ids", choices=("none", "labels", "tracks"), default=None,
        help="give each crop a track_id: its label id (tracked label images, ids persist over time) "
             "or the track of --tracks at its position",
    )  # fmt: skip
    parser.add_argument("--tracks", nargs="+", default=None, metavar="TRACKS",
                        help="one tracks file per image (.csv/.npy: track id, t, [z,] y, x); implies --track-ids tracks")
    parser.add_argument("--preset", choices=PRESETS, default=None, help="preprocessing preset")
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON crop job (e.g. saved by the widget)")
    parser.add_argument("--save-config", type=Path, default=None, help="write the effective job as YAML")
    parser.add_argument("--out", type=Path, required=True, help="output crop-set folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_cluster_options(parser, "crop the images")
    parser.set_defaults(run=run)


def add_cluster_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--workers N`` (local processes) and ``--scheduler ADDRESS`` (a dask.distributed cluster)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help=f"{what} in N worker processes on this machine (a dask LocalCluster)")  # fmt: skip
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help=f"{what} on the dask.distributed cluster at ADDRESS (e.g. tcp://head:8786); "
                            "its workers must see the files at the same paths")  # fmt: skip


def job_from_args(args: argparse.Namespace) -> CropJob:
    """The job of ``--config`` (or defaults) with every given option applied on top."""
    job = load_config(args.config, CropJob) if args.config else CropJob()
    data = to_dict(job)
    for key, value in (("images", args.images or None), ("labels", args.labels), ("groups", args.group),
                       ("objects", args.objects), ("tracks", args.tracks),
                       ("track_ids", args.track_ids or ("tracks" if args.tracks else None))):  # fmt: skip
        if value is not None:
            data[key] = [str(v) for v in value] if isinstance(value, list) else value
    for key, value in (("size", args.size), ("mode", args.mode), ("padding", args.padding),
                       ("channels", args.channels)):  # fmt: skip
        if value is not None:
            data["crop"][key] = value
            if key == "channels":
                data["patches"][key] = value
    if args.patch_size is not None:
        data["patches"]["patch_size"] = args.patch_size
    if args.min_foreground is not None:
        data["patches"]["min_foreground"] = args.min_foreground
    if args.preset is not None:
        data["preprocess"] = preset_pipeline(args.preset, data["crop"]["size"]).to_dict()
    return from_dict(CropJob, data, where="crops")


def preset_pipeline(name: str, size: int | list[int]) -> PreprocessPipeline:
    """The preprocessing steps of a named preset; ``macrophage`` resizes to the crop size."""
    if name == "none":
        return PreprocessPipeline()
    if name == "statistical-cell":
        return statistical_cell_pipeline()
    shape = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    return macrophage_pipeline(shape)


def run(args: argparse.Namespace) -> int:
    job = job_from_args(args)
    if args.save_config:
        save_config(job, args.save_config)
        print(f"wrote {args.save_config}")
    if args.out.exists() and not args.overwrite:
        raise InputError(f"{args.out} already exists; choose another --out folder or pass --overwrite")
    last = {"name": None}

    def progress(name: str, done: int, total: int) -> None:
        if name != last["name"] or done == total:
            last["name"] = name
            print(f"{name}: {done}/{total} objects", file=sys.stderr)

    crop_set = run_crop_job(job, args.out, overwrite=args.overwrite, workers=args.workers, scheduler=args.scheduler,
                            on_progress=progress)  # fmt: skip
    groups = crop_set.table["group"].value_counts().to_dict()
    shape = "x".join(str(s) for s in crop_set.images.shape[1:])
    print(f"wrote {len(crop_set)} crops ({shape}) to {args.out}: " + ", ".join(f"{g} {n}" for g, n in groups.items()))
    if TRACK_ID in crop_set.table.columns:
        print(describe_tracks(crop_set.table))
    return 0
