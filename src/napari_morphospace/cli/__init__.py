"""The ``morphospace`` command: the same core as the widgets, headless.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args)``; this module only wires them together and turns
:class:`InputError` into a one-line message (naming the command's flags, not
the settings fields) and exit status 2.

Subcommand modules import the core (torch, Lightning, scikit-image...) inside
``run`` only, so ``--help`` and a mistyped option answer at once.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import warnings

from ..core.errors import InputError
from . import analysis, crops, demo, embed, export, report, stats, sweep, table, tracks, train, zoo
from .flags import HelpFormatter, name_flags

SUBCOMMANDS = [crops, train, sweep, embed, analysis, table, stats, report, tracks, export, zoo, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morphospace",
        description="Unsupervised analysis of cell morphology with variational autoencoders.",
        epilog="A whole analysis: crops -> train -> embed -> analysis -> report. "
        "'morphospace COMMAND --help' lists the options of a command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print progress details")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    # The readers warn about metadata they skip in their own words; tifffile's log lines would repeat it.
    logging.getLogger("tifffile").setLevel(logging.INFO if args.verbose else logging.ERROR)
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *rest: _say(args.command, "warning", message)
        try:
            return int(args.run(args) or 0)
        except InputError as err:
            _say(args.command, "error", name_flags(str(err), getattr(args, "flags", [])))
            return 2
        except KeyboardInterrupt:
            print(f"morphospace {args.command}: interrupted", file=sys.stderr)
            return 130
        except MemoryError:
            _say(
                args.command,
                "error",
                "ran out of memory; use smaller crops, fewer crops per batch or a machine "
                "with more memory (nothing half-written was left)",
            )
            return 2
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            _say(
                args.command,
                "error",
                f"cannot write {err.filename or 'the output'} ({err.strerror}); free space or choose a writable folder",
            )
            return 2


def _say(command: str, kind: str, message: object) -> None:
    """One line on stderr: ``morphospace CMD: error: ...`` (line breaks in the message become spaces)."""
    print(f"morphospace {command}: {kind}: {' '.join(str(message).split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
