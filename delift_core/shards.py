"""Shards of a utility run: the work is cut into shards, each scored on its own and stored by
the driver (distributed.py runs them on Ray workers; nothing here needs Ray).

A shard holds blocks of whole examples (so each example's prefix still runs once) or blocks of
baselines; the job (prompts, config, records reduced to text, pair lists) is shared by all the
shards of a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from delift_core.batching import score_missing
from delift_core.config import ScoringConfig
from delift_core.models import LanguageModel
from delift_core.prompts import PromptPlan, TextPair
from delift_core.utility import StoreSink


@dataclass(frozen=True)
class Shard:
    """One task: baselines (k,) target indices and pairs (m,) pair indices, both ascending."""

    baselines: np.ndarray
    pairs: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.baselines) + len(self.pairs)


@dataclass(frozen=True)
class ShardScores:
    """A finished shard: target indices (k,) with their baseline rms and logp (k,), and pair
    indices (m,) with their with-example rms and logp (m,); float64 scores."""

    baselines: np.ndarray
    base_rms: np.ndarray
    base_logp: np.ndarray
    pairs: np.ndarray
    pair_rms: np.ndarray
    pair_logp: np.ndarray


@dataclass(frozen=True)
class _Text:
    """A record reduced to what scoring reads (records of any class pickle as this)."""

    prompt: str
    response: str
    hash: str


@dataclass(frozen=True)
class ScoringJob:
    """Everything a worker needs for the shards of one run, shipped once per worker."""

    plan: PromptPlan
    config: ScoringConfig
    targets: list[_Text]
    examples: list[_Text]
    pair_t: np.ndarray
    pair_e: np.ndarray


def scoring_job(
    plan: PromptPlan,
    config: ScoringConfig,
    targets: Sequence[TextPair],
    examples: Sequence[TextPair],
    pair_t: np.ndarray,
    pair_e: np.ndarray,
) -> ScoringJob:
    """The job of a run whose prompts are `plan` and pairs (pair_t, pair_e) index the targets
    and examples; records are reduced to the text that scoring reads."""
    return ScoringJob(
        plan, config, [_Text(t.prompt, t.response, t.hash) for t in targets],
        [_Text(e.prompt, e.response, e.hash) for e in examples], pair_t, pair_e,
    )  # fmt: skip


def plan_shards(
    pair_e: np.ndarray, baselines: np.ndarray, pairs: np.ndarray, rows_per_shard: int
) -> list[Shard]:
    """Cut missing work into shards of about rows_per_shard rows.

    Baselines go in blocks of rows_per_shard; pairs (ascending indices, so grouped by example)
    in blocks of whole examples, closed once they reach rows_per_shard rows.
    """
    size = max(1, rows_per_shard)
    empty = np.zeros(0, dtype=np.int64)
    shards = [
        Shard(np.asarray(baselines[s : s + size], dtype=np.int64), empty)
        for s in range(0, len(baselines), size)
    ]
    if len(pairs):
        groups = np.split(pairs, np.flatnonzero(np.diff(pair_e[pairs])) + 1)
        block: list[np.ndarray] = []
        rows = 0
        for group in groups:
            block.append(group)
            rows += len(group)
            if rows >= size:
                shards.append(Shard(empty, np.concatenate(block).astype(np.int64)))
                block, rows = [], 0
        if block:
            shards.append(Shard(empty, np.concatenate(block).astype(np.int64)))
    return shards


class _Collector:
    """A ScoreSink that keeps rows in memory (on a worker: no cache, no progress)."""

    def __init__(self) -> None:
        self.base: list[tuple[np.ndarray, ...]] = []
        self.pairs: list[tuple[np.ndarray, ...]] = []

    def check_cancel(self) -> None:
        """Workers never cancel themselves; the driver cancels their tasks."""

    def add_baselines(self, targets: np.ndarray, rms: np.ndarray, logp: np.ndarray) -> None:
        self.base.append((np.asarray(targets, dtype=np.int64), rms, logp))

    def add_pairs(self, pairs: np.ndarray, rms: np.ndarray, logp: np.ndarray) -> None:
        self.pairs.append((np.asarray(pairs, dtype=np.int64), rms, logp))

    def flush(self) -> None:
        """Rows are returned with the shard, not written anywhere."""

    def result(self) -> ShardScores:
        def join(parts: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
            if not parts:
                return [np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)]
            return [np.concatenate(col) for col in zip(*parts, strict=True)]

        return ShardScores(*join(self.base), *join(self.pairs))


def score_shard(lm: LanguageModel, job: ScoringJob, shard: Shard) -> ShardScores:
    """Score one shard with the engine of `compute_utility` (what a worker runs)."""
    sink = _Collector()
    score_missing(
        lm, job.plan, job.config, job.targets, job.examples, job.pair_t, job.pair_e,
        shard.baselines, shard.pairs, sink,
    )  # fmt: skip
    return sink.result()


def store_shard(scores: ShardScores, sink: StoreSink) -> None:
    """Write a finished shard's rows through the driver's sink (work, cache, progress)."""
    if len(scores.baselines):
        sink.add_baselines(scores.baselines, scores.base_rms, scores.base_logp)
    if len(scores.pairs):
        sink.add_pairs(scores.pairs, scores.pair_rms, scores.pair_logp)
    sink.flush()
