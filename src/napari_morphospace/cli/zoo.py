"""``morphospace zoo``: export a model bundle to the BioImage Model Zoo, and import such packages back.

``zoo export`` writes a folder with ``encoder.zip`` and ``decoder.zip``, each
validated with bioimageio.spec and test-run with bioimageio.core before the
folder appears (``pip install "napari-morphospace[zoo]"``). ``zoo import``
turns the two packages back into an ordinary model bundle for ``morphospace
embed`` and the widgets, reading only tensors from them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zoo",
        help="export a model to the BioImage Model Zoo, or import a zoo package",
        description="BioImage Model Zoo packages of a model bundle: the encoder and the decoder as two "
        "bioimage.io model descriptions.",
    )
    actions = parser.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")

    export = actions.add_parser(
        "export",
        help="write encoder.zip and decoder.zip, validated and test-run",
        description="Write FOLDER/encoder.zip and FOLDER/decoder.zip: weights (state dict + TorchScript), test "
        "tensors from the crops, covers, README and citations. Both are validated with bioimageio.spec and "
        "test-run with bioimageio.core first; if either fails nothing is written. Needs the zoo extra: "
        'pip install "napari-morphospace[zoo]".',
    )
    export.add_argument("--model", type=Path, required=True, help="model bundle folder (from 'morphospace train')")
    export.add_argument(
        "--crops",
        type=Path,
        default=None,
        help="crop set for the test tensors and covers (default: the model's training crop set)",
    )
    export.add_argument("--out", type=Path, required=True, help="new folder for encoder.zip and decoder.zip")
    export.add_argument(
        "--author",
        action="append",
        default=[],
        required=True,
        metavar="NAME",
        help="who trained the model; repeat for several authors",
    )
    export.add_argument("--name", default="", help="name shown on bioimage.io (default: the bundle folder's name)")
    export.add_argument("--description", default="", help="a sentence on the data and purpose of the model")
    export.add_argument("--license", default="CC-BY-4.0", help="SPDX licence of the weights (default CC-BY-4.0)")
    export.add_argument("--test-crops", type=int, default=4, help="crops used as test tensors (default 4)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    export.set_defaults(run=run_export)

    imports = actions.add_parser(
        "import",
        help="turn an exported encoder/decoder pair into a model bundle",
        description="Read the encoder and decoder packages written by 'morphospace zoo export' (the folder, "
        "or the two zip files) and write a model bundle. Only tensors are read (torch.load with "
        "weights_only=True); no code from the packages runs. Packages from other tools are refused.",
    )
    imports.add_argument(
        "packages",
        type=Path,
        nargs="+",
        metavar="PACKAGE",
        help="the export folder, or the encoder and decoder .zip files",
    )
    imports.add_argument("--out", type=Path, required=True, help="model bundle folder to write")
    imports.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    imports.set_defaults(run=run_import)


def run_export(args: argparse.Namespace) -> int:
    from ..core.cells.crop_set import load_crop_set
    from ..core.project.zoo import ZooSettings, export_zoo_packages
    from ..core.training.bundle import load_bundle

    bundle = load_bundle(args.model)
    crops = args.crops or _training_crops(bundle.config.get("provenance") or {})
    crop_set = load_crop_set(crops)
    settings = ZooSettings(
        authors=args.author,
        name=args.name,
        description=args.description,
        license=args.license,
        test_crops=args.test_crops,
    )
    written = export_zoo_packages(
        bundle,
        crop_set,
        args.out,
        settings=settings,
        overwrite=args.overwrite,
        on_step=lambda text: print(f"{text}…", file=sys.stderr),
    )
    print(f"validated and test-run; written {written.encoder} and {written.decoder}", file=sys.stderr)
    return 0


def _training_crops(provenance: dict) -> Path:
    recorded = provenance.get("crop_set")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    raise InputError(
        f"the model's training crop set ({recorded or 'not recorded'}) is not available here; "
        "give --crops with crops made like the training crops"
    )


def run_import(args: argparse.Namespace) -> int:
    from ..core.project.zoo import import_zoo_packages

    written = import_zoo_packages(args.packages, args.out, overwrite=args.overwrite)
    print(f"model bundle written to {written}; use it with 'morphospace embed --model {written}'", file=sys.stderr)
    return 0
