"""Cost estimates and the memory guard."""

from __future__ import annotations

import pytest

from delift_core.errors import ResourceError
from delift_core.resources import (
    BYTES_PER_PAIR,
    available_memory,
    check_fits,
    estimate_run,
    suggest_batch_limits,
)


def test_exact_and_sparse_pair_counts():
    exact = estimate_run(100, "exact", 8, n_targets=10, n_existing=20)
    assert exact.pairs == 100 * 100 + 10 * 100 + 100 * 20
    # Baselines of pool and targets, and each pool answer without its prompt (quality).
    assert exact.passes == exact.pairs + 110 + 100
    sparse = estimate_run(100, "sparse", 8, n_targets=10)
    assert sparse.pairs == 100 * 9 + 10 * 8
    assert estimate_run(3, "sparse", 8).pairs == 3 * 3  # k capped by the pool
    assert exact.memory_bytes == exact.pairs * BYTES_PER_PAIR


def test_guard_refuses_dense_beyond_memory_and_suggests_sparse():
    big = estimate_run(100_000, "exact", 8)
    with pytest.raises(ResourceError, match="--mode sparse"):
        check_fits(big, "exact", memory=24 * 2**30)
    check_fits(estimate_run(100_000, "sparse", 8), "sparse", memory=24 * 2**30)
    assert available_memory() > 0


def test_gpu_batch_limits_grow_with_free_memory():
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3,
    )  # fmt: skip
    small = suggest_batch_limits(config, 8 * 2**30)
    large = suggest_batch_limits(config, 120 * 2**30)
    assert small[1] < large[1] and small[0] <= large[0]
    assert 32 <= small[0] <= 1024 and large[1] <= 1 << 20
    # Half of the free memory at most, by the per-token estimate.
    per_token = 2 * (2 * 30 * 3 * 64 + 2 * 9 * 64 + 12 * 576 + 3 * 1536)
    assert small[1] * per_token <= 0.5 * 8 * 2**30


def test_exact_mode_is_proposed_only_while_it_is_cheap():
    from delift_core.resources import EXACT_DEFAULT_LIMIT, suggest_mode

    assert suggest_mode(12) == "exact"
    assert suggest_mode(60) == "sparse"  # the demo slice: 3,720 passes exact
    small = max(
        n for n in range(1, 200) if estimate_run(n, "exact", 0).passes <= EXACT_DEFAULT_LIMIT
    )
    assert suggest_mode(small) == "exact" and suggest_mode(small + 1) == "sparse"
    assert suggest_mode(small, n_targets=5) == "sparse"
