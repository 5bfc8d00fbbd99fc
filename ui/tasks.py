"""Background work of the app: scoring, speed calibration, maps and evaluation of saved
selections, run by the JobManager.

`submit_*` run in the script thread: they resolve the datasets (fast, may raise DataError for the
page to show) and queue a job. `run_*` run in the worker thread and use only the library and
ui.registry, never Streamlit.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.data.dataset import Dataset
from delift_core.embeddings import embed_records
from delift_core.errors import CancelledError, ConfigError, DeliftError
from delift_core.evaluation.finetune_types import FinetuneConfig
from delift_core.jobs import JobContext, JobManager
from delift_core.pipeline import list_stages, save_stage, score_stage, stage_key
from delift_core.projection import project_2d
from delift_core.utility import Progress, compute_utility
from ui import estimates, evaluation, registry

log = logging.getLogger(__name__)

SCORE, MAP, CALIBRATE, EVALUATE = "score", "map", "calibrate", "evaluate"
ROLES = ("pool", "targets", "existing")
PHASE_LABELS = {
    "pool": "scoring the pool",
    "targets": "scoring the targets",
    "existing": "scoring against the existing set",
    "quality": "scoring each answer without its prompt (quality signals)",
}


# -- scoring --------------------------------------------------------------------------------


def score_params(
    handles: dict[str, dict[str, Any] | None],
    model: str,
    config: ScoringConfig,
    workspace: str | None = None,
) -> dict[str, Any]:
    """JSON job parameters of a score run: enough to run it again after a restart, and the
    workspace that started it (its job list shows it)."""
    params: dict[str, Any] = {"model": model, "mode": config.mode, "k": config.k}
    params["batch_size"] = config.batch_size
    if workspace is not None:
        params["workspace"] = workspace
    for role in ROLES:
        handle = handles.get(role)
        params[role] = None if handle is None else dict(handle)
    return params


def config_from(params: dict[str, Any]) -> ScoringConfig:
    return ScoringConfig(mode=params["mode"], k=int(params["k"]), batch_size=params["batch_size"])


def resolve_datasets(params: dict[str, Any], cache: UtilityCache) -> dict[str, Dataset | None]:
    """The datasets named by a job's handles (loaded again from their specs when needed)."""
    return {
        role: registry.dataset_for(params[role], cache) if params.get(role) else None
        for role in ROLES
    }


def submit_score(
    manager: JobManager, cache: UtilityCache, params: dict[str, Any], *, map_after: bool = True
) -> str:
    """Queue a score run (validates the settings and data first) and return its job id.

    A speed measurement of the same model still queued or running is cancelled: the score run
    measures the speed itself (`estimates.set_rate` from its progress), and the measurement
    would only delay it. With `map_after`, the pool's map is queued as a job of its own right
    behind the run (unless it is in the cache), so that the scores are ready without waiting
    for the map and Select finds the map computed or on its way."""
    config = config_from(params)
    datasets = resolve_datasets(params, cache)
    skip_calibration(manager, params["model"])
    job_id = manager.submit(
        SCORE, params, lambda ctx: run_score(ctx, cache, params, config, datasets)
    )
    if map_after and not maps_ready(cache, datasets):
        handles = {role: params.get(role) for role in ROLES}
        if params.get("workspace") is not None:
            handles["workspace"] = params["workspace"]
        _submit_map(manager, cache, handles, datasets, after=job_id)
    return job_id


