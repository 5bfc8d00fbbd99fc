"""Why a sample was or was not selected, in terms of facility-location coverage.

The kernel follows the library's orientation (docs/design.md §2, `kernels.py`): K[r, j] in
[0, 1] says how well candidate j serves (covers) row r, and facility location scores a subset
A by sum_r max_{j in A} K[r, j]. So a sample's column says whom it covers, its row says who
covers it. K is dense (n, n) or scipy sparse, where only stored (scored) pairs exist and absent
pairs read as 0, i.e. "no known coverage".

Selected samples are given in pick order: ties between equally good covers go to the earlier
pick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from delift_core.errors import ConfigError

Matrix = np.ndarray | sp.spmatrix | sp.sparray

_ROW_BLOCK = 2048  # rows of a dense kernel read at a time

__all__ = [
    "RowCoverage",
    "best_cover",
    "coverage_gain",
    "covered_by",
    "covers_best",
    "row_coverage",
]


@dataclass(frozen=True)
class RowCoverage:
    """Coverage facts about one sample `index` against the selected subset.

    covers: the rows it covers best, (row, K[row, index] > 0) largest first (itself left out).
    represents: the rows for which it is the best selected cover, (row, value) largest first,
    at most m of them; represents_count: how many such rows there are in all (itself left out).
    covered_by: the selected sample that covers it best, (position, K[index, position]), itself
    left out; None when no selected sample covers it with a value above 0.
    gain: the facility-location gain of adding it to the selected set now (0 when selected).
    """

    index: int
    covers: list[tuple[int, float]]
    represents: list[tuple[int, float]]
    represents_count: int
    covered_by: tuple[int, float] | None
    gain: float


def _check(kernel: Matrix, index: int | None = None) -> None:
    if not (sp.issparse(kernel) or isinstance(kernel, np.ndarray)) or kernel.ndim != 2:
        raise ConfigError("the kernel must be a 2-D numpy array or a scipy sparse matrix")
    if kernel.shape[0] != kernel.shape[1]:
        raise ConfigError(f"the kernel must be square (pool x pool); got shape {kernel.shape}")
    if index is not None and not 0 <= index < kernel.shape[0]:
        raise ConfigError(f"sample position {index} is outside the pool of {kernel.shape[0]}")


def _selected(selected: Sequence[int], n: int) -> np.ndarray:
    picks = np.asarray(selected, dtype=np.int64).reshape(-1)
    if picks.size and (picks.min() < 0 or picks.max() >= n):
        raise ConfigError(
            f"selected positions must lie in [0, {n}); got {picks.min()}..{picks.max()}"
        )
    return picks[np.sort(np.unique(picks, return_index=True)[1])]  # repeats dropped, order kept


def _line(kernel: Matrix, index: int, axis: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions, values) of row `index` (axis "row") or column `index` ("col"): every entry
    of a dense kernel, the stored ones of a sparse kernel."""
    if sp.issparse(kernel):
        if kernel.format not in ("csr", "csc"):
            kernel = sp.csr_matrix(kernel)
        part = (kernel[[index], :] if axis == "row" else kernel[:, [index]]).tocoo()
        where = part.col if axis == "row" else part.row
        return where.astype(np.int64), np.asarray(part.data, dtype=np.float64)
    values = np.asarray(kernel[index] if axis == "row" else kernel[:, index], dtype=np.float64)
    return np.arange(len(values), dtype=np.int64), values


def _top(positions: np.ndarray, values: np.ndarray, m: int) -> list[tuple[int, float]]:
    order = np.lexsort((positions, -values))[: max(m, 0)]
    return [(int(positions[t]), float(values[t])) for t in order]


def covers_best(kernel: Matrix, index: int, m: int = 5) -> list[tuple[int, float]]:
    """The m rows that sample `index` covers best: (row, K[row, index]), largest first, ties by
    lower row; itself and rows it does not cover (value 0) left out."""
    _check(kernel, index)
    rows, values = _line(kernel, index, "col")
    keep = (rows != index) & np.isfinite(values) & (values > 0)
    return _top(rows[keep], values[keep], m)


