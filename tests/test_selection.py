"""Selection: orientation pinned by hand-made asymmetric matrices, agreement with submodlib and
with a plain numpy greedy (dense and sparse), registry errors, seeds and the prefix property."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from delift_core.errors import ConfigError
from delift_core.select.greedy import Objective, maximize_objective, maximize_with_submodlib
from delift_core.select.kernels import embedding_kernel
from delift_core.select.selection import (
    METHODS,
    SelectionInputs,
    SelectionResult,
    objective_value,
    select_subset,
)

# ---------------------------------------------------------------- reference: plain numpy greedy


def plain_value(objective: str, k: np.ndarray, side: np.ndarray | None, cols: list[int]) -> float:
    """f(cols) straight from the submodlib definitions (kernels as in naive_greedy)."""
    if not cols:
        return 0.0
    best = k.astype(np.float64)[:, cols].max(axis=1)
    if objective == "fl":
        return float(best.sum())
    if objective == "flmi":
        return float(np.minimum(best, side.max(axis=1)).sum())
    return float(np.maximum(best - side.max(axis=1), 0.0).sum())


def naive_greedy(objective: str, k: np.ndarray, side: np.ndarray | None, budget: int):
    """Textbook greedy from the submodlib definitions, evaluating f(A + j) - f(A) directly.

    k (n, n): rows represented, columns selected. side: query kernel (n, t) for FLMI,
    private kernel (n, e) for FLCG. Ties go to the lowest index.
    Returns (order, gains, first_tie): first_tie is the first step whose positive best gain is
    shared by two candidates (budget if none); up to there any exact greedy must agree.
    """
    n = k.shape[0]

    def value(cols: list[int]) -> float:
        return plain_value(objective, k, side, cols)

    chosen: list[int] = []
    gains: list[float] = []
    first_tie = budget
    for step in range(budget):
        base = value(chosen)
        scores = np.array(
            [-np.inf if j in chosen else value([*chosen, j]) - base for j in range(n)]
        )
        best_gain = scores.max()
        near = np.flatnonzero(scores >= best_gain - 1e-7)
        if len(near) > 1 and best_gain > 1e-7 and first_tie == budget:
            first_tie = step
        j = int(near[0])
        chosen.append(j)
        gains.append(float(scores[j]))
    return np.array(chosen), np.array(gains), first_tie


def minmax(*blocks: np.ndarray) -> list[np.ndarray]:
    lo = min(b.min() for b in blocks)
    hi = max(b.max() for b in blocks)
    return [(b - lo) / (hi - lo) for b in blocks]


def assert_same_greedy(order, gains, ref, *, lowest_index_ties: bool = True) -> None:
    """`order`/`gains` follow the reference greedy wherever an exact greedy is determined.

    Up to the first tie among positive gains every exact greedy agrees. Once all gains are 0,
    a greedy that breaks ties towards the lowest index (ours) still matches the reference
    exactly; others (submodlib) are compared only up to the first zero gain.
    """
    ref_order, ref_gains, first_tie = ref
    positive = int(np.count_nonzero(ref_gains > 1e-7))
    if first_tie < positive or not lowest_index_ties:
        upto = min(first_tie, positive)
    else:
        upto = len(ref_order)
    assert upto >= min(10, positive), "the case ties too early to be a meaningful comparison"
    np.testing.assert_array_equal(order[:upto], ref_order[:upto])
    np.testing.assert_allclose(gains[:upto], ref_gains[:upto], rtol=1e-5, atol=1e-6)


def random_case(seed: int, n: int = 30, targets: int = 4, existing: int = 5):
    rng = np.random.default_rng(seed)
    # Distinct continuous values avoid ties among positive gains. FLMI caps each row at its
    # best target relevance; when many caps bind, gains tie (several candidates saturate the
    # same rows), so targets are made mostly relevant: a few percent of the entries are capped.
    return (
        rng.normal(size=(n, n)).astype(np.float32),
        rng.normal(loc=1.0, size=(targets, n)).astype(np.float32),
        rng.normal(size=(n, existing)).astype(np.float32) - 0.5,
    )


# ------------------------------------------------------- hand-made matrices: orientation pinned

# Column 2 helps every row; row 3 is helped by everyone (it is the largest ROW, not column).
# Rows are represented, columns selected, so the first pick must be 2. A transposed reading
# would pick 3 (largest row sum).
U_ORIENT = np.array(
    [
        [0.1, -0.2, 0.9, 0.0],
        [-0.1, 0.2, 0.8, 0.0],
        [-0.3, -0.3, 0.7, -0.3],
        [0.6, 0.6, 0.6, 0.6],
    ],
    dtype=np.float32,
)


@pytest.mark.parametrize("engine", ["numpy", "submodlib"])
def test_fl_picks_the_column_that_helps_every_row(engine):
    result = select_subset(
        SelectionInputs(4, u_pool=U_ORIENT), method="delift", stage="instruction", engine=engine
    )
    assert result.order[0] == 2
    # kernel column 2 = (U[:, 2] + 0.3) / 1.2 -> 1.2/1.2 + 1.1/1.2 + 1.0/1.2 + 0.9/1.2
    assert result.gains[0] == pytest.approx(4.2 / 1.2, rel=1e-5)
    # Column 2 is each row's best: nothing else adds anything.
    np.testing.assert_allclose(result.gains[1:], 0.0, atol=1e-6)
    np.testing.assert_allclose(result.objective, np.cumsum(result.gains))


def test_fl_second_pick_serves_what_the_first_left_out():
    # Column 0 serves rows 0-2 well; column 3 is the only one that serves row 3;
    # row 3 itself (as a candidate, column 3) helps nobody else.
    u = np.array(
        [
            [1.0, 0.7, 0.5, 0.0],
            [0.9, 0.8, 0.5, 0.0],
            [0.9, 0.4, 0.6, 0.0],
            [0.0, 0.1, 0.1, 1.0],
        ],
        dtype=np.float32,
    )
    result = select_subset(SelectionInputs(4, u_pool=u), method="delift", stage="instruction")
    assert list(result.take(2)) == [0, 3]
    assert result.gains[0] == pytest.approx(2.8, rel=1e-5)
    assert result.gains[1] == pytest.approx(1.0, rel=1e-5)


# FL alone prefers column 3 (helps all four rows at 0.6); only rows 0 and 1 are relevant to the
# single target, so FLMI prefers column 0 (helps rows 0, 1 at 1.0). Values span [0, 1] so that
# min-max scaling is the identity.
U_TASK_POOL = np.array(
    [
        [1.0, 0.0, 0.0, 0.6],
        [1.0, 0.0, 0.0, 0.6],
        [0.0, 0.0, 0.2, 0.6],
        [0.0, 0.0, 0.0, 0.6],
    ],
    dtype=np.float32,
)
U_TASK_QUERY = np.array([[1.0, 1.0, 0.0, 0.0]], dtype=np.float32)  # (targets=1, pool=4)


@pytest.mark.parametrize("engine", ["numpy", "submodlib"])
def test_flmi_prefers_what_serves_the_targets(engine):
    inputs = SelectionInputs(4, u_pool=U_TASK_POOL, u_targets=U_TASK_QUERY)
    plain = select_subset(inputs, method="fl-only", stage="task", engine=engine)
    assert plain.order[0] == 3
    assert plain.gains[0] == pytest.approx(2.4, rel=1e-5)
    task = select_subset(inputs, method="delift", stage="task", engine=engine)
    assert task.order[0] == 0
    # sum_i min(K[i, 0], max_t Q[i, t]) = min(1, 1) + min(1, 1) + 0 + 0
    assert task.gains[0] == pytest.approx(2.0, rel=1e-5)
    np.testing.assert_allclose(task.gains[1:], 0.0, atol=1e-6)


# Existing sample 0 already serves pool rows 0 and 1 fully, so column 0 adds nothing new and
# FLCG picks column 3 first, whereas plain FL picks column 0.
U_NEW = np.array(
    [
        [1.0, 0.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.4, 0.0, 0.0, 0.9],
        [0.0, 0.0, 0.0, 0.8],
    ],
    dtype=np.float32,
)
U_PRIVATE = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.1], [0.0, 0.0]], dtype=np.float32)


@pytest.mark.parametrize("engine", ["numpy", "submodlib"])
def test_flcg_skips_what_the_existing_data_covers(engine):
    inputs = SelectionInputs(4, u_pool=U_NEW, u_existing=U_PRIVATE)
    plain = select_subset(inputs, method="fl-only", stage="continual", engine=engine)
    assert plain.order[0] == 0
    result = select_subset(inputs, method="delift", stage="continual", engine=engine)
    assert result.order[0] == 3
    # (0.9 - 0.1) + (0.8 - 0)
    assert result.gains[0] == pytest.approx(1.6, rel=1e-5)
    assert result.order[1] == 0  # only row 2 is left: 0.4 - max(0.1, 0.9) < 0 -> gain 0
    assert result.gains[1] == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------ agreement with submodlib and numpy greedy


@pytest.mark.parametrize("stage", ["instruction", "task", "continual"])
def test_dense_agrees_with_submodlib_and_plain_greedy(stage):
    u, uq, up = random_case(seed=11)
    n = u.shape[0]
    inputs = SelectionInputs(n, u_pool=u, u_targets=uq, u_existing=up)
    ours = select_subset(inputs, method="delift", stage=stage)
    theirs = select_subset(inputs, method="delift", stage=stage, engine="submodlib")
    if stage == "instruction":
        (k,) = minmax(u)
        ref = naive_greedy("fl", k, None, n)
    elif stage == "task":
        k, q = minmax(u, uq)
        ref = naive_greedy("flmi", k, q.T, n)
    else:
        k, p = minmax(u, up)
        ref = naive_greedy("flcg", k, p, n)
    assert_same_greedy(ours.order, ours.gains, ref)
    assert_same_greedy(theirs.order, theirs.gains, ref, lowest_index_ties=False)
    assert sorted(ours.order) == list(range(n))


@pytest.mark.parametrize("name", ["fl", "flmi", "flcg"])
def test_sparse_with_every_entry_stored_equals_dense_and_submodlib(name):
    u, uq, up = random_case(seed=5, n=40)
    k, q, p = minmax(u, uq, up)
    side = {"fl": None, "flmi": q.T.astype(np.float32), "flcg": p.astype(np.float32)}[name]
    dense = Objective(name, k.astype(np.float32), side)
    order_d, gains_d = maximize_objective(dense, 40)
    sparse_side = None if side is None else sp.csr_matrix(side)
    full = sp.csr_matrix(np.ones_like(k))
    full.data = k[full.nonzero()].astype(np.float32)
    assert full.nnz == 40 * 40
    order_s, gains_s = maximize_objective(Objective(name, full, sparse_side), 40)
    np.testing.assert_array_equal(order_s, order_d)
    np.testing.assert_allclose(gains_s, gains_d, rtol=1e-6, atol=1e-7)
    order_r, gains_r = maximize_with_submodlib(dense, 40)
    ref = naive_greedy(name, k, side, 40)
    assert_same_greedy(order_s, gains_s, ref)
    assert_same_greedy(order_r, gains_r, ref, lowest_index_ties=False)


@pytest.mark.parametrize("stage", ["instruction", "task", "continual"])
def test_sparse_pattern_agrees_with_plain_greedy_on_densified_kernels(stage):
    rng = np.random.default_rng(21)
    n, t, e = 35, 3, 4

    def random_sparse(rows: int, cols: int, density: float, loc: float) -> sp.csr_matrix:
        m = sp.random(rows, cols, density=density, random_state=rng, format="csr")
        m.data = rng.normal(loc=loc, size=m.nnz).astype(np.float32)  # may be negative
        return m

    u = random_sparse(n, n, 0.25, 0.0)
    uq = random_sparse(t, n, 0.5, 1.0)  # mostly relevant targets: see random_case
    up = random_sparse(n, e, 0.5, 0.0)
    inputs = SelectionInputs(n, u_pool=u, u_targets=uq, u_existing=up)
    ours = select_subset(inputs, method="delift", stage=stage)
    # Kernels on stored values only, one global scale, absent entries 0.
    blocks = {"instruction": [u], "task": [u, uq], "continual": [u, up]}[stage]
    lo = min(b.data.min() for b in blocks)
    hi = max(b.data.max() for b in blocks)
    dense = []
    for b in blocks:
        scaled = b.copy()
        scaled.data = (b.data - lo) / (hi - lo)
        dense.append(scaled.toarray())
    if stage == "instruction":
        ref = naive_greedy("fl", dense[0], None, n)
    elif stage == "task":
        ref = naive_greedy("flmi", dense[0], dense[1].T, n)
    else:
        ref = naive_greedy("flcg", dense[0], dense[1], n)
    assert_same_greedy(ours.order, ours.gains, ref)


def test_delift_se_uses_embedding_kernels():
    rng = np.random.default_rng(9)
    emb, tgt = rng.normal(size=(20, 6)), rng.normal(size=(30, 6))
    inputs = SelectionInputs(20, emb_pool=emb, emb_targets=tgt)
    result = select_subset(inputs, method="delift-se", stage="task")
    ref = naive_greedy("flmi", embedding_kernel(emb), embedding_kernel(emb, tgt), 20)
    assert_same_greedy(result.order, result.gains, ref)


def test_delift_se_in_sparse_mode_keeps_the_candidate_pairs():
    rng = np.random.default_rng(9)
    emb = rng.normal(size=(25, 4))
    pattern = sp.random(25, 25, density=0.2, random_state=3, format="csr")
    inputs = SelectionInputs(25, u_pool=pattern, emb_pool=emb)
    result = select_subset(inputs, method="delift-se", stage="instruction")
    dense = np.where(pattern.toarray() != 0, embedding_kernel(emb), 0.0)
    # explicit stored entries (random values are non-zero) define the pattern
    ref = naive_greedy("fl", dense, None, 25)
    assert_same_greedy(result.order, result.gains, ref)


def test_clip_kernel_is_used_when_asked():
    u, _, _ = random_case(seed=2, n=15)
    result = select_subset(
        SelectionInputs(15, u_pool=u), method="delift", stage="instruction", kernel="clip"
    )
    ref = naive_greedy("fl", np.maximum(u, 0.0), None, 15)
    assert_same_greedy(result.order, result.gains, ref)


# ------------------------------------------------------------- result, prefix, seeds, registry


def test_prefix_property_and_objective():
    u, uq, _ = random_case(seed=3, n=25)
    inputs = SelectionInputs(25, u_pool=u, u_targets=uq)
    full = select_subset(inputs, method="delift", stage="task")
    assert full.size == 25 and sorted(full.order) == list(range(25))
    for budget in (1, 7, 24):
        part = select_subset(inputs, method="delift", stage="task", max_budget=budget)
        np.testing.assert_array_equal(part.order, full.take(budget))
        value = objective_value(inputs, full.take(budget), method="delift", stage="task")
        assert value == pytest.approx(full.objective[budget - 1], rel=1e-5)
    assert full.order.dtype == np.int64 and full.gains.dtype == np.float64


@pytest.mark.parametrize("stage", ["instruction", "task", "continual"])
def test_objective_value_scores_any_subset_with_the_stage_objective(stage):
    """One evaluation of DELIFT's objective, e.g. for a random subset: it equals the greedy's
    running objective on the greedy's own prefixes, and the plain definition on any subset."""
    u, uq, up = random_case(seed=12, n=12)
    inputs = SelectionInputs(
        12,
        u_pool=u,
        u_targets=uq if stage == "task" else None,
        u_existing=up if stage == "continual" else None,
    )
    greedy = select_subset(inputs, method="delift", stage=stage)
    for budget in (1, 4, 12):
        value = objective_value(inputs, greedy.take(budget), method="delift", stage=stage)
        assert value == pytest.approx(greedy.objective[budget - 1], rel=1e-5, abs=1e-6)
    subset = select_subset(inputs, method="random", stage=stage, seed=3).take(5)
    if stage == "instruction":
        name, (k,), side = "fl", minmax(u), None
    elif stage == "task":
        name, (k, q) = "flmi", minmax(u, uq)
        side = q.T
    else:
        name, (k, side) = "flcg", minmax(u, up)
    expected = plain_value(name, k, side, subset.tolist())
    value = objective_value(inputs, subset, method="delift", stage=stage)
    assert value == pytest.approx(expected, rel=1e-5)
    # The order of the indices does not matter: it is a set function.
    assert objective_value(inputs, subset[::-1], method="delift", stage=stage) == value


