"""The ``morphospace`` command: the same core as the widgets, headless.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args)``; this module only wires them together and turns
:class:`InputError` into a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from ..core.errors import InputError


def _subcommands() -> list[ModuleType]:
    from . import crops, demo, embed, export, report, sweep, table, train

    return [crops, train, sweep, embed, export, table, report, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morphospace",
        description="Unsupervised analysis of cell morphology with variational autoencoders.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print progress details")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _subcommands():
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.run(args) or 0)
    except InputError as err:
        print(f"morphospace {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"morphospace {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
