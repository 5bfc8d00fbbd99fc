"""The engine's batching paths (batching.py, scoring.py) against plain scoring, on a tiny model.

Shared prefixes run as one padded batch and rows of different examples share a forward call;
full rows recompute the prefix. Every path must give the per-pair reference's values.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import pytest

from delift_core import batching
from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.data.dataset import dataset_from_rows
from delift_core.errors import CancelledError
from delift_core.prompts import plan_prompts
from delift_core.reference import reference_utility
from delift_core.scoring import (
    _decoder,
    encode_prefixes,
    score_rows,
    score_rows_after_prefixes,
)
from delift_core.utility import compute_utility, pair_lists

# RMS distances agree with the reference to ~1e-7 in fp32; U_logprob is a difference of two
# float32 sums of log p (each up to ~30 in size on this model) and agrees to ~4e-5.
RMS_TOL = 3e-6
LOGP_TOL = 2e-4

PATHS = {"shared": 0.0, "full": math.inf, "costed": None}


@pytest.fixture(params=sorted(PATHS))
def path(request, monkeypatch):
    """Run the engine with every pair on one path ("shared", "full") or as the cost model says."""
    cost = PATHS[request.param]
    if cost is not None:
        monkeypatch.setitem(batching.CALL_COST_TOKENS, "cpu", cost)
    return request.param


@contextmanager
def forward_calls(lm):
    calls = [0]
    hook = _decoder(lm).register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        hook.remove()


_REFERENCES: dict[str, tuple[np.ndarray, np.ndarray]] = {}


@pytest.fixture()
def square_reference(tiny_lm, samples):
    """The reference (U_rms, U_logprob) of every pair of the samples, computed once."""
    if "square" not in _REFERENCES:
        _REFERENCES["square"] = reference_utility(tiny_lm, samples, samples)
    return _REFERENCES["square"]


def assert_matches_reference(lm, targets, examples, result, pairs=None, reference=None):
    ref_rms, ref_logp = reference or reference_utility(lm, targets, examples, pairs=pairs)
    rms, logp = result.rms, result.logprob
    if hasattr(rms, "toarray"):
        rms, logp = rms.toarray(), logp.toarray()
    np.testing.assert_allclose(rms, ref_rms, rtol=0, atol=RMS_TOL)
    np.testing.assert_allclose(logp, ref_logp, rtol=0, atol=LOGP_TOL)


def test_rows_after_a_padded_prefix_block_equal_whole_rows(tiny_lm):
    encode, eos = tiny_lm.encode, tiny_lm.eos_id
    prefixes = [encode(t) for t in ("Example: a", "Example: Paris is the capital of France. Q:")]
    prefixes.append(encode("Example: Add 12 and 30."))
    assert len({len(p) for p in prefixes}) == 3  # three lengths: padding in two of them
    queries = [encode(t) for t in ("Fix it.", "What is the capital of Italy?", "Sum?")]
    answers = [encode(t) for t in (" Rome.", " 42 is the sum", " She goes.")]
    owners = [2, 0, 1, 1, 0, 2, 2]
    picks = [(o, (b * 2) % 3, b % 3) for b, o in enumerate(owners)]
    block = encode_prefixes(tiny_lm, prefixes)
    rows = [queries[q] + [eos] + answers[a] + [eos] for _, q, a in picks]
    contexts = [len(queries[q]) for _, q, _ in picks]
    got = score_rows_after_prefixes(tiny_lm, block, owners, rows, contexts)
    whole = [prefixes[o] + queries[q] + [eos] + answers[a] + [eos] for o, q, a in picks]
    want = score_rows(tiny_lm, whole, [len(prefixes[o]) + len(queries[q]) for o, q, _ in picks])
    np.testing.assert_allclose(got.rms, want.rms, rtol=0, atol=RMS_TOL)
    np.testing.assert_allclose(got.logp, want.logp, rtol=0, atol=LOGP_TOL)
    # Rows of one prefix only (a view of its cache, cut to its length, no mask needed).
    alone = score_rows_after_prefixes(tiny_lm, block, [0, 0], rows[1:5:3], contexts[1:5:3])
    np.testing.assert_allclose(alone.rms, want.rms[1:5:3], rtol=0, atol=RMS_TOL)


def test_exact_mode_matches_reference_on_every_path(tiny_lm, samples, square_reference, path):
    for config in (
        ScoringConfig(batch_size=3),  # batches cut inside and across examples
        ScoringConfig(batch_size=64),  # one prefix group, batches span all examples
        ScoringConfig(batch_size=2, max_batch_tokens=64),  # groups of one prefix
    ):
        result = compute_utility(tiny_lm, samples, samples, config)
        assert_matches_reference(tiny_lm, samples, samples, result, reference=square_reference)


def test_sparse_mode_with_one_and_many_targets_per_example(
    tiny_lm, samples, square_reference, path
):
    # Example 0 serves every target, example 5 one target, example 6 none; uneven lengths.
    candidates = [[0, i, (i + 1) % 5] for i in range(len(samples))]
    candidates[3] = [0, 5]
    for batch_size in (1, 4, 32):
        config = ScoringConfig(mode="sparse", k=2, batch_size=batch_size)
        result = compute_utility(tiny_lm, samples, samples, config, candidates=candidates)
        pairs = [(i, j) for i, row in enumerate(candidates) for j in set(row)]
        assert result.rms.nnz == len(pairs)
        rows, cols = zip(*pairs, strict=True)
        for got, want in zip((result.rms, result.logprob), square_reference, strict=True):
            np.testing.assert_allclose(
                got.toarray()[rows, cols],
                want[rows, cols],
                rtol=0,
                atol=RMS_TOL if got is result.rms else LOGP_TOL,
            )


def test_duplicate_records_get_equal_rows_and_columns(tiny_lm, samples, path):
    records = [samples[1], *samples[:4], samples[1], samples[3]]
    result = compute_utility(tiny_lm, records, records, ScoringConfig(batch_size=5))
    assert_matches_reference(tiny_lm, records, records, result)
    np.testing.assert_allclose(result.rms[0], result.rms[5], rtol=0, atol=RMS_TOL)
    np.testing.assert_allclose(result.rms[:, 0], result.rms[:, 2], rtol=0, atol=RMS_TOL)


def test_rectangular_targets_and_examples(tiny_lm, samples, path):
    targets, examples = samples[4:], samples[:5]
    result = compute_utility(tiny_lm, targets, examples, ScoringConfig(batch_size=4))
    assert result.rms.shape == (len(targets), len(examples))
    assert_matches_reference(tiny_lm, targets, examples, result)


def test_cost_model_sends_single_pair_examples_to_full_rows(tiny_lm, samples):
    config = ScoringConfig()
    plan = plan_prompts(tiny_lm.encode, config.template, samples, samples, 512)
    candidates = [[0, 1], [0], [0, 2], [3], [0], [0], [0]]
    pair_t, pair_e = pair_lists(len(samples), len(samples), candidates)
    todo = np.arange(len(pair_t))
    paths = batching.plan_pair_paths(plan, config, pair_t, pair_e, todo, call_tokens=30.0)
    assert set(pair_e[paths.full].tolist()) == {1, 2, 3}  # one pair each
    assert set(pair_e[paths.shared].tolist()) == {0}
    assert sorted([*paths.full.tolist(), *paths.shared.tolist()]) == todo.tolist()
    free_calls = batching.plan_pair_paths(plan, config, pair_t, pair_e, todo, call_tokens=0.0)
    assert len(free_calls.full) == 0
    dear_calls = batching.plan_pair_paths(plan, config, pair_t, pair_e, todo, math.inf)
    assert len(dear_calls.shared) == 0


def test_prefix_groups_respect_batch_size_and_token_budget(tiny_lm, samples):
    config = ScoringConfig(batch_size=3, max_batch_tokens=256)
    plan = plan_prompts(tiny_lm.encode, config.template, samples, samples, 512)
    groups = batching.prefix_groups(plan, config, list(range(len(samples))))
    assert sorted(j for g in groups for j in g) == list(range(len(samples)))
    limit = batching._GROUP_BATCHES * 3
    assert len(groups) > 1
    for group in groups:
        widest = max(len(plan.prefixes[j]) for j in group)
        assert len(group) <= limit and (len(group) == 1 or len(group) * widest <= 256)


def synthetic_records(n: int):
    rng = np.random.default_rng(1)
    words = [
        "what",
        "is",
        "the",
        "capital",
        "sum",
        "of",
        "fix",
        "grammar",
        "river",
        "rain",
        "city",
        "add",
        "miles",
        "km",
    ]
    rows = []
    for i in range(n):
        prompt = " ".join(rng.choice(words, size=int(rng.integers(2, 9))))
        answer = " ".join(rng.choice(words, size=int(rng.integers(1, 6))))
        rows.append({"instruction": f"{prompt} {i}?", "input": "", "output": answer})
    return dataset_from_rows(rows).records


def test_sparse_mode_needs_well_under_one_forward_call_per_sample(tiny_lm):
    n, k = 128, 8
    records = synthetic_records(n)
    rng = np.random.default_rng(2)
    candidates = [[i, *rng.choice(n, size=k, replace=False).tolist()] for i in range(n)]
    config = ScoringConfig(mode="sparse", k=k, batch_size=32)
    with forward_calls(tiny_lm) as calls:
        result = compute_utility(tiny_lm, records, records, config, candidates=candidates)
    assert calls[0] / n < 0.5  # before: about 2 (a prefix call and a batch per example)
    checked = list(range(0, n, 37))
    some = [(t, j) for t, i in enumerate(checked) for j in sorted(set(candidates[i]))]
    ref_rms, _ = reference_utility(tiny_lm, [records[i] for i in checked], records, pairs=some)
    rows, cols = zip(*some, strict=True)
    got = result.rms.toarray()[[checked[t] for t in rows], cols]
    np.testing.assert_allclose(got, ref_rms[rows, cols], rtol=0, atol=RMS_TOL)


def test_cancel_is_checked_before_every_forward_call(tiny_lm, samples, path):
    checks, calls_at_check = [], []
    with forward_calls(tiny_lm) as calls:

        def should_cancel() -> bool:
            checks.append(1)
            calls_at_check.append(calls[0])
            return False

        compute_utility(
            tiny_lm, samples, samples, ScoringConfig(batch_size=4), should_cancel=should_cancel
        )
    # Every forward call was preceded by a check after the previous call.
    assert calls[0] <= len(checks)
    assert all(b - a <= 1 for a, b in zip(calls_at_check, calls_at_check[1:], strict=False))
    assert calls[0] - calls_at_check[-1] <= 1


def test_sparse_run_cancelled_mid_group_resumes_from_the_cache(tiny_lm, samples, tmp_path, path):
    candidates = [[0, i, (i + 3) % len(samples)] for i in range(len(samples))]
    config = ScoringConfig(mode="sparse", k=2, batch_size=3)
    cache = UtilityCache(tmp_path / "c.duckdb")
    done = {"rows": 0}

    def cancel_after_a_few_pairs() -> bool:  # every baseline and a first batch of pairs
        return done["rows"] > len(samples) + 2

    with pytest.raises(CancelledError):
        compute_utility(
            tiny_lm, samples, samples, config, candidates=candidates, cache=cache,
            on_progress=lambda p: done.__setitem__("rows", p.done),
            should_cancel=cancel_after_a_few_pairs,
        )  # fmt: skip
    stored = cache.count_pairs()
    resumed = compute_utility(tiny_lm, samples, samples, config, candidates=candidates, cache=cache)
    assert 0 < stored < resumed.pairs_total and resumed.pairs_reused == stored
    fresh = compute_utility(tiny_lm, samples, samples, config, candidates=candidates)
    np.testing.assert_allclose(resumed.rms.toarray(), fresh.rms.toarray(), rtol=0, atol=RMS_TOL)
    cache.close()
