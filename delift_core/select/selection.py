"""Subset selection: DELIFT's objectives, its baselines and a registry of methods.

Matrices follow one orientation: rows are the items to be represented, columns the examples
that get selected (docs/design.md §2).

- `u_pool` (n, n): U[i, j] = how much pool sample j helps pool sample i.
- `u_targets` (t, n): how much pool sample j helps target t.
- `u_existing` (n, e): how much existing sample k helps pool (new) sample i.

In the formulas below they keep the paper's names: U_query is `u_targets`, U_private
`u_existing`.

Methods ("delift" and "delift-se" choose the objective by stage):

| method    | instruction | task                    | continual                  | kernel          |
|-----------|-------------|-------------------------|----------------------------|-----------------|
| delift    | FL(U_pool)  | FLMI(U_pool, U_query)   | FLCG(U_pool, U_private)    | utility         |
| delift-se | FL          | FLMI with targets       | FLCG with existing         | (cos + 1) / 2   |
| fl-only   | FL(U_pool)  | FL(U_pool)              | FL(U_pool)                 | utility         |
| delift-q  | delift's objective + quality prior (below)                 | utility         |
| random    | seeded permutation of the pool                                                  |
| full      | the whole pool, in index order                                                  |

"delift-q" (DELIFT with a quality prior) needs `quality` (n,), a score in [0, 1] per pool sample,
higher = better (quality.quality_score: the rank of how much each sample's prompt helps the
model predict its own answer). With weight lambda and gate g it maximises

    f(A) = F_stage(A) + lambda * sum_{j in A} q_j

where F_stage is delift's FL / FLMI / FLCG; the modular term keeps f monotone submodular, so the
lazy greedy stays exact. The gate: samples with q_j < g (the lowest-quality fraction g of the
pool) are picked only after every other sample, so a budget up to (1 - g) n never holds them.
With lambda = 0 and g = 0 it is delift. Two optional parts use sentence embeddings
(`priors.py`):

    f(A) = F_stage(A) + sum_{j in A} (lambda * q_j + nu * s_j)

with s_j the side prior in [0, 1] (task: relevance to the targets; continual: novelty against
the existing data; none in the instruction stage) and weight nu (`side_weight`); and a
near-duplicate gate at cosine threshold tau (`duplicate_threshold`, None = off): a sample with a
better-quality pool sample that close joins the gated samples. Its defaults were chosen on
validation scenarios and judged on test ones (docs/quality.md).

Objectives are those of submodlib-py 0.0.3 (eta = 1, privacy hardness = 1); see `greedy.py`.
Every greedy method returns the full pick order up to `max_budget` (default: the whole pool),
so that any smaller budget is a prefix of one run. "full" always returns all n samples.

Engines: "numpy" (default) is the exact lazy greedy of `greedy.py`, for dense and sparse
kernels; "submodlib" calls submodlib's LazyGreedy (dense only). Tests show both give the same
picks and gains up to ties; the numpy engine is several times faster (docs/benchmarks.md) and
avoids submodlib's copy of FLMI/FLCG kernels into Python lists. submodlib's own sparse mode is
not used: it does not compute facility location for a kernel whose pattern is not symmetric.
Ties: the numpy engine picks the lowest index among equal gains (so all zero-gain picks come
last, in index order); submodlib may order tied picks differently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from delift_core.config import (
    DEFAULT_DUPLICATE_THRESHOLD,
    DEFAULT_QUALITY_GATE,
    DEFAULT_QUALITY_WEIGHT,
    DEFAULT_SIDE_WEIGHT,
    KERNELS,
    STAGES,
    check_quality_options,
)
from delift_core.errors import ConfigError, ResourceError
from delift_core.select.greedy import (
    Objective,
    evaluate_objective,
    maximize_objective,
    maximize_with_submodlib,
)
from delift_core.select.kernels import embedding_kernel, sparse_embedding_kernel, utility_kernels
from delift_core.select.priors import near_duplicates, side_prior
from delift_core.select.selection_types import Matrix, SelectionInputs, SelectionResult

__all__ = [
    "METHODS",
    "UTILITY_METHODS",
    "SelectionInputs",
    "SelectionResult",
    "check_quality_options",
    "objective_value",
    "select_subset",
]

logger = logging.getLogger(__name__)

Engine = Literal["numpy", "submodlib"]

# Largest dense embedding kernel built for delift-se (entries; 4 bytes each).
MAX_DENSE_KERNEL_ENTRIES = 400_000_000


def _missing(stage: str, what: str, hint: str) -> ConfigError:
    return ConfigError(f"stage '{stage}' needs {what}; {hint}")


def _utility_objective(inputs: SelectionInputs, stage: str, kernel: str, plain: bool) -> Objective:
    if inputs.u_pool is None:
        raise _missing(stage, "u_pool (pool x pool utility)", "score the pool first")
    blocks: list[Matrix] = [inputs.u_pool]
    side_name: Literal["fl", "flmi", "flcg"] = "fl"
    if stage == "task" and inputs.u_targets is not None:
        blocks.append(inputs.u_targets)
        side_name = "flmi"
    elif stage == "task" and not plain:
        raise _missing(
            stage,
            "the target set: u_targets (targets x pool utility) is missing",
            "score the targets against the pool or choose stage 'instruction'",
        )
    elif stage == "continual" and inputs.u_existing is not None:
        blocks.append(inputs.u_existing)
        side_name = "flcg"
    elif stage == "continual" and not plain:
        raise _missing(
            stage,
            "the existing set: u_existing (pool x existing utility) is missing",
            "score the pool against the existing data or choose stage 'instruction'",
        )
    # All blocks of a stage share one scale (fl-only too, so its kernel equals delift's).
    kernels = utility_kernels(blocks, kernel)  # type: ignore[arg-type]
    if plain or side_name == "fl":
        return Objective("fl", kernels[0])
    side = kernels[1].T if side_name == "flmi" else kernels[1]
    return Objective(side_name, kernels[0], sp.csr_matrix(side) if sp.issparse(side) else side)


def _embedding_block(a: np.ndarray, b: np.ndarray, pattern: Matrix | None) -> Matrix:
    """(cos + 1) / 2 between rows of a and b; on the stored pairs of a sparse `pattern` only."""
    if pattern is not None and sp.issparse(pattern):
        return sparse_embedding_kernel(a, b, pattern)
    if a.shape[0] * b.shape[0] > MAX_DENSE_KERNEL_ENTRIES:
        raise ResourceError(
            f"a dense {a.shape[0]} x {b.shape[0]} embedding kernel is too large;"
            " score in sparse mode so that delift-se uses the sparse candidate pairs"
        )
    return embedding_kernel(a, b)


def _embedding_objective(inputs: SelectionInputs, stage: str) -> Objective:
    pool = inputs.emb_pool
    if pool is None:
        raise _missing(stage, "emb_pool (pool sentence embeddings)", "embed the pool first")
    data = _embedding_block(pool, pool, inputs.u_pool)
    if stage == "task":
        if inputs.emb_targets is None:
            raise _missing(
                stage,
                "the target set: emb_targets is missing",
                "embed the targets or choose stage 'instruction'",
            )
        pattern = inputs.u_targets.T if sp.issparse(inputs.u_targets) else None
        return Objective("flmi", data, _embedding_block(pool, inputs.emb_targets, pattern))
    if stage == "continual":
        if inputs.emb_existing is None:
            raise _missing(
                stage,
                "the existing set: emb_existing is missing",
                "embed the existing data or choose stage 'instruction'",
            )
        side = _embedding_block(pool, inputs.emb_existing, inputs.u_existing)
        return Objective("flcg", data, side)
    return Objective("fl", data)


def _constrain(objective: Objective, n: int, options: Options) -> Objective:
    """Pinned samples form the first tier; excluded ones leave every tier (the ground set)."""
    if not options.pinned and not options.excluded:
        return objective
    pinned = np.asarray(options.pinned, dtype=np.int64)
    drop = np.concatenate([pinned, np.asarray(options.excluded, dtype=np.int64)])
    tiers = objective.tiers if objective.tiers is not None else (np.arange(n),)
    rest = [t[~np.isin(t, drop)] for t in tiers]
    kept = tuple(t for t in (pinned, *rest) if len(t))
    return Objective(objective.name, objective.data, objective.side, objective.bonus, kept)


def _greedy_result(
    method: str,
    stage: str,
    objective: Objective,
    budget: int,
    engine: Engine,
    options: Options | None = None,
) -> SelectionResult:
    started = time.perf_counter()
    if options is not None:
        objective = _constrain(objective, objective.data.shape[1], options)
    if engine == "submodlib" and (objective.bonus is not None or objective.tiers is not None):
        raise ConfigError(
            f"method {method!r} with pinned or excluded samples needs engine 'numpy'"
            if method != "delift-q"
            else "method 'delift-q' needs engine 'numpy' (submodlib has no quality prior)"
        )
    if engine == "submodlib":
        if sp.issparse(objective.data) or sp.issparse(objective.side):
            raise ConfigError("engine 'submodlib' needs dense kernels; use engine 'numpy'")
        order, gains = maximize_with_submodlib(objective, budget)
    else:
        order, gains = maximize_objective(objective, budget)
    logger.info(
        "%s/%s: %s over %d samples, %d picks in %.2f s",
        method,
        stage,
        objective.name,
        objective.data.shape[0],
        budget,
        time.perf_counter() - started,
    )
    return SelectionResult(method, stage, order, gains, np.cumsum(gains))


@dataclass(frozen=True)
class Options:
    """Per-method settings: kernel and seed for all; quality_weight (lambda >= 0),
    quality_gate (g in [0, 1)), side_weight (nu >= 0) and duplicate_threshold (tau in (0, 1] or
    None) for delift-q; pinned (picked first) and excluded (never picked) pool indices for all."""

    kernel: str = "minmax"
    seed: int = 0
    quality_weight: float = DEFAULT_QUALITY_WEIGHT
    quality_gate: float = DEFAULT_QUALITY_GATE
    pinned: tuple[int, ...] = ()
    excluded: tuple[int, ...] = ()
    side_weight: float = DEFAULT_SIDE_WEIGHT
    duplicate_threshold: float | None = DEFAULT_DUPLICATE_THRESHOLD


def _quality_objective(inputs: SelectionInputs, stage: str, options: Options) -> Objective:
    if inputs.quality is None:
        raise _missing(
            stage,
            "quality scores of the pool",
            "score the pool (the scoring pass computes them) or choose method 'delift'",
        )
    base = _utility_objective(inputs, stage, options.kernel, plain=False)
    q = np.asarray(inputs.quality, dtype=np.float64)
    gated = q < options.quality_gate
    if options.duplicate_threshold is not None:
        gated |= near_duplicates(_prior_embeddings(inputs, stage, side=False)[0], q,
                                 options.duplicate_threshold)  # fmt: skip
    bonus = options.quality_weight * q
    if options.side_weight > 0 and stage != "instruction":
        pool, side = _prior_embeddings(inputs, stage, side=True)
        bonus = bonus + options.side_weight * side_prior(stage, pool, side)
    tiers = (np.flatnonzero(~gated), np.flatnonzero(gated)) if gated.any() else None
    return Objective(base.name, base.data, base.side, bonus, tiers)


def _prior_embeddings(
    inputs: SelectionInputs, stage: str, side: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The pool's embeddings and (side=True) the stage's side set's, for delift-q's priors."""
    hint = "embed them first, or set the side weight to 0 and the duplicate threshold off"
    if inputs.emb_pool is None:
        raise _missing(stage, "emb_pool (pool sentence embeddings) for delift-q's priors", hint)
    if not side:
        return inputs.emb_pool, None
    other = inputs.emb_targets if stage == "task" else inputs.emb_existing
    if other is None:
        what = "emb_targets" if stage == "task" else "emb_existing"
        raise _missing(stage, f"{what} (sentence embeddings) for delift-q's side prior", hint)
    return inputs.emb_pool, other


