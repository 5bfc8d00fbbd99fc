"""The utility engine: U[i, j] = d(i | no example) - d(i | example j) (DESIGN.md §2).

Rows are targets i, columns are examples j. Exact mode scores every pair; sparse mode only the
candidate pairs given (each target's nearest examples). Per example, the prefix
`template head + example j` runs once and its KV cache serves all targets in length-bucketed
batches; the vocabulary projection runs only at scored positions (scoring.py). Scores are read
from and written to the cache as they are computed, so interrupted work resumes.
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
from delift_core.prompts import PromptPlan, TextPair, plan_prompts, with_example_text
from delift_core.scoring import encode_prefix, plan_batches, score_rows

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


class _Tracker:
    """Progress, cancellation and buffered cache writes for one run."""

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
    config = config or ScoringConfig()
    if config.mode == "sparse" and candidates is None:
        raise ConfigError("sparse mode needs candidates (see neighbours.find_candidates)")
    if not targets or not examples:
        raise ConfigError("utility needs at least one target and one example")
    started = time.perf_counter()
    n_t, n_e = len(targets), len(examples)
    pair_t, pair_e = pair_lists(n_t, n_e, None if config.mode == "exact" else candidates)
    scope = scope_key(lm.model_id, f"{config.template.hash}:r{config.max_response_tokens}")
    t_hash = [t.hash for t in targets]
    e_hash = [e.hash for e in examples]

    base = np.full((n_t, 2), np.nan)
    with_ex = np.full((len(pair_t), 2), np.nan)
    if cache is not None:
        stored_base = cache.load_baselines(scope, t_hash)
        for i, h in enumerate(t_hash):
            if h in stored_base:
                base[i] = stored_base[h]
        stored = cache.load_pairs(scope, e_hash, t_hash)
        if stored:
            for p, (i, j) in enumerate(zip(pair_t.tolist(), pair_e.tolist(), strict=True)):
                value = stored.get((e_hash[j], t_hash[i]))
                if value is not None:
                    with_ex[p] = value
    missing_base = np.flatnonzero(np.isnan(base[:, 0]))
    missing_pairs = np.flatnonzero(np.isnan(with_ex[:, 0]))
    reused_pairs = len(pair_t) - len(missing_pairs)
    total = n_t + len(pair_t)
    tracker = _Tracker(
        total, total - len(missing_base) - len(missing_pairs), on_progress, should_cancel
    )
    tracker.report()
    log.info(
        "utility: %d targets x %d examples, %d pairs (%d cached), %d baselines to compute",
        n_t, n_e, len(pair_t), reused_pairs, len(missing_base),
    )  # fmt: skip

    if len(missing_base) or len(missing_pairs):
        plan = plan_prompts(
            lm.encode, config.template, targets, examples, config.max_response_tokens
        )
        _score_baselines(lm, plan, config, missing_base, base, tracker, cache, scope, t_hash)
        _score_pairs(
            lm, plan, config, targets, examples, pair_t, pair_e, missing_pairs, with_ex, tracker,
            cache, scope, t_hash, e_hash,
        )  # fmt: skip

    u_rms = (base[pair_t, 0] - with_ex[:, 0]).astype(np.float32)
    u_logp = (with_ex[:, 1] - base[pair_t, 1]).astype(np.float32)
    if config.mode == "exact":
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
        pairs_computed=len(missing_pairs),
        pairs_reused=reused_pairs,
        baselines_computed=len(missing_base),
        seconds=time.perf_counter() - started,
    )


def _score_baselines(
    lm: LanguageModel,
    plan: PromptPlan,
    config: ScoringConfig,
    todo: np.ndarray,
    base: np.ndarray,
    tracker: _Tracker,
    cache: UtilityCache | None,
    scope: str,
    t_hash: list[str],
) -> None:
    eos = lm.eos_id
    rows = [plan.baselines[i] + [eos] + plan.responses[i] + [eos] for i in todo]
    for batch in plan_batches([len(r) for r in rows], config.batch_size, config.max_batch_tokens):
        tracker.check_cancel()
        idx = todo[batch]
        scores = score_rows(lm, [rows[b] for b in batch], [len(plan.baselines[i]) for i in idx])
        base[idx, 0], base[idx, 1] = scores.rms, scores.logp
        if cache is not None:
            cache.store_baselines(scope, [t_hash[i] for i in idx], scores.rms, scores.logp)
        tracker.advance(len(batch))


def _score_pairs(
    lm: LanguageModel,
    plan: PromptPlan,
    config: ScoringConfig,
    targets: Sequence[TextPair],
    examples: Sequence[TextPair],
    pair_t: np.ndarray,
    pair_e: np.ndarray,
    todo: np.ndarray,
    values: np.ndarray,
    tracker: _Tracker,
    cache: UtilityCache | None,
    scope: str,
    t_hash: list[str],
    e_hash: list[str],
) -> None:
    eos = lm.eos_id
    pending: list[int] = []
    last_flush = time.perf_counter()

    def flush() -> None:
        nonlocal pending, last_flush
        if cache is not None and pending:
            p = np.asarray(pending)
            cache.store_pairs(
                scope,
                [e_hash[j] for j in pair_e[p]],
                [t_hash[i] for i in pair_t[p]],
                values[p, 0],
                values[p, 1],
            )
        pending, last_flush = [], time.perf_counter()

    def run(batch_pairs: np.ndarray, rows: list[list[int]], ctx: list[int], prefix=None) -> None:
        scores = score_rows(lm, rows, ctx, prefix)
        values[batch_pairs, 0], values[batch_pairs, 1] = scores.rms, scores.logp
        pending.extend(batch_pairs.tolist())
        tracker.advance(len(batch_pairs))
        if time.perf_counter() - last_flush > _FLUSH_SECONDS:
            flush()

    joined: list[int] = []
    try:
        by_example = np.split(todo, np.flatnonzero(np.diff(pair_e[todo])) + 1) if len(todo) else []
        for group in by_example:
            j = int(pair_e[group[0]])
            clean = [p for p in group if int(pair_t[p]) not in plan.joined_targets]
            joined.extend(p for p in group if int(pair_t[p]) in plan.joined_targets)
            if j in plan.joined_examples:
                joined.extend(clean)
                continue
            if not clean:
                continue
            tracker.check_cancel()
            prefix = encode_prefix(lm, plan.prefixes[j])
            suffixes = [plan.queries[i] + [eos] + plan.responses[i] + [eos] for i in pair_t[clean]]
            batches = plan_batches(
                [len(s) for s in suffixes],
                config.batch_size,
                config.max_batch_tokens,
                prefix.length,
            )
            for batch in batches:
                tracker.check_cancel()
                run(
                    np.asarray(clean)[batch],
                    [suffixes[b] for b in batch],
                    [len(plan.queries[pair_t[clean[b]]]) for b in batch],
                    prefix,
                )
        # Pairs whose text does not split at the template boundary: whole-string tokens.
        if joined:
            rows, ctx = [], []
            for p in joined:
                i, j = int(pair_t[p]), int(pair_e[p])
                head = lm.encode(with_example_text(config.template, targets[i], examples[j]))
                rows.append(head + [eos] + plan.responses[i] + [eos])
                ctx.append(len(head))
            for batch in plan_batches(
                [len(r) for r in rows], config.batch_size, config.max_batch_tokens
            ):
                tracker.check_cancel()
                run(np.asarray(joined)[batch], [rows[b] for b in batch], [ctx[b] for b in batch])
    finally:
        flush()
