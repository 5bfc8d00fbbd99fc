"""The engine against the plain per-pair reference (docs/design.md §2), on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig, TemplateConfig
from delift_core.errors import CancelledError, ConfigError
from delift_core.reference import reference_utility
from delift_core.utility import compute_utility, pair_lists

# RMS utilities agree with the reference to ~1e-7 in fp32 on this model.
TOL = 3e-6


def test_exact_square_matches_reference(tiny_lm, samples):
    result = compute_utility(tiny_lm, samples, samples, ScoringConfig(batch_size=3))
    ref_rms, ref_logp = reference_utility(tiny_lm, samples, samples)
    assert result.rms.shape == (len(samples), len(samples))
    np.testing.assert_allclose(result.rms, ref_rms, atol=TOL)
    np.testing.assert_allclose(result.logprob, ref_logp, atol=1e-3, rtol=1e-4)
    # The values must carry signal: utility differs between pairs and has both signs.
    assert np.ptp(result.rms) > 1e-3
    assert result.pairs_computed == len(samples) ** 2 and result.pairs_reused == 0


def test_exact_rectangular_orientation(tiny_lm, samples):
    targets, examples = samples[:3], samples[3:]
    result = compute_utility(tiny_lm, targets, examples, ScoringConfig(batch_size=2))
    ref_rms, _ = reference_utility(tiny_lm, targets, examples)
    assert result.rms.shape == (3, len(examples))
    np.testing.assert_allclose(result.rms, ref_rms, atol=TOL)


def test_sparse_matches_reference_on_candidate_pairs(tiny_lm, samples):
    candidates = [[i, (i + 2) % len(samples)] for i in range(len(samples))]
    config = ScoringConfig(mode="sparse", k=1, batch_size=4)
    result = compute_utility(tiny_lm, samples, samples, config, candidates=candidates)
    pairs = [(i, j) for i, cand in enumerate(candidates) for j in cand]
    ref_rms, _ = reference_utility(tiny_lm, samples, samples, pairs=pairs)
    dense = result.rms.toarray()
    assert result.rms.nnz == len(pairs)
    np.testing.assert_allclose(dense, ref_rms, atol=TOL)


def test_small_token_budget_gives_same_values(tiny_lm, samples):
    wide = compute_utility(tiny_lm, samples, samples, ScoringConfig(batch_size=64))
    narrow = compute_utility(
        tiny_lm, samples, samples, ScoringConfig(batch_size=1, max_batch_tokens=64)
    )
    np.testing.assert_allclose(wide.rms, narrow.rms, atol=TOL)


def test_custom_template_with_merging_boundary_matches_reference(tiny_lm, samples):
    # No newline before {prompt_i}: BPE may merge across the boundary; the engine must notice.
    template = TemplateConfig(
        no_example="Q:{prompt_i}",
        with_example="E:{prompt_j}{response_j}Q:{prompt_i}",
    )
    config = ScoringConfig(template=template, batch_size=4)
    result = compute_utility(tiny_lm, samples[:4], samples[:4], config)
    ref_rms, _ = reference_utility(tiny_lm, samples[:4], samples[:4], template)
    np.testing.assert_allclose(result.rms, ref_rms, atol=TOL)


def test_cache_reuse_and_resume_after_cancel(tiny_lm, samples, tmp_path):
    cache = UtilityCache(tmp_path / "c.duckdb")
    done = {"rows": 0}

    def cancel_after_some() -> bool:  # every baseline and a few pairs are scored
        return done["rows"] > len(samples) + 3

    with pytest.raises(CancelledError):
        compute_utility(
            tiny_lm, samples, samples, ScoringConfig(batch_size=2), cache=cache,
            on_progress=lambda p: done.__setitem__("rows", p.done), should_cancel=cancel_after_some,
        )  # fmt: skip
    stored = cache.count_pairs()
    assert 0 < stored < len(samples) ** 2
    seen = []
    resumed = compute_utility(
        tiny_lm, samples, samples, ScoringConfig(batch_size=2), cache=cache, on_progress=seen.append
    )
    assert resumed.pairs_reused == stored
    assert resumed.pairs_computed == len(samples) ** 2 - stored
    fresh = compute_utility(tiny_lm, samples, samples, ScoringConfig(batch_size=2))
    np.testing.assert_allclose(resumed.rms, fresh.rms, atol=1e-6)
    assert seen[-1].done == seen[-1].total
    again = compute_utility(tiny_lm, samples, samples, ScoringConfig(), cache=cache)
    assert again.pairs_computed == 0 and again.baselines_computed == 0
    np.testing.assert_allclose(again.rms, fresh.rms, atol=1e-6)


def test_sparse_without_candidates_is_an_error(tiny_lm, samples):
    with pytest.raises(ConfigError):
        compute_utility(tiny_lm, samples, samples, ScoringConfig(mode="sparse"))


def test_pair_lists_dedupes_and_sorts_by_example():
    t, e = pair_lists(3, 4, [[1, 1, 0], [3], [0]])
    assert list(zip(t.tolist(), e.tolist(), strict=True)) == [(0, 0), (2, 0), (0, 1), (1, 3)]
