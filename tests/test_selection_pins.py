"""Pinned and excluded samples against a plain greedy, for every method that runs the greedy,
in every stage, with dense and with sparse inputs: the pinned samples come first (greedily among
themselves), the greedy then continues from what they cover, excluded samples are never picked,
and the gains are those of the objective conditioned on the samples already picked."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from delift_core.select.kernels import embedding_kernel, sparse_embedding_kernel, utility_kernels
from delift_core.select.selection import SelectionInputs, select_subset
from tests.test_quality import plain_greedy

N, TARGETS, EXISTING = 20, 4, 5
PINNED, EXCLUDED = [7, 2], [4, 11, 15]
WEIGHT, GATE = 0.5, 0.2
OBJECTIVES = {"instruction": "fl", "task": "flmi", "continual": "flcg"}
# delift-q's embedding priors (side prior, near-duplicate gate) are turned off: the reference
# is the quality prior and gate with the pins (test_priors.py checks the priors).
PRIORS_OFF = {"side_weight": 0.0, "duplicate_threshold": None}


def _random_sparse(rng, rows: int, cols: int, density: float, loc: float) -> sp.csr_matrix:
    """Random stored pattern (the diagonal too when square) with normal values around `loc`."""
    mask = rng.random((rows, cols)) < density
    if rows == cols:
        np.fill_diagonal(mask, True)
    r, c = mask.nonzero()
    values = rng.normal(loc=loc, size=len(r)).astype(np.float32)
    return sp.csr_matrix((values, (r, c)), shape=(rows, cols))


def random_inputs(sparse: bool, seed: int = 6) -> SelectionInputs:
    """Utilities (dense, or sparse in every block as sparse mode stores them), embeddings and
    quality scores of a pool of N samples."""
    rng = np.random.default_rng(seed)
    if sparse:
        u = _random_sparse(rng, N, N, 0.35, 0.0)
        uq = _random_sparse(rng, TARGETS, N, 0.6, 1.0)  # mostly relevant targets (random_case)
        up = _random_sparse(rng, N, EXISTING, 0.6, -0.5)
    else:
        u = rng.normal(size=(N, N)).astype(np.float32)
        uq = rng.normal(loc=1.0, size=(TARGETS, N)).astype(np.float32)
        up = rng.normal(loc=-0.5, size=(N, EXISTING)).astype(np.float32)

    def emb(rows: int) -> np.ndarray:
        return rng.normal(size=(rows, 6)).astype(np.float32)

    return SelectionInputs(
        N,
        u_pool=u,
        u_targets=uq,
        u_existing=up,
        emb_pool=emb(N),
        emb_targets=emb(TARGETS),
        emb_existing=emb(EXISTING),
        quality=rng.permutation(N) / (N - 1),
    )


def _dense(m) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def reference_kernels(
    inputs: SelectionInputs, method: str, stage: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """(K (n, n), side) of the method's objective, densified (absent sparse pairs are 0): side
    is the targets' kernel (n, t) for task, the existing data's (n, e) for continual, None for
    instruction and fl-only. The kernels themselves are tested in test_kernels.py."""
    if method == "delift-se":
        emb, pool = inputs.emb_pool, inputs.u_pool
        sparse = sp.issparse(pool)
        k = sparse_embedding_kernel(emb, emb, pool) if sparse else embedding_kernel(emb)
        if stage == "task":
            uq = inputs.u_targets
            side = (
                sparse_embedding_kernel(emb, inputs.emb_targets, uq.T)
                if sp.issparse(uq)
                else embedding_kernel(emb, inputs.emb_targets)
            )
        elif stage == "continual":
            up = inputs.u_existing
            side = (
                sparse_embedding_kernel(emb, inputs.emb_existing, up)
                if sp.issparse(up)
                else embedding_kernel(emb, inputs.emb_existing)
            )
        else:
            side = None
        return _dense(k), None if side is None else _dense(side)
    extra = {"task": [inputs.u_targets], "continual": [inputs.u_existing]}.get(stage, [])
    kernels = [_dense(b) for b in utility_kernels([inputs.u_pool, *extra], "minmax")]
    if method == "fl-only" or stage == "instruction":
        return kernels[0], None
    return kernels[0], kernels[1].T if stage == "task" else kernels[1]


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("stage", ["instruction", "task", "continual"])
@pytest.mark.parametrize("method", ["delift", "delift-q", "delift-se", "fl-only"])
def test_pins_and_exclusions_equal_the_plain_greedy(method, stage, sparse):
    inputs = random_inputs(sparse)
    got = select_subset(
        inputs, method=method, stage=stage, pinned=PINNED, excluded=EXCLUDED,
        quality_weight=WEIGHT, quality_gate=GATE, **PRIORS_OFF,
    )  # fmt: skip
    kernel, side = reference_kernels(inputs, method, stage)
    objective = "fl" if side is None else OBJECTIVES[stage]
    rest = [j for j in range(N) if j not in PINNED + EXCLUDED]
    if method == "delift-q":
        quality = np.asarray(inputs.quality)
        bonus = WEIGHT * quality
        tiers = [
            PINNED,
            [j for j in rest if quality[j] >= GATE],
            [j for j in rest if quality[j] < GATE],
        ]
    else:
        bonus, tiers = np.zeros(N), [PINNED, rest]
    budget = N - len(EXCLUDED)
    order, gains = plain_greedy(kernel, side, objective, bonus, tiers, budget)
    assert got.size == budget
    assert set(got.order[: len(PINNED)].tolist()) == set(PINNED)
    assert not set(EXCLUDED) & set(got.order.tolist())
    np.testing.assert_array_equal(got.order, order)
    np.testing.assert_allclose(got.gains, gains, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_a_pin_conditions_the_gains_of_the_picks_after_it(sparse):
    """The greedy continues from what the pins cover: the first free pick's gain is its gain
    given the pinned samples, not on its own, and the pick order after the pins is that of the
    greedy started from them."""
    inputs = random_inputs(sparse, seed=8)
    free = select_subset(inputs, method="delift", stage="instruction")
    pin = int(free.order[0])  # the sample the plain greedy picks first
    got = select_subset(inputs, method="delift", stage="instruction", pinned=[pin])
    # Pinning the plain greedy's own first pick changes nothing.
    np.testing.assert_array_equal(got.order, free.order)
    np.testing.assert_allclose(got.gains, free.gains, rtol=1e-5, atol=1e-6)
    # Pinning another sample: the next pick's gain is conditioned on it.
    other = int(free.order[-1])
    pinned = select_subset(inputs, method="delift", stage="instruction", pinned=[other])
    kernel, _ = reference_kernels(inputs, "delift", "instruction")
    k = kernel.astype(np.float64)
    nxt = int(pinned.order[1])
    alone = k[:, nxt].sum()
    given = np.maximum(k[:, [other, nxt]].max(axis=1), 0).sum() - k[:, other].sum()
    assert pinned.order[0] == other
    assert pinned.gains[1] == pytest.approx(given, rel=1e-5, abs=1e-6)
    assert given < alone
