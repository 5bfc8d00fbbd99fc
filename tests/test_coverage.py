"""Coverage facts behind the Why panel, checked by hand on small kernels (dense and sparse) and
against a naive facility-location evaluation on random ones."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from delift_core import coverage
from delift_core.coverage import (
    best_cover,
    coverage_gain,
    covered_by,
    covers_best,
    row_coverage,
)
from delift_core.errors import ConfigError

# K[r, j]: how well j covers r (rows represented, columns selected). Deliberately asymmetric.
K = np.array(
    [
        [1.0, 0.2, 0.9, 0.0],
        [0.3, 1.0, 0.4, 0.8],
        [0.9, 0.1, 1.0, 0.5],
        [0.0, 0.7, 0.6, 1.0],
    ]
)
PICKS = [2, 1]  # 2 was picked first


def test_dense_coverage_by_hand():
    by, value = covered_by(K, PICKS)
    assert by.tolist() == [2, 1, 2, 1]
    np.testing.assert_allclose(value, [0.9, 1.0, 1.0, 0.7])
    assert best_cover(K, 0, PICKS) == (2, 0.9)
    assert best_cover(K, 3, PICKS) == (1, 0.7)
    assert best_cover(K, 2, PICKS) == (1, 0.1)  # a selected row: itself left out
    assert covers_best(K, 2, m=2) == [(0, 0.9), (3, 0.6)]  # column 2 without row 2
    # gain(0) = sum_r max(K[r, 0] - cover[r], 0) = (1.0 - 0.9) = 0.1; gain(3) = 1.0 - 0.7.
    assert coverage_gain(K, 0, PICKS) == pytest.approx(0.1)
    assert coverage_gain(K, 3, PICKS) == pytest.approx(0.3)
    assert coverage_gain(K, 1, PICKS) == 0.0  # already selected
    facts = row_coverage(K, 2, PICKS, m=3)
    assert facts.represents == [(0, 0.9)] and facts.represents_count == 1
    assert facts.covered_by == (1, 0.1) and facts.gain == 0.0
    facts = row_coverage(K, 3, PICKS)
    assert facts.covered_by == (1, 0.7) and facts.gain == pytest.approx(0.3)
    assert facts.represents == [] and facts.represents_count == 0


def test_ties_go_to_the_earlier_pick():
    tied = np.array([[0.0, 0.5, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert best_cover(tied, 0, [2, 1]) == (2, 0.5)
    assert best_cover(tied, 0, [1, 2]) == (1, 0.5)
    assert covered_by(tied, [2, 1])[0][0] == 2 and covered_by(tied, [1, 2])[0][0] == 1
    assert covered_by(sp.csr_matrix(tied), [2, 1])[0][0] == 2
    assert covered_by(sp.csr_matrix(tied), [1, 2])[0][0] == 1


def test_sparse_coverage_by_hand_uses_stored_pairs_only():
    # Stored pairs only; K[3, 1] is absent here, so row 3 is covered by 2, not 1.
    rows = [0, 0, 1, 1, 2, 2, 3, 3]
    cols = [0, 2, 1, 3, 0, 2, 3, 2]
    vals = [1.0, 0.9, 1.0, 0.8, 0.9, 1.0, 1.0, 0.6]
    S = sp.csr_matrix((vals, (rows, cols)), shape=(4, 4))
    by, value = covered_by(S, PICKS)
    assert by.tolist() == [2, 1, 2, 2]
    np.testing.assert_allclose(value, [0.9, 1.0, 1.0, 0.6])
    assert best_cover(S, 3, PICKS) == (2, 0.6)
    assert covers_best(S, 2) == [(0, 0.9), (3, 0.6)]
    # Column 3 stores rows 1 (0.8) and 3 (1.0): max(0.8 - 1.0, 0) + max(1.0 - 0.6, 0).
    assert coverage_gain(S, 3, PICKS) == pytest.approx(0.4)
    assert coverage_gain(S, 0, PICKS) == pytest.approx(0.1)
    facts = row_coverage(S, 2, PICKS)
    assert facts.represents == [(0, 0.9), (3, 0.6)] and facts.represents_count == 2
    # No stored pair with a selected sample: nothing covers the row.
    assert best_cover(S, 0, [1]) is None
    by, value = covered_by(S, [1])
    assert by.tolist() == [-1, 1, -1, -1] and value.tolist() == [0.0, 1.0, 0.0, 0.0]
    # Other sparse formats give the same answers.
    for other in (S.tocsc(), S.tocoo(), sp.csr_array(S)):
        assert covered_by(other, PICKS)[0].tolist() == [2, 1, 2, 2]
        assert best_cover(other, 3, PICKS) == (2, 0.6)
        assert coverage_gain(other, 3, PICKS) == pytest.approx(0.4)


def _fl(kernel: np.ndarray, subset: list[int]) -> float:
    """Facility location, naively: sum over rows of the best selected value (0 if none)."""
    if not subset:
        return 0.0
    return float(kernel[:, subset].max(axis=1).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gain_and_covers_match_a_naive_evaluation_dense_and_sparse(seed, monkeypatch):
    monkeypatch.setattr(coverage, "_ROW_BLOCK", 7)  # dense rows read in several blocks
    rng = np.random.default_rng(seed)
    n = 30
    dense = rng.random((n, n))
    dense[rng.random((n, n)) < 0.6] = 0.0  # a sparse pattern, with the diagonal kept
    np.fill_diagonal(dense, rng.random(n) + 0.5)
    sparse = sp.csr_matrix(dense)
    picks = [int(i) for i in rng.choice(n, 8, replace=False)]
    for kernel in (dense, sparse):
        by, value = covered_by(kernel, picks)
        for r in range(n):
            row = dense[r, picks]
            if row.max() > 0:
                assert value[r] == pytest.approx(row.max())
                assert by[r] == picks[int(np.argmax(row))]
            else:
                assert by[r] == -1
        for i in range(n):
            expected = 0.0 if i in picks else _fl(dense, picks + [i]) - _fl(dense, picks)
            assert coverage_gain(kernel, i, picks) == pytest.approx(expected)
            column = [(r, dense[r, i]) for r in range(n) if r != i and dense[r, i] > 0]
            column.sort(key=lambda e: (-e[1], e[0]))
            assert covers_best(kernel, i, 4) == [(r, pytest.approx(v)) for r, v in column[:4]]


def test_bad_input_is_refused():
    with pytest.raises(ConfigError, match="square"):
        covered_by(np.ones((2, 3)), [0])
    with pytest.raises(ConfigError, match="outside the pool"):
        best_cover(K, 4, PICKS)
    with pytest.raises(ConfigError, match="selected positions"):
        covered_by(K, [5])
    with pytest.raises(ConfigError, match="2-D"):
        covered_by([[1.0]], [0])
