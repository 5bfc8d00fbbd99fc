"""From raw utility or sentence embeddings to the similarity kernels of the submodular objectives.

Orientation everywhere: rows are the items to be represented (targets), columns the candidates
that get selected. A kernel value K[i, j] in [0, 1] says how well candidate j serves row i.

Sparse matrices (scipy CSR) hold only the pairs that were computed. Their stored values are
transformed; absent entries stay absent and read as 0, i.e. "no known help", which after
min–max scaling is the same as the least helpful computed pair.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp

from delift_core.errors import ConfigError

logger = logging.getLogger(__name__)

Matrix = np.ndarray | sp.csr_matrix

# Rows per chunk when a sparse embedding kernel is filled in (bounds temporary memory).
_PAIR_CHUNK = 1 << 20


def _stored_values(block: Matrix) -> np.ndarray:
    """The values a transform applies to: every entry of a dense block, the stored ones of CSR."""
    return block.data if sp.issparse(block) else np.asarray(block).ravel()


def _check_blocks(blocks: Sequence[Matrix]) -> list[Matrix]:
    checked: list[Matrix] = []
    for position, block in enumerate(blocks):
        if sp.issparse(block):
            block = sp.csr_matrix(block)
        elif isinstance(block, np.ndarray):
            if block.ndim != 2:
                raise ConfigError(
                    f"utility block {position} must be a 2-D matrix; got shape {block.shape}"
                )
        else:
            raise ConfigError(
                f"utility block {position} must be a numpy array or a scipy sparse matrix;"
                f" got {type(block).__name__}"
            )
        values = _stored_values(block)
        if values.size and not np.all(np.isfinite(values)):
            bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            raise ConfigError(
                f"utility block {position} holds {bad} NaN or infinite values;"
                " rescore the affected rows before selecting"
            )
        checked.append(block)
    return checked


def _transform(block: Matrix, scale: float | None, shift: float) -> Matrix:
    """float32 copy with (x - shift) * scale clipped to [0, 1]; max(x, 0) when scale is None;
    every value 1 when scale is 0 (constant input)."""
    if sp.issparse(block):
        out = sp.csr_matrix(block, dtype=np.float32, copy=True)
        values = out.data
    else:
        out = np.array(block, dtype=np.float32, copy=True)
        values = out.reshape(-1)
    if scale is None:
        np.maximum(values, 0.0, out=values)
    elif scale == 0.0:
        values[:] = 1.0
    else:
        np.subtract(values, np.float32(shift), out=values)
        np.multiply(values, np.float32(scale), out=values)
        np.clip(values, 0.0, 1.0, out=values)  # float32 rounding can leave 1 + eps
    return out


def utility_kernels(
    blocks: Sequence[Matrix], kind: Literal["minmax", "clip"] = "minmax"
) -> list[Matrix]:
    """Turn raw utility blocks into kernels in [0, 1] (minmax) or [0, inf) (clip).

    blocks: the utility matrices of one selection, e.g. [U_pool (n, n), U_query (t, n)], dense
    float arrays or scipy CSR (any shapes). Each comes back with the same shape and kind
    (CSR for any sparse input), float32, in the same order.

    minmax: (U - lo) / (hi - lo) with ONE lo and hi taken over every stored value of every
    block, so that the blocks stay comparable (scaling each block on its own would change the
    objective). If all stored values are equal, every stored value becomes 1.
    clip: max(U, 0): harmful pairs count as no help, helpful pairs keep their raw size.
    Sparse blocks: only stored values are transformed; the structure is kept unchanged.
    Raises ConfigError for an unknown kind, a non-2-D block or NaN/inf values.
    """
    if kind not in ("minmax", "clip"):
        raise ConfigError(f"kernel must be 'minmax' or 'clip'; got {kind!r}")
    checked = _check_blocks(blocks)
    if kind == "clip":
        return [_transform(block, None, 0.0) for block in checked]
    stored = [_stored_values(block) for block in checked]
    non_empty = [values for values in stored if values.size]
    if not non_empty:
        return [_transform(block, 1.0, 0.0) for block in checked]
    lo = min(float(values.min()) for values in non_empty)
    hi = max(float(values.max()) for values in non_empty)
    if hi == lo:
        logger.info("utility is constant (%g): every stored kernel value is set to 1", lo)
        return [_transform(block, 0.0, lo) for block in checked]
    return [_transform(block, 1.0 / (hi - lo), lo) for block in checked]


def _unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ConfigError(f"{name} embeddings must be a 2-D array (items, dim)")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"{name} embeddings hold NaN or infinite values; re-embed them")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # A zero vector has no direction: its cosine with anything is taken as 0 (kernel 0.5).
    return x / np.where(norms > 0, norms, 1.0)


def _check_dims(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ConfigError(
            f"embedding sizes differ: {a.shape[1]} vs {b.shape[1]}; embed both sets with the"
            " same model"
        )


def embedding_kernel(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """(cos + 1) / 2 between the rows of a (m, d) and the rows of b (n, d); b=None means a.

    Returns (m, n) float32 in [0, 1]; entry [i, j] compares a[i] with b[j]. Rows need not be
    normalised. A zero row has cosine 0 with everything (kernel 0.5).
    """
    left = _unit_rows(a, "first")
    right = left if b is None else _unit_rows(b, "second")
    _check_dims(left, right)
    out = left @ right.T
    out += 1.0
    out *= 0.5
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def sparse_embedding_kernel(a: np.ndarray, b: np.ndarray, pattern: Matrix) -> sp.csr_matrix:
    """(cos + 1) / 2 between a[i] and b[j] for the stored pairs (i, j) of `pattern` only.

    a (m, d), b (n, d); pattern: a scipy sparse (m, n) matrix whose values are ignored.
    Returns CSR (m, n) float32 with exactly the pattern's structure: the embedding baseline
    then sees the same candidate pairs as sparse-mode utility.
    """
    if not sp.issparse(pattern):
        raise ConfigError("the pattern of a sparse embedding kernel must be a scipy sparse matrix")
    left = _unit_rows(a, "first")
    right = _unit_rows(b, "second")
    _check_dims(left, right)
    if pattern.shape != (left.shape[0], right.shape[0]):
        raise ConfigError(
            f"pattern shape {pattern.shape} does not match the embeddings"
            f" ({left.shape[0]} x {right.shape[0]})"
        )
    out = sp.csr_matrix(pattern, dtype=np.float32, copy=True)
    out.sort_indices()
    rows = np.repeat(np.arange(out.shape[0]), np.diff(out.indptr))
    values = np.empty(out.nnz, dtype=np.float32)
    for start in range(0, out.nnz, _PAIR_CHUNK):
        stop = min(out.nnz, start + _PAIR_CHUNK)
        left_part = left[rows[start:stop]]
        right_part = right[out.indices[start:stop]]
        values[start:stop] = np.einsum("ij,ij->i", left_part, right_part)
    values += 1.0
    values *= 0.5
    np.clip(values, 0.0, 1.0, out=values)
    out.data = values
    return out