def _select_delift(
    inputs: SelectionInputs, stage: str, budget: int, engine: Engine, options: Options
) -> SelectionResult:
    objective = _utility_objective(inputs, stage, options.kernel, plain=False)
    return _greedy_result("delift", stage, objective, budget, engine, options)


def _select_delift_q(
    inputs: SelectionInputs, stage: str, budget: int, engine: Engine, options: Options
) -> SelectionResult:
    objective = _quality_objective(inputs, stage, options)
    return _greedy_result("delift-q", stage, objective, budget, engine, options)


def _select_delift_se(
    inputs: SelectionInputs, stage: str, budget: int, engine: Engine, options: Options
) -> SelectionResult:
    objective = _embedding_objective(inputs, stage)
    return _greedy_result("delift-se", stage, objective, budget, engine, options)


def _select_fl_only(
    inputs: SelectionInputs, stage: str, budget: int, engine: Engine, options: Options
) -> SelectionResult:
    objective = _utility_objective(inputs, stage, options.kernel, plain=True)
    return _greedy_result("fl-only", stage, objective, budget, engine, options)


def _no_gains(method: str, stage: str, order: np.ndarray) -> SelectionResult:
    nan = np.full(len(order), np.nan)
    return SelectionResult(method, stage, order, nan, nan.copy())


