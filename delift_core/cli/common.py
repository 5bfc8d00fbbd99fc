"""What the `delift` subcommands share: the input, model and scoring options, their parsing
into typed values, loading the datasets, and progress bars on stderr.

The argparse Namespace stops at each command's `run`: it parses the options once with the
`from_args` functions here and passes typed values on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tqdm import tqdm

from delift_core.config import ScoringConfig, parse_budget
from delift_core.data.dataset import Dataset, load_dataset
from delift_core.errors import ConfigError, DeliftError
from delift_core.utility import Progress


def parse_field_map(pairs: Sequence[str] | None) -> dict[str, str] | None:
    """--field CANONICAL=SOURCE options as a field map (None when none is given)."""
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


def budget_arg(text: str) -> float | int:
    """argparse type of --budget: config.parse_budget, its error told as an argparse one."""
    try:
        return parse_budget(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def whole_number(minimum: int) -> Callable[[str], int]:
    """argparse type of a whole-number option that must be at least `minimum`: a value below
    it is an argparse error naming the option, never silently replaced by a default."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number >= {minimum}; got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}; got {value}")
        return value

    return parse


positive_int = whole_number(1)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, model and scoring options shared by score, select and eval."""
    parser.add_argument(
        "data", help="pool data file (JSONL, JSON, CSV, Parquet) or HF dataset folder"
    )
    parser.add_argument("--limit", type=positive_int, help="use only the first N pool rows")
    parser.add_argument("--targets", help="target set (task-specific stage)")
    parser.add_argument(
        "--targets-limit", type=positive_int, help="use only the first N target rows"
    )
    parser.add_argument("--existing", help="existing set (continual stage)")
    parser.add_argument(
        "--existing-limit", type=positive_int, help="use only the first N existing rows"
    )
    parser.add_argument(
        "--skip-invalid", action="store_true",
        help="leave out invalid records (e.g. an empty output) with a warning instead of stopping",
    )  # fmt: skip
    parser.add_argument(
        "--field", action="append", metavar="CANONICAL=SOURCE",
        help="map a source field, e.g. --field instruction=question (repeatable)",
    )  # fmt: skip
    parser.add_argument("--mode", choices=["exact", "sparse"], default="exact")
    parser.add_argument(
        "--k", type=positive_int, default=8, help="candidates per target in sparse mode"
    )
    parser.add_argument(
        "--model", default="default", help="'default' (embedded SmolLM2) or a local HF model folder"
    )
    parser.add_argument(
        "--embedder", default="default", help="'default' (all-MiniLM-L6-v2) or a local folder"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="rows per forward batch (default 32; on CUDA sized from free memory)",
    )
    parser.add_argument(
        "--max-batch-tokens",
        type=whole_number(64),
        help="padded tokens per batch (default 8192; on CUDA sized from free memory)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument(
        "--cache", help="cache file (default: $DELIFT_CACHE or ~/.cache/delift/cache.duckdb)"
    )


@dataclass(frozen=True)
class InputOptions:
    """Where the pool, targets and existing sets come from and how they are read.

    limit, targets_limit, existing_limit: first rows kept (None: all). field_map: canonical
    field -> source field (None: detected). skip_invalid: leave out bad records with a warning.
    """

    data: str
    targets: str | None = None
    existing: str | None = None
    limit: int | None = None
    targets_limit: int | None = None
    existing_limit: int | None = None
    field_map: dict[str, str] | None = None
    skip_invalid: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> InputOptions:
        return cls(
            data=args.data, targets=args.targets, existing=args.existing, limit=args.limit,
            targets_limit=args.targets_limit, existing_limit=args.existing_limit,
            field_map=parse_field_map(args.field), skip_invalid=args.skip_invalid,
        )  # fmt: skip

    def for_stage(self, stage: str) -> InputOptions:
        """Without the sets the stage does not use, so that they cost no scoring time."""
        return replace(
            self,
            targets=self.targets if stage == "task" else None,
            existing=self.existing if stage == "continual" else None,
        )

    def load(self, path: str, limit: int | None) -> Dataset:
        """One dataset read with these options (its warnings are not printed here)."""
        return load_dataset(
            path, field_map=self.field_map, limit=limit, skip_invalid=self.skip_invalid
        )


@dataclass(frozen=True)
class ModelOptions:
    """Which models run where, and the cache they use.

    model, embedder: 'default' or a local folder. device: auto, cpu, cuda or mps. cache: the
    cache file (None: $DELIFT_CACHE or the default). batch_size, max_batch_tokens: the limits
    given on the command line (None: ScoringConfig's defaults, or sized from free GPU memory).
    """

    model: str = "default"
    embedder: str = "default"
    device: str = "auto"
    cache: str | None = None
    batch_size: int | None = None
    max_batch_tokens: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelOptions:
        return cls(
            model=args.model, embedder=args.embedder, device=args.device, cache=args.cache,
            batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
        )  # fmt: skip


def scoring_config(args: argparse.Namespace) -> ScoringConfig:
    """The ScoringConfig of the shared options (batch limits not given take the defaults)."""
    given = {
        name: getattr(args, name)
        for name in ("batch_size", "max_batch_tokens")
        if getattr(args, name) is not None
    }
    return ScoringConfig(mode=args.mode, k=args.k, **given)


@dataclass(frozen=True)
class Inputs:
    pool: Dataset
    targets: Dataset | None
    existing: Dataset | None


def print_warnings(*datasets: Dataset | None) -> None:
    """Each dataset's load warnings, once, as "delift: warning: ..." on stderr."""
    for ds in datasets:
        for warning in ds.warnings if ds is not None else ():
            print(f"delift: warning: {warning}", file=sys.stderr)


def load_inputs(options: InputOptions) -> Inputs:
    """The pool and the target and existing sets the options name; warnings printed after all
    three loaded."""

    def load(path: str | None, limit: int | None) -> Dataset | None:
        return None if path is None else options.load(path, limit)

    inputs = Inputs(
        options.load(options.data, options.limit),
        load(options.targets, options.targets_limit),
        load(options.existing, options.existing_limit),
    )
    print_warnings(inputs.pool, inputs.targets, inputs.existing)
    return inputs


def describe_inputs(inputs: Inputs) -> dict[str, Any]:
    """Path, rows, content hash and schema of each loaded set (for manifests)."""
    out = {}
    for name in ("pool", "targets", "existing"):
        ds = getattr(inputs, name)
        if ds is not None:
            out[name] = {"path": ds.path, "rows": len(ds), "hash": ds.hash, "schema": ds.schema}
    return out


class ProgressBar:
    """One tqdm bar per phase on stderr, described as "{verb} {phase}" and counted in units."""

    def __init__(self, verb: str = "scoring", unit: str = "pass") -> None:
        self._bars: dict[str, Any] = {}
        self.verb, self.unit = verb, unit

    def __call__(self, phase: str, p: Progress) -> None:
        bar = self._bars.get(phase)
        if bar is None:
            # Passes reused from the cache count from the start.
            bar = tqdm(
                total=p.total, initial=p.done, desc=f"{self.verb} {phase}".strip(),
                unit=self.unit, file=sys.stderr,
            )  # fmt: skip
            self._bars[phase] = bar
        bar.update(p.done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
