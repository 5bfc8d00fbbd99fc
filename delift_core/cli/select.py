"""`delift select`: select a subset of the pool and export it as JSONL with a manifest."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from delift_core.cli.common import (
    InputOptions,
    Inputs,
    ModelOptions,
    add_input_arguments,
    budget_arg,
    describe_inputs,
    load_inputs,
    scoring_config,
    whole_number,
)
from delift_core.cli.scoring import PoolQuality, compute_stage, embed_inputs
from delift_core.config import (
    DEFAULT_DUPLICATE_THRESHOLD,
    DEFAULT_METHOD,
    DEFAULT_QUALITY_GATE,
    DEFAULT_QUALITY_SIGNAL,
    DEFAULT_QUALITY_WEIGHT,
    DEFAULT_SIDE_WEIGHT,
    QUALITY_SIGNALS,
    ScoringConfig,
    SelectionConfig,
    selection_size,
)
from delift_core.errors import ConfigError, DataError
from delift_core.export import build_manifest, check_new_export, export_subset, subset_rows
from delift_core.pipeline import selection_inputs
from delift_core.quality import quality_rows, quality_signals
from delift_core.select.run import run_selection
from delift_core.select.selection import METHODS, UTILITY_METHODS
from delift_core.select.selection_types import SelectionInputs, SelectionResult


def add_parser(subparsers: Any) -> None:
    """Add `select` to the `delift` parser's subparsers."""
    select = subparsers.add_parser("select", help="select a subset and write it as JSONL")
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
        "--side-weight", type=float, default=DEFAULT_SIDE_WEIGHT,
        help="delift-q, task and continual stages: weight of the prior for samples close to the"
        f" targets / new to the existing data (default {DEFAULT_SIDE_WEIGHT}; 0 = off)",
    )  # fmt: skip
    select.add_argument(
        "--duplicate-threshold", type=threshold_arg, default=DEFAULT_DUPLICATE_THRESHOLD,
        help="delift-q: cosine above which a sample with a better-quality twin in the pool is"
        f" gated as a near-duplicate, or 'off' (default {_shown(DEFAULT_DUPLICATE_THRESHOLD)})",
    )  # fmt: skip
    select.add_argument(
        "--budget", type=budget_arg, default=0.3,
        help="fraction of the pool (0.3) or a count (120)",
    )  # fmt: skip
    select.add_argument(
        "--pin", metavar="FILE",
        help="ids of pool samples to keep whatever the method (one a line); the budget counts them",
    )  # fmt: skip
    select.add_argument(
        "--exclude", metavar="FILE", help="ids of pool samples never to select (one a line)"
    )
    select.add_argument("--kernel", choices=["minmax", "clip"], default="minmax")
    select.add_argument("--metric", choices=["rms", "logprob"], default="rms")
    select.add_argument("--seed", type=whole_number(0), default=0)
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
    select.set_defaults(func=run)


@dataclass(frozen=True)
class ExportOptions:
    """Where and how the subset is written. pin, exclude: files of pool ids (one a line)."""

    out: Path
    format: str = "original"
    overwrite: bool = False
    annotate: bool = False
    pin: str | None = None
    exclude: str | None = None


def run(args: argparse.Namespace) -> int:
    """Run `delift select`: parse the options into typed values, then do the work; 0 on
    success (errors are raised as DeliftError)."""
    selection = SelectionConfig(
        stage=args.stage, method=args.method, budget=args.budget,
        kernel=args.kernel, metric=args.metric, seed=args.seed,
        quality_weight=args.quality_weight, quality_gate=args.quality_gate,
        quality_signal=args.quality_signal, side_weight=args.side_weight,
        duplicate_threshold=args.duplicate_threshold,
    )  # fmt: skip
    export = ExportOptions(
        out=Path(args.out), format=args.format, overwrite=args.overwrite,
        annotate=args.annotate, pin=args.pin, exclude=args.exclude,
    )  # fmt: skip
    return select_and_export(
        selection, InputOptions.from_args(args), ModelOptions.from_args(args),
        scoring_config(args), export,
    )  # fmt: skip


def select_and_export(
    sel: SelectionConfig,
    options: InputOptions,
    models: ModelOptions,
    config: ScoringConfig,
    export: ExportOptions,
) -> int:
    """Check everything that can be checked before work, score what the method needs, select
    and write the subset and its manifest."""
    check_stage_inputs(sel.stage, sel.method, options.targets, options.existing)
    check_output(export.out, export.overwrite)
    inputs = load_inputs(options.for_stage(sel.stage))
    n = len(inputs.pool)
    ids = [r.id for r in inputs.pool.records]
    pinned = read_id_list(export.pin, ids, "pinned")
    excluded = read_id_list(export.exclude, ids, "excluded")
    count = budget_count(sel, n, pinned, excluded)
    if sel.method == "fl-only":  # plain FL on the pool in every stage: no other set is used
        inputs = Inputs(inputs.pool, None, None)
    matrices, info, quality = selection_matrices(sel, inputs, config, models, export.annotate)
    result = run_selection(matrices, sel, pinned=pinned, excluded=excluded)
    chosen = result.take(count)
    annotations = None
    if export.annotate:
        annotations = annotate(sel, ids, chosen, result.gains[:count], quality)
    rows = subset_rows(inputs.pool.records, chosen, export.format, annotations)
    manifest = build_manifest(
        command="select",
        inputs=describe_inputs(inputs),
        selection={**sel.__dict__, "budget_count": count, "pool_size": n},
        scoring=config.as_dict() | {"template": config.template.hash} if info else None,
        template=config.template.__dict__ if info else None,
        objective=_objective(result, count),
        selected_ids=[inputs.pool.records[i].id for i in chosen],
        pinned_ids=[ids[i] for i in pinned],
        excluded_ids=[ids[i] for i in excluded],
        format=export.format,
        **info,
    )
    paths = export_subset(export.out, rows, manifest, overwrite=export.overwrite)
    print(
        f"selected {count} of {n} samples -> {paths.jsonl} (manifest {paths.manifest.name})",
        file=sys.stderr,
    )
    return 0