def _select_random(
    inputs: SelectionInputs, stage: str, budget: int, engine: Engine, options: Options
) -> SelectionResult:
    shuffled = np.random.default_rng(options.seed).permutation(inputs.n)
    drop = np.asarray(options.pinned + options.excluded, dtype=np.int64)
    rest = shuffled[~np.isin(shuffled, drop)]
    order = np.concatenate([np.asarray(options.pinned, dtype=np.int64), rest])[:budget]
    return _no_gains("random", stage, order)


def _select_full(
    inputs: SelectionInputs, stage: str, budget: int, engine: Engine, options: Options
) -> SelectionResult:
    # "Full data" is the whole pool (less excluded samples) whatever the budget.
    order = np.setdiff1d(np.arange(inputs.n), np.asarray(options.excluded, dtype=np.int64))
    return _no_gains("full", stage, order)


SelectFunction = Callable[[SelectionInputs, str, int, Engine, Options], SelectionResult]

METHODS: dict[str, SelectFunction] = {
    "delift": _select_delift,
    "delift-q": _select_delift_q,
    "delift-se": _select_delift_se,
    "fl-only": _select_fl_only,
    "random": _select_random,
    "full": _select_full,
}
# Methods that score the pool with the language model (the others need embeddings or nothing).
UTILITY_METHODS: tuple[str, ...] = ("delift", "delift-q", "fl-only")