def test_take_bounds():
    result = select_subset(
        SelectionInputs(5, u_pool=np.eye(5)), method="delift", stage="instruction", max_budget=3
    )
    assert len(result.take(3)) == 3
    for bad in (0, 4, -1):
        with pytest.raises(ConfigError, match="outside 1..3"):
            result.take(bad)
    with pytest.raises(ConfigError, match="whole number"):
        result.take(2.0)  # type: ignore[arg-type]


def test_same_inputs_same_output_and_seeded_random():
    u, _, _ = random_case(seed=4, n=20)
    inputs = SelectionInputs(20, u_pool=u)
    a = select_subset(inputs, method="delift", stage="instruction")
    b = select_subset(inputs, method="delift", stage="instruction")
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_array_equal(a.gains, b.gains)
    r1 = select_subset(inputs, method="random", stage="instruction", seed=7)
    r2 = select_subset(inputs, method="random", stage="instruction", seed=7)
    r3 = select_subset(inputs, method="random", stage="instruction", seed=8)
    np.testing.assert_array_equal(r1.order, r2.order)
    assert not np.array_equal(r1.order, r3.order)
    np.testing.assert_array_equal(r1.order, np.random.default_rng(7).permutation(20))
    assert np.isnan(r1.gains).all() and np.isnan(r1.objective).all()
    short = select_subset(inputs, method="random", stage="instruction", seed=7, max_budget=5)
    np.testing.assert_array_equal(short.order, r1.take(5))