def stage_meta(
    params: dict[str, Any], lm_id: str, config: ScoringConfig, datasets: dict[str, Dataset | None]
) -> dict[str, Any]:
    """What a finished stage records about itself (shown on Select, copied into manifests)."""
    meta: dict[str, Any] = {
        "model": {"name": params["model"], "id": lm_id},
        "scoring": {"mode": config.mode, "k": config.k, "template": config.template.hash},
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for role in ROLES:
        ds = datasets[role]
        meta[role] = None if ds is None else {**params[role], "path": ds.path, "schema": ds.schema}
    return meta


def run_score(
    ctx: JobContext,
    cache: UtilityCache,
    params: dict[str, Any],
    config: ScoringConfig,
    datasets: dict[str, Dataset | None],
) -> dict[str, Any]:
    """Worker: load the model, score the stage (resuming from cached rows) and save it; the map
    is a job of its own (`submit_score`). Returns {"stage_key", "passes", "seconds"}."""
    pool, targets, existing = datasets["pool"], datasets["targets"], datasets["existing"]
    assert pool is not None
    ctx.report("loading the model", message=f"Loading model {params['model']}")
    lm = registry.load_lm(params["model"])
    ctx.raise_if_cancelled()
    embedder = registry.load_embedder_handle() if config.mode == "sparse" else None
    key = stage_key(
        lm.model_id,
        config,
        pool.hash,
        targets.hash if targets else None,
        existing.hash if existing else None,
    )
    computed, seconds = 0, 0.0
    if any(k == key for k, _ in list_stages(cache)):
        ctx.report("scored", message="These scores were already in the cache")
    else:
        computed_by_phase: dict[str, int] = {}
        chars = estimates.mean_chars(pool, targets, existing)  # speeds are kept with lengths

        def on_progress(phase: str, p: Progress) -> None:
            label = PHASE_LABELS.get(phase, phase)
            computed_by_phase[phase] = p.done - p.reused
            if p.done - p.reused >= estimates.MIN_LIVE_PASSES and p.elapsed_s > 0:
                # The estimate on the Score page follows the running job's own speed.
                rate = (p.done - p.reused) / p.elapsed_s
                estimates.set_rate(params["model"], rate, chars=chars)
            ctx.report(
                label, p.done, p.total, p.eta_s,
                f"{p.reused:,} passes reused from cache" if p.reused else "",
            )  # fmt: skip

        started = time.perf_counter()
        utilities = score_stage(
            lm,
            pool.records,
            config,
            targets=targets.records if targets else None,
            existing=existing.records if existing else None,
            embedder=embedder,
            cache=cache,
            on_progress=on_progress,
            should_cancel=ctx.cancelled,
        )
        seconds = time.perf_counter() - started
        results = utilities.results().values()
        computed = sum(computed_by_phase.values())  # forward passes run, answer scores included
        # The engine's own time excludes embedding and candidate search (sparse mode).
        engine_seconds = sum(r.seconds for r in results)
        if computed >= 50 and engine_seconds > 0:
            estimates.set_rate(params["model"], computed / engine_seconds, cache, chars=chars)
        save_stage(cache, key, utilities, stage_meta(params, lm.model_id, config, datasets))
    summary = f"{computed:,} passes computed" if computed else "all passes were in the cache"
    ctx.report("finished", message=f"{summary}; scores saved")
    return {"stage_key": key, "passes": computed, "seconds": seconds}


# -- after a restart ------------------------------------------------------------------------

AUTO_RESUME_KIND, AUTO_RESUME_KEY = "setting", "auto_resume"


def auto_resume(cache: UtilityCache) -> bool:
    """Whether unfinished score runs resume by themselves when the server starts (stored in
    the cache, so the choice outlives the server)."""
    stored = cache.get_array(AUTO_RESUME_KIND, AUTO_RESUME_KEY)
    return bool(stored is not None and stored.size and stored[0])


def set_auto_resume(cache: UtilityCache, on: bool) -> None:
    cache.put_array(AUTO_RESUME_KIND, AUTO_RESUME_KEY, np.array([int(on)], dtype=np.int64))


def resume_run(
    manager: JobManager, cache: UtilityCache, run: dict[str, Any], workspace: str | None = None
) -> str:
    """Submit a stored unfinished score run again (cached rows are reused) and mark it resumed.
    Resumed from a page, the run belongs to that page's workspace from then on (a session
    after a restart may be in another one); resumed at start, it keeps its own."""
    params = dict(run["params"])
    if workspace is not None:
        params["workspace"] = workspace
    job_id = submit_score(manager, cache, params)
    manager.mark_run(run["id"], "resumed", f"resumed as job {job_id}")
    return job_id


def resume_unfinished(manager: JobManager, cache: UtilityCache) -> list[str]:
    """Resume every unfinished score run when the user chose so; returns the new job ids. A run
    whose data cannot be loaded any more stays listed for the user to dismiss."""
    if not auto_resume(cache):
        return []
    started = []
    for run in manager.unfinished_runs(SCORE):
        try:
            started.append(resume_run(manager, cache, run))
        except DeliftError as exc:
            log.warning("cannot resume run %s: %s", run["id"], exc)
    return started


# -- maps -----------------------------------------------------------------------------------


def maps_ready(cache: UtilityCache, datasets: dict[str, Dataset | None]) -> bool:
    """Whether the pool's map and every set's embeddings are in the cache."""
    pool = datasets["pool"]
    assert pool is not None
    return registry.cached_map(cache, pool) is not None and all(
        registry.cached_embeddings(cache, ds) is not None for ds in datasets.values() if ds
    )


def compute_maps(ctx: JobContext, cache: UtilityCache, datasets: dict[str, Dataset | None]) -> None:
    """Embed every set (cached) and compute the pool's 2-D map (cached)."""
    pool = datasets["pool"]
    assert pool is not None
    if maps_ready(cache, datasets):
        return
    ctx.report("embedding", 0, 0, message="Loading the sentence embedder")
    embedder = registry.load_embedder_handle()
    vectors = None
    for role in ROLES:
        ds = datasets[role]
        if ds is None:
            continue
        ctx.raise_if_cancelled()
        ctx.report("embedding", message=f"Embedding the {role} ({len(ds):,} rows)")
        emb = embed_records(ds.records, embedder.model, embedder.key, cache)
        if role == "pool":
            vectors = emb
    ctx.raise_if_cancelled()
    ctx.report("map", message="Computing the 2-D map (UMAP)")
    project_2d(vectors, cache=cache, key=registry.map_key(pool), seed=0)


def submit_map(
    manager: JobManager, cache: UtilityCache, handles: dict[str, dict[str, Any] | None]
) -> str:
    """Queue embeddings and the pool map (for Select, when a stage has no map yet, e.g. one
    scored by the CLI)."""
    params = {role: handles.get(role) for role in ROLES}
    return _submit_map(manager, cache, params, resolve_datasets(params, cache))


def _submit_map(
    manager: JobManager,
    cache: UtilityCache,
    handles: dict[str, Any],
    datasets: dict[str, Dataset | None],
    after: str | None = None,
) -> str:
    params = {**handles, "after": after}
    return manager.submit(MAP, params, lambda ctx: run_map(ctx, manager, cache, datasets, after))


def run_map(
    ctx: JobContext,
    manager: JobManager,
    cache: UtilityCache,
    datasets: dict[str, Dataset | None],
    after: str | None,
) -> None:
    """Worker: compute the maps, unless the score job `after` (queued just before) did not save
    its scores: then the map is not wanted yet and the job ends as cancelled."""
    if after is not None:
        try:
            state = manager.snapshot(after).state
        except ConfigError:  # forgotten long ago: it finished
            state = "done"
        if state != "done":
            raise CancelledError(f"not computed: the scoring job before it was {state}")
    compute_maps(ctx, cache, datasets)
    ctx.report("finished", message="map ready")


# -- speed calibration ----------------------------------------------------------------------


def skip_calibration(manager: JobManager, model: str) -> list[str]:
    """Cancel the speed measurements of `model` that are queued or running (a score run of the
    model is about to measure its speed anyway); returns their job ids."""
    name = registry.canonical_model(model)
    skipped = [
        job.id
        for job in manager.list_jobs(kind=CALIBRATE, active_only=True)
        if registry.canonical_model(job.params["model"]) == name
    ]
    for job_id in skipped:
        manager.cancel(job_id)
    return skipped


def submit_calibration(
    manager: JobManager, cache: UtilityCache, model: str, pool: Dataset, batch_size: int
) -> str:
    """Queue a short speed measurement for a model on the first rows of the pool: 8 targets
    and 4 examples, batched as a real run is (a handful of single rows would mostly measure
    per-call overhead and promise a run several times too slow)."""
    sample = list(pool.records[:8])
    params = {"model": model, "batch_size": batch_size, "rows": len(sample)}
    return manager.submit(
        CALIBRATE, params, lambda ctx: run_calibration(ctx, cache, model, sample, batch_size)
    )


def run_calibration(
    ctx: JobContext, cache: UtilityCache, model: str, sample: list[Any], batch_size: int
) -> float:
    """Worker: time a few uncached passes (after one warm-up) and store passes per second."""
    ctx.report("loading the model", message=f"Loading model {model}")
    lm = registry.load_lm(model)
    config = ScoringConfig(batch_size=batch_size)
    try:
        ctx.raise_if_cancelled()  # a score run started meanwhile measures the speed itself
        ctx.report("measuring speed", message="Scoring a few pairs without the cache")
        compute_utility(lm, sample[:1], sample[:1], config, should_cancel=ctx.cancelled)
        ctx.raise_if_cancelled()
        started = time.perf_counter()
        result = compute_utility(lm, sample, sample[:4], config, should_cancel=ctx.cancelled)
        seconds = max(time.perf_counter() - started, 1e-6)
    except CancelledError as exc:
        raise CancelledError(
            "the speed measurement was stopped; a score run measures the speed as it runs"
        ) from exc
    rate = (result.pairs_computed + result.baselines_computed) / seconds
    estimates.set_rate(model, rate, cache, chars=estimates.mean_chars(sample))
    ctx.report("finished", message=f"{rate:,.1f} passes per second")
    return rate


# -- evaluation of saved selections ---------------------------------------------------------


def evaluate_params(
    selections: list[str],
    held_out: dict[str, Any],
    protocol: str,
    seeds: int,
    generate: int = 0,
    model: str = "default",
) -> dict[str, Any]:
    """JSON job parameters of an evaluation (see ui.evaluation.prepare for held_out)."""
    if protocol not in evaluation.PROTOCOL_LABELS:
        raise ConfigError(f"unknown protocol {protocol!r}")
    return {
        "selections": list(selections), "held_out": dict(held_out), "protocol": protocol,
        "seeds": list(range(int(seeds))), "generate": int(generate), "model": model,
    }  # fmt: skip


def submit_evaluation(manager: JobManager, cache: UtilityCache, params: dict[str, Any]) -> str:
    """Queue an evaluation (resolves the selections and held-out data first)."""
    if params["protocol"] == "icl" and len(params["seeds"]) < evaluation.MIN_ICL_SEEDS:
        raise ConfigError(
            f"the quick protocol needs at least {evaluation.MIN_ICL_SEEDS} Random seeds"
        )
    plan = evaluation.prepare(cache, params)
    return manager.submit(EVALUATE, params, lambda ctx: run_evaluation(ctx, cache, params, plan))


def run_evaluation(
    ctx: JobContext, cache: UtilityCache, params: dict[str, Any], plan: evaluation.EvalPlan
) -> dict[str, Any]:
    """Worker: load the model, evaluate every set of the plan, store the summary in the cache.
    Returns {"key": cache key of the result, "seconds": wall time}."""
    ctx.report("loading the model", message=f"Loading model {params['model']}")
    lm = registry.load_lm(params["model"])
    ctx.raise_if_cancelled()
    embedder = registry.load_embedder_handle()
    finetune = FinetuneConfig() if params["protocol"] == "finetune" else None
    started = time.perf_counter()
    results = evaluation.evaluate_plan(
        lm, embedder, plan, protocol=params["protocol"],
        config=evaluation.eval_config(params.get("generate") or 0), finetune=finetune,
        cache=cache, report=lambda phase, done, total, eta: ctx.report(phase, done, total, eta),
        should_cancel=ctx.cancelled,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    ctx.report("saving", message="Computing intervals and saving the results")
    key = evaluation.store_result(
        cache, params, plan, results, model_id=lm.model_id, finetune=finetune, seconds=seconds
    )
    ctx.report("finished", message=f"Evaluated {len(plan.arms)} sets in {seconds:.0f} s")
    return {"key": key, "seconds": seconds}
