"""Lazy greedy maximisation of facility location, for dense and sparse kernels.

One routine serves the three objectives of docs/design.md §2, all facility location in disguise:

    FL      f(A)     = sum_i max_{j in A} K[i, j]
    FLMI    I(A; Q)  = sum_i min(max_{j in A} K[i, j], eta * max_t Q[i, t])
                     = FL on the capped kernel min(K[i, j], cap[i]),  cap[i] = eta * max_t Q[i, t]
    FLCG    f(A | P) = sum_i max(max_{j in A} K[i, j] - nu * max_k P[i, k], 0)
                     = FL whose coverage of row i starts at floor[i] = nu * max_k P[i, k]

These are the definitions submodlib-py 0.0.3 implements (its FLMI has no separate sum over the
queries). Rows i are the items to be represented, columns j the candidates that get selected.
Kernels must be non-negative (coverage starts at 0, as in submodlib). In a sparse kernel an
absent entry is a similarity of 0.

The greedy is exact (not stochastic): each pick has the largest marginal gain, ties going to the
lowest index. Laziness only skips re-evaluating candidates whose stale upper bound (a previous
gain, valid by submodularity) is already below the best exact gain; stale candidates are
re-evaluated in vectorised batches.
"""

from __future__ import annotations

import heapq
import logging
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)

Kernel = np.ndarray | sp.csr_matrix

# Candidates re-evaluated at once when the best upper bound is stale.
_REFRESH_BATCH = 16
# Elements per chunk when all gains are computed on a dense kernel (bounds temporary memory).
_DENSE_CHUNK_ELEMENTS = 1 << 22


class _DenseGains:
    """Marginal gains on a dense kernel, stored candidate-major for contiguous reads."""

    def __init__(self, kernel: np.ndarray) -> None:
        self.by_candidate = np.ascontiguousarray(kernel.T, dtype=np.float32)

    def gains(self, candidates: np.ndarray, cover: np.ndarray) -> np.ndarray:
        rows = self.by_candidate[candidates]
        np.subtract(rows, cover, out=rows)
        np.maximum(rows, 0.0, out=rows)
        return rows.sum(axis=1, dtype=np.float64)

    def all_gains(self, cover: np.ndarray) -> np.ndarray:
        n, width = self.by_candidate.shape
        step = max(1, _DENSE_CHUNK_ELEMENTS // max(width, 1))
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, step):
            out[start : start + step] = self.gains(np.arange(start, min(n, start + step)), cover)
        return out

    def cover_with(self, candidate: int, cover: np.ndarray) -> None:
        np.maximum(cover, self.by_candidate[candidate], out=cover)


class _SparseGains:
    """Marginal gains on a sparse kernel: only stored entries count, absent ones are 0."""

    def __init__(self, kernel: sp.csr_matrix) -> None:
        by_candidate = sp.csr_matrix(kernel.T)  # rows = candidates
        by_candidate.sum_duplicates()
        self.indptr = by_candidate.indptr.astype(np.int64)
        self.indices = by_candidate.indices.astype(np.int64)
        self.data = by_candidate.data.astype(np.float32)

    def gains(self, candidates: np.ndarray, cover: np.ndarray) -> np.ndarray:
        starts = self.indptr[candidates]
        lengths = self.indptr[candidates + 1] - starts
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(len(candidates), dtype=np.float64)
        offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        positions = offsets + np.arange(total)
        values = self.data[positions] - cover[self.indices[positions]]
        np.maximum(values, 0.0, out=values)
        owner = np.repeat(np.arange(len(candidates)), lengths)
        return np.bincount(owner, weights=values, minlength=len(candidates))

    def all_gains(self, cover: np.ndarray) -> np.ndarray:
        return self.gains(np.arange(len(self.indptr) - 1), cover)

    def cover_with(self, candidate: int, cover: np.ndarray) -> None:
        lo, hi = self.indptr[candidate], self.indptr[candidate + 1]
        rows = self.indices[lo:hi]
        cover[rows] = np.maximum(cover[rows], self.data[lo:hi])


def _make_gains(kernel: Kernel) -> _DenseGains | _SparseGains:
    if sp.issparse(kernel):
        return _SparseGains(sp.csr_matrix(kernel))
    return _DenseGains(np.asarray(kernel))


def cap_rows(kernel: Kernel, cap: np.ndarray) -> Kernel:
    """min(K[i, j], cap[i]) for every (stored) entry; cap (n_rows,). Sparse structure is kept."""
    cap = np.asarray(cap, dtype=np.float32)
    if sp.issparse(kernel):
        capped = sp.csr_matrix(kernel, dtype=np.float32, copy=True)
        rows = np.repeat(np.arange(capped.shape[0]), np.diff(capped.indptr))
        capped.data = np.minimum(capped.data, cap[rows])
        return capped
    return np.minimum(np.asarray(kernel, dtype=np.float32), cap[:, None])


