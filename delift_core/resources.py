"""Cost estimates before a run: pairs, forward passes, memory; refuse what cannot fit."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from delift_core.errors import ResourceError

log = logging.getLogger(__name__)

# Bytes held per scored pair while a matrix is assembled: pair indices (2 x int64), scores
# (2 x float64), two float32 utility views, and the selection kernel (float32) built from it.
BYTES_PER_PAIR = 52
# Leave this share of available memory to the model, the app and the system.
MEMORY_SHARE = 0.6


@dataclass(frozen=True)
class RunEstimate:
    """pairs: utility pairs; passes: forward rows (pairs + no-example baselines)."""

    pairs: int
    passes: int
    memory_bytes: int

    def seconds_at(self, passes_per_second: float) -> float:
        return self.passes / passes_per_second


def estimate_run(
    n_pool: int, mode: str, k: int, n_targets: int = 0, n_existing: int = 0
) -> RunEstimate:
    """Pairs, passes and peak matrix memory of scoring a stage (docs/design.md §2 matrices)."""

    def pairs(rows: int, cols: int, same: bool) -> int:
        if mode == "exact":
            return rows * cols
        return rows * (min(k, cols - int(same)) + int(same))

    total = pairs(n_pool, n_pool, True)
    # Each pool sample's answer is scored with its prompt (the baseline) and without it
    # (quality signals, quality.py).
    baselines = 2 * n_pool
    if n_targets:
        total += pairs(n_targets, n_pool, False)
        baselines += n_targets
    if n_existing:
        total += pairs(n_pool, n_existing, False)
    return RunEstimate(total, total + baselines, total * BYTES_PER_PAIR)


# Exact mode is proposed up to this many forward passes (a few minutes on a laptop CPU); above
# it sparse mode with SPARSE_DEFAULT_K candidates, whose cost grows like n * k instead of n².
EXACT_DEFAULT_LIMIT = 1_500
SPARSE_DEFAULT_K = 8


def suggest_mode(n_pool: int, n_targets: int = 0, n_existing: int = 0) -> str:
    """'exact' when scoring every pair costs at most EXACT_DEFAULT_LIMIT passes, else 'sparse'."""
    exact = estimate_run(n_pool, "exact", 0, n_targets, n_existing)
    return "exact" if exact.passes <= EXACT_DEFAULT_LIMIT else "sparse"


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; total physical memory elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_fits(estimate: RunEstimate, mode: str, memory: int | None = None) -> None:
    """Raise ResourceError, with the way out, when the matrices would not fit in memory."""
    memory = available_memory() if memory is None else memory
    if estimate.memory_bytes > MEMORY_SHARE * memory:
        hint = (
            "use --mode sparse --k 8 (memory and time grow like n*k)"
            if mode == "exact"
            else "lower --k or split the pool"
        )
        raise ResourceError(
            f"{estimate.pairs:,} pairs need about {estimate.memory_bytes / 2**30:.1f} GiB, more "
            f"than this machine can spare ({memory / 2**30:.1f} GiB available); {hint}"
        )


def suggest_batch_limits(config: Any, free_bytes: int, dtype_bytes: int = 2) -> tuple[int, int]:
    """(batch_size, max_batch_tokens) that fill about half of `free_bytes` of GPU memory.

    config: a transformers model config. Per padded token a batch holds, for every layer, its key
    and value cache, plus one layer's activations at a time (hidden and MLP widths).
    """
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_token = dtype_bytes * (
        2 * layers * kv_heads * head_dim  # KV cache of every layer
        + 2 * heads * head_dim  # keys and values repeated to all heads in the current layer
        + 12 * config.hidden_size
        + 3 * config.intermediate_size
    )
    tokens = int(0.5 * free_bytes / per_token)
    tokens = max(1024, min(tokens, 1 << 20))
    return max(32, min(1024, tokens // 256)), tokens
