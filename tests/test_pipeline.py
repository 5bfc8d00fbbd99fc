"""Stage scoring (all matrices of a stage) and stored stages."""

from __future__ import annotations

import numpy as np
import pytest

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.embeddings import embed_records
from delift_core.errors import ConfigError
from delift_core.pipeline import (
    Embedder,
    load_stage,
    plan_stage,
    save_stage,
    score_stage,
    stage_key,
)
from delift_core.testing import HashEmbedder
from delift_core.utility import compute_utility


def test_task_and_continual_matrices_have_the_documented_orientation(tiny_lm, samples):
    pool, targets, existing = samples[:4], samples[4:6], samples[6:]
    stage = score_stage(tiny_lm, pool, ScoringConfig(), targets=targets, existing=existing)
    assert stage.pool.rms.shape == (4, 4)
    assert stage.targets.rms.shape == (2, 4)  # targets x pool
    assert stage.existing.rms.shape == (4, 1)  # pool x existing
    direct = compute_utility(tiny_lm, targets, pool, ScoringConfig())
    np.testing.assert_allclose(stage.targets.rms, direct.rms, atol=1e-6)


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
        assert stage.targets.rms.shape == (2, len(samples)) and stage.targets.rms.nnz == 2 * 2
        assert {"pool", "targets"} <= set(phases)
        key = stage_key(tiny_lm.model_id, config, "pool-hash", "target-hash")
        assert load_stage(cache, key) is None
        save_stage(cache, key, stage, {"note": "x"})
        loaded = load_stage(cache, key)
        assert (loaded.pool.rms != stage.pool.rms).nnz == 0
        assert (loaded.targets.logprob != stage.targets.logprob).nnz == 0
        assert loaded.existing is None
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


def _stored_rows(path) -> int:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return sum(
            con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("baseline", "pairs")
        )


@pytest.mark.parametrize("mode", ["exact", "sparse"])
def test_the_plan_counts_exactly_the_passes_a_run_computes(tiny_lm, samples, tmp_path, mode):
    embedder = Embedder(HashEmbedder(), HashEmbedder.key)
    config = ScoringConfig(mode=mode, k=2)
    pool, targets, existing = samples[:5], samples[5:7], samples[7:]
    path = tmp_path / "c.duckdb"

    def embed(records):
        return embed_records(records, embedder.model, embedder.key)

    def plan(cache):
        return plan_stage(
            tiny_lm.model_id, pool, config, cache, targets=targets, existing=existing, embed=embed
        )

    with UtilityCache(path) as cache:
        fresh = plan(cache)
        assert fresh.cached == 0
        # Part of the work is cached by an earlier, smaller run (a cancelled one, say).
        score_stage(tiny_lm, pool[:3], config, embedder=embedder, cache=cache)
        partly = plan(cache)
        assert fresh.total == partly.total and 0 < partly.cached < partly.total
    before = _stored_rows(path)
    with UtilityCache(path) as cache:
        score_stage(
            tiny_lm, pool, config, targets=targets, existing=existing, embedder=embedder,
            cache=cache,
        )  # fmt: skip
    assert _stored_rows(path) - before == partly.remaining
    with UtilityCache(path) as cache:
        assert plan(cache).remaining == 0


def test_the_plan_of_a_run_without_extra_sets_matches_the_estimate(tiny_lm, samples, tmp_path):
    from delift_core.resources import estimate_run

    with UtilityCache(tmp_path / "c.duckdb") as cache:
        plan = plan_stage(tiny_lm.model_id, samples[:4], ScoringConfig(), cache)
    assert plan.total == estimate_run(4, "exact", 0).passes and plan.remaining == plan.total
