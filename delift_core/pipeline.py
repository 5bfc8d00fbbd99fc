"""Score every matrix a stage needs (DESIGN.md §2, "matrices per stage")."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.embeddings import embed_records, find_candidates
from delift_core.errors import ConfigError
from delift_core.models import LanguageModel
from delift_core.prompts import TextPair
from delift_core.utility import CancelFn, Progress, UtilityResult, compute_utility

log = logging.getLogger(__name__)

PhaseProgressFn = Callable[[str, Progress], None]


@dataclass(frozen=True)
class StageUtilities:
    """pool: U_pool (n, n); query: U_query (targets, n); private: U_private (n, existing)."""

    pool: UtilityResult
    query: UtilityResult | None = None
    private: UtilityResult | None = None

    def results(self) -> dict[str, UtilityResult]:
        named = {"pool": self.pool, "query": self.query, "private": self.private}
        return {name: r for name, r in named.items() if r is not None}


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
) -> StageUtilities:
    """Compute U_pool and, when given, U_query (targets x pool) and U_private (pool x existing).

    Sparse mode finds each target's k nearest candidates by sentence embedding first.
    """
    if config.mode == "sparse" and embedder is None:
        raise ConfigError("sparse mode needs a sentence embedder to find candidates")
    if not pool:
        raise ConfigError("the pool is empty")

    def embed(records: Sequence[TextPair]) -> np.ndarray:
        assert embedder is not None
        return embed_records(records, embedder.model, embedder.key, cache)

    def run(phase: str, rows: Sequence[TextPair], cols: Sequence[TextPair], same: bool):
        candidates = None
        if config.mode == "sparse":
            candidates = find_candidates(embed(rows), embed(cols), config.k, same_set=same)

        def report(p: Progress) -> None:
            if on_progress is not None:
                on_progress(phase, p)

        return compute_utility(
            lm, rows, cols, config, candidates=candidates, cache=cache,
            on_progress=report, should_cancel=should_cancel,
        )  # fmt: skip

    pool_result = run("pool", pool, pool, True)
    query = run("targets", targets, pool, False) if targets else None
    private = run("existing", pool, existing, False) if existing else None
    return StageUtilities(pool_result, query, private)