def test_full_is_the_whole_pool():
    result = select_subset(SelectionInputs(6), method="full", stage="instruction")
    np.testing.assert_array_equal(result.order, np.arange(6))
    assert isinstance(result, SelectionResult) and result.method == "full"


def test_registry_holds_every_method():
    assert set(METHODS) == {"delift", "delift-q", "delift-se", "fl-only", "random", "full"}


def test_errors_are_actionable():
    u = np.zeros((4, 4), dtype=np.float32)
    inputs = SelectionInputs(4, u_pool=u)
    with pytest.raises(ConfigError, match="unknown method 'best'"):
        select_subset(inputs, method="best", stage="instruction")
    with pytest.raises(ConfigError, match="unknown stage"):
        select_subset(inputs, method="delift", stage="pretraining")
    with pytest.raises(ConfigError, match="unknown kernel"):
        select_subset(inputs, method="delift", stage="instruction", kernel="rbf")
    with pytest.raises(ConfigError, match="target set"):
        select_subset(inputs, method="delift", stage="task")
    with pytest.raises(ConfigError, match="existing set"):
        select_subset(inputs, method="delift", stage="continual")
    with pytest.raises(ConfigError, match="emb_pool"):
        select_subset(inputs, method="delift-se", stage="instruction")
    with pytest.raises(ConfigError, match="u_pool"):
        select_subset(SelectionInputs(4), method="delift", stage="instruction")
    with pytest.raises(ConfigError, match="max_budget"):
        select_subset(inputs, method="delift", stage="instruction", max_budget=5)
    with pytest.raises(ConfigError, match="dense"):
        select_subset(
            SelectionInputs(4, u_pool=sp.csr_matrix(np.eye(4))),
            method="delift",
            stage="instruction",
            engine="submodlib",
        )
    with pytest.raises(ConfigError, match="no objective"):
        objective_value(inputs, np.array([0]), method="random", stage="instruction")


