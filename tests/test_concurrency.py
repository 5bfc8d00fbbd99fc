"""While a scoring job runs, four other sessions select, compare and export cached data."""

from __future__ import annotations

import json
import threading

import numpy as np

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig
from delift_core.data.dataset import dataset_from_rows
from delift_core.export import export_subset, subset_rows
from delift_core.jobs import JobManager
from delift_core.pipeline import load_stage, save_stage, score_stage, stage_key
from delift_core.select.selection import SelectionInputs, select_subset

ROWS = [
    {"id": f"r{i}", "instruction": f"Item {i}: double {i}.", "input": "", "output": f"{2 * i}"}
    for i in range(40)
]


def test_sessions_read_cached_stage_while_a_job_scores(tiny_lm, tmp_path):
    pool = dataset_from_rows(ROWS[:8])
    big = dataset_from_rows(ROWS)
    config = ScoringConfig(batch_size=1)
    cache = UtilityCache(tmp_path / "c.duckdb")
    key = stage_key(tiny_lm.model_id, config, pool.hash)
    save_stage(cache, key, score_stage(tiny_lm, pool.records, config, cache=cache), {})
    expected = {
        method: select_subset(
            SelectionInputs(8, u_pool=load_stage(cache, key).pool.rms), method=method,
            stage="instruction", seed=3,
        ).take(3).tolist()
        for method in ("delift", "fl-only", "random")
    }  # fmt: skip

    manager = JobManager(cache)
    job = manager.submit(
        "score", {}, lambda ctx: score_stage(
            tiny_lm, big.records, config, cache=cache, should_cancel=ctx.cancelled,
            on_progress=lambda phase, p: ctx.report(phase, p.done, p.total),
        ),
    )  # fmt: skip
    errors: list[BaseException] = []
    results: list[tuple[str, list[int]]] = []

    def session(number: int) -> None:
        try:
            for round_ in range(5):
                stage = load_stage(cache, key)
                for method in expected:
                    chosen = select_subset(
                        SelectionInputs(8, u_pool=stage.pool.rms), method=method,
                        stage="instruction", seed=3,
                    ).take(3)  # fmt: skip
                    results.append((method, chosen.tolist()))
                out = tmp_path / f"session{number}" / f"round{round_}.jsonl"
                export_subset(out, subset_rows(pool.records, chosen, "alpaca"), {"n": number})
                assert len(out.read_text().splitlines()) == 3
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    running_seen = manager.snapshot(job).state in ("queued", "running")
    for thread in threads:
        thread.join()
    assert errors == []
    assert running_seen
    assert all(picks == expected[method] for method, picks in results)
    assert len(results) == 4 * 5 * 3
    manager.cancel(job)
    final = manager.wait(job, timeout=60)
    assert final.state in ("cancelled", "done")
    # The cache is intact: the stored stage reads back the same and the file reopens.
    cache.close()
    with UtilityCache(tmp_path / "c.duckdb") as again:
        np.testing.assert_array_equal(
            load_stage(again, key).pool.rms, load_stage(again, key).pool.rms
        )
        assert again.count_pairs() >= 64
    manifest = json.loads((tmp_path / "session0" / "round0.manifest.json").read_text())
    assert manifest["n"] == 0
