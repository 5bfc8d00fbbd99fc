"""Score every matrix a stage needs (docs/design.md §2, "matrices per stage")."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from delift_core.cache import UtilityCache
from delift_core.config import DEFAULT_QUALITY_SIGNAL, ScoringConfig
from delift_core.embeddings import embed_records, find_candidates
from delift_core.errors import ConfigError
from delift_core.models import LanguageModel
from delift_core.prompts import TextPair, clip_records
from delift_core.quality import (
    AnswerScores,
    plain_scope,
    quality_score,
    quality_signals,
    score_answers,
)
from delift_core.select.selection import SelectionInputs
from delift_core.utility import (
    CancelFn,
    Progress,
    UtilityResult,
    compute_utility,
    load_cached,
    plan_work,
)

log = logging.getLogger(__name__)

PhaseProgressFn = Callable[[str, Progress], None]
# compute_utility or a drop-in with its signature (e.g. distributed.RayScorer.compute).
ComputeFn = Callable[..., UtilityResult]


@dataclass(frozen=True)
class StageUtilities:
    """pool: U_pool (n, n); targets: how much pool j helps target t, (targets, n) (the paper's
    U_query); existing: how much existing k helps pool i, (n, existing) (the paper's U_private);
    answers: the pool's answers scored with and without their prompts (quality.py)."""

    pool: UtilityResult
    targets: UtilityResult | None = None
    existing: UtilityResult | None = None
    answers: AnswerScores | None = None

    def results(self) -> dict[str, UtilityResult]:
        named = {"pool": self.pool, "targets": self.targets, "existing": self.existing}
        return {name: r for name, r in named.items() if r is not None}


# The names a stage's matrices are stored under in the cache (the paper's, kept so that stages
# stored earlier still load).
_STORED_NAMES = {"pool": "pool", "targets": "query", "existing": "private"}


def selection_inputs(
    utilities: StageUtilities,
    metric: str = "rms",
    *,
    emb_pool: np.ndarray | None = None,
    emb_targets: np.ndarray | None = None,
    emb_existing: np.ndarray | None = None,
    quality_signal: str = DEFAULT_QUALITY_SIGNAL,
) -> SelectionInputs:
    """Everything selection may use from a scored stage (the inputs of select.run.run_selection):
    the utility matrices in `metric`, the embeddings given, and the pool's quality score (by
    `quality_signal`) when the stage has answer scores (stages stored before they existed have
    none)."""
    quality = None
    if utilities.answers is not None:
        # The score ranks by an answer signal: the near-duplicate one (embeddings) is not needed.
        signals = quality_signals(utilities.answers, utilities.pool.rms)
        quality = quality_score(signals, quality_signal)
    return SelectionInputs.from_stage(
        utilities,
        metric,
        emb_pool=emb_pool,
        emb_targets=emb_targets,
        emb_existing=emb_existing,
        quality=quality,
    )


@dataclass(frozen=True)
class Embedder:
    """A loaded sentence embedder with its cache key."""

    model: Any
    key: str


def score_stage(
    lm: LanguageModel,
    pool: Sequence[TextPair],
    config: ScoringConfig,
    *,
    targets: Sequence[TextPair] | None = None,
    existing: Sequence[TextPair] | None = None,
    embedder: Embedder | None = None,
    cache: UtilityCache | None = None,
    on_progress: PhaseProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    compute: ComputeFn | None = None,
) -> StageUtilities:
    """Compute U_pool and, when given, U_query (targets x pool) and U_private (pool x existing),
    and the pool's answer scores for the quality signals (one extra forward per sample).

    Sparse mode finds each target's k nearest candidates by sentence embedding first. compute
    scores each matrix (default compute_utility, in this process); the answer scores always
    run in this process (n short rows).
    """
    if config.mode == "sparse" and embedder is None:
        raise ConfigError("sparse mode needs a sentence embedder to find candidates")
    if not pool:
        raise ConfigError("the pool is empty")

    def embed(records: Sequence[TextPair]) -> np.ndarray:
        assert embedder is not None
        return embed_records(records, embedder.model, embedder.key, cache)

    def clip(records: Sequence[TextPair]) -> list[TextPair]:
        return clip_records(
            lm.tokenizer, records, config.max_prompt_tokens, config.max_response_tokens
        )

    # Rows are scored with overlong prompts cut (clip_records); candidates come from the texts
    # as they are.
    cut_pool = clip(pool)

    def run(phase: str, rows: Sequence[TextPair], cols: Sequence[TextPair], same: bool):
        candidates = _candidates(config, rows, cols, same, embed)
        cut_rows = cut_pool if rows is pool else clip(rows)
        cut_cols = cut_pool if cols is pool else clip(cols)

        def report(p: Progress) -> None:
            if on_progress is not None:
                on_progress(phase, p)

        return (compute or compute_utility)(
            lm, cut_rows, cut_cols, config, candidates=candidates, cache=cache,
            on_progress=report, should_cancel=should_cancel,
        )  # fmt: skip

    pool_result = run("pool", pool, pool, True)
    query = run("targets", targets, pool, False) if targets else None
    private = run("existing", pool, existing, False) if existing else None

    def report_quality(p: Progress) -> None:
        if on_progress is not None:
            on_progress("quality", p)

    answers = score_answers(
        lm, cut_pool, config, cache=cache, on_progress=report_quality, should_cancel=should_cancel
    )
    return StageUtilities(pool_result, query, private, answers)


def _candidates(
    config: ScoringConfig,
    rows: Sequence[TextPair],
    cols: Sequence[TextPair],
    same: bool,
    embed: Callable[[Sequence[TextPair]], np.ndarray],
) -> list[np.ndarray] | None:
    """Sparse mode: each row's k nearest columns by embedding; exact mode: None (every pair)."""
    if config.mode != "sparse":
        return None
    return find_candidates(embed(rows), embed(cols), config.k, same_set=same)


@dataclass(frozen=True)
class StagePlan:
    """Forward passes of scoring a stage: `total`, of which `cached` are already stored."""

    total: int
    cached: int

    @property
    def remaining(self) -> int:
        """Passes a run would compute now."""
        return self.total - self.cached


def plan_stage(
    model_id: str,
    pool: Sequence[TextPair],
    config: ScoringConfig,
    cache: UtilityCache,
    *,
    targets: Sequence[TextPair] | None = None,
    existing: Sequence[TextPair] | None = None,
    embed: Callable[[Sequence[TextPair]], np.ndarray] | None = None,
) -> StagePlan:
    """The passes `score_stage` would run, counting those the cache holds, without a model.

    The same work lists as the run (utility.plan_work, load_cached), so `remaining` is exactly
    what a run computes. Sparse mode needs `embed` (the embeddings that choose candidates;
    pass a cache-only one to avoid loading an embedder: it may raise LookupError).
    """
    if config.mode == "sparse" and embed is None:
        raise ConfigError("planning a sparse run needs the embeddings that choose candidates")
    matrices = [(pool, pool, True)]
    if targets:
        matrices.append((targets, pool, False))
    if existing:
        matrices.append((pool, existing, False))
    total = remaining = 0
    # Rows an earlier matrix of the run computes are in the cache when a later one reads them.
    done_base: set[str] = set()
    done_pairs: set[tuple[str, str]] = set()
    for rows, cols, same in matrices:
        work = plan_work(model_id, rows, cols, config, _candidates(config, rows, cols, same, embed))
        load_cached(work, cache)
        bases = [work.t_hash[i] for i in work.missing_baselines()]
        pairs = [
            (work.e_hash[work.pair_e[p]], work.t_hash[work.pair_t[p]]) for p in work.missing_pairs()
        ]
        total += work.total
        remaining += sum(h not in done_base for h in bases)
        remaining += sum(p not in done_pairs for p in pairs)
        done_base.update(bases)
        done_pairs.update(pairs)
    # The answers after their prompts are U_pool's baselines; after EOS alone, one row each.
    stored = cache.load_baselines(plain_scope(model_id, config), [r.hash for r in pool])
    total += len(pool)
    remaining += sum(r.hash not in stored for r in pool)
    return StagePlan(total, total - remaining)


def stage_key(
    model_id: str,
    config: ScoringConfig,
    pool_hash: str,
    targets_hash: str | None = None,
    existing_hash: str | None = None,
) -> str:
    """Key of a stage's finished matrices: everything that determines them."""
    # "q1": stages stored since answer scores were added (older entries lack them).
    parts = [model_id, config.template.hash, config.mode, str(config.max_response_tokens), "q1"]
    if config.mode == "sparse":
        parts.append(f"k{config.k}")
    if config.max_prompt_tokens != ScoringConfig.max_prompt_tokens:
        # Only a cap other than the default changes the key: stages stored before the cap
        # existed stay found (they differ only where a prompt was longer than the default).
        parts.append(f"p{config.max_prompt_tokens}")
    parts += [pool_hash, targets_hash or "-", existing_hash or "-"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _put_matrix(cache: UtilityCache, key: str, matrix: np.ndarray | sp.csr_matrix) -> None:
    if sp.issparse(matrix):
        csr = sp.csr_matrix(matrix)
        shape = np.asarray(csr.shape, dtype=np.int64)
        cache.put_array("stage", f"{key}/data", csr.data.astype(np.float32))
        cache.put_array("stage", f"{key}/indices", csr.indices.astype(np.int64))
        cache.put_array("stage", f"{key}/indptr", csr.indptr.astype(np.int64))
        cache.put_array("stage", f"{key}/shape", shape)
    else:
        cache.put_array("stage", f"{key}/dense", np.asarray(matrix, dtype=np.float32))


def _get_matrix(cache: UtilityCache, key: str) -> np.ndarray | sp.csr_matrix | None:
    dense = cache.get_array("stage", f"{key}/dense")
    if dense is not None:
        return dense
    parts = [cache.get_array("stage", f"{key}/{p}") for p in ("data", "indices", "indptr", "shape")]
    if any(p is None for p in parts):
        return None
    data, indices, indptr, shape = parts
    return sp.csr_matrix((data, indices, indptr), shape=tuple(int(s) for s in shape))


def save_stage(
    cache: UtilityCache, key: str, utilities: StageUtilities, meta: dict[str, Any]
) -> None:
    """Store a stage's matrices; the index entry is written last, so a reader sees all or none."""
    counts = {}
    for role, result in utilities.results().items():
        name = _STORED_NAMES[role]
        _put_matrix(cache, f"{key}/{name}/rms", result.rms)
        _put_matrix(cache, f"{key}/{name}/logprob", result.logprob)
        counts[name] = [
            result.pairs_total, result.pairs_computed, result.pairs_reused,
            result.baselines_computed, result.seconds,
        ]  # fmt: skip
    if utilities.answers is not None:
        cache.put_array("stage", f"{key}/answers", utilities.answers.to_array())
    cache.put_array("stage-index", key, np.zeros(0), {**meta, "counts": counts})


def load_stage(cache: UtilityCache, key: str) -> StageUtilities | None:
    """A stored stage, or None when it was never finished."""
    meta = cache.get_meta("stage-index", key)
    if meta is None:
        return None
    results: dict[str, UtilityResult] = {}
    for name, (total, computed, reused, baselines, seconds) in meta["counts"].items():
        rms = _get_matrix(cache, f"{key}/{name}/rms")
        logprob = _get_matrix(cache, f"{key}/{name}/logprob")
        if rms is None or logprob is None:
            return None
        results[name] = UtilityResult(rms, logprob, total, computed, reused, baselines, seconds)
    answers = cache.get_array("stage", f"{key}/answers")
    return StageUtilities(
        results["pool"],
        results.get(_STORED_NAMES["targets"]),
        results.get(_STORED_NAMES["existing"]),
        AnswerScores.from_array(answers) if answers is not None else None,
    )


def list_stages(cache: UtilityCache) -> list[tuple[str, dict[str, Any]]]:
    """(key, meta) of every stored stage, newest first."""
    return [(key, meta) for key, meta, _ in cache.list_arrays("stage-index")]
