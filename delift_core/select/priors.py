"""Per-sample priors of method "delift-q" computed from sentence embeddings (unit norm).

- Side prior (task and continual stages): how much a pool sample belongs with the side set
  rather than with the rest of the pool. With `near(x, S)` the mean cosine of x's k nearest
  rows of S (x itself left out),

      novelty_j   = near(j, pool) - near(j, existing)     (continual: new to the model)
      relevance_j = near(j, targets) - near(j, pool)      (task: close to what is asked)

  and the prior is the sample's rank by it within the pool, in [0, 1]. A difference of
  neighbourhood densities rather than a plain distance: a sample of a diverse domain that the
  existing data already covers is far from its nearest existing row *and* from its nearest pool
  rows, so only the difference tells it from a sample of a domain the existing data lacks.
- Near-duplicate gate: sample i is a near-duplicate when another pool sample j with a higher
  quality score (ties: the lower index) has cos(e_i, e_j) > threshold. Pairwise, not a chain:
  i is gated whenever a better sample is that close, whether or not that sample is gated itself.

Both compare every pool row with every other in blocks: O(n^2 d) time, O(block * n) memory.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

from delift_core.errors import ConfigError

DEFAULT_NEIGHBOURS = 5
_BLOCK = 1024


# Results by content (the page asks again on every pin or filter change, and each is O(n^2 d)).
_MEMO: OrderedDict[tuple, np.ndarray] = OrderedDict()
_MEMO_ENTRIES = 16


def _unit(name: str, emb: np.ndarray) -> np.ndarray:
    arr = np.asarray(emb, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ConfigError(f"{name} must be a non-empty (rows, dim) array; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} hold NaN or infinite values; embed the data again")
    return arr


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _memoised(key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key].copy()
    value = compute()
    _MEMO[key] = value
    while len(_MEMO) > _MEMO_ENTRIES:
        _MEMO.popitem(last=False)
    return value.copy()


def mean_nearest(
    emb: np.ndarray, side: np.ndarray, k: int = DEFAULT_NEIGHBOURS, same: bool = False
) -> np.ndarray:
    """Mean cosine of each row of `emb` to its k nearest rows of `side` (k capped at the rows
    there are); same=True when `side` is `emb` itself, whose own row is then left out
    (-1 for a single-row set). float64 (n,)."""
    emb, side = _unit("embeddings", emb), _unit("side embeddings", side)
    available = side.shape[0] - (1 if same else 0)
    out = np.full(emb.shape[0], -1.0)
    if available < 1:
        return out
    k = min(k, available)
    for start in range(0, emb.shape[0], _BLOCK):
        sims = emb[start : start + _BLOCK] @ side.T
        if same:
            rows = np.arange(sims.shape[0])
            sims[rows, rows + start] = -np.inf
        top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        out[start : start + _BLOCK] = top.mean(axis=1)
    return out


def rank_unit(values: np.ndarray) -> np.ndarray:
    """Each value's rank within the array scaled to [0, 1] (ties share their mean rank; one
    value gets 1). float64 (n,)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 1:
        return np.ones(1)
    return (rankdata(values, method="average") - 1.0) / (len(values) - 1)


def side_prior(
    stage: str,
    emb_pool: np.ndarray,
    emb_side: np.ndarray,
    k: int = DEFAULT_NEIGHBOURS,
) -> np.ndarray:
    """The side prior of the module docstring for `stage` ("task": relevance to the targets
    `emb_side`; "continual": novelty against the existing data `emb_side`), in [0, 1] (n,)."""
    if stage not in ("task", "continual"):
        raise ConfigError(f"the side prior needs stage 'task' or 'continual'; got {stage!r}")
    pool, side = _unit("pool embeddings", emb_pool), _unit("side embeddings", emb_side)
    if pool.shape[1] != side.shape[1]:
        raise ConfigError(
            f"pool and side embeddings differ in width: {pool.shape[1]} vs {side.shape[1]}"
        )

    def compute() -> np.ndarray:
        in_pool = mean_nearest(pool, pool, k, same=True)
        in_side = mean_nearest(pool, side, k)
        return rank_unit(in_side - in_pool if stage == "task" else in_pool - in_side)

    return _memoised(("side", stage, k, _digest(pool), _digest(side)), compute)


def near_duplicates(emb_pool: np.ndarray, quality: np.ndarray, threshold: float) -> np.ndarray:
    """Bool (n,): the samples gated as near-duplicates (module docstring) at cosine `threshold`."""
    emb = _unit("pool embeddings", emb_pool)
    q = np.asarray(quality, dtype=np.float64)
    n = emb.shape[0]
    if q.shape != (n,):
        raise ConfigError(f"quality has shape {q.shape}; expected ({n},)")
    return _memoised(
        ("duplicates", float(threshold), _digest(emb, q)),
        lambda: _near_duplicates(emb, q, threshold),
    )


def _near_duplicates(emb: np.ndarray, q: np.ndarray, threshold: float) -> np.ndarray:
    # better[i, j]: j outranks i (higher quality, or equal quality and a lower index).
    n = emb.shape[0]
    index = np.arange(n)
    gated = np.zeros(n, dtype=bool)
    for start in range(0, n, _BLOCK):
        rows = index[start : start + _BLOCK]
        sims = emb[rows] @ emb.T
        sims[np.arange(len(rows)), rows] = -np.inf
        better = (q[None, :] > q[rows, None]) | (
            (q[None, :] == q[rows, None]) & (index[None, :] < rows[:, None])
        )
        gated[rows] = ((sims > threshold) & better).any(axis=1)
    return gated