def _check_common(method: str, stage: str, kernel: str, engine: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    if kernel not in KERNELS:
        raise ConfigError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if engine not in ("numpy", "submodlib"):
        raise ConfigError(f"unknown engine {engine!r}; choose 'numpy' or 'submodlib'")


def select_subset(
    inputs: SelectionInputs,
    *,
    method: str,
    stage: str,
    kernel: str = "minmax",
    seed: int = 0,
    max_budget: int | None = None,
    engine: Engine = "numpy",
    quality_weight: float = DEFAULT_QUALITY_WEIGHT,
    quality_gate: float = DEFAULT_QUALITY_GATE,
    pinned: Sequence[int] = (),
    excluded: Sequence[int] = (),
    side_weight: float = DEFAULT_SIDE_WEIGHT,
    duplicate_threshold: float | None = DEFAULT_DUPLICATE_THRESHOLD,
) -> SelectionResult:
    """Run one selection method and return its pick order up to max_budget (default: every
    sample not excluded).

    pinned: pool indices the curator must keep: picked first (greedily among themselves), the
    greedy then continues from the coverage they give, so gains show what they leave out; any
    budget counts them. excluded: pool indices never picked (out of the ground set; for
    "full" too).

    method: a key of METHODS; stage: "instruction", "task" or "continual"; kernel: "minmax" or
    "clip" (utility kernels); seed: used by "random" only; quality_weight, quality_gate,
    side_weight and duplicate_threshold: lambda, g, nu and tau of "delift-q" (module
    docstring), ignored by the others. engine: "numpy" (own exact lazy
    greedy, dense or sparse) or "submodlib" (its LazyGreedy; dense only) — both maximise the
    same objective and agree pick for pick except where gains tie.
    Raises ConfigError with the fix when the method, stage or inputs do not fit.
    """
    _check_common(method, stage, kernel, engine)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be a whole number; got {seed!r}")
    pins, outs = (
        _check_indices("pinned", pinned, inputs.n),
        _check_indices("excluded", excluded, inputs.n),
    )
    both = set(pins) & set(outs)
    if both:
        raise ConfigError(f"{len(both)} samples are both pinned and excluded; choose one for each")
    available = inputs.n - len(outs)
    if available < 1:
        raise ConfigError("every sample is excluded; nothing is left to select")
    budget = available if max_budget is None else max_budget
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, np.integer))
        or not (1 <= budget <= available)
    ):
        raise ConfigError(
            f"max_budget must be a whole number in 1..{available}"
            f"{' (samples not excluded)' if outs else ''}; got {budget!r}"
        )
    check_quality_options(quality_weight, quality_gate, side_weight, duplicate_threshold)
    options = Options(
        kernel, int(seed), float(quality_weight), float(quality_gate), pins, outs,
        float(side_weight), None if duplicate_threshold is None else float(duplicate_threshold),
    )  # fmt: skip
    return METHODS[method](inputs, stage, int(budget), engine, options)


