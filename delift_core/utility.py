"""The utility engine: U[i, j] = d(i | no example) - d(i | example j) (docs/design.md §2).

Rows are targets i, columns are examples j. Exact mode scores every pair; sparse mode only the
candidate pairs given (each target's nearest examples). Each prefix `template head + example j`
runs once, in a padded batch with other examples' prefixes, and its KV cache serves all its
targets in length-bucketed batches that mix examples (batching.py); the vocabulary projection
runs only at scored positions (scoring.py). Scores are read from and written to the cache as
they are computed, so interrupted work resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from delift_core.cache import UtilityCache, scope_key
from delift_core.config import ScoringConfig
from delift_core.errors import CancelledError, ConfigError
from delift_core.models import LanguageModel
from delift_core.prompts import PromptPlan, TextPair, plan_prompts

log = logging.getLogger(__name__)

# Scores are flushed to the cache at least this often (seconds), so a kill loses little.
_FLUSH_SECONDS = 1.0


@dataclass(frozen=True)
class Progress:
    """Forward rows (no-example baselines + pairs) done of total, and an ETA in seconds."""

    done: int
    total: int
    reused: int
    elapsed_s: float
    eta_s: float | None


ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class UtilityResult:
    """Raw utility, rows = targets, columns = examples.

    rms: distance form d(i|none) - d(i|j); logprob: sum log p(with j) - sum log p(without).
    Dense float32 (n_targets, n_examples) in exact mode, scipy CSR float32 in sparse mode
    (only computed pairs stored; values may be zero or negative).
    """

    rms: np.ndarray | sp.csr_matrix
    logprob: np.ndarray | sp.csr_matrix
    pairs_total: int
    pairs_computed: int
    pairs_reused: int
    baselines_computed: int
    seconds: float

    def matrix(self, metric: str = "rms") -> np.ndarray | sp.csr_matrix:
        if metric == "rms":
            return self.rms
        if metric == "logprob":
            return self.logprob
        raise ConfigError(f"metric must be rms or logprob; got {metric!r}")


def pair_lists(
    n_targets: int, n_examples: int, candidates: Sequence[Sequence[int]] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(target, example) index arrays of the pairs to score, sorted by example.

    candidates=None means every pair (exact); else candidates[i] lists the examples of target i.
    """
    if candidates is None:
        examples = np.repeat(np.arange(n_examples), n_targets)
        targets = np.tile(np.arange(n_targets), n_examples)
        return targets, examples
    if len(candidates) != n_targets:
        raise ConfigError(f"candidates has {len(candidates)} rows for {n_targets} targets")
    targets = np.concatenate(
        [np.full(len(c), i, dtype=np.int64) for i, c in enumerate(candidates)] or [[]]
    ).astype(np.int64)
    examples = np.concatenate([np.asarray(c, dtype=np.int64) for c in candidates] or [[]])
    examples = examples.astype(np.int64)
    if examples.size and (examples.min() < 0 or examples.max() >= n_examples):
        raise ConfigError("candidate index out of range")
    pairs = np.unique(np.stack([examples, targets], axis=1), axis=0)
    return pairs[:, 1].copy(), pairs[:, 0].copy()


class RunTracker:
    """Progress and cancellation of one run: rows done of total, `reused` of them from the cache."""

    def __init__(
        self,
        total: int,
        reused: int,
        on_progress: ProgressFn | None,
        should_cancel: CancelFn | None,
    ) -> None:
        self.total, self.reused, self.done = total, reused, reused
        self.on_progress, self.should_cancel = on_progress, should_cancel
        self.start = time.perf_counter()

    def advance(self, rows: int) -> None:
        self.done += rows
        self.report()

    def report(self) -> None:
        if self.on_progress is None:
            return
        elapsed = time.perf_counter() - self.start
        computed = self.done - self.reused
        eta = None
        if computed > 0:
            eta = elapsed / computed * (self.total - self.done)
        self.on_progress(Progress(self.done, self.total, self.reused, elapsed, eta))

    def check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise CancelledError("scoring was cancelled; finished rows are kept in the cache")


