"""Candidate search for sparse mode, and cached record embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from delift_core.cache import UtilityCache
from delift_core.embeddings import embed_records, find_candidates
from delift_core.testing import HashEmbedder


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_same_set_puts_self_first_then_k_nearest():
    rng = np.random.default_rng(0)
    emb = unit(rng.normal(size=(30, 8)))
    cands = find_candidates(emb, emb, 4, same_set=True)
    sims = emb @ emb.T
    for i, row in enumerate(cands):
        assert row[0] == i and len(row) == 5 and len(set(row.tolist())) == 5
        others = np.argsort(-np.where(np.arange(30) == i, -np.inf, sims[i]))[:4]
        assert set(row[1:].tolist()) == set(others.tolist())


def test_rectangular_and_small_pools():
    rng = np.random.default_rng(1)
    targets, examples = unit(rng.normal(size=(5, 8))), unit(rng.normal(size=(3, 8)))
    cands = find_candidates(targets, examples, 10, same_set=False)
    assert all(sorted(c.tolist()) == [0, 1, 2] for c in cands)
    single = unit(rng.normal(size=(1, 8)))
    assert [c.tolist() for c in find_candidates(single, single, 5, same_set=True)] == [[0]]


APPROXIMATE_CHECK = """
import numpy as np
from delift_core import embeddings

def unit(rows):
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

emb = unit(np.random.default_rng(2).normal(size=(400, 16)))
exact = embeddings.find_candidates(emb, emb, 5, same_set=True)
embeddings.APPROXIMATE_ABOVE = 10
approx = embeddings.find_candidates(emb, emb, 5, same_set=True)
overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact, approx)])
assert overlap > 0.9, overlap
assert all(a[0] == i for i, a in enumerate(approx))
print("ok")
"""


# About 35 s of CPU go to numba compiling pynndescent's index builder (its nn_descent is not
# cached on disk), which the fresh interpreter pays on every run; hence `slow`.
@pytest.mark.slow
def test_approximate_index_agrees_with_exact():
    # A fresh interpreter: numba's compilation of the index must not depend on what other
    # tests (a Ray cluster in this process, for one) left behind.
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", APPROXIMATE_CHECK], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_embed_records_is_cached(tmp_path, samples):
    embedder = HashEmbedder()
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        first = embed_records(samples, embedder, embedder.key, cache)
        assert first.shape == (len(samples), embedder.dim)
        np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
        assert len(cache.list_arrays("embedding")) == 1
        again = embed_records(samples, embedder, embedder.key, cache)
        np.testing.assert_array_equal(first, again)
