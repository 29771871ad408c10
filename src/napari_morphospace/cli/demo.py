"""``morphospace demo``: the main job on the bundled synthetic cells, in napari or headless."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .flags import Flag, HelpFormatter, add_flags, apply_flags

if TYPE_CHECKING:
    from ..core.project.demo import DemoResult, DemoSettings

FLAGS = [
    Flag("--ndim", ("ndim",), "2D fields or 3D volumes (2 or 3)", int),
    Flag("--n-cells", ("n_cells",), "cells per group", int),
    Flag("--epochs", ("epochs",), "training epochs", int),
    Flag("--latent-dim", ("latent_dim",), "latent dimensions", int),
    Flag("--batch-size", ("batch_size",), "crops per training batch", int),
    Flag("--model-size", ("model_size",), "crop side (px) the model sees", int),
    Flag("--threads", ("threads",), "torch CPU threads", int),
    Flag("--seed", ("seed",), "seed of the data and the training", int),
]


def _default_settings() -> DemoSettings:
    from ..core.project.demo import DemoSettings

    return DemoSettings()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole analysis on the bundled synthetic cells",
        description="Open napari with synthetic control/treated cells and the plugin's widgets docked, "
        "or (--headless, or when there is no display) make the cells, crop them, train a small beta-VAE, "
        "embed, compute the statistics and write an analysis folder with an HTML report to --out.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--headless", action="store_true", help="no window: write the outputs to --out")
    parser.add_argument("--out", type=Path, default=Path("morphospace-demo"), help="output (analysis) folder")
    add_flags(parser, FLAGS, _default_settings)
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo run")
    parser.set_defaults(run=run, flags=FLAGS)


def has_display() -> bool:
    """False on a Linux machine without an X or Wayland display, where a window cannot open."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    from ..core.config import from_dict, to_dict
    from ..core.project.demo import DemoSettings, run_demo

    data = to_dict(DemoSettings())
    apply_flags(data, args, FLAGS)
    settings = from_dict(DemoSettings, data)
    if not args.headless and has_display():
        from .._qt.demo import launch_demo

        launch_demo(settings)
        return 0
    if not args.headless:
        print(
            f"No display found: running headless, outputs in {args.out}/ "
            "(for the viewer, run on a desktop or under xvfb-run).",
            file=sys.stderr,
        )
    result = run_demo(args.out, settings, overwrite=args.overwrite, on_step=lambda m: print(f"- {m}", file=sys.stderr))
    print_summary(result)
    return 0


def print_summary(result: DemoResult) -> None:
    """Where everything is, how long each step took, and the known-answer check."""
    total = sum(result.seconds.values())
    print(f"demo finished in {total:.0f} s: {len(result.crop_set)} crops; analysis folder {result.out}/")
    for key, path in result.files.items():
        print(f"  {key:12s} {path}")
    print("  seconds: " + ", ".join(f"{step} {seconds:.1f}" for step, seconds in result.seconds.items()))
    check = result.known_answer or {}
    if "dimension" in check:
        verdict = "PASSED" if check["passed"] else "FAILED"
        print(
            f"known answer {verdict}: dim {check['dimension']} has the largest |Cohen's d| "
            f"({check['cohens_d']:+.2f}, {check['groups'][1]} vs {check['groups'][0]}) and follows "
            f"{check['best_factor']} (Spearman rho {check['best_rho']:+.2f}; needs |rho| > {check['threshold']})"
        )
    else:
        print(f"known answer not available: {check.get('not_available', 'no latents')}")
    print(f"open {result.files.get('report')} in a browser, or the folder {result.out} in napari")