def maximize_facility_location(
    kernel: Kernel,
    budget: int,
    *,
    floor: np.ndarray | None = None,
    bonus: np.ndarray | None = None,
    tiers: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy order and gains for
    f(A) = sum_i max(floor[i], max_{j in A} K[i, j]) - sum_i floor[i] + sum_{j in A} bonus[j].

    kernel: (n_rows, n) non-negative, dense float or scipy CSR; K[i, j] = how well candidate j
    represents row i. floor: (n_rows,) coverage already present (FLCG), default 0.
    bonus: (n,) non-negative modular term per candidate (a quality prior), default 0; f stays
    monotone submodular, so the lazy greedy stays exact.
    tiers: disjoint arrays of candidate indices; every candidate of a tier is picked before any
    of the next (each tier greedily, coverage carried over); candidates in no tier are never
    picked. Default: one tier of all n.
    budget: number of picks, 1 <= budget <= the candidates in tiers.
    Returns (order int64 (budget,), gains float64 (budget,)): the candidates in pick order and
    the marginal gain of each pick.
    """
    n_rows, n = kernel.shape
    tiers = [np.arange(n)] if tiers is None else [np.asarray(t, dtype=np.int64) for t in tiers]
    members = np.concatenate(tiers) if tiers else np.zeros(0, dtype=np.int64)
    if len(np.unique(members)) != len(members) or (
        len(members) and (members.min() < 0 or members.max() >= n)
    ):
        raise ValueError(f"tiers must be disjoint groups of candidates in 0..{n - 1}")
    if not 1 <= budget <= len(members):
        raise ValueError(f"budget must be in [1, {len(members)}]; got {budget}")
    cover = np.zeros(n_rows, dtype=np.float32)
    if floor is not None:
        cover[:] = np.asarray(floor, dtype=np.float32)
    extra = np.zeros(n, dtype=np.float64) if bonus is None else np.asarray(bonus, np.float64)
    if extra.shape != (n,) or np.any(extra < 0) or not np.all(np.isfinite(extra)):
        raise ValueError(f"bonus must be finite, non-negative, of shape ({n},)")
    engine = _make_gains(kernel)
    order = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget, dtype=np.float64)
    step, refreshes = 0, 0
    for tier in tiers:
        if step == budget:
            break
        if len(tier):
            step, refreshes = _greedy_tier(
                engine, tier, extra, cover, order, gains, step, refreshes
            )
    logger.debug("greedy: %d picks of %d, %d re-evaluations", budget, n, refreshes)
    return order, gains


def _tier_gains(engine: _DenseGains | _SparseGains, tier: np.ndarray, cover: np.ndarray):
    if isinstance(engine, _DenseGains):
        step = max(1, _DENSE_CHUNK_ELEMENTS // max(engine.by_candidate.shape[1], 1))
        return np.concatenate(
            [engine.gains(tier[s : s + step], cover) for s in range(0, len(tier), step)]
        )
    return engine.gains(tier, cover)


def _greedy_tier(
    engine: _DenseGains | _SparseGains,
    tier: np.ndarray,
    bonus: np.ndarray,
    cover: np.ndarray,
    order: np.ndarray,
    gains: np.ndarray,
    step: int,
    refreshes: int,
) -> tuple[int, int]:
    """Lazy greedy over one tier's candidates, writing picks into order/gains from `step` on
    until the budget (len(order)) is met or the tier is used up; returns (step, refreshes)."""
    # Max-heap of (-upper bound, index): ties pop the lowest index first. stamp[j] is the pick
    # number at which j's bound was last computed exactly; a bound of 0 is exact (gains >= 0).
    first = _tier_gains(engine, tier, cover) + bonus[tier]
    heap = list(zip((-first).tolist(), tier.tolist(), strict=True))
    heapq.heapify(heap)
    stamp = {j: step for j in tier.tolist()}
    while step < len(order) and heap:
        while heap[0][0] != 0.0 and stamp[heap[0][1]] != step:
            # Re-evaluate the stale candidates with the highest bounds, in one batch.
            popped = [heapq.heappop(heap) for _ in range(min(_REFRESH_BATCH, len(heap)))]
            stale = np.array(
                [j for bound, j in popped if bound != 0.0 and stamp[j] != step], dtype=np.int64
            )
            fresh_gains = engine.gains(stale, cover) + bonus[stale]
            for j in stale.tolist():
                stamp[j] = step
            refreshes += stale.size
            updated = dict(zip(stale.tolist(), (-fresh_gains).tolist(), strict=True))
            for bound, j in popped:
                heapq.heappush(heap, (updated.get(j, bound), j))
        bound, best = heapq.heappop(heap)
        order[step] = best
        gains[step] = -bound
        engine.cover_with(best, cover)
        step += 1
    return step, refreshes


def evaluate_facility_location(
    kernel: Kernel, subset: np.ndarray, *, floor: np.ndarray | None = None
) -> float:
    """f(A) for the set of column indices `subset`, with the definition of
    `maximize_facility_location` (0 for the empty set)."""
    subset = np.asarray(subset, dtype=np.int64)
    n_rows = kernel.shape[0]
    base = (
        np.zeros(n_rows, dtype=np.float64) if floor is None else np.asarray(floor, dtype=np.float64)
    )
    if subset.size == 0:
        return 0.0
    if sp.issparse(kernel):
        columns = sp.csr_matrix(kernel)[:, subset]
        best = np.asarray(columns.max(axis=1).toarray()).ravel().astype(np.float64)
    else:
        best = np.asarray(kernel)[:, subset].max(axis=1).astype(np.float64)
    return float(np.maximum(best - base, 0.0).sum())


@dataclass(frozen=True)
class Objective:
    """One objective on kernels (rows = represented items, columns = candidates):
    FL(data); FLMI(data, side = query kernel (n, t)); FLCG(data, side = private kernel (n, e)).
    data (n, n); the rows of side are the pool samples, as submodlib's query_sijs/private_sijs.
    """

    name: Literal["fl", "flmi", "flcg"]
    data: Kernel
    side: Kernel | None = None
    # Optional modular prior sum_{j in A} bonus[j] (n,), >= 0, and pick tiers (see
    # maximize_facility_location); submodlib supports neither.
    bonus: np.ndarray | None = None
    tiers: tuple[np.ndarray, ...] | None = None


def _row_max(matrix: Kernel) -> np.ndarray:
    """max over columns per row (absent sparse entries count as 0); float32 (rows,)."""
    if sp.issparse(matrix):
        return np.asarray(matrix.max(axis=1).toarray()).ravel().astype(np.float32)
    return np.asarray(matrix).max(axis=1).astype(np.float32)


def facility_location_form(objective: Objective) -> tuple[Kernel, np.ndarray | None]:
    """The (kernel, floor) that turn the objective into a plain facility location."""
    if objective.name == "flmi":
        return cap_rows(objective.data, _row_max(objective.side)), None
    if objective.name == "flcg":
        return objective.data, _row_max(objective.side)
    return objective.data, None


def evaluate_objective(objective: Objective, subset: np.ndarray) -> float:
    """The objective's value for a set of pool indices."""
    kernel, floor = facility_location_form(objective)
    subset = np.unique(np.asarray(subset, dtype=np.int64))
    value = evaluate_facility_location(kernel, subset, floor=floor)
    if objective.bonus is not None:
        value += float(np.asarray(objective.bonus, dtype=np.float64)[subset].sum())
    return value


def maximize_with_submodlib(objective: Objective, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """The same greedy run by submodlib's LazyGreedy (dense kernels only), as a reference.

    submodlib refuses budget = n, so at most n - 1 picks come from it and the last remaining
    sample is appended with its exact gain. Where gains tie its order may differ from
    `maximize_facility_location` (its heap breaks ties towards the higher index).
    """
    with warnings.catch_warnings():
        # submodlib 0.0.3 touches a deprecated scipy name on import and construction.
        warnings.simplefilter("ignore", DeprecationWarning)
        return _run_submodlib(objective, budget)


def _run_submodlib(objective: Objective, budget: int) -> tuple[np.ndarray, np.ndarray]:
    import submodlib

    if sp.issparse(objective.data) or sp.issparse(objective.side):
        raise ValueError("submodlib is used here with dense kernels only")
    if objective.bonus is not None or objective.tiers is not None:
        raise ValueError("submodlib has no quality prior or pick tiers; use the numpy engine")
    data = np.ascontiguousarray(objective.data, dtype=np.float32)
    n = data.shape[0]
    if not 1 <= budget <= n:
        raise ValueError(f"budget must be in [1, {n}]; got {budget}")
    if objective.name == "fl":
        function = submodlib.FacilityLocationFunction(
            n, mode="dense", sijs=data, separate_rep=False
        )
    elif objective.name == "flmi":
        side = np.ascontiguousarray(objective.side, dtype=np.float32)
        function = submodlib.FacilityLocationMutualInformationFunction(
            n, side.shape[1], data_sijs=data, query_sijs=side, magnificationEta=1
        )
    else:
        side = np.ascontiguousarray(objective.side, dtype=np.float32)
        function = submodlib.FacilityLocationConditionalGainFunction(
            n, side.shape[1], data_sijs=data, private_sijs=side, privacyHardness=1
        )
    picks: list[tuple[int, float]] = []
    if n > 1:
        picks = function.maximize(
            budget=min(budget, n - 1),
            optimizer="LazyGreedy",
            stopIfZeroGain=False,
            stopIfNegativeGain=False,
            verbose=False,
            show_progress=False,
        )
    order = [int(index) for index, _ in picks]
    gains = [float(gain) for _, gain in picks]
    if budget > len(order):
        last = int(np.setdiff1d(np.arange(n), order)[0])
        gains.append(
            evaluate_objective(objective, np.array([*order, last]))
            - evaluate_objective(objective, np.array(order))
        )
        order.append(last)
    return np.array(order, dtype=np.int64), np.array(gains, dtype=np.float64)


def maximize_objective(objective: Objective, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy order and gains of the objective (see `maximize_facility_location`)."""
    kernel, floor = facility_location_form(objective)
    tiers = list(objective.tiers) if objective.tiers is not None else None
    return maximize_facility_location(
        kernel, budget, floor=floor, bonus=objective.bonus, tiers=tiers
    )