@dataclass
class UtilityWork:
    """The rows of one utility run and their scores so far.

    pair_t, pair_e: (P,) target and example index of each pair to score, sorted by example.
    base: (n_targets, 2) no-example (rms, logp) per target; with_ex: (P, 2) with-example
    (rms, logp) per pair; NaN where not known yet. scope: the cache scope of every row.
    """

    mode: str
    n_targets: int
    n_examples: int
    scope: str
    pair_t: np.ndarray
    pair_e: np.ndarray
    t_hash: list[str]
    e_hash: list[str]
    base: np.ndarray
    with_ex: np.ndarray

    @property
    def total(self) -> int:
        """Forward rows of the run: one baseline per target plus one per pair."""
        return self.n_targets + len(self.pair_t)

    def missing_baselines(self) -> np.ndarray:
        """Indices of targets whose baseline is not known, ascending."""
        return np.flatnonzero(np.isnan(self.base[:, 0]))

    def missing_pairs(self) -> np.ndarray:
        """Indices into pair_t/pair_e of pairs not known, ascending (so grouped by example)."""
        return np.flatnonzero(np.isnan(self.with_ex[:, 0]))


def plan_work(
    model_id: str,
    targets: Sequence[TextPair],
    examples: Sequence[TextPair],
    config: ScoringConfig,
    candidates: Sequence[Sequence[int]] | None = None,
) -> UtilityWork:
    """Check the request and list its pairs, with nothing scored yet."""
    if config.mode == "sparse" and candidates is None:
        raise ConfigError("sparse mode needs candidates (see neighbours.find_candidates)")
    if not targets or not examples:
        raise ConfigError("utility needs at least one target and one example")
    n_t, n_e = len(targets), len(examples)
    pair_t, pair_e = pair_lists(n_t, n_e, None if config.mode == "exact" else candidates)
    return UtilityWork(
        mode=config.mode,
        n_targets=n_t,
        n_examples=n_e,
        scope=scope_key(model_id, f"{config.template.hash}:r{config.max_response_tokens}"),
        pair_t=pair_t,
        pair_e=pair_e,
        t_hash=[t.hash for t in targets],
        e_hash=[e.hash for e in examples],
        base=np.full((n_t, 2), np.nan),
        with_ex=np.full((len(pair_t), 2), np.nan),
    )


def load_cached(work: UtilityWork, cache: UtilityCache) -> None:
    """Fill the baselines and pairs of `work` that the cache already holds."""
    stored_base = cache.load_baselines(work.scope, work.t_hash)
    for i, h in enumerate(work.t_hash):
        if h in stored_base:
            work.base[i] = stored_base[h]
    stored = cache.load_pairs(work.scope, work.e_hash, work.t_hash)
    if stored:
        t_hash, e_hash = work.t_hash, work.e_hash
        for p, (i, j) in enumerate(zip(work.pair_t.tolist(), work.pair_e.tolist(), strict=True)):
            value = stored.get((e_hash[j], t_hash[i]))
            if value is not None:
                work.with_ex[p] = value


def assemble_result(
    work: UtilityWork, pairs_computed: int, baselines_computed: int, seconds: float
) -> UtilityResult:
    """The utility matrices of a finished run (every baseline and pair known)."""
    pair_t, pair_e, base, with_ex = work.pair_t, work.pair_e, work.base, work.with_ex
    n_t, n_e = work.n_targets, work.n_examples
    u_rms = (base[pair_t, 0] - with_ex[:, 0]).astype(np.float32)
    u_logp = (with_ex[:, 1] - base[pair_t, 1]).astype(np.float32)
    if work.mode == "exact":
        rms = np.zeros((n_t, n_e), dtype=np.float32)
        logprob = np.zeros((n_t, n_e), dtype=np.float32)
        rms[pair_t, pair_e] = u_rms
        logprob[pair_t, pair_e] = u_logp
    else:
        rms = sp.csr_matrix((u_rms, (pair_t, pair_e)), shape=(n_t, n_e), dtype=np.float32)
        logprob = sp.csr_matrix((u_logp, (pair_t, pair_e)), shape=(n_t, n_e), dtype=np.float32)
    return UtilityResult(
        rms=rms,
        logprob=logprob,
        pairs_total=len(pair_t),
        pairs_computed=pairs_computed,
        pairs_reused=len(pair_t) - pairs_computed,
        baselines_computed=baselines_computed,
        seconds=seconds,
    )


