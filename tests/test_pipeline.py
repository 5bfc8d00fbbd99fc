"""Stage scoring (all matrices of a stage) and stored stages."""

from __future__ import annotations

import numpy as np
import pytest

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.errors import ConfigError
from delift_core.pipeline import Embedder, load_stage, save_stage, score_stage, stage_key
from delift_core.testing import HashEmbedder
from delift_core.utility import compute_utility


def test_task_and_continual_matrices_have_the_documented_orientation(tiny_lm, samples):
    pool, targets, existing = samples[:4], samples[4:6], samples[6:]
    stage = score_stage(tiny_lm, pool, ScoringConfig(), targets=targets, existing=existing)
    assert stage.pool.rms.shape == (4, 4)
    assert stage.query.rms.shape == (2, 4)  # targets x pool
    assert stage.private.rms.shape == (4, 1)  # pool x existing
    direct = compute_utility(tiny_lm, targets, pool, ScoringConfig())
    np.testing.assert_allclose(stage.query.rms, direct.rms, atol=1e-6)


def test_sparse_stage_uses_embedding_candidates(tiny_lm, samples, tmp_path):
    embedder = Embedder(HashEmbedder(), HashEmbedder.key)
    config = ScoringConfig(mode="sparse", k=2)
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        phases = []
        stage = score_stage(
            tiny_lm, samples, config, targets=samples[:2], embedder=embedder, cache=cache,
            on_progress=lambda phase, p: phases.append(phase),
        )  # fmt: skip
        assert stage.pool.rms.nnz == len(samples) * 3
        assert stage.query.rms.shape == (2, len(samples)) and stage.query.rms.nnz == 2 * 2
        assert {"pool", "targets"} <= set(phases)
        key = stage_key(tiny_lm.model_id, config, "pool-hash", "target-hash")
        assert load_stage(cache, key) is None
        save_stage(cache, key, stage, {"note": "x"})
        loaded = load_stage(cache, key)
        assert (loaded.pool.rms != stage.pool.rms).nnz == 0
        assert (loaded.query.logprob != stage.query.logprob).nnz == 0
        assert loaded.private is None
    with pytest.raises(ConfigError):
        score_stage(tiny_lm, samples, config)


def test_stage_keys_differ_by_what_determines_the_values():
    exact, sparse = ScoringConfig(), ScoringConfig(mode="sparse", k=4)
    keys = {
        stage_key("m", exact, "p"),
        stage_key("m2", exact, "p"),
        stage_key("m", sparse, "p"),
        stage_key("m", ScoringConfig(mode="sparse", k=5), "p"),
        stage_key("m", exact, "p", "t"),
        stage_key("m", exact, "p", None, "e"),
    }
    assert len(keys) == 6
