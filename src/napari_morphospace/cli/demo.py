"""``morphospace demo``: the main job on the bundled synthetic cells, in napari or headless."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..core.demo import DemoSettings, run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole analysis on the bundled synthetic cells",
        description="Open napari with synthetic control/treated cells and the plugin's widgets docked, "
        "or (--headless, or when there is no display) run the same work and write its outputs.",
    )
    parser.add_argument("--headless", action="store_true", help="no window: write the outputs to --out")
    parser.add_argument("--out", type=Path, default=Path("morphospace-demo"), help="output folder (headless)")
    parser.add_argument("--ndim", type=int, choices=(2, 3), default=2, help="2D fields or 3D volumes")
    parser.add_argument("--n-cells", type=int, default=DemoSettings.n_cells, help="cells per group")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo run")
    parser.set_defaults(run=run)


def has_display() -> bool:
    """False on a Linux machine without an X or Wayland display, where a window cannot open."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    settings = DemoSettings(ndim=args.ndim, n_cells=args.n_cells, seed=args.seed)
    if not args.headless and has_display():
        from .._qt.demo import launch_demo

        launch_demo(settings)
        return 0
    if not args.headless:
        print(f"No display found: running headless, outputs in {args.out}/ "
              "(for the viewer, run on a desktop or under xvfb-run).", file=sys.stderr)  # fmt: skip
    result = run_demo(args.out, settings, overwrite=args.overwrite, on_step=lambda m: print(f"- {m}", file=sys.stderr))
    print(f"demo finished: {len(result.crop_set)} crops; outputs in {result.out}/")
    for key, path in result.files.items():
        print(f"  {key:12s} {path}")
    return 0
