"""delift-q's embedding priors (select/priors.py): each checked against a plain loop, and the
objective with them against the plain greedy of test_quality."""

from __future__ import annotations

import numpy as np
import pytest

from delift_core.config import SelectionConfig
from delift_core.errors import ConfigError
from delift_core.select import priors
from delift_core.select.priors import mean_nearest, near_duplicates, rank_unit, side_prior
from delift_core.select.selection import SelectionInputs, select_subset
from tests.test_quality import dense_objective, plain_greedy, with_sparse_pattern
from tests.test_selection import random_case


def unit_rows(rng: np.random.Generator, n: int, d: int = 6) -> np.ndarray:
    emb = rng.normal(size=(n, d)).astype(np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def plain_mean_nearest(emb, side, k, same):
    out = []
    for i, row in enumerate(emb):
        sims = [float(row @ s) for j, s in enumerate(side) if not (same and j == i)]
        top = sorted(sims, reverse=True)[: min(k, len(sims))]
        out.append(np.mean(top) if top else -1.0)
    return np.array(out)


@pytest.mark.parametrize("same", [False, True])
@pytest.mark.parametrize("k", [1, 3, 50])
def test_mean_nearest_equals_a_plain_loop_across_blocks(monkeypatch, same, k):
    monkeypatch.setattr(priors, "_BLOCK", 4)
    rng = np.random.default_rng(k)
    emb = unit_rows(rng, 11)
    side = emb if same else unit_rows(rng, 7)
    got = mean_nearest(emb, side, k, same=same)
    np.testing.assert_allclose(got, plain_mean_nearest(emb, side, k, same), rtol=1e-5, atol=1e-6)


def test_side_prior_ranks_the_domain_the_existing_data_lacks_first():
    # Two tight domains in the pool; the existing data covers only domain A.
    rng = np.random.default_rng(0)
    centre_a, centre_b = np.eye(6, dtype=np.float32)[0], np.eye(6, dtype=np.float32)[1]

    def around(centre, n):
        emb = centre + 0.15 * rng.normal(size=(n, 6)).astype(np.float32)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)

    pool = np.vstack([around(centre_a, 8), around(centre_b, 8)])
    existing = around(centre_a, 6)
    novelty = side_prior("continual", pool, existing, k=3)
    assert novelty[8:].min() > novelty[:8].max()
    # Task stage: targets from domain B make B's pool rows the relevant ones.
    relevance = side_prior("task", pool, around(centre_b, 5), k=3)
    assert relevance[8:].min() > relevance[:8].max()
    # Both are ranks in [0, 1], against the plain definition.
    in_pool = plain_mean_nearest(pool, pool, 3, True)
    in_side = plain_mean_nearest(pool, existing, 3, False)
    np.testing.assert_allclose(novelty, rank_unit(in_pool - in_side), atol=1e-9)
    with pytest.raises(ConfigError, match="stage 'task' or 'continual'"):
        side_prior("instruction", pool, existing)


def plain_near_duplicates(emb, q, tau):
    n = len(q)
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            better = q[j] > q[i] or (q[j] == q[i] and j < i)
            if j != i and better and float(emb[i] @ emb[j]) > tau:
                out[i] = True
    return out


@pytest.mark.parametrize("tau", [0.2, 0.5, 0.9])
def test_near_duplicates_equal_a_plain_double_loop(monkeypatch, tau):
    monkeypatch.setattr(priors, "_BLOCK", 5)
    rng = np.random.default_rng(int(tau * 10))
    emb = unit_rows(rng, 13, d=3)
    q = np.round(rng.random(13), 1)  # rounded: ties occur and go to the lower index
    np.testing.assert_array_equal(near_duplicates(emb, q, tau), plain_near_duplicates(emb, q, tau))