def check_stage_inputs(stage: str, method: str, targets: str | None, existing: str | None) -> None:
    """Fail before any work when the stage lacks its data or the method is unknown."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if stage == "task" and not targets:
        raise ConfigError("the task stage needs a target set: add --targets FILE")
    if stage == "continual" and not existing:
        raise ConfigError("the continual stage needs an existing set: add --existing FILE")


def check_output(out: Path, overwrite: bool) -> None:
    """Fail before any work when `out` is no .jsonl file or would replace an export unasked
    (a finished run must not end on this)."""
    if out.suffix != ".jsonl":
        raise ConfigError(f"--out must be a .jsonl file; got {out}")
    if not overwrite:
        try:
            check_new_export(out)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (--overwrite replaces it)") from None


def read_id_list(path: str | None, ids: list[str], what: str) -> list[int]:
    """Pool indices of the ids listed in `path` (one a line; blank lines and # comments are
    skipped). DataError naming the file and line for an id not in the pool."""
    if not path:
        return []
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the {what} list ({exc})", path=path) from None
    index = {sample_id: i for i, sample_id in enumerate(ids)}
    out = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        sample_id = line.strip()
        if not sample_id or sample_id.startswith("#"):
            continue
        if sample_id not in index:
            raise DataError(
                f"{what} id {sample_id!r} is not in the pool (ids are the records' 'id' field or"
                " the first 12 characters of their hash; see the export's _delift or manifest)",
                path=path,
                line=line_no,
            )
        out.append(index[sample_id])
    return list(dict.fromkeys(out))


def budget_count(sel: SelectionConfig, n: int, pinned: list[int], excluded: list[int]) -> int:
    """The number of samples to export (config.selection_size); on the command line a budget
    that the pins or exclusions would change is a ConfigError, not a note."""
    size = selection_size(
        sel.budget, n, available=n - len(set(excluded)), pinned=len(pinned), method=sel.method
    )
    if size.raised_to_pins:
        raise ConfigError(
            f"{len(pinned)} samples are pinned but the budget is {size.budget}; raise --budget or"
            " pin fewer"
        )
    if size.capped:
        wanted = sel.budget_count(n)
        raise ConfigError(
            f"the budget ({wanted}) is larger than the {size.budget} samples not excluded"
        )
    return size.count


def selection_matrices(
    sel: SelectionConfig,
    inputs: Inputs,
    config: ScoringConfig,
    models: ModelOptions,
    annotate: bool,
) -> tuple[SelectionInputs, dict[str, Any], PoolQuality | None]:
    """What the method selects from; the manifest's info about how it was computed; and, for
    annotations of a utility method, the pool's quality signals."""
    if sel.method in UTILITY_METHODS:
        stage = compute_stage(inputs, config, models)
        matrices = selection_inputs(
            stage.utilities, sel.metric, emb_pool=stage.emb_pool, quality_signal=sel.quality_signal
        )
        emb_pool, info = stage.emb_pool, stage.info
        if sel.method == "delift-q" and uses_embeddings(sel):
            # The priors need every set's embeddings (exact mode computes none; sparse mode the
            # pool's, which the cache then returns); the manifest names the embedder.
            arrays, embedded = embed_inputs(inputs, models)
            matrices, emb_pool = replace(matrices, **arrays), arrays["emb_pool"]
            info = {**info, "embedder": embedded["embedder"]}
        quality = None
        if annotate and stage.utilities.answers is not None:
            # The score is the one selection used; the signals add the near-duplicate one.
            signals = quality_signals(stage.utilities.answers, stage.utilities.pool.rms, emb_pool)
            quality = PoolQuality(signals, matrices.quality)
        return matrices, info, quality
    n = len(inputs.pool)
    if sel.method == "delift-se":
        arrays, info = embed_inputs(inputs, models)
        return SelectionInputs(n, **arrays), info, None
    return SelectionInputs(n), {}, None


def uses_embeddings(sel: SelectionConfig) -> bool:
    """Whether delift-q's settings call for sentence embeddings (side prior, duplicate gate)."""
    return sel.duplicate_threshold is not None or (
        sel.side_weight > 0 and sel.stage != "instruction"
    )


def threshold_arg(text: str) -> float | None:
    """--duplicate-threshold: a cosine in (0, 1] or 'off'."""
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a cosine in (0, 1] or 'off'; got {text!r}"
        ) from None


def _shown(threshold: float | None) -> str:
    return "off" if threshold is None else str(threshold)


def annotate(
    sel: SelectionConfig,
    ids: list[str],
    chosen: np.ndarray,
    gains: np.ndarray,
    quality: PoolQuality | None,
) -> list[dict[str, Any]]:
    """The _delift field of each exported row: rank, gain, method, stage and quality signals."""
    signals = quality_rows(ids, quality.signals, quality.score) if quality else None
    return [
        {
            "rank": r + 1,
            "gain": None if np.isnan(g) else float(g),
            "method": sel.method,
            "stage": sel.stage,
            **(
                {k: v for k, v in signals[int(i)].items() if k != "id"}
                if signals is not None
                else {}
            ),
        }
        for r, (i, g) in enumerate(zip(chosen, gains, strict=True))
    ]


def _objective(result: SelectionResult, count: int) -> float | None:
    value = result.objective[count - 1]
    return None if np.isnan(value) else float(value)
