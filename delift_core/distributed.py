"""Utility scoring on a Ray cluster (docs/design.md §3, "beyond one machine").

The driver plans a run exactly as `compute_utility` does (same pairs, same cache scope), reads
the rows the cache already holds and splits the missing work into shards (shards.py): blocks
of whole examples (so each example's prefix still runs once) and blocks of baselines. A pool of
Ray actors, each holding the model loaded once, scores shards and returns their rows; the
driver writes every finished shard to the DuckDB cache at once, so a lost worker or an
interrupted run loses at most the shards in flight. Workers never open the cache.

    with RayScorer(ModelSpec("default", "cpu"), workers=2) as scorer:
        result = scorer.compute(lm, targets, examples, config, cache=cache)

`lm` on the driver only tokenises and names the cache scope; every worker must load the same
model (checked by model id). Remote workers need `delift_core` installed where they run. Ray
moves tasks and results between processes with pickle: use only a Ray cluster you trust.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.errors import CancelledError, DeliftError, ModelError, ResourceError
from delift_core.models import DEFAULT_LM, LanguageModel, load_causal_lm
from delift_core.prompts import TextPair
from delift_core.shards import (
    ScoringJob,
    Shard,
    ShardScores,
    plan_shards,
    score_shard,
    scoring_job,
    store_shard,
)
from delift_core.utility import (
    CancelFn,
    ProgressFn,
    StoreSink,
    UtilityResult,
    run_utility,
)

log = logging.getLogger(__name__)

# Shards a run is cut into per worker, at least: small enough to balance load and to lose
# little on an interruption, large enough that per-task overhead does not matter.
_SHARDS_PER_WORKER = 4
_MAX_ROWS_PER_SHARD = 4096


@dataclass(frozen=True)
class ModelSpec:
    """The model workers load by default (picklable; the model itself never travels): name
    and device as for `load_causal_lm`. device also decides whether workers take GPUs."""

    name: str = DEFAULT_LM
    device: str = "auto"

    def load(self) -> LanguageModel:
        """The model the spec names, loaded once per process."""
        return load_causal_lm(self.name, self.device)


# What a worker calls to get its model. It travels to the workers with pickle: a bound method
# such as ModelSpec.load, a module-level function or a functools.partial of one.
ModelFactory = Callable[[], LanguageModel]


@ray.remote(max_restarts=2, max_task_retries=2)
class ScoringWorker:
    """A Ray actor holding one model; a restarted actor reloads it and retried shards rerun."""

    def __init__(self, load_model: ModelFactory, threads: int | None = None) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.lm = load_model()
        self._job: ScoringJob | None = None
        self._job_key = ""

    def model_id(self) -> str:
        return self.lm.model_id

    def score(self, job_box: list[Any], shard: Shard) -> ShardScores:
        # The job arrives as a reference inside a list, so it is fetched once per run, not per shard.
        ref = job_box[0]
        if ref.hex() != self._job_key:
            self._job, self._job_key = ray.get(ref), ref.hex()
        assert self._job is not None
        return score_shard(self.lm, self._job, shard)


LOOPBACK = "127.0.0.1"


@contextmanager
def _loopback_node() -> Iterator[None]:
    """While Ray starts a local node, let its address stay the loopback one.

    Ray's servers (GCS, raylet, workers) listen on the node's address, and on Linux Ray replaces
    a loopback node address by the machine's network address unless it takes clusters to be
    unsupported, as it does on Windows and macOS. That setting is lent for the start only, so
    that a later connection to a real cluster is unaffected. (Checked with Ray 2.60: without it
    every server listened on all interfaces; with it, on 127.0.0.1 only.)
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # another Ray layout: the node address argument is all we can give
        yield
        return
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def start_ray(workers: int, address: str | None = None) -> bool:
    """Connect to Ray: the cluster at `address`, else a local one with `workers` CPUs that
    listens on the loopback interface only (no dashboard), so that other machines cannot reach
    it. Ray moves tasks with pickle: a reachable node would run what others send it.

    Returns True when this call started Ray (then the caller shuts it down).
    """
    if ray.is_initialized():
        return False
    # Ray would otherwise report usage over the network. Set here, not at import: the nodes
    # this call starts read it from the environment they inherit.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address:
            ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
        else:
            with _loopback_node():
                ray.init(
                    num_cpus=workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    ignore_reinit_error=True,
                    _node_ip_address=LOOPBACK,
                )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ResourceError(f"cannot start or reach {where}: {exc}") from exc
    return True


