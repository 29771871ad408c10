"""``morphospace report``: a self-contained HTML report of an analysis folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .flags import HelpFormatter


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of an analysis folder",
        description="Write one HTML file (figures embedded) with the data summary, training curves, per-dimension "
        "KL, Cohen's d, KDE/violin plots, traversals, difference maps, Grad-CAM, classifier and "
        "disentanglement metrics and the versions and settings of an analysis folder.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("analysis", type=Path, metavar="ANALYSIS_DIR", help="analysis folder (with analysis.json)")
    parser.add_argument("--out", type=Path, default=None, help="HTML file to write (default: ANALYSIS_DIR/report.html)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report file")
    parser.add_argument(
        "--allow-external",
        action="store_true",
        help="also read data the analysis folder refers to outside itself (only for folders you trust)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..core.project.analysis_folder import open_analysis, read_manifest
    from ..core.project.report import check_report_target, write_report

    out = args.out or args.analysis / "report.html"
    read_manifest(args.analysis)  # a folder that is not an analysis is refused first
    check_report_target(out, args.overwrite)  # before the (slow) opening
    analysis = open_analysis(args.analysis, allow_external=args.allow_external)
    for problem in analysis.problems:
        print(f"morphospace report: warning: {problem}", file=sys.stderr)
    write_report(analysis, out, overwrite=args.overwrite, on_step=lambda m: print(f"- {m}", file=sys.stderr))
    print(f"report written to {out}")
    return 0
