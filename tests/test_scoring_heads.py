"""Work the engine does not repeat: shared heads, least-cost batches, merged prefix blocks.

A head of tokens that every row or prefix of a run begins with runs once; rows and prefixes
continue its KV cache. Batches are cut where padding plus the cost of a call is least. Each
must leave the values as they were (tests/test_scoring_paths.py checks whole runs against the
per-pair reference).
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from delift_core import batching, scoring
from delift_core.config import ScoringConfig
from delift_core.prompts import plan_prompts
from delift_core.scoring import (
    _decoder,
    encode_prefixes,
    merge_blocks,
    plan_batches,
    score_rows,
    score_rows_after_prefixes,
    shared_head_length,
)
from delift_core.utility import compute_utility

RMS_TOL = 3e-6
LOGP_TOL = 2e-4


def _cost(lengths, batches, call_tokens):
    return sum(len(b) * max(lengths[i] for i in b) + call_tokens for b in batches)


def _brute_force_cost(lengths, batch_size, max_tokens, extra, call_tokens):
    """The least cost over every way to cut the sorted rows into runs within the limits."""
    ordered = sorted(lengths)
    n, best = len(ordered), float("inf")
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0, *[i + 1 for i, c in enumerate(cuts) if c], n]
        runs = [ordered[a:b] for a, b in itertools.pairwise(bounds)]
        if all(
            len(r) == 1 or (len(r) <= batch_size and len(r) * (r[-1] + extra) <= max_tokens)
            for r in runs
        ):
            best = min(best, sum(len(r) * r[-1] + call_tokens for r in runs))
    return best


def test_least_cost_batches_are_the_cheapest_cuts_within_the_limits():
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 9)
        lengths = [rng.randint(1, 40) for _ in range(n)]
        batch_size, extra = rng.randint(1, 5), rng.choice([0, 7])
        max_tokens, call_tokens = rng.randint(20, 160), rng.choice([0.0, 5.0, 35.0, 500.0])
        batches = plan_batches(lengths, batch_size, max_tokens, extra, call_tokens)
        assert sorted(i for b in batches for i in b) == list(range(n))
        for b in batches:
            widest = max(lengths[i] for i in b)
            assert len(b) == 1 or (len(b) <= batch_size and len(b) * (widest + extra) <= max_tokens)
        want = _brute_force_cost(lengths, batch_size, max_tokens, extra, call_tokens)
        assert _cost(lengths, batches, call_tokens) == pytest.approx(want)


def test_least_cost_batches_leave_less_padding_than_filling_in_order():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 60, size=300).tolist()
    filled = plan_batches(lengths, 32, 8192)
    cut = plan_batches(lengths, 32, 8192, call_tokens=35.0)
    assert _cost(lengths, cut, 35.0) < _cost(lengths, filled, 35.0)


def test_large_plans_are_filled_in_order(monkeypatch):
    lengths = np.random.default_rng(1).integers(10, 60, size=50).tolist()
    monkeypatch.setattr(scoring, "_LEAST_COST_ROWS", 49)
    assert plan_batches(lengths, 8, 8192, call_tokens=35.0) == plan_batches(lengths, 8, 8192)
    monkeypatch.setattr(scoring, "_LEAST_COST_ROWS", 50)
    assert plan_batches(lengths, 8, 8192, call_tokens=35.0) != plan_batches(lengths, 8, 8192)


def test_shared_head_length():
    assert shared_head_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]], limit=10) == 2
    assert shared_head_length([[1, 2, 3], [1, 2, 3]], limit=2) == 2
    assert shared_head_length([[7, 2], [1, 2]], limit=10) == 0
    assert shared_head_length([], limit=10) == 0


def test_prefixes_continuing_a_head_equal_whole_prefixes(tiny_lm):
    encode, eos = tiny_lm.encode, tiny_lm.eos_id
    head = encode("Use the example as a guide.\n\nExample:\n")
    bodies = [encode(t) for t in ("Add 12 and 30.\n42", "Capital of France?\nParis", "Hi")]
    whole = encode_prefixes(tiny_lm, [head + b for b in bodies])
    head_block = encode_prefixes(tiny_lm, [head])
    # Two calls after the head, merged into one block, as a prefix group is.
    merged = merge_blocks(
        [
            encode_prefixes(tiny_lm, bodies[:2], head_block),
            encode_prefixes(tiny_lm, bodies[2:], head_block),
        ]
    )
    assert merged.lengths == whole.lengths
    for (k1, v1), (k2, v2) in zip(whole.layers, merged.layers, strict=True):
        for b, n in enumerate(whole.lengths):
            torch.testing.assert_close(k2[b, :, :n], k1[b, :, :n], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(v2[b, :, :n], v1[b, :, :n], rtol=1e-5, atol=1e-5)
    query, answer = encode("Query: sum?"), encode(" 42")
    row = query + [eos] + answer + [eos]
    got = score_rows_after_prefixes(tiny_lm, merged, [2, 0, 1], [row] * 3, [len(query)] * 3)
    want = score_rows(
        tiny_lm, [head + bodies[o] + row for o in (2, 0, 1)],
        [len(head) + len(bodies[o]) + len(query) for o in (2, 0, 1)],
    )  # fmt: skip
    np.testing.assert_allclose(got.rms, want.rms, rtol=0, atol=RMS_TOL)
    np.testing.assert_allclose(got.logp, want.logp, rtol=0, atol=LOGP_TOL)


def test_whole_rows_after_a_shared_head_equal_rows_scored_alone(tiny_lm, monkeypatch):
    encode, eos = tiny_lm.encode, tiny_lm.eos_id
    contexts = [encode("Instruction: answer.\n\nQuery: " + q) for q in ("sum?", "capital?", "x")]
    answers = (" 42", " Rome", " y")
    rows = [c + [eos] + encode(a) + [eos] for c, a in zip(contexts, answers, strict=True)]
    lengths = [len(c) for c in contexts]
    heads: list[list[int]] = []
    encode_real = batching.encode_prefixes

    def spy(lm, prefixes, head=None):
        heads.extend(list(p) for p in prefixes)
        return encode_real(lm, prefixes, head)

    monkeypatch.setattr(batching, "encode_prefixes", spy)
    got_rms, got_logp = {}, {}
    for batch, scores in batching.score_row_batches(tiny_lm, rows * 20, lengths * 20, 8, 4096):
        got_rms.update(zip(batch, scores.rms, strict=True))
        got_logp.update(zip(batch, scores.logp, strict=True))
    assert heads == [contexts[0][: shared_head_length(contexts, 10_000)]]  # run once, shared
    want = score_rows(tiny_lm, rows, lengths)
    for copy in (0, 19):
        picked = [3 * copy + b for b in range(3)]
        np.testing.assert_allclose([got_rms[b] for b in picked], want.rms, rtol=0, atol=RMS_TOL)
        np.testing.assert_allclose([got_logp[b] for b in picked], want.logp, rtol=0, atol=LOGP_TOL)


def test_merging_blocks_releases_the_parts(tiny_lm):
    prefixes = [tiny_lm.encode(t) for t in ("a b c", "d e f g h i j")]
    assert len(prefixes[0]) < len(prefixes[1])
    parts = [encode_prefixes(tiny_lm, [p]) for p in prefixes]
    merged = merge_blocks(parts)
    assert merged.lengths == [len(p) for p in prefixes]
    keys, values = merged.layers[0]
    assert keys.shape[0] == values.shape[0] == 2 and keys.shape[2] == len(prefixes[1])
    assert all(layer is None for p in parts for layer in p.layers)


def test_a_run_runs_each_shared_head_once(tiny_lm, samples, monkeypatch):
    config = ScoringConfig()
    plan = plan_prompts(tiny_lm.encode, config.template, samples, samples, 512)
    heads = {
        "prefix": plan.prefixes[0][: shared_head_length(plan.prefixes, 10_000)],
        "baseline": plan.baselines[0][: shared_head_length(plan.baselines, 10_000)],
    }
    query_head = plan.queries[0][: shared_head_length(plan.queries, 10_000)]
    assert min(len(h) for h in (*heads.values(), query_head)) >= 2  # every saving is exercised
    inputs: list[torch.Tensor] = []
    hook = _decoder(tiny_lm).register_forward_hook(
        lambda _m, _a, kwargs, _o: inputs.append(kwargs["input_ids"]), with_kwargs=True
    )
    continued: list[list[int]] = []
    scored = batching.score_rows_after_prefixes

    def recording(lm, block, owners, rows, contexts):
        continued.extend(rows)
        return scored(lm, block, owners, rows, contexts)

    monkeypatch.setattr(batching, "score_rows_after_prefixes", recording)
    try:
        compute_utility(tiny_lm, samples, samples, config)
    finally:
        hook.remove()
    for name, head in heads.items():
        runs = sum(ids[b, : len(head)].tolist() == head for ids in inputs for b in range(len(ids)))
        assert runs == 1, name
    # The queries' common head runs at the end of each example's prefix, not in every pair's row.
    assert len(continued) == len(samples) ** 2 + len(samples)
    assert not any(row[: len(query_head)] == query_head for row in continued)
