"""Scoring on a local Ray cluster (2 workers) against the single-process engine."""

from __future__ import annotations

import functools

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from delift_core.cache import UtilityCache  # noqa: E402
from delift_core.cli import build_parser  # noqa: E402
from delift_core.config import ScoringConfig, TemplateConfig  # noqa: E402
from delift_core.distributed import ModelSpec, RayScorer  # noqa: E402
from delift_core.errors import CancelledError  # noqa: E402
from delift_core.shards import plan_shards  # noqa: E402
from delift_core.testing import build_tiny_lm  # noqa: E402
from delift_core.utility import compute_utility, pair_lists, plan_work  # noqa: E402

TOL = 1e-6
# U_logprob is a difference of two float32 sums of log p over the answer's tokens (each -50 to
# -250 on this model, whose logits are around 100). A shard holds fewer examples than the whole
# run, so its prefixes and rows are batched with others: other matrix shapes, other rounding,
# which moves a sum by up to about 1e-7 of its size (seen: 1.3e-5); RMS values stay within 1e-6.
LOGPROB_ATOL = 5e-5


@pytest.fixture(scope="module")
def scorer():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    # Workers load the tiny test model the driver's tiny_lm is (same seed, same model id).
    tiny = functools.partial(build_tiny_lm, 0)
    pool = RayScorer(ModelSpec(device="cpu"), workers=2, threads=1, load_model=tiny)
    yield pool
    pool.close()
    ray.shutdown()


def assert_same(got, want):
    for metric in ("rms", "logprob"):
        a, b = got.matrix(metric), want.matrix(metric)
        if hasattr(a, "toarray"):
            assert (a != 0).nnz == (b != 0).nnz
            a, b = a.toarray(), b.toarray()
        atol = TOL if metric == "rms" else LOGPROB_ATOL
        np.testing.assert_allclose(a, b, rtol=TOL, atol=atol)
    assert got.pairs_total == want.pairs_total


def test_shards_cover_missing_work_once_and_keep_examples_whole():
    pair_t, pair_e = pair_lists(5, 4, None)
    missing = np.array([0, 3, 4, 6, 7, 8, 9, 12, 13, 19])
    shards = plan_shards(pair_e, np.arange(5), missing, rows_per_shard=3)
    pairs = np.concatenate([s.pairs for s in shards])
    assert sorted(pairs.tolist()) == missing.tolist()
    assert sorted(np.concatenate([s.baselines for s in shards]).tolist()) == list(range(5))
    examples = [set(pair_e[s.pairs].tolist()) for s in shards if len(s.pairs)]
    for a in range(len(examples)):
        for b in range(a + 1, len(examples)):
            assert not examples[a] & examples[b]
    assert all(s.rows <= 3 or len(set(pair_e[s.pairs].tolist())) == 1 for s in shards)


def test_ray_exact_and_sparse_equal_single_process(scorer, tiny_lm, samples):
    config = ScoringConfig(batch_size=3)
    got = scorer.compute(tiny_lm, samples, samples, config)
    assert_same(got, compute_utility(tiny_lm, samples, samples, config))
    assert got.pairs_computed == len(samples) ** 2 and got.baselines_computed == len(samples)

    candidates = [[i, (i + 2) % len(samples), (i + 3) % len(samples)] for i in range(len(samples))]
    sparse = ScoringConfig(mode="sparse", k=2, batch_size=2)
    got = scorer.compute(tiny_lm, samples, samples, sparse, candidates=candidates)
    want = compute_utility(tiny_lm, samples, samples, sparse, candidates=candidates)
    assert_same(got, want)

    # Rectangular, and a template whose boundary merges tokens (whole-string pairs on workers).
    merging = TemplateConfig(
        no_example="Q:{prompt_i}", with_example="E:{prompt_j}{response_j}Q:{prompt_i}"
    )
    config = ScoringConfig(template=merging, batch_size=4)
    got = scorer.compute(tiny_lm, samples[:3], samples[2:], config)
    assert_same(got, compute_utility(tiny_lm, samples[:3], samples[2:], config))


def test_interrupted_ray_run_resumes_without_recomputing(scorer, tiny_lm, samples, tmp_path):
    config = ScoringConfig(batch_size=2)
    n = len(samples)
    cache = UtilityCache(tmp_path / "c.duckdb")
    with pytest.raises(CancelledError):
        scorer.compute(
            tiny_lm, samples, samples, config, cache=cache,
            should_cancel=lambda: cache.count_pairs() > 0,
        )  # fmt: skip
    stored = cache.count_pairs()
    assert 0 < stored < n * n
    scope = plan_work(tiny_lm.model_id, samples, samples, config).scope
    stored_base = len(cache.load_baselines(scope, [s.hash for s in samples]))

    seen = []
    resumed = scorer.compute(
        tiny_lm, samples, samples, config, cache=cache, on_progress=seen.append
    )
    assert resumed.pairs_reused == stored
    assert resumed.pairs_computed == n * n - stored
    assert resumed.baselines_computed == n - stored_base
    assert seen[0].reused == stored + stored_base and seen[-1].done == seen[-1].total
    assert cache.count_pairs() == n * n
    assert_same(resumed, compute_utility(tiny_lm, samples, samples, config))

    again = scorer.compute(tiny_lm, samples, samples, config, cache=cache)
    assert again.pairs_computed == 0 and again.baselines_computed == 0
    cache.close()


def test_lost_worker_is_restarted_and_its_shards_rerun(
    scorer, tiny_lm, samples, tmp_path, monkeypatch
):
    config = ScoringConfig(batch_size=2)
    killed = []

    def kill_a_worker(progress) -> None:
        if progress.done > progress.reused and not killed:
            killed.append(progress.done)
            ray.kill(scorer._actors[0], no_restart=False)  # Ray restarts it, as after a crash

    monkeypatch.setattr(scorer, "rows_per_shard", 3)  # many shards: the worker dies mid-run
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        got = scorer.compute(
            tiny_lm, samples, samples, config, cache=cache, on_progress=kill_a_worker
        )
        assert killed and cache.count_pairs() == len(samples) ** 2
    assert_same(got, compute_utility(tiny_lm, samples, samples, config))


def test_score_command_accepts_the_ray_backend():
    args = build_parser().parse_args(
        ["score", "d.jsonl", "--out", "o", "--backend", "ray", "--workers", "3"]
    )
    assert (args.backend, args.workers, args.ray_address) == ("ray", 3, None)
    assert build_parser().parse_args(["score", "d.jsonl", "--out", "o"]).backend == "local"