def _check_indices(name: str, values: Sequence[int], n: int) -> tuple[int, ...]:
    """Distinct pool indices in 0..n-1, in the order given (ConfigError otherwise)."""
    out = tuple(dict.fromkeys(int(v) for v in values))
    bad = [v for v in out if not 0 <= v < n]
    if bad:
        raise ConfigError(f"{name} indices must be in 0..{n - 1}; got {bad[:5]}")
    return out


def objective_value(
    inputs: SelectionInputs, subset: np.ndarray, *, method: str, stage: str, kernel: str = "minmax"
) -> float:
    """The objective of `method` at `stage` for any subset of pool indices (e.g. to score a
    random subset under DELIFT's objective). method: "delift", "delift-se" or "fl-only"
    ("delift-q" is scored as "delift": its prior is a preference, not coverage)."""
    _check_common(method, stage, kernel, "numpy")
    if method in ("random", "full"):
        raise ConfigError(f"method {method!r} has no objective; evaluate under 'delift'")
    subset = np.asarray(subset, dtype=np.int64)
    if subset.ndim != 1 or (subset.size and (subset.min() < 0 or subset.max() >= inputs.n)):
        raise ConfigError(f"subset must be a 1-D array of pool indices in 0..{inputs.n - 1}")
    if method == "delift-se":
        objective = _embedding_objective(inputs, stage)
    elif method == "delift-q":
        objective = _utility_objective(inputs, stage, kernel, plain=False)
    else:
        objective = _utility_objective(inputs, stage, kernel, plain=method == "fl-only")
    return evaluate_objective(objective, subset)
