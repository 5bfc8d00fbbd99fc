"""Compare page, Evaluate: saved selections against Random on held-out data, as a background job
with progress and cancel; results stored in the cache and shown again after a restart."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from apptools import (
    assert_clean,
    chart_keys,
    demo_handle,
    frame,
    messages,
    score,
    services,
    wait_for_jobs,
    with_data,
)
from apptools import (
    page as _page,
)

from delift_core.errors import CancelledError
from delift_core.pipeline import list_stages
from ui import eval_report, evaluation, registry, tasks

POOL_ROWS = 10
WS = "team-eval"  # the workspace the selections are saved in


def page(name: str):
    """The page, opened in the workspace the selections are saved in."""
    at = _page(name)
    at.query_params["workspace"] = WS
    return at


def _save(name: str, indices: list[int], key: str, meta: dict, method: str) -> None:
    cache, _ = services()
    registry.save_selection(
        cache,
        name,
        np.asarray(indices),
        np.full(len(indices), np.nan),
        {"method": method, "stage": "instruction", "kernel": "minmax", "metric": "rms",
         "stage_key": key, "pool": meta["pool"], "targets": None, "existing": None},
        WS,
    )  # fmt: skip


def _two_selections() -> dict:
    """Score a 10-row demo pool and save two selections of it; returns the pool handle."""
    pool = demo_handle(POOL_ROWS)
    key = score(pool)
    cache, _ = services()
    meta = dict(list_stages(cache))[key]
    _save("sel-a", [0, 1, 2, 3], key, meta, "delift")
    _save("sel-b", [4, 5, 6, 7], key, meta, "delift-q")
    return pool


def _chart(at) -> dict:
    chart = next(e for e in at.main if getattr(e, "type", None) == "plotly_chart"
                 and e.key == "eval_chart")  # fmt: skip
    return json.loads(chart.proto.spec)


def _check_results(at, held_out_items: int) -> None:
    assert_clean(at)
    table = frame(at, "set", "mean", "vs Random").set_index("set")
    randoms = [s for s in table.index if s.startswith("Random")]
    assert {"sel-a", "sel-b"} <= set(table.index) and randoms
    assert table["mean"].notna().all()
    assert table.loc[["sel-a", "sel-b"], "vs Random"].notna().all()
    assert all(table.loc[r, "vs Random"] is None or np.isnan(table.loc[r, "vs Random"])
               for r in randoms)  # fmt: skip
    assert "eval_chart" in chart_keys(at)
    spec = _chart(at)
    means, diffs = spec["data"]
    assert set(means["x"]) == set(table.index) and all(np.isfinite(means["y"]))
    assert set(diffs["x"]) == {"sel-a", "sel-b"}
    assert means["error_y"]["array"] and diffs["error_y"]["array"]
    assert any(f"{held_out_items} held-out items" in c for c in messages(at.caption))


def test_quick_evaluation_runs_in_the_background_and_survives_a_restart():
    from ui import services as svc

    pool = _two_selections()
    at = with_data(page("4_Compare.py"), pool=pool).run()
    assert_clean(at)
    assert any("No evaluation of these selections yet" in c for c in messages(at.caption))
    # A 30% split of 10 rows: 3 held-out items, taken out of the selections; 3 Random seeds.
    at.slider(key="eval_fraction").set_value(0.3).run()
    assert at.radio(key="eval_protocol").value == "icl"
    assert at.number_input(key="eval_seeds_icl").value == 3
    assert any("were part of the pool" in str(i.value) for i in at.info)
    at.button(key="eval_start").click().run()
    assert_clean(at)
    jobs = [j for j in wait_for_jobs() if j.kind == tasks.EVALUATE]
    assert len(jobs) == 1 and jobs[0].state == "done", jobs[0].error
    params = jobs[0].params
    assert params["protocol"] == "icl" and params["seeds"] == [0, 1, 2]
    assert params["held_out"] == {"source": "split", "fraction": 0.3, "seed": 0}
    at.run()
    _check_results(at, 3)
    # The held-out rows are out of every set: each selection lost the ones it had picked.
    held = set(evaluation.split_indices(POOL_ROWS, 0.3).tolist())
    table = frame(at, "set", "rows").set_index("set")
    for name, picked in (("sel-a", {0, 1, 2, 3}), ("sel-b", {4, 5, 6, 7})):
        assert table.loc[name, "rows"] == len(picked - held)
        assert table.loc[name, "held-out rows removed"] == len(picked & held)

    # A restart: in-memory state gone; the cache file opened again, a new job manager.
    svc.shutdown()
    registry.reset()
    at = with_data(page("4_Compare.py"), pool=pool).run()
    _check_results(at, 3)
    assert [j for j in services()[1].list_jobs() if j.kind == tasks.EVALUATE] == []


def test_the_split_says_which_selections_never_picked_the_held_out_rows():
    pool = _two_selections()
    cache, _ = services()
    indices, meta = registry.load_selection(cache, "sel-b")
    records = registry.load_source(pool["spec"], None).records
    held = evaluation.split_indices(POOL_ROWS, evaluation.DEFAULT_FRACTION)
    meta["excluded_ids"] = [records[i].id for i in held]
    registry.save_selection(cache, "sel-b", indices, np.full(len(indices), np.nan), meta, WS)
    at = with_data(page("4_Compare.py"), pool=pool).run()
    assert_clean(at)
    note = next(str(i.value) for i in at.info if "were part of the pool" in str(i.value))
    assert "sel\\-b excluded them from picking" in note and "sel\\-a" not in note


def test_the_target_set_is_offered_as_held_out_data():
    pool, targets = demo_handle(POOL_ROWS), demo_handle(4, offset=100)
    key = score(pool)
    cache, _ = services()
    meta = dict(list_stages(cache))[key]
    _save("sel-a", [0, 1, 2], key, meta, "delift")
    _save("sel-b", [3, 4, 5], key, meta, "random")
    at = with_data(page("4_Compare.py"), pool=pool, targets=targets).run()
    at.radio(key="eval_source").set_value("targets").run()
    assert_clean(at)
    at.button(key="eval_start").click().run()
    jobs = [j for j in wait_for_jobs() if j.kind == tasks.EVALUATE]
    assert jobs[0].state == "done", jobs[0].error
    assert jobs[0].params["held_out"]["source"] == "targets"
    at.run()
    _check_results(at, 4)
    table = frame(at, "set", "rows").set_index("set")
    assert table.loc["sel-a", "rows"] == 3 and table.loc["sel-a", "held-out rows removed"] == 0


def test_fine_tune_protocol_trains_each_set_and_shows_results():
    pool = _two_selections()
    at = with_data(page("4_Compare.py"), pool=pool).run()
    at.slider(key="eval_fraction").set_value(0.3).run()
    at.radio(key="eval_protocol").set_value("finetune").run()
    assert_clean(at)
    assert any("takes minutes" in str(w.value) for w in at.warning)
    at.number_input(key="eval_seeds_finetune").set_value(1).run()
    at.button(key="eval_start").click().run()
    started = time.monotonic()
    jobs = [j for j in wait_for_jobs() if j.kind == tasks.EVALUATE]
    assert jobs[0].state == "done", jobs[0].error
    assert time.monotonic() - started < 60
    assert jobs[0].params["protocol"] == "finetune" and jobs[0].params["seeds"] == [0]
    at.run()
    _check_results(at, 3)
    cache, _ = services()
    (_, stored), *_ = eval_report.stored_results(cache, {"sel-a"})
    assert stored["finetune"]["method"] == "lora" and stored["finetune"]["epochs"] == 3


def test_an_evaluation_can_be_cancelled():
    pool = _two_selections()
    cache, manager = services()
    # A job ahead in the queue keeps the evaluation queued until it is cancelled.
    release = threading.Event()
    blocker = manager.submit("block", {}, lambda ctx: release.wait(60))
    params = tasks.evaluate_params(["sel-a", "sel-b"], {"source": "split", "fraction": 0.3},
                                   "finetune", 3) | {"workspace": WS}  # fmt: skip
    job_id = tasks.submit_evaluation(manager, cache, params)
    at = with_data(page("4_Compare.py"), pool=pool).run()
    assert_clean(at)
    assert at.button(key="eval_start").disabled
    at.button(key=f"eval_cancel_{job_id}").click().run()
    assert manager.wait(job_id, timeout=30).state == "cancelled"
    release.set()
    manager.wait(blocker, timeout=30)
    at.run()
    assert_clean(at)
    assert any("was cancelled" in str(i.value) for i in at.info)
    assert eval_report.stored_results(cache, {"sel-a"}) == []


@pytest.mark.parametrize("protocol", ["icl", "finetune"])
def test_a_running_evaluation_stops_when_cancelled(protocol):
    _two_selections()
    cache, _ = services()
    params = tasks.evaluate_params(["sel-a", "sel-b"], {"source": "split", "fraction": 0.3},
                                   protocol, 3) | {"workspace": WS}  # fmt: skip
    plan = evaluation.prepare(cache, params)
    calls = []

    def cancel_on_third_check() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CancelledError):
        evaluation.evaluate_plan(
            registry.load_lm("default"), registry.load_embedder_handle(), plan,
            protocol=protocol, config=evaluation.eval_config(0), cache=cache,
            should_cancel=cancel_on_third_check,
        )  # fmt: skip
    assert len(calls) == 3  # stopped at the first check after the request
    assert eval_report.stored_results(cache, {"sel-a"}) == []
