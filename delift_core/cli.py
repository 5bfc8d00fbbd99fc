"""The `delift` command: score, select, export, eval.

The CLI is the one place besides the app that talks to the user: progress bars go to stderr and
errors become one line on stderr with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from delift_core.config import (
    DEFAULT_METHOD,
    DEFAULT_QUALITY_GATE,
    DEFAULT_QUALITY_SIGNAL,
    DEFAULT_QUALITY_WEIGHT,
    QUALITY_SIGNALS,
)
from delift_core.errors import CancelledError, DeliftError, FieldMapNeeded

log = logging.getLogger(__name__)

EXIT_ERROR = 2
EXIT_CANCELLED = 130


def _field_map(pairs: Sequence[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    mapping = {}
    for pair in pairs:
        canonical, sep, source = pair.partition("=")
        if not sep or not canonical or not source:
            raise DeliftError(
                f"--field expects CANONICAL=SOURCE, e.g. instruction=question; got {pair!r}"
            )
        mapping[canonical.strip()] = source.strip()
    return mapping


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, model and scoring options shared by score, select and eval."""
    parser.add_argument(
        "data", help="pool data file (JSONL, JSON, CSV, Parquet) or HF dataset folder"
    )
    parser.add_argument("--limit", type=int, help="use only the first N pool rows")
    parser.add_argument("--targets", help="target set (task-specific stage)")
    parser.add_argument("--targets-limit", type=int, help="use only the first N target rows")
    parser.add_argument("--existing", help="existing set (continual stage)")
    parser.add_argument("--existing-limit", type=int, help="use only the first N existing rows")
    parser.add_argument(
        "--skip-invalid", action="store_true",
        help="leave out invalid records (e.g. an empty output) with a warning instead of stopping",
    )  # fmt: skip
    parser.add_argument(
        "--field", action="append", metavar="CANONICAL=SOURCE",
        help="map a source field, e.g. --field instruction=question (repeatable)",
    )  # fmt: skip
    parser.add_argument("--mode", choices=["exact", "sparse"], default="exact")
    parser.add_argument("--k", type=int, default=8, help="candidates per target in sparse mode")
    parser.add_argument(
        "--model", default="default", help="'default' (embedded SmolLM2) or a local HF model folder"
    )
    parser.add_argument(
        "--embedder", default="default", help="'default' (all-MiniLM-L6-v2) or a local folder"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="rows per forward batch (default 32; on CUDA sized from free memory)",
    )
    parser.add_argument(
        "--max-batch-tokens",
        type=int,
        help="padded tokens per batch (default 8192; on CUDA sized from free memory)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument(
        "--cache", help="cache file (default: $DELIFT_CACHE or ~/.cache/delift/cache.duckdb)"
    )


def build_parser() -> argparse.ArgumentParser:
    from delift_core import __version__

    parser = argparse.ArgumentParser(
        prog="delift", description="Select small, informative fine-tuning subsets with DELIFT."
    )
    parser.add_argument("--version", action="version", version=f"delift {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="compute the pairwise utility matrices")
    add_input_arguments(score)
    score.add_argument("--out", required=True, help="output folder")
    score.add_argument("--metric", choices=["rms", "logprob"], default="rms")
    score.add_argument(
        "--backend", choices=["local", "ray"], default="local",
        help="score in this process, or shard the work over Ray workers",
    )  # fmt: skip
    score.add_argument("--workers", type=int, default=2, help="Ray workers (--backend ray)")
    score.add_argument("--ray-address", help="a running Ray cluster (default: start a local one)")

    select = sub.add_parser("select", help="select a subset and write it as JSONL")
    add_input_arguments(select)
    select.add_argument(
        "--stage", choices=["instruction", "task", "continual"], default="instruction"
    )
    select.add_argument(
        "--method", default=DEFAULT_METHOD,
        help="delift-q (default: DELIFT with a quality prior), delift (the paper's method),"
        " delift-se, fl-only, random or full",
    )  # fmt: skip
    select.add_argument(
        "--quality-weight", type=float, default=DEFAULT_QUALITY_WEIGHT,
        help=f"delift-q: weight of the quality prior (default {DEFAULT_QUALITY_WEIGHT})",
    )  # fmt: skip
    select.add_argument(
        "--quality-gate", type=float, default=DEFAULT_QUALITY_GATE,
        help=f"delift-q: lowest-quality fraction picked only after all others"
        f" (default {DEFAULT_QUALITY_GATE})",
    )  # fmt: skip
    select.add_argument(
        "--quality-signal", choices=list(QUALITY_SIGNALS), default=DEFAULT_QUALITY_SIGNAL,
        help=f"delift-q: the per-sample signal ranked (default {DEFAULT_QUALITY_SIGNAL})",
    )  # fmt: skip
    select.add_argument(
        "--budget", default="0.3", help="fraction of the pool (0.3) or a count (120)"
    )
    select.add_argument(
        "--pin", metavar="FILE",
        help="ids of pool samples to keep whatever the method (one a line); the budget counts them",
    )  # fmt: skip
    select.add_argument(
        "--exclude", metavar="FILE", help="ids of pool samples never to select (one a line)"
    )
    select.add_argument("--kernel", choices=["minmax", "clip"], default="minmax")
    select.add_argument("--metric", choices=["rms", "logprob"], default="rms")
    select.add_argument("--seed", type=int, default=0)
    select.add_argument(
        "--out", required=True, help="output .jsonl file (a manifest is written beside it)"
    )
    select.add_argument("--format", choices=["original", "alpaca", "messages"], default="original")
    select.add_argument(
        "--overwrite", action="store_true",
        help="replace the --out file and its manifest if they exist (default: refuse)",
    )  # fmt: skip
    select.add_argument(
        "--annotate",
        action="store_true",
        help="add _delift: {rank, gain, method, stage, quality signals}",
    )
    from delift_core.cli_eval import add_eval_parser

    add_eval_parser(sub)
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
    data_log = logging.getLogger("delift_core.data")
    data_level = data_log.level
    data_log.setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        return _run(args)
    finally:
        data_log.setLevel(data_level)


def _run(args: argparse.Namespace) -> int:
    from delift_core import cli_commands

    try:
        return cli_commands.COMMANDS[args.command](args)
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


if __name__ == "__main__":
    sys.exit(main())
