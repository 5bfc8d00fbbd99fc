"""The `delift` command: score, select, eval.

The CLI is the one place besides the app that talks to the user: progress bars go to stderr and
errors become one line on stderr with a non-zero exit code, never a traceback. Each subcommand
is a module with `add_parser(subparsers)`, which registers the command's `run(args)` as the
parser's `func`; `common` holds what they share.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from delift_core import __version__
from delift_core.cli import eval as eval_command
from delift_core.cli import score, select
from delift_core.errors import CancelledError, DeliftError, FieldMapNeeded

EXIT_ERROR = 2
EXIT_CANCELLED = 130

SUBCOMMANDS = (score, select, eval_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delift", description="Select small, informative fine-tuning subsets with DELIFT."
    )
    parser.add_argument("--version", action="version", version=f"delift {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The commands print each dataset's load warnings themselves, once, as "delift: warning:";
    # the library's copy of them is kept out of stderr for the length of the command.
    data_log = logging.getLogger("delift_core.data.dataset")
    data_level = data_log.level
    data_log.setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        return _run(args)
    finally:
        data_log.setLevel(data_level)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except CancelledError as exc:
        print(f"delift: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("delift: interrupted; finished work is kept in the cache", file=sys.stderr)
        return EXIT_CANCELLED
    except DeliftError as exc:
        hint = " (--field CANONICAL=SOURCE, repeatable)" if isinstance(exc, FieldMapNeeded) else ""
        print(f"delift: error: {exc}{hint}", file=sys.stderr)
        return EXIT_ERROR
