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

import numpy as np

from delift_core import __version__
from delift_core.cache import UtilityCache, check_cache
from delift_core.config import DEFAULT_QUALITY_SIGNAL, ScoringConfig
from delift_core.data import Dataset, load_dataset
from delift_core.embeddings import embed_records
from delift_core.errors import ConfigError, DataError
from delift_core.export import jsonl_bytes
from delift_core.files import save_matrix_atomic, write_bytes_atomic, write_json_atomic
from delift_core.models import embedder_id, load_causal_lm, load_embedder
from delift_core.pipeline import Embedder, StageUtilities, score_stage, selection_inputs
from delift_core.quality import SIGNALS, quality_rows, quality_score, quality_signals
from delift_core.selection import UTILITY_METHODS
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
        return load_dataset(path, field_map=fields, limit=limit, skip_invalid=args.skip_invalid)

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
        mode=args.mode,
        k=args.k,
        batch_size=args.batch_size or ScoringConfig.batch_size,
        max_batch_tokens=args.max_batch_tokens or ScoringConfig.max_batch_tokens,
    )


def fit_batches_to_device(
    args: argparse.Namespace, config: ScoringConfig, lm: Any
) -> ScoringConfig:
    """On CUDA, batch limits not given on the command line are sized from free GPU memory."""
    if not lm.device.startswith("cuda") or (args.batch_size and args.max_batch_tokens):
        return config
    import dataclasses

    import torch

    from delift_core.resources import suggest_batch_limits

    free, _ = torch.cuda.mem_get_info()
    batch, tokens = suggest_batch_limits(lm.model.config, free)
    return dataclasses.replace(
        config,
        batch_size=args.batch_size or batch,
        max_batch_tokens=args.max_batch_tokens or tokens,
    )


class ProgressBar:
    """One tqdm bar per phase on stderr, described as "{verb} {phase}" and counted in units."""

    def __init__(self, verb: str = "scoring", unit: str = "pass") -> None:
        self._bars: dict[str, Any] = {}
        self.verb, self.unit = verb, unit

    def __call__(self, phase: str, p: Progress) -> None:
        from tqdm import tqdm

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


@dataclass(frozen=True)
class PoolQuality:
    """The pool's quality signals (quality.py) and the score delift-q ranks by."""

    signals: dict[str, np.ndarray]
    score: np.ndarray


def pool_quality(
    utilities: StageUtilities, emb_pool: np.ndarray | None, signal: str
) -> PoolQuality:
    signals = quality_signals(utilities.answers, utilities.pool.rms, emb_pool)
    return PoolQuality(signals, quality_score(signals, signal))


