"""Handlers of the `delift` subcommands (argument parsing lives in cli.py)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from delift_core import __version__
from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.data import Dataset, load_dataset
from delift_core.errors import ConfigError
from delift_core.files import save_matrix_atomic, write_json_atomic
from delift_core.models import embedder_id, load_causal_lm, load_embedder
from delift_core.pipeline import Embedder, StageUtilities, score_stage
from delift_core.utility import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    pool: Dataset
    targets: Dataset | None
    existing: Dataset | None


def load_inputs(args: argparse.Namespace) -> Inputs:
    from delift_core.cli import _field_map

    fields = _field_map(args.field)

    def load(path: str | None, limit: int | None) -> Dataset | None:
        if path is None:
            return None
        return load_dataset(path, field_map=fields, limit=limit)

    inputs = Inputs(
        load(args.data, args.limit),
        load(args.targets, args.targets_limit),
        load(args.existing, args.existing_limit),
    )
    for ds in (inputs.pool, inputs.targets, inputs.existing):
        for warning in ds.warnings if ds is not None else ():
            print(f"delift: warning: {warning}", file=sys.stderr)
    return inputs


def scoring_config(args: argparse.Namespace) -> ScoringConfig:
    return ScoringConfig(
        mode=args.mode, k=args.k, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens
    )


class ProgressBar:
    """One tqdm bar per phase on stderr."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, phase: str, p: Progress) -> None:
        from tqdm import tqdm

        bar = self._bars.get(phase)
        if bar is None:
            bar = tqdm(total=p.total, desc=f"scoring {phase}", unit="pass", file=sys.stderr)
            self._bars[phase] = bar
        bar.update(p.done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def compute_stage(
    args: argparse.Namespace, inputs: Inputs, config: ScoringConfig
) -> tuple[StageUtilities, dict[str, Any]]:
    """Load the models, open the cache and score every matrix the inputs call for."""
    lm = load_causal_lm(args.model, args.device)
    embedder = None
    if config.mode == "sparse":
        embedder = Embedder(load_embedder(args.embedder, args.device), embedder_id(args.embedder))
    bar = ProgressBar()
    with UtilityCache(args.cache) as cache:
        try:
            utilities = score_stage(
                lm, inputs.pool.records, config,
                targets=inputs.targets.records if inputs.targets else None,
                existing=inputs.existing.records if inputs.existing else None,
                embedder=embedder, cache=cache, on_progress=bar,
            )  # fmt: skip
        finally:
            bar.close()
    info = {
        "model": {"name": args.model, "id": lm.model_id, "device": lm.device, "dtype": lm.dtype},
        "embedder": embedder.key if embedder else None,
        "cache": str(cache.path),
    }
    return utilities, info


def describe_inputs(inputs: Inputs) -> dict[str, Any]:
    out = {}
    for name in ("pool", "targets", "existing"):
        ds = getattr(inputs, name)
        if ds is not None:
            out[name] = {"path": ds.path, "rows": len(ds), "hash": ds.hash, "schema": ds.schema}
    return out


def cmd_score(args: argparse.Namespace) -> int:
    inputs = load_inputs(args)
    config = scoring_config(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    started = time.perf_counter()
    utilities, info = compute_stage(args, inputs, config)
    files = {"pool": "utility", "query": "utility_targets", "private": "utility_existing"}
    suffix = ".npy" if config.mode == "exact" else ".npz"
    written, stats = {}, {}
    for name, result in utilities.results().items():
        path = save_matrix_atomic(out / f"{files[name]}{suffix}", result.matrix(args.metric))
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
    seconds = time.perf_counter() - started
    manifest = {
        "command": "score",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": describe_inputs(inputs),
        **info,
        "template": {"hash": config.template.hash, **config.template.__dict__},
        "scoring": config.as_dict() | {"template": config.template.hash},
        "metric": args.metric,
        "orientation": "rows = targets (items represented), columns = examples (candidates)",
        "files": written,
        "matrices": stats,
        "pairs_computed": sum(s["pairs_computed"] for s in stats.values()),
        "pairs_reused": sum(s["pairs_reused"] for s in stats.values()),
        "seconds": round(seconds, 3),
    }
    write_json_atomic(out / "manifest.json", manifest)
    print(
        f"wrote {', '.join(written.values())} to {out} "
        f"({manifest['pairs_computed']} pairs computed, {manifest['pairs_reused']} reused, "
        f"{seconds:.1f} s)",
        file=sys.stderr,
    )
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"score": cmd_score}
