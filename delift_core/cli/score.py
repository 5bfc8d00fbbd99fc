"""`delift score`: compute a stage's pairwise utility matrices and write them with the pool's
quality table and a manifest."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from delift_core import __version__
from delift_core.cli.common import (
    InputOptions,
    Inputs,
    ModelOptions,
    add_input_arguments,
    describe_inputs,
    load_inputs,
    positive_int,
    scoring_config,
)
from delift_core.cli.scoring import RayOptions, StageRun, compute_stage, pool_quality
from delift_core.config import DEFAULT_QUALITY_SIGNAL, ScoringConfig
from delift_core.errors import ConfigError
from delift_core.export import jsonl_bytes
from delift_core.files import save_matrix_atomic, write_bytes_atomic, write_json_atomic
from delift_core.quality import SIGNALS, quality_rows

# Output file of each matrix, without its suffix (.npy exact, .npz sparse).
MATRIX_FILES = {"pool": "utility", "targets": "utility_targets", "existing": "utility_existing"}


def add_parser(subparsers: Any) -> None:
    """Add `score` to the `delift` parser's subparsers."""
    score = subparsers.add_parser("score", help="compute the pairwise utility matrices")
    add_input_arguments(score)
    score.add_argument("--out", required=True, help="output folder")
    score.add_argument("--metric", choices=["rms", "logprob"], default="rms")
    score.add_argument(
        "--backend", choices=["local", "ray"], default="local",
        help="score in this process, or shard the work over Ray workers",
    )  # fmt: skip
    score.add_argument(
        "--workers", type=positive_int, default=2, help="Ray workers (--backend ray)"
    )
    score.add_argument("--ray-address", help="a running Ray cluster (default: start a local one)")
    score.add_argument(
        "--overwrite", action="store_true",
        help="replace the matrices, quality.jsonl and manifest.json of an earlier run in --out"
        " (default: refuse)",
    )  # fmt: skip
    score.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `delift score`: parse the options into typed values, then do the work; 0 on
    success (errors are raised as DeliftError)."""
    ray = RayOptions(args.workers, args.ray_address) if args.backend == "ray" else None
    return score_to_folder(
        InputOptions.from_args(args), ModelOptions.from_args(args), scoring_config(args),
        out=Path(args.out), metric=args.metric, ray=ray, overwrite=args.overwrite,
    )  # fmt: skip


def score_to_folder(
    options: InputOptions,
    models: ModelOptions,
    config: ScoringConfig,
    *,
    out: Path,
    metric: str,
    ray: RayOptions | None = None,
    overwrite: bool = False,
) -> int:
    """Score the inputs and write the matrices, quality.jsonl and manifest.json into `out`
    (files of an earlier run there are replaced only with `overwrite`)."""
    check_output_folder(out, overwrite)
    inputs = load_inputs(options)
    started = time.perf_counter()
    stage = compute_stage(inputs, config, models, ray)
    written, stats = write_matrices(stage, out, config.mode, metric)
    written["quality"] = write_quality(stage, inputs, out).name
    seconds = time.perf_counter() - started
    manifest = {
        "command": "score",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": describe_inputs(inputs),
        **stage.info,
        "template": {"hash": config.template.hash, **config.template.__dict__},
        "scoring": config.as_dict() | {"template": config.template.hash},
        "metric": metric,
        "orientation": "rows = targets (items represented), columns = examples (candidates)",
        "quality": {"signal": DEFAULT_QUALITY_SIGNAL, "columns": ["id", *SIGNALS, "quality"]},
        "files": written,
        "matrices": stats,
        "pairs_computed": sum(s["pairs_computed"] for s in stats.values()),
        "pairs_reused": sum(s["pairs_reused"] for s in stats.values()),
        "seconds": round(seconds, 3),
    }
    write_json_atomic(out / "manifest.json", manifest)
    # An overwritten folder holds this run alone: an earlier run's matrix this one did not
    # compute (other mode, other sets) would otherwise sit beside the new manifest.
    for name in set(output_names()) - {*written.values(), "manifest.json"}:
        (out / name).unlink(missing_ok=True)
    print(
        f"wrote {', '.join(written.values())} to {out} "
        f"({manifest['pairs_computed']} pairs computed, {manifest['pairs_reused']} reused, "
        f"{seconds:.1f} s)",
        file=sys.stderr,
    )
    return 0


def output_names() -> list[str]:
    """Every file name `delift score` may write into its folder, in either mode."""
    matrices = [f"{name}{suffix}" for name in MATRIX_FILES.values() for suffix in (".npy", ".npz")]
    return [*matrices, "quality.jsonl", "manifest.json"]


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Fail before any work when `out` is no folder, or holds the output of an earlier run
    and `overwrite` is not given (any of them: a new run beside an old one's files would mix
    two runs in one folder)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if overwrite:
        return
    for name in output_names():
        path = out / name
        if path.exists() or path.is_symlink():
            raise ConfigError(
                f"{path} already exists; nothing was written. Choose another --out folder, or"
                " add --overwrite to replace the earlier run's files"
            )


def write_matrices(
    stage: StageRun, out: Path, mode: str, metric: str
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Each matrix of the run in `metric` (dense .npy or sparse .npz): the file names written
    and each matrix's statistics, by matrix name."""
    suffix = ".npy" if mode == "exact" else ".npz"
    written, stats = {}, {}
    for name, result in stage.utilities.results().items():
        path = save_matrix_atomic(out / f"{MATRIX_FILES[name]}{suffix}", result.matrix(metric))
        written[name] = path.name
        stats[name] = {
            "shape": list(result.rms.shape),
            "pairs": result.pairs_total,
            "pairs_computed": result.pairs_computed,
            "pairs_reused": result.pairs_reused,
            "baselines_computed": result.baselines_computed,
            "seconds": round(result.seconds, 3),
            "pairs_per_second": round(result.pairs_computed / result.seconds, 2)
            if result.pairs_computed and result.seconds > 0
            else None,
        }
    return written, stats


def write_quality(stage: StageRun, inputs: Inputs, out: Path) -> Path:
    """quality.jsonl: one row per pool sample, in pool order, with every signal and the score."""
    quality = pool_quality(stage.utilities, stage.emb_pool, DEFAULT_QUALITY_SIGNAL)
    ids = [r.id for r in inputs.pool.records]
    path = out / "quality.jsonl"
    return write_bytes_atomic(path, jsonl_bytes(quality_rows(ids, quality.signals, quality.score)))