def compute_stage(
    args: argparse.Namespace, inputs: Inputs, config: ScoringConfig
) -> tuple[StageUtilities, dict[str, Any]]:
    """Check the cache, load the models, open the cache and score every matrix the inputs call
    for. info["emb_pool"] holds the pool's embeddings in sparse mode (None in exact mode)."""
    from delift_core.resources import check_fits, estimate_run

    estimate = estimate_run(
        len(inputs.pool), config.mode, config.k,
        n_targets=len(inputs.targets) if inputs.targets else 0,
        n_existing=len(inputs.existing) if inputs.existing else 0,
    )  # fmt: skip
    check_fits(estimate, config.mode)
    # A damaged or busy cache is reported now, not after the model has loaded.
    check_cache(args.cache)
    lm = load_causal_lm(args.model, args.device)
    config = fit_batches_to_device(args, config, lm)
    embedder = None
    if config.mode == "sparse":
        embedder = Embedder(load_embedder(args.embedder, args.device), embedder_id(args.embedder))
    bar = ProgressBar()
    with UtilityCache(args.cache) as cache:
        scorer = None
        if getattr(args, "backend", "local") == "ray":
            from delift_core.distributed import ModelSpec, RayScorer

            spec = ModelSpec(args.model, lm.device)
            scorer = RayScorer(spec, args.workers, address=args.ray_address)
        try:
            utilities = score_stage(
                lm, inputs.pool.records, config,
                targets=inputs.targets.records if inputs.targets else None,
                existing=inputs.existing.records if inputs.existing else None,
                embedder=embedder, cache=cache, on_progress=bar,
                compute=scorer.compute if scorer else None,
            )  # fmt: skip
        finally:
            bar.close()
            if scorer is not None:
                scorer.close()
        emb_pool = None
        if embedder is not None:
            emb_pool = embed_records(inputs.pool.records, embedder.model, embedder.key, cache)
    info = {
        "model": {"name": args.model, "id": lm.model_id, "device": lm.device, "dtype": lm.dtype},
        "embedder": embedder.key if embedder else None,
        "batching": {"batch_size": config.batch_size, "max_batch_tokens": config.max_batch_tokens},
        "cache": str(cache.path),
        "emb_pool": emb_pool,
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
    quality = pool_quality(utilities, info.pop("emb_pool"), DEFAULT_QUALITY_SIGNAL)
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
    ids = [r.id for r in inputs.pool.records]
    quality_path = out / "quality.jsonl"
    write_bytes_atomic(quality_path, jsonl_bytes(quality_rows(ids, quality.signals, quality.score)))
    written["quality"] = quality_path.name
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
        "quality": {"signal": DEFAULT_QUALITY_SIGNAL, "columns": ["id", *SIGNALS, "quality"]},
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


def parse_budget(text: str) -> float | int:
    """'0.3' is a fraction of the pool, '120' a count of samples."""
    try:
        return int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise ConfigError(
            f"--budget must be a fraction like 0.3 or a count like 120; got {text!r}"
        ) from None


def check_stage_inputs(stage: str, method: str, targets: str | None, existing: str | None) -> None:
    """Fail before any work when the stage lacks its data or the method is unknown."""
    from delift_core.selection import METHODS

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if stage == "task" and not targets:
        raise ConfigError("the task stage needs a target set: add --targets FILE")
    if stage == "continual" and not existing:
        raise ConfigError("the continual stage needs an existing set: add --existing FILE")


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


def cmd_select(args: argparse.Namespace) -> int:
    from delift_core.config import SelectionConfig
    from delift_core.export import build_manifest, check_new_export, export_subset, subset_rows
    from delift_core.selection import SelectionInputs, select_subset

    sel = SelectionConfig(
        stage=args.stage, method=args.method, budget=parse_budget(args.budget),
        kernel=args.kernel, metric=args.metric, seed=args.seed,
        quality_weight=args.quality_weight, quality_gate=args.quality_gate,
        quality_signal=args.quality_signal,
    )  # fmt: skip
    check_stage_inputs(sel.stage, sel.method, args.targets, args.existing)
    out = Path(args.out)
    if out.suffix != ".jsonl":
        raise ConfigError(f"--out must be a .jsonl file; got {out}")
    if not args.overwrite:  # before any work: a finished run must not end on this
        try:
            check_new_export(out)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (--overwrite replaces it)") from None
    # Sets the stage does not use are ignored, so that they do not cost scoring time.
    if sel.stage != "task":
        args.targets = None
    if sel.stage != "continual":
        args.existing = None
    inputs = load_inputs(args)
    n = len(inputs.pool)
    ids = [r.id for r in inputs.pool.records]
    pinned = read_id_list(args.pin, ids, "pinned")
    excluded = read_id_list(args.exclude, ids, "excluded")
    # "full" is the full-data baseline: it ignores the budget (and keeps what is not excluded).
    count = n - len(set(excluded)) if sel.method == "full" else sel.budget_count(n)
    if len(pinned) > count:
        raise ConfigError(
            f"{len(pinned)} samples are pinned but the budget is {count}; raise --budget or pin"
            " fewer"
        )
    if count > n - len(excluded):
        raise ConfigError(
            f"the budget ({count}) is larger than the {n - len(excluded)} samples not excluded"
        )
    config = scoring_config(args)
    info: dict[str, Any] = {}
    matrices: dict[str, Any] = {}
    quality: PoolQuality | None = None
    if sel.method in UTILITY_METHODS:
        if sel.method == "fl-only":
            inputs = Inputs(inputs.pool, None, None)
        utilities, info = compute_stage(args, inputs, config)
        emb_pool = info.pop("emb_pool")
        matrices = selection_inputs(
            utilities, sel.metric, emb_pool=emb_pool, quality_signal=sel.quality_signal
        ).__dict__
        if args.annotate and utilities.answers is not None:
            # The score is the one selection used; the signals add the near-duplicate one.
            signals = quality_signals(utilities.answers, utilities.pool.rms, emb_pool)
            quality = PoolQuality(signals, matrices["quality"])
    elif sel.method == "delift-se":
        matrices, info = embed_inputs(args, inputs)
    result = select_subset(
        SelectionInputs(**{"n": n, **matrices}), method=sel.method, stage=sel.stage,
        kernel=sel.kernel, seed=sel.seed, max_budget=count if sel.method != "full" else None,
        quality_weight=sel.quality_weight, quality_gate=sel.quality_gate,
        pinned=pinned, excluded=excluded,
    )  # fmt: skip
    chosen = result.take(count)
    annotations = None
    if args.annotate:
        signals = quality_rows(ids, quality.signals, quality.score) if quality else None
        annotations = [
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
            for r, (i, g) in enumerate(zip(chosen, result.gains[:count], strict=True))
        ]
    rows = subset_rows(inputs.pool.records, chosen, args.format, annotations)
    manifest = build_manifest(
        command="select",
        inputs=describe_inputs(inputs),
        selection={**sel.__dict__, "budget_count": count, "pool_size": n},
        scoring=config.as_dict() | {"template": config.template.hash} if info else None,
        template=config.template.__dict__ if info else None,
        objective=None
        if np.isnan(result.objective[count - 1])
        else float(result.objective[count - 1]),
        selected_ids=[inputs.pool.records[i].id for i in chosen],
        pinned_ids=[ids[i] for i in pinned],
        excluded_ids=[ids[i] for i in excluded],
        format=args.format,
        **info,
    )
    paths = export_subset(out, rows, manifest, overwrite=args.overwrite)
    print(
        f"selected {count} of {n} samples -> {paths.jsonl} (manifest {paths.manifest.name})",
        file=sys.stderr,
    )
    return 0


def embed_inputs(args: argparse.Namespace, inputs: Inputs) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sentence embeddings of the pool and the stage's other set (DELIFT-SE)."""
    from delift_core.embeddings import embed_records

    check_cache(args.cache)
    model = load_embedder(args.embedder, args.device)
    key = embedder_id(args.embedder)
    with UtilityCache(args.cache) as cache:

        def embed(ds: Dataset | None):
            return None if ds is None else embed_records(ds.records, model, key, cache)

        arrays = {
            "emb_pool": embed(inputs.pool),
            "emb_targets": embed(inputs.targets),
            "emb_existing": embed(inputs.existing),
        }
    return arrays, {"embedder": key, "cache": str(cache.path)}


COMMANDS["select"] = cmd_select


def _run_eval(args: argparse.Namespace) -> int:
    from delift_core.cli_eval import cmd_eval

    return cmd_eval(args)


COMMANDS["eval"] = _run_eval