class StoreSink:
    """Writes scored rows into `work`, the cache (pairs buffered, flushed at least every
    flush_seconds) and the tracker."""

    def __init__(
        self,
        work: UtilityWork,
        tracker: RunTracker,
        cache: UtilityCache | None,
        flush_seconds: float = _FLUSH_SECONDS,
    ) -> None:
        self.work, self.tracker, self.cache = work, tracker, cache
        self.flush_seconds = flush_seconds
        self._pending: list[int] = []
        self._last_flush = time.perf_counter()

    def check_cancel(self) -> None:
        self.tracker.check_cancel()

    def add_baselines(self, targets: np.ndarray, rms: np.ndarray, logp: np.ndarray) -> None:
        self.work.base[targets, 0], self.work.base[targets, 1] = rms, logp
        if self.cache is not None:
            hashes = [self.work.t_hash[i] for i in targets]
            self.cache.store_baselines(self.work.scope, hashes, rms, logp)
        self.tracker.advance(len(targets))

    def add_pairs(self, pairs: np.ndarray, rms: np.ndarray, logp: np.ndarray) -> None:
        self.work.with_ex[pairs, 0], self.work.with_ex[pairs, 1] = rms, logp
        self._pending.extend(np.asarray(pairs).tolist())
        self.tracker.advance(len(pairs))
        if time.perf_counter() - self._last_flush > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        work = self.work
        if self.cache is not None and self._pending:
            p = np.asarray(self._pending)
            self.cache.store_pairs(
                work.scope,
                [work.e_hash[j] for j in work.pair_e[p]],
                [work.t_hash[i] for i in work.pair_t[p]],
                work.with_ex[p, 0],
                work.with_ex[p, 1],
            )
        self._pending, self._last_flush = [], time.perf_counter()


# What a run driver calls to score the rows the cache lacks:
# (prompt plan, config, work, missing baseline targets, missing pair indices, sink) -> None.
ScoreMissingFn = Callable[
    [PromptPlan, ScoringConfig, UtilityWork, np.ndarray, np.ndarray, "StoreSink"], None
]


def run_utility(
    lm: LanguageModel,
    targets: Sequence[TextPair],
    examples: Sequence[TextPair],
    config: ScoringConfig | None,
    score: ScoreMissingFn,
    *,
    candidates: Sequence[Sequence[int]] | None = None,
    cache: UtilityCache | None = None,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    where: str = "here",
) -> UtilityResult:
    """The one run driver of local and Ray scoring: plan the pairs, take what the cache holds,
    report progress, let `score` compute the rest into the sink, and assemble the matrices."""
    config = config or ScoringConfig()
    started = time.perf_counter()
    work = plan_work(lm.model_id, targets, examples, config, candidates)
    if cache is not None:
        load_cached(work, cache)
    missing_base, missing_pairs = work.missing_baselines(), work.missing_pairs()
    tracker = RunTracker(
        work.total, work.total - len(missing_base) - len(missing_pairs), on_progress, should_cancel
    )
    tracker.report()
    log.info(
        "utility (%s): %d targets x %d examples, %d pairs (%d cached), %d baselines to compute",
        where, work.n_targets, work.n_examples, len(work.pair_t),
        len(work.pair_t) - len(missing_pairs), len(missing_base),
    )  # fmt: skip
    if len(missing_base) or len(missing_pairs):
        plan = plan_prompts(
            lm.encode, config.template, targets, examples, config.max_response_tokens
        )
        score(plan, config, work, missing_base, missing_pairs, StoreSink(work, tracker, cache))
    return assemble_result(
        work, len(missing_pairs), len(missing_base), time.perf_counter() - started
    )


def compute_utility(
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
    """Raw utility of every example for every target (exact) or of the candidate pairs (sparse).

    In sparse mode `candidates[i]` gives the example indices to score for target i. Raises
    CancelledError when should_cancel() turns true (checked between batches); rows finished by
    then are in the cache.
    """
    # Imported here: batching imports scoring and so torch, which the light users of this
    # module (progress types, the run driver's helpers, the CLI's parsers) do not need.
    from delift_core.batching import score_missing

    def score_here(plan, config, work, missing_base, missing_pairs, sink) -> None:
        score_missing(
            lm, plan, config, targets, examples, work.pair_t, work.pair_e, missing_base,
            missing_pairs, sink,
        )  # fmt: skip

    return run_utility(
        lm, targets, examples, config, score_here, candidates=candidates, cache=cache,
        on_progress=on_progress, should_cancel=should_cancel,
    )  # fmt: skip
