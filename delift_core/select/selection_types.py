"""What selection takes and gives: the pool's matrices, embeddings and quality scores
(`SelectionInputs`, shapes checked on construction) and a greedy pick order with its gains
(`SelectionResult`). Orientation: rows are the items to be represented, columns the examples
that get selected (docs/design.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from delift_core.errors import ConfigError

Matrix = np.ndarray | sp.csr_matrix


@dataclass(frozen=True)
class SelectionResult:
    """A greedy order over the pool and the gain of each pick.

    order: int64 (m,), pool indices in pick order; any budget <= m is the prefix `take(budget)`.
    gains: float64 (m,), marginal gain of each pick (NaN for random and full).
    objective: float64 (m,), objective value after each pick, the running sum of the gains
    (NaN for random and full).
    """

    method: str
    stage: str
    order: np.ndarray
    gains: np.ndarray
    objective: np.ndarray

    def __post_init__(self) -> None:
        order = np.asarray(self.order, dtype=np.int64)
        gains = np.asarray(self.gains, dtype=np.float64)
        objective = np.asarray(self.objective, dtype=np.float64)
        if not (order.ndim == gains.ndim == objective.ndim == 1):
            raise ConfigError("order, gains and objective must be 1-D arrays")
        if not (len(order) == len(gains) == len(objective)):
            raise ConfigError(
                f"order, gains and objective differ in length:"
                f" {len(order)}, {len(gains)}, {len(objective)}"
            )
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "gains", gains)
        object.__setattr__(self, "objective", objective)

    @property
    def size(self) -> int:
        """m, the largest budget this result can serve."""
        return len(self.order)

    def take(self, count: int) -> np.ndarray:
        """The first `count` picks (int64 copy); ConfigError unless 1 <= count <= m."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
            raise ConfigError(f"budget must be a whole number; got {count!r}")
        if not 1 <= count <= self.size:
            raise ConfigError(
                f"budget {count} is outside 1..{self.size}: this {self.method} result holds"
                f" {self.size} picks; select again with a larger max_budget"
            )
        return self.order[:count].copy()


def _check_matrix(name: str, value: object, rows: int | None, cols: int | None) -> None:
    if not (isinstance(value, np.ndarray) or sp.issparse(value)):
        raise ConfigError(
            f"{name} must be a numpy array or a scipy sparse matrix; got {type(value).__name__}"
        )
    shape = value.shape
    if (
        len(shape) != 2
        or (rows is not None and shape[0] != rows)
        or (cols is not None and shape[1] != cols)
    ):
        want = f"({rows if rows is not None else 'any'}, {cols if cols is not None else 'any'})"
        raise ConfigError(f"{name} has shape {shape}; expected {want}")
    if 0 in shape:
        raise ConfigError(f"{name} has shape {shape}; it must not be empty")


@dataclass(frozen=True)
class SelectionInputs:
    """What selection may use, for a pool of n samples. Only the parts a method needs are
    required (see the module docstring); shapes are checked here."""

    n: int
    u_pool: Matrix | None = None
    u_targets: Matrix | None = None
    u_existing: Matrix | None = None
    emb_pool: np.ndarray | None = None
    emb_targets: np.ndarray | None = None
    emb_existing: np.ndarray | None = None
    quality: np.ndarray | None = None

    @classmethod
    def from_stage(cls, utilities: Any, metric: str = "rms", **parts: Any) -> SelectionInputs:
        """The utility matrices of a scored stage (pipeline.StageUtilities: pool, and targets
        or existing when scored) in `metric` ("rms" or "logprob"), plus the other `parts`
        (embeddings, quality) as given."""
        side = {
            name: getattr(utilities, role).matrix(metric)
            for name, role in (("u_targets", "targets"), ("u_existing", "existing"))
            if getattr(utilities, role) is not None
        }
        pool = utilities.pool.matrix(metric)
        return cls(pool.shape[0], u_pool=pool, **side, **parts)

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise ConfigError(f"pool size n must be a whole number >= 1; got {self.n!r}")
        n = int(self.n)
        if self.u_pool is not None:
            _check_matrix("u_pool (pool x pool)", self.u_pool, n, n)
        if self.u_targets is not None:
            _check_matrix("u_targets (targets x pool)", self.u_targets, None, n)
        if self.u_existing is not None:
            _check_matrix("u_existing (pool x existing)", self.u_existing, n, None)
        dims = []
        for name, emb in (
            ("emb_pool", self.emb_pool),
            ("emb_targets", self.emb_targets),
            ("emb_existing", self.emb_existing),
        ):
            if emb is None:
                continue
            if not isinstance(emb, np.ndarray) or emb.ndim != 2 or 0 in emb.shape:
                raise ConfigError(f"{name} must be a non-empty 2-D array (items, dim)")
            dims.append(emb.shape[1])
        if self.quality is not None:
            q = self.quality
            if not isinstance(q, np.ndarray) or q.shape != (n,):
                raise ConfigError(f"quality must be an array of shape ({n},)")
            if not np.all(np.isfinite(q)) or q.min() < 0 or q.max() > 1:
                raise ConfigError("quality scores must be finite and within [0, 1]")
        if len(set(dims)) > 1:
            raise ConfigError(f"embedding sizes differ ({dims}); embed every set with one model")
        if self.emb_pool is not None and self.emb_pool.shape[0] != n:
            raise ConfigError(f"emb_pool has {self.emb_pool.shape[0]} rows; expected n = {n}")
        if (
            self.u_targets is not None
            and self.emb_targets is not None
            and (self.u_targets.shape[0] != self.emb_targets.shape[0])
        ):
            raise ConfigError(
                f"u_targets has {self.u_targets.shape[0]} targets but emb_targets has"
                f" {self.emb_targets.shape[0]}; both must describe the same target set"
            )
        if (
            self.u_existing is not None
            and self.emb_existing is not None
            and (self.u_existing.shape[1] != self.emb_existing.shape[0])
        ):
            raise ConfigError(
                f"u_existing has {self.u_existing.shape[1]} existing samples but emb_existing has"
                f" {self.emb_existing.shape[0]}; both must describe the same existing set"
            )