def test_shapes_are_checked_on_construction():
    with pytest.raises(ConfigError, match=r"u_pool .* shape \(3, 4\)"):
        SelectionInputs(4, u_pool=np.zeros((3, 4)))
    with pytest.raises(ConfigError, match=r"u_targets .* shape \(2, 5\)"):
        SelectionInputs(4, u_targets=np.zeros((2, 5)))
    with pytest.raises(ConfigError, match=r"u_existing .* shape \(5, 2\)"):
        SelectionInputs(4, u_existing=np.zeros((5, 2)))
    with pytest.raises(ConfigError, match="emb_pool has 3 rows"):
        SelectionInputs(4, emb_pool=np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="same target set"):
        SelectionInputs(4, u_targets=np.zeros((2, 4)), emb_targets=np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="embedding sizes differ"):
        SelectionInputs(4, emb_pool=np.zeros((4, 2)), emb_targets=np.zeros((3, 5)))
    with pytest.raises(ConfigError, match="pool size"):
        SelectionInputs(0)


def test_nan_utility_is_rejected():
    u = np.zeros((3, 3))
    u[0, 1] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        select_subset(SelectionInputs(3, u_pool=u), method="delift", stage="instruction")


def test_submodlib_engine_handles_budget_equal_to_pool_size():
    u, _, _ = random_case(seed=6, n=10)
    inputs = SelectionInputs(10, u_pool=u)
    result = select_subset(inputs, method="delift", stage="instruction", engine="submodlib")
    assert sorted(result.order) == list(range(10))
    assert result.objective[-1] == pytest.approx(
        objective_value(inputs, np.arange(10), method="delift", stage="instruction"), rel=1e-5
    )
    one = select_subset(
        SelectionInputs(1, u_pool=np.ones((1, 1))),
        method="delift",
        stage="instruction",
        engine="submodlib",
    )
    np.testing.assert_array_equal(one.order, [0])