def test_the_better_twin_stays_and_the_other_is_gated():
    emb = np.array([[1, 0], [0.999, 0.0447], [0, 1]], dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert near_duplicates(emb, np.array([0.2, 0.9, 0.5]), 0.95).tolist() == [True, False, False]
    assert near_duplicates(emb, np.array([0.9, 0.2, 0.5]), 0.95).tolist() == [False, True, False]


@pytest.mark.parametrize("stage", ["instruction", "task", "continual"])
@pytest.mark.parametrize("sparse", [False, True])
def test_delift_q_with_side_prior_and_duplicate_gate_equals_plain_greedy(stage, sparse):
    u, uq, up = random_case(seed=5, n=20)
    n = u.shape[0]
    rng = np.random.default_rng(6)
    quality = rng.permutation(n) / (n - 1)
    emb_pool = unit_rows(rng, n, d=3)  # low dimension: some pairs are near-duplicates
    emb_targets, emb_existing = unit_rows(rng, uq.shape[0], d=3), unit_rows(rng, up.shape[1], d=3)
    u_in = with_sparse_pattern(u, rng) if sparse else u
    inputs = SelectionInputs(
        n, u_pool=u_in, u_targets=uq, u_existing=up, quality=quality,
        emb_pool=emb_pool, emb_targets=emb_targets, emb_existing=emb_existing,
    )  # fmt: skip
    weight, gate, nu, tau = 0.5, 0.2, 3.0, 0.9
    got = select_subset(
        inputs, method="delift-q", stage=stage, quality_weight=weight, quality_gate=gate,
        side_weight=nu, duplicate_threshold=tau,
    )  # fmt: skip
    kernel, side, objective = dense_objective(stage, u_in, uq, up)
    bonus = weight * quality
    if stage != "instruction":
        other = emb_targets if stage == "task" else emb_existing
        in_pool = plain_mean_nearest(emb_pool, emb_pool, 5, True)
        in_side = plain_mean_nearest(emb_pool, other, 5, False)
        density = in_side - in_pool if stage == "task" else in_pool - in_side
        bonus = bonus + nu * rank_unit(density)
    gated = (quality < gate) | plain_near_duplicates(emb_pool, quality, tau)
    assert gated.sum() > (quality < gate).sum()  # the duplicate gate did gate something
    tiers = [np.flatnonzero(~gated).tolist(), np.flatnonzero(gated).tolist()]
    order, gains = plain_greedy(kernel, side, objective, bonus, tiers, n)
    np.testing.assert_array_equal(got.order, order)
    np.testing.assert_allclose(got.gains, gains, rtol=1e-5, atol=1e-5)


def test_side_prior_changes_nothing_in_the_instruction_stage_and_off_is_delift_q():
    u, _, _ = random_case(seed=2, n=12)
    quality = np.linspace(0, 1, 12)
    inputs = SelectionInputs(12, u_pool=u, quality=quality)  # no embeddings needed here
    plain = select_subset(inputs, method="delift-q", stage="instruction")
    weighted = select_subset(inputs, method="delift-q", stage="instruction", side_weight=5.0)
    np.testing.assert_array_equal(plain.order, weighted.order)


def test_priors_without_embeddings_say_what_is_missing():
    u, uq, up = random_case(seed=1, n=8)
    q = np.linspace(0, 1, 8)
    inputs = SelectionInputs(8, u_pool=u, u_targets=uq, u_existing=up, quality=q)
    with pytest.raises(ConfigError, match="emb_pool"):
        select_subset(inputs, method="delift-q", stage="instruction", duplicate_threshold=0.9)
    with_pool = SelectionInputs(
        8, u_pool=u, u_targets=uq, quality=q, emb_pool=unit_rows(np.random.default_rng(0), 8)
    )
    with pytest.raises(ConfigError, match="emb_targets.*side weight to 0"):
        select_subset(with_pool, method="delift-q", stage="task", side_weight=1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"side_weight": -1.0}, "side weight"),
        ({"side_weight": float("nan")}, "side weight"),
        ({"duplicate_threshold": 0.0}, "duplicate threshold"),
        ({"duplicate_threshold": 1.5}, "duplicate threshold"),
        ({"side_weight": True}, "side weight"),
        ({"duplicate_threshold": True}, "duplicate threshold"),
    ],
)
def test_bad_prior_settings_are_refused_by_select_subset_and_the_config(kwargs, message):
    u, _, _ = random_case(seed=1, n=6)
    inputs = SelectionInputs(6, u_pool=u, quality=np.linspace(0, 1, 6))
    with pytest.raises(ConfigError, match=message):
        select_subset(inputs, method="delift-q", stage="instruction", **kwargs)
    with pytest.raises(ConfigError, match=message):
        SelectionConfig(**kwargs)


def test_priors_are_remembered_by_content_and_refuse_non_finite_embeddings(monkeypatch):
    rng = np.random.default_rng(11)
    pool, side = unit_rows(rng, 9), unit_rows(rng, 4)
    calls = []
    real = priors.mean_nearest
    monkeypatch.setattr(priors, "mean_nearest", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = side_prior("continual", pool, side)
    again = side_prior("continual", pool.copy(), side.copy())  # same content, other arrays
    np.testing.assert_array_equal(first, again)
    assert len(calls) == 2  # pool and side neighbourhoods, once
    side_prior("task", pool, side)  # another stage is another prior
    assert len(calls) == 4
    moved = pool.copy()
    moved[0] = -moved[0]
    side_prior("continual", moved, side)
    assert len(calls) == 6
    broken = pool.copy()
    broken[3, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        side_prior("continual", broken, side)
    with pytest.raises(ConfigError, match="NaN"):
        near_duplicates(broken, np.linspace(0, 1, 9), 0.9)
    with pytest.raises(ConfigError, match=r"\(rows, dim\)"):
        side_prior("task", pool[0], side)
