"""Quality signals (answer scores against the plain reference, caching, formulas) and the
quality-aware method delift-q (lazy greedy with a modular prior and a gate against a plain
greedy, in every stage, dense and sparse)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.errors import CancelledError, ConfigError
from delift_core.pipeline import load_stage, save_stage, score_stage
from delift_core.quality import (
    AnswerScores,
    max_similarity,
    quality_score,
    quality_signals,
    score_answers,
)
from delift_core.reference import reference_distance
from delift_core.select.kernels import utility_kernels
from delift_core.select.selection import SelectionInputs, select_subset
from delift_core.utility import compute_utility
from tests.test_selection import random_case

# ------------------------------------------------------------------------ answer scores


def test_answer_scores_match_the_plain_reference(tiny_lm, samples):
    config = ScoringConfig(batch_size=3)
    scores = score_answers(tiny_lm, samples, config)
    for i, record in enumerate(samples):
        from delift_core.prompts import no_example_text

        with_prompt = reference_distance(
            tiny_lm, no_example_text(config.template, record), record.response
        )
        plain = reference_distance(tiny_lm, "", record.response)
        assert scores.rms_prompt[i] == pytest.approx(with_prompt[0], abs=3e-6)
        assert scores.logp_prompt[i] == pytest.approx(with_prompt[1], abs=3e-5)
        assert scores.rms_plain[i] == pytest.approx(plain[0], abs=3e-6)
        assert scores.logp_plain[i] == pytest.approx(plain[1], abs=3e-5)
        assert scores.tokens[i] == len(tiny_lm.encode(record.response)) + 1


def test_prompt_rows_come_from_the_utility_run_and_nothing_is_scored_twice(
    tiny_lm, samples, tmp_path
):
    config = ScoringConfig()
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        compute_utility(tiny_lm, samples[:3], samples[:3], config, cache=cache)
        reports = []
        first = score_answers(tiny_lm, samples[:3], config, cache=cache, on_progress=reports.append)
        # The utility run cached the 3 prompt rows: only the 3 plain rows are computed.
        assert reports[0].reused == 3 and reports[-1].done == 6
        reports.clear()
        again = score_answers(tiny_lm, samples[:3], config, cache=cache, on_progress=reports.append)
        assert reports[-1].reused == 6
        np.testing.assert_array_equal(first.to_array(), again.to_array())


def test_answer_scoring_can_be_cancelled(tiny_lm, samples):
    with pytest.raises(CancelledError):
        score_answers(tiny_lm, samples, ScoringConfig(batch_size=1), should_cancel=lambda: True)


def test_stage_carries_answer_scores_through_the_store(tiny_lm, samples, tmp_path):
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        phases = []
        stage = score_stage(
            tiny_lm, samples[:4], ScoringConfig(), cache=cache,
            on_progress=lambda phase, p: phases.append(phase),
        )  # fmt: skip
        assert "quality" in phases and len(stage.answers) == 4
        save_stage(cache, "k", stage, {})
        loaded = load_stage(cache, "k")
        np.testing.assert_array_equal(loaded.answers.to_array(), stage.answers.to_array())


# ------------------------------------------------------------------------ signals and score


def test_signals_follow_their_formulas():
    answers = AnswerScores(
        rms_prompt=np.array([0.2, 0.5, 0.6]),
        logp_prompt=np.array([-2.0, -9.0, -4.0]),
        rms_plain=np.array([0.6, 0.5, 0.3]),
        logp_plain=np.array([-8.0, -9.0, -2.0]),
        tokens=np.array([2.0, 3.0, 4.0]),
    )
    u_pool = np.array([[0.4, 0.0, 0.1], [0.0, 0.2, 0.0], [0.3, 0.0, 0.7]])
    emb = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    s = quality_signals(answers, sp.csr_matrix(u_pool), emb)
    np.testing.assert_allclose(s["help_logprob"], [3.0, 0.0, -0.5])
    np.testing.assert_allclose(s["help_rms"], [0.4, 0.0, -0.3])
    np.testing.assert_allclose(s["ifd_logprob"], [0.25, 1.0, 2.0])
    np.testing.assert_allclose(s["ifd_rms"], [1 / 3, 1.0, 2.0])
    np.testing.assert_allclose(s["self_utility"], [0.4, 0.2, 0.7])
    np.testing.assert_allclose(s["max_similarity"], [0.8, 0.8, 0.6])
    # Higher help is better; lower IFD is better: both rank row 0 first, row 2 last.
    np.testing.assert_allclose(quality_score(s, "help_logprob"), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(quality_score(s, "ifd_logprob"), [1.0, 0.5, 0.0])
    with pytest.raises(ConfigError, match="quality signal"):
        quality_score(s, "self_utility")


def test_max_similarity_ignores_the_row_itself_across_blocks():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(9, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_allclose(max_similarity(emb, block=4), sims.max(axis=1), rtol=1e-5)


# ------------------------------------------------------------------ delift-q against plain greedy


def plain_greedy(kernel, side, objective, bonus, tiers, budget):
    """f(A) = FL/FLMI/FLCG(A) + sum bonus, evaluated directly; candidates of an earlier tier
    first; ties to the lowest index. Returns (order, gains)."""
    k = kernel.astype(np.float64)

    def value(cols):
        if not cols:
            return 0.0
        best = k[:, cols].max(axis=1)
        if objective == "fl":
            cover = best.sum()
        elif objective == "flmi":
            cover = np.minimum(best, side.max(axis=1)).sum()
        else:
            cover = np.maximum(best - side.max(axis=1), 0.0).sum()
        return float(cover + bonus[cols].sum())

    chosen, gains = [], []
    for _ in range(budget):
        tier = next(t for t in tiers if any(j not in chosen for j in t))
        base = value(chosen)
        scores = {j: value([*chosen, j]) - base for j in sorted(tier) if j not in chosen}
        best = max(scores.values())
        j = min(c for c, g in scores.items() if g >= best - 1e-9)
        chosen.append(j)
        gains.append(scores[j])
    return np.array(chosen), np.array(gains)


def with_sparse_pattern(u, rng):
    """u kept on a random 40% of its entries plus the diagonal, as a CSR matrix."""
    mask = rng.random(u.shape) < 0.4
    np.fill_diagonal(mask, True)
    rows, cols = mask.nonzero()
    return sp.csr_matrix((u[rows, cols], (rows, cols)), shape=u.shape)


def dense_objective(stage, u_pool, u_targets, u_existing):
    """(kernel, side kernel or None, objective name) of DELIFT's stage objective, densified:
    the kernels are tested in test_kernels.py, and absent sparse entries are 0."""
    blocks = [u_pool] + (
        [u_targets] if stage == "task" else [u_existing] if stage == "continual" else []
    )
    dense = [
        b.toarray() if sp.issparse(b) else np.asarray(b) for b in utility_kernels(blocks, "minmax")
    ]
    side = None if stage == "instruction" else dense[1].T if stage == "task" else dense[1]
    return dense[0], side, {"instruction": "fl", "task": "flmi", "continual": "flcg"}[stage]


@pytest.mark.parametrize("stage", ["instruction", "task", "continual"])
@pytest.mark.parametrize("sparse", [False, True])
def test_delift_q_equals_plain_greedy_with_prior_and_gate(stage, sparse):
    u, uq, up = random_case(seed=3, n=24)
    n = u.shape[0]
    rng = np.random.default_rng(4)
    quality = rng.permutation(n) / (n - 1)
    u_in = with_sparse_pattern(u, rng) if sparse else u
    inputs = SelectionInputs(n, u_pool=u_in, u_targets=uq, u_existing=up, quality=quality)
    weight, gate = 0.7, 0.25
    # The side prior (embeddings) is off here: test_priors.py checks it.
    got = select_subset(
        inputs, method="delift-q", stage=stage, quality_weight=weight, quality_gate=gate,
        side_weight=0.0,
    )  # fmt: skip
    k, side, objective = dense_objective(stage, u_in, uq, up)
    tiers = [np.flatnonzero(quality >= gate).tolist(), np.flatnonzero(quality < gate).tolist()]
    order, gains = plain_greedy(k, side, objective, weight * quality, tiers, n)
    np.testing.assert_array_equal(got.order, order)
    np.testing.assert_allclose(got.gains, gains, rtol=1e-5, atol=1e-5)


def test_gate_keeps_low_quality_rows_out_of_budgets_within_the_rest():
    u, _, _ = random_case(seed=8, n=20)
    quality = np.linspace(0, 1, 20)
    inputs = SelectionInputs(20, u_pool=u, quality=quality)
    result = select_subset(
        inputs, method="delift-q", stage="instruction", quality_weight=0.0, quality_gate=0.3
    )
    gated = set(np.flatnonzero(quality < 0.3).tolist())
    assert len(gated) == 6
    assert not gated & set(result.take(14).tolist())
    assert set(result.order[14:].tolist()) == gated
    # Weight 0 and no gate is DELIFT itself.
    plain = select_subset(
        inputs, method="delift-q", stage="instruction", quality_weight=0.0, quality_gate=0.0
    )
    delift = select_subset(inputs, method="delift", stage="instruction")
    np.testing.assert_array_equal(plain.order, delift.order)


def test_delift_q_errors_say_what_to_do():
    u, _, _ = random_case(seed=1, n=6)
    with pytest.raises(ConfigError, match="quality scores"):
        select_subset(SelectionInputs(6, u_pool=u), method="delift-q", stage="instruction")
    inputs = SelectionInputs(6, u_pool=u, quality=np.linspace(0, 1, 6))
    with pytest.raises(ConfigError, match="quality gate"):
        select_subset(inputs, method="delift-q", stage="instruction", quality_gate=1.0)
    with pytest.raises(ConfigError, match="quality weight"):
        select_subset(inputs, method="delift-q", stage="instruction", quality_weight=-1.0)
    with pytest.raises(ConfigError, match="engine 'numpy'"):
        select_subset(inputs, method="delift-q", stage="instruction", engine="submodlib")
    with pytest.raises(ConfigError, match=r"within \[0, 1\]"):
        SelectionInputs(6, u_pool=u, quality=np.full(6, 2.0))


# ------------------------------------------------------------------ pinned and excluded samples


@pytest.mark.parametrize("method", ["delift", "delift-q"])
@pytest.mark.parametrize("stage", ["instruction", "task", "continual"])
def test_pinned_first_excluded_never_against_plain_greedy(method, stage):
    u, uq, up = random_case(seed=6, n=20)
    quality = np.random.default_rng(2).permutation(20) / 19
    inputs = SelectionInputs(20, u_pool=u, u_targets=uq, u_existing=up, quality=quality)
    pinned, excluded = [7, 2], [4, 11, 15]
    got = select_subset(
        inputs, method=method, stage=stage, pinned=pinned, excluded=excluded,
        quality_weight=0.5, quality_gate=0.2, side_weight=0.0,  # side prior: test_priors.py
    )  # fmt: skip
    kernel, side, objective = dense_objective(stage, u, uq, up)
    rest = [j for j in range(20) if j not in pinned + excluded]
    if method == "delift-q":
        bonus = 0.5 * quality
        tiers = [
            pinned,
            [j for j in rest if quality[j] >= 0.2],
            [j for j in rest if quality[j] < 0.2],
        ]
    else:
        bonus, tiers = np.zeros(20), [pinned, rest]
    order, gains = plain_greedy(kernel, side, objective, bonus, tiers, 17)
    assert got.size == 17 and set(got.order[:2]) == {2, 7}
    assert not set(excluded) & set(got.order.tolist())
    np.testing.assert_array_equal(got.order, order)
    np.testing.assert_allclose(got.gains, gains, rtol=1e-5, atol=1e-5)


def test_random_and_full_respect_pins_and_exclusions():
    inputs = SelectionInputs(10)
    rand = select_subset(inputs, method="random", stage="instruction", pinned=[9], excluded=[0, 1])
    assert rand.order[0] == 9 and sorted(rand.order.tolist()) == list(range(2, 10))
    full = select_subset(inputs, method="full", stage="instruction", excluded=[3])
    assert full.order.tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    with pytest.raises(ConfigError, match="both pinned and excluded"):
        select_subset(inputs, method="random", stage="instruction", pinned=[1], excluded=[1])
    with pytest.raises(ConfigError, match=r"in 0\.\.9"):
        select_subset(inputs, method="random", stage="instruction", pinned=[10])
    with pytest.raises(ConfigError, match="samples not excluded"):
        select_subset(inputs, method="random", stage="instruction", excluded=[0], max_budget=10)