class RayScorer:
    """A pool of `workers` Ray actors, each with the model of `spec` loaded once.

    load_model: what each worker calls to load its model (default `spec.load`; see
    ModelFactory); spec.device still decides the GPUs. address: a running Ray cluster (default: start a local one with `workers` CPUs).
    threads: torch threads per worker (default on a local CPU cluster: this machine's cores /
    workers, so that workers sharing it do not oversubscribe it). gpus: GPUs per worker (default
    with a CUDA device: the cluster's GPUs shared among the workers, at most 1 each; else 0).
    rows_per_shard: default from the run size.
    `compute` has the signature of `compute_utility`, so it can serve as score_stage's compute.
    """

    def __init__(
        self,
        spec: ModelSpec,
        workers: int = 2,
        *,
        address: str | None = None,
        threads: int | None = None,
        gpus: float | None = None,
        rows_per_shard: int | None = None,
        poll_seconds: float = 0.2,
        startup_timeout_s: float = 600.0,
        load_model: ModelFactory | None = None,
    ) -> None:
        if workers < 1:
            raise ResourceError(f"workers must be at least 1; got {workers}")
        self.spec, self.workers, self.address = spec, workers, address
        self.load_model = load_model or spec.load
        self.threads, self.gpus, self.rows_per_shard = threads, gpus, rows_per_shard
        self.poll_seconds, self.startup_timeout_s = poll_seconds, startup_timeout_s
        self._actors: list[Any] = []
        self._model_id = ""
        self._owns_ray = start_ray(workers, address)
        try:
            self._start_actors()
        except BaseException:
            self.close()
            raise

    def _start_actors(self) -> None:
        gpus = self.gpus
        if gpus is None:
            gpus = 0.0
            if self.spec.device.startswith("cuda"):
                total = float(ray.cluster_resources().get("GPU", 0.0))
                if total <= 0:
                    raise ResourceError("CUDA was asked for but the Ray cluster has no GPUs")
                gpus = min(1.0, total / self.workers)  # several workers may share a GPU
        threads = self.threads
        if threads is None and gpus == 0 and not self.address:
            threads = max(1, (os.cpu_count() or 1) // self.workers)
        actor = ScoringWorker.options(num_cpus=1, num_gpus=gpus)
        self._actors = [actor.remote(self.load_model, threads) for _ in range(self.workers)]
        try:
            ids = ray.get(
                [a.model_id.remote() for a in self._actors], timeout=self.startup_timeout_s
            )
        except ray.exceptions.GetTimeoutError:
            raise ResourceError(
                f"{self.workers} Ray workers did not start within {self.startup_timeout_s:.0f} s; "
                "the cluster may lack the CPUs or GPUs asked for (lower --workers)"
            ) from None
        except DeliftError:
            raise
        except ray.exceptions.RayError as exc:
            raise ModelError(f"a Ray worker could not load the model: {exc}") from exc
        if len(set(ids)) != 1:
            raise ModelError(f"Ray workers loaded different models: {sorted(set(ids))}")
        self._model_id = ids[0]
        log.info("started %d Ray workers with %s", self.workers, self._model_id)

    def close(self) -> None:
        """Stop the workers, and Ray itself when this pool started it."""
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # an actor already gone needs no stopping
                log.debug("Ray actor already stopped", exc_info=True)
        self._actors = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> RayScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def compute(
        self,
        lm: LanguageModel,
        targets: Sequence[TextPair],
        examples: Sequence[TextPair],
        config: ScoringConfig | None = None,
        *,
        candidates: Sequence[Sequence[int]] | None = None,
        cache: UtilityCache | None = None,
        on_progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
    ) -> UtilityResult:
        """As `compute_utility`, on the workers. Cancellation is checked while shards run;
        queued shards are then cancelled and finished ones are in the cache."""
        if not self._actors:
            raise ResourceError("this Ray scorer is closed")
        if lm.model_id != self._model_id:
            raise ModelError(
                f"the driver's model {lm.model_id} differs from the workers' {self._model_id}"
            )

        def score_on_workers(plan, config, work, missing_base, missing_pairs, sink) -> None:
            job = scoring_job(plan, config, targets, examples, work.pair_t, work.pair_e)
            missing = len(missing_base) + len(missing_pairs)
            size = self.rows_per_shard or min(
                _MAX_ROWS_PER_SHARD, math.ceil(missing / (_SHARDS_PER_WORKER * self.workers))
            )
            shards = plan_shards(work.pair_e, missing_base, missing_pairs, size)
            log.info("Ray: %d shards on %d workers", len(shards), self.workers)
            self._run(ray.put(job), shards, sink)

        return run_utility(
            lm, targets, examples, config, score_on_workers, candidates=candidates, cache=cache,
            on_progress=on_progress, should_cancel=should_cancel, where="Ray",
        )  # fmt: skip

    def _run(self, job_ref: Any, shards: list[Shard], sink: StoreSink) -> None:
        """Keep every worker two shards deep; store each shard as it finishes."""
        queue = deque(shards)
        pending: dict[Any, Any] = {}

        def submit(actor: Any) -> None:
            if queue:
                pending[actor.score.remote([job_ref], queue.popleft())] = actor

        for actor in self._actors:
            submit(actor)
            submit(actor)
        try:
            while pending:
                sink.check_cancel()
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_seconds)
                for ref in ready:
                    actor = pending.pop(ref)
                    store_shard(_fetch(ref), sink)
                    submit(actor)
        except CancelledError:
            # Keep what already finished, then drop the rest.
            ready = (
                ray.wait(list(pending), num_returns=len(pending), timeout=0)[0] if pending else []
            )
            for ref in ready:
                pending.pop(ref)
                try:
                    store_shard(_fetch(ref), sink)
                except DeliftError:
                    log.debug("a finished shard failed during cancellation", exc_info=True)
            raise
        finally:
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:  # best effort: a finished task needs none
                    log.debug("cannot cancel a Ray task", exc_info=True)


def _fetch(ref: Any) -> ShardScores:
    try:
        return ray.get(ref)
    except DeliftError:  # raised on the worker; Ray re-raises it as an instance of its class
        raise
    except ray.exceptions.RayActorError as exc:
        raise ResourceError(
            "a Ray worker was lost and could not be restarted; finished shards are kept in "
            f"the cache, so running again resumes ({exc})"
        ) from exc
    except ray.exceptions.RayError as exc:
        raise ModelError(f"a Ray worker failed while scoring: {exc}") from exc