def best_cover(kernel: Matrix, index: int, selected: Sequence[int]) -> tuple[int, float] | None:
    """The selected sample that covers row `index` best: (position, K[index, position]); itself
    left out, ties to the earlier pick; None when none covers it with a value above 0."""
    _check(kernel, index)
    picks = _selected(selected, kernel.shape[0])
    cols, values = _line(kernel, index, "row")
    pick_rank = np.full(kernel.shape[1], -1, dtype=np.int64)
    pick_rank[picks] = np.arange(len(picks))
    keep = (pick_rank[cols] >= 0) & (cols != index) & np.isfinite(values) & (values > 0)
    if not keep.any():
        return None
    cols, values = cols[keep], values[keep]
    best = np.lexsort((pick_rank[cols], -values))[0]
    return int(cols[best]), float(values[best])


def covered_by(kernel: Matrix, selected: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """For every row r, the selected sample that covers it best and the value.

    Returns (by int64 (n,), value float64 (n,)): by[r] = argmax over selected j of K[r, j]
    (ties to the earlier pick; a selected row may be its own best cover), value[r] = that
    K[r, by[r]]. Rows no selected sample covers above 0 get by = -1 and value 0.
    """
    _check(kernel)
    n = kernel.shape[0]
    picks = _selected(selected, n)
    by = np.full(n, -1, dtype=np.int64)
    value = np.zeros(n, dtype=np.float64)
    if not len(picks):
        return by, value
    if sp.issparse(kernel):
        csr = sp.csr_matrix(kernel)
        rows = np.repeat(np.arange(n), np.diff(csr.indptr))
        pick_rank = np.full(n, -1, dtype=np.int64)
        pick_rank[picks] = np.arange(len(picks))
        data = np.asarray(csr.data, dtype=np.float64)
        keep = (pick_rank[csr.indices] >= 0) & np.isfinite(data)
        rows, cols, data = rows[keep], csr.indices[keep].astype(np.int64), data[keep]
        order = np.lexsort((pick_rank[cols], -data, rows))
        first = order[np.unique(rows[order], return_index=True)[1]]
        by[rows[first]], value[rows[first]] = cols[first], data[first]
    else:
        for start in range(0, n, _ROW_BLOCK):  # blocks of rows bound the temporary copy
            block = np.asarray(kernel[start : start + _ROW_BLOCK][:, picks], dtype=np.float64)
            block = np.nan_to_num(block, nan=-np.inf)
            arg = np.argmax(block, axis=1)  # the first maximum: the earliest pick
            by[start : start + len(arg)] = picks[arg]
            value[start : start + len(arg)] = block[np.arange(len(arg)), arg]
    none = ~(value > 0)
    by[none], value[none] = -1, 0.0
    return by, value


def coverage_gain(
    kernel: Matrix, index: int, selected: Sequence[int], cover: np.ndarray | None = None
) -> float:
    """Facility-location gain of adding sample `index` to the selected set:
    sum_r max(K[r, index] - cover[r], 0), with cover[r] the best selected value of row r
    (`covered_by`; pass it to reuse it). 0 when `index` is already selected."""
    _check(kernel, index)
    if index in set(np.asarray(selected, dtype=np.int64).tolist()):
        return 0.0
    if cover is None:
        cover = covered_by(kernel, selected)[1]
    rows, values = _line(kernel, index, "col")
    keep = np.isfinite(values)
    return float(np.maximum(values[keep] - cover[rows[keep]], 0.0).sum())


def row_coverage(kernel: Matrix, index: int, selected: Sequence[int], m: int = 5) -> RowCoverage:
    """Every coverage fact about sample `index` (RowCoverage) in one pass over the kernel."""
    _check(kernel, index)
    by, value = covered_by(kernel, selected)
    mine = np.flatnonzero(by == index)
    mine = mine[mine != index]
    return RowCoverage(
        index=index,
        covers=covers_best(kernel, index, m),
        represents=_top(mine, value[mine], m),
        represents_count=len(mine),
        covered_by=best_cover(kernel, index, selected),
        gain=coverage_gain(kernel, index, selected, value),
    )
