"""Score page: estimate, background scoring with progress, cancel, and resume after a restart."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from apptools import assert_clean, demo_handle, messages, page, services, wait_for_jobs, with_data

from delift_core.config import ScoringConfig
from delift_core.pipeline import list_stages, load_stage
from ui import tasks


@pytest.fixture(autouse=True)
def map_calls(monkeypatch) -> list[tuple[str, str]]:
    """Each run started here queues the pool's map as a job of its own. These tests are about
    scoring: the map job records (job id, pool hash) instead of running UMAP, whose first use
    in a process takes about 20 s (test_app_select.py runs the real map after a score run)."""
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        tasks,
        "compute_maps",
        lambda ctx, cache, datasets: calls.append((ctx.job_id, datasets["pool"].hash)),
    )
    return calls


def test_empty_state_points_to_data():
    at = page("2_Score.py")
    at.session_state["data"] = {}
    at.run()
    assert not at.exception
    assert any("No data loaded" in m for m in messages(at.info))
    assert not at.main.button  # nothing to start (the sidebar has the workspace box)


def test_estimate_then_score_in_the_background():
    pool = demo_handle(6)
    at = with_data(page("2_Score.py"), pool=pool).run()
    assert_clean(at)
    wait_for_jobs()  # the first visit's speed measurement (starting a run would cancel it)
    metrics = {m.label: m.value for m in at.metric}
    # 6 baselines + 36 pairs + 6 answers scored without their prompt (quality signals)
    assert metrics["Forward passes to run"] == "48"
    assert metrics["Peak memory"] == "1.8 KB"  # 36 pairs x 52 bytes (the test model: no size)
    at.radio(key="score_mode").set_value("sparse").run()
    at.number_input(key="score_k").set_value(2).run()
    # 6 baselines + 6 answers without prompt + 6 x 3 sparse pairs (no embeddings yet, so the
    # cache is not consulted)
    assert {m.label: m.value for m in at.metric}["Forward passes"] == "30"
    at.radio(key="score_mode").set_value("exact").run()

    at.button(key="score_start").click().run()
    assert_clean(at)
    assert any("Scoring queued" in m for m in messages(at.success))
    states = wait_for_jobs()
    kinds = {s.kind: s for s in states}
    # The first visit measured the speed; then the queued score job ran.
    assert kinds["calibrate"].state == "done" and kinds["calibrate"].result > 0
    assert kinds["score"].state == "done", kinds["score"].error

    at.run()
    assert_clean(at)
    assert "The scores of the data loaded now are ready (pool)." in messages(at.success)
    assert "not measured" not in {m.value for m in at.metric}
    cache, _ = services()
    key = kinds["score"].result["stage_key"]
    assert [k for k, _ in list_stages(cache)] == [key]
    stage = load_stage(cache, key)
    assert stage.pool.rms.shape == (6, 6) and np.isfinite(stage.pool.rms).all()
    assert at.session_state["stage_key"] == key


def test_progress_is_shown_and_cancel_stops_the_job(map_calls):
    pool = demo_handle(24)
    at = with_data(page("2_Score.py"), pool=pool).run()
    _, manager = services()
    for job in manager.list_jobs():  # the automatic speed measurement
        manager.wait(job.id, timeout=60)
    at.button(key="score_start").click().run()
    job = next(j for j in manager.list_jobs() if j.kind == "score")
    deadline = time.monotonic() + 60
    while manager.snapshot(job.id).done < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()
    assert_clean(at)
    bars = list(at.progress)
    assert bars and "passes" in bars[0].text and 0 < bars[0].value < 100
    at.button(key=f"score_cancel_{job.id}").click().run()
    t0 = time.monotonic()
    final = manager.wait(job.id, timeout=10)
    assert final.state == "cancelled"
    assert time.monotonic() - t0 < 10
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table.loc[table["job"] == job.id, "state"].item() == "cancelled"
    # The map queued behind the run is not computed for scores that were not saved.
    (map_job,) = [manager.wait(j.id, timeout=10) for j in manager.list_jobs(kind=tasks.MAP)]
    assert map_job.state == "cancelled" and "scoring job before it was cancelled" in map_job.error
    assert map_calls == []


def test_unfinished_run_from_a_previous_server_can_be_resumed():
    pool = demo_handle(5)
    cache, manager = services()
    params = tasks.score_params({"pool": pool}, "default", ScoringConfig())
    cache.save_run("old-run", "score", "running", params)
    at = with_data(page("2_Score.py"), pool=pool).run()
    assert_clean(at)
    assert any("demo set (rows 1-5)" in t for t in messages(at.text))
    at.button(key="score_resume_old-run").click().run()
    assert not at.exception
    states = [s for s in wait_for_jobs() if s.kind == "score"]
    assert len(states) == 1 and states[0].state == "done"
    # resumed from the page: the run now belongs to this session's workspace
    assert states[0].params == {**params, "workspace": at.session_state["workspace"]}
    stored = {r["id"]: r for r in cache.list_runs()}
    assert stored["old-run"]["state"] == "resumed"
    assert manager.unfinished_runs() == []
    at.run()
    assert all(not b.key or not b.key.startswith("score_resume_") for b in at.button)


def test_a_missing_model_folder_is_reported_without_loading_anything(tmp_path):
    at = with_data(page("2_Score.py"), pool=demo_handle(4))
    at.run()
    wait_for_jobs()
    _, manager = services()
    jobs_before = len(manager.list_jobs())
    missing = str(tmp_path / "no-such-model")
    at.text_input(key="score_model").set_value(missing).run()
    assert any("model folder not found" in w for w in messages(at.warning))
    assert len(manager.list_jobs()) == jobs_before  # typing a path starts no job
    at.button(key="score_start").click().run()
    states = [s for s in wait_for_jobs() if s.kind == "score"]
    assert states[0].state == "failed" and "model folder not found" in states[0].error
    at.run()
    assert any("Scoring failed" in e and "model folder not found" in e for e in messages(at.error))


def test_a_run_that_cannot_fit_in_memory_is_refused(monkeypatch):
    import delift_core.resources as resources

    monkeypatch.setattr(resources, "available_memory", lambda: 1000)
    at = with_data(page("2_Score.py"), pool=demo_handle(6)).run()
    assert not at.exception
    assert any("would not fit in memory" in e and "sparse" in e for e in messages(at.error))
    assert at.button(key="score_start").disabled


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_estimate_counts_cached_passes_and_equals_the_passes_run():
    from apptools import score

    score(demo_handle(4))  # an earlier run on part of the data
    at = with_data(page("2_Score.py"), pool=demo_handle(6)).run()
    assert_clean(at)
    # 6 + 36 + 6 in all; 4 + 16 + 4 of them are cached.
    assert _metrics(at)["Forward passes to run"] == "24"
    at.button(key="score_start").click().run()
    job = next(s for s in wait_for_jobs() if s.kind == "score")
    assert job.state == "done" and job.result["passes"] == 24
    at.run()
    assert _metrics(at)["Forward passes to run"] == "0"
    assert _metrics(at)["Estimated time"] == "0 s"


def test_the_speed_is_kept_across_a_restart_and_follows_the_running_job():
    from ui import estimates

    cache, _ = services()
    at = with_data(page("2_Score.py"), pool=demo_handle(8)).run()
    calibration = next(s for s in wait_for_jobs() if s.kind == "calibrate")
    assert calibration.state == "done"
    estimates.forget_rates()  # a new server process: only the cache remembers
    assert estimates.get_rate("default", cache) == calibration.result
    at.button(key="score_start").click().run()
    wait_for_jobs()
    assert estimates.get_rate("default", cache) != calibration.result  # the job's own speed
    kinds = [j.kind for j in services()[1].list_jobs()]
    assert kinds.count("calibrate") == 1


def test_finished_jobs_say_what_they_did_and_new_data_is_not_called_ready():
    at = with_data(page("2_Score.py"), pool=demo_handle(4)).run()
    at.button(key="score_start").click().run()
    wait_for_jobs()
    at.run()
    table = at.dataframe[0].value
    assert not table["message"].str.contains("UMAP").any()
    assert table["message"].str.contains("passes computed").any()
    with_data(at, pool=demo_handle(4), targets=demo_handle(2, offset=10)).run()
    assert not any("data loaded now are ready" in m for m in messages(at.success))
    assert any("the data loaded now differs" in m for m in messages(at.info))


def test_the_demo_slice_is_proposed_in_sparse_mode_with_the_reason():
    at = with_data(page("2_Score.py"), pool=demo_handle(60)).run()
    assert_clean(at)
    assert at.radio(key="score_mode").value == "sparse"
    assert any("exact mode would run 3,720 forward passes" in c for c in messages(at.caption))


def test_unfinished_runs_resume_by_themselves_when_the_user_chose_so():
    from ui import services as svc

    pool = demo_handle(5)
    cache, manager = services()
    at = with_data(page("2_Score.py"), pool=pool).run()
    wait_for_jobs()
    assert at.checkbox(key="score_auto_resume").value is False
    at.checkbox(key="score_auto_resume").check().run()
    params = tasks.score_params({"pool": pool}, "default", ScoringConfig())
    cache.save_run("interrupted", "score", "running", params)
    # A restart: a new job manager on the same cache.
    manager.shutdown()
    svc._open_manager.clear()
    _, restarted = services()
    jobs = [j for j in restarted.list_jobs() if j.kind == "score"]
    assert len(jobs) == 1 and jobs[0].params == params
    assert restarted.wait(jobs[0].id, timeout=120).state == "done"
    assert {r["id"]: r for r in cache.list_runs()}["interrupted"]["state"] == "resumed"


def _save_tiny_model(folder):
    from delift_core.testing import build_tiny_lm

    tiny = build_tiny_lm()
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder.resolve()


def test_a_model_folder_loads_only_when_the_user_asks(tmp_path):
    from delift_core import models

    folder = _save_tiny_model(tmp_path / "my-model")
    at = with_data(page("2_Score.py"), pool=demo_handle(4)).run()
    wait_for_jobs()  # the embedded model's own speed measurement
    _, manager = services()
    jobs_before = len(manager.list_jobs())

    def loaded() -> list:
        return [key for key in models._lm_cache if key[0] == str(folder)]

    for spelling in ("my-model", "my-model/", "./my-model//"):
        at.text_input(key="score_model").set_value(spelling).run()
        assert_clean(at)
        assert len(manager.list_jobs()) == jobs_before  # typing a path starts no job...
        assert loaded() == []  # ...and loads nothing
        assert _metrics(at)["Estimated time"] == "not measured"
    at.button(key="score_measure").click().run()
    (job,) = [
        s for s in wait_for_jobs() if s.kind == "calibrate" and s.params["model"] != "default"
    ]
    assert job.state == "done", job.error
    assert job.params["model"] == str(folder)  # the resolved folder, whatever the spelling
    assert len(loaded()) == 1
    at.run()
    assert _metrics(at)["Estimated time"] not in ("not measured", "measuring...")


def _pool_of(tmp_path, name: str, output: str) -> dict:
    from ui import registry

    path = tmp_path / name
    rows = [{"instruction": f"Question {i}?", "input": "", "output": output} for i in range(6)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec = {"kind": "path", "path": str(path), "offset": 0, "limit": None, "field_map": None}
    return registry.make_handle(spec, registry.load_source(spec, None))


def _seconds(text: str) -> int:
    """Seconds of layout.fmt_seconds' text ('45 s', '3 min 20 s', '2 h 5 min')."""
    units = {"h": 3600, "min": 60, "s": 1}
    parts = text.split()
    return sum(int(n) * units[u] for n, u in zip(parts[::2], parts[1::2], strict=True))


def test_the_time_estimate_counts_text_length(tmp_path):
    from ui import estimates, registry

    short = _pool_of(tmp_path, "short.jsonl", "Yes.")
    long = _pool_of(tmp_path, "long.jsonl", "A long answer. " * 100)
    cache, _ = services()
    # A speed measured on the short pool's records (10 passes per second).
    chars = estimates.mean_chars(registry.dataset_for(short, cache))
    estimates.set_rate("default", 10.0, cache, chars=chars)
    at = with_data(page("2_Score.py"), pool=short).run()
    assert_clean(at)
    passes = int(_metrics(at)["Forward passes to run"])
    assert _seconds(_metrics(at)["Estimated time"]) == round(passes / 10.0)
    at = with_data(page("2_Score.py"), pool=long).run()
    assert_clean(at)
    assert int(_metrics(at)["Forward passes to run"]) == passes  # as many rows, as many passes
    longer = _seconds(_metrics(at)["Estimated time"])
    ratio = estimates.mean_chars(registry.dataset_for(long, cache)) / chars
    assert ratio > 10 and abs(longer - passes / 10.0 * ratio) <= 1
    assert any("Scaled x" in c and "for text length" in c for c in messages(at.caption))
    assert not [j for j in services()[1].list_jobs() if j.kind == "calibrate"]


def test_choices_survive_streamlit_dropping_their_widget_state():
    """Streamlit drops a widget's state when a run ends without it (a visit to another page, or
    a run_every fragment's st.rerun()); coming back must not fall back to the defaults."""
    at = with_data(page("2_Score.py"), pool=demo_handle(6)).run()
    at.radio(key="score_mode").set_value("sparse").run()
    at.number_input(key="score_k").set_value(3).run()
    at.switch_page("pages/1_Data.py").run()
    at.switch_page("pages/2_Score.py").run()
    assert_clean(at)
    assert at.radio(key="score_mode").value == "sparse"
    assert at.number_input(key="score_k").value == 3
    # 6 baselines + 6 answers without prompt + 6 x 4 sparse pairs
    assert {m.label: m.value for m in at.metric}["Forward passes"] == "36"


def test_the_scores_are_ready_before_the_map_which_follows_as_its_own_job(map_calls):
    from delift_core.embeddings import embed_records
    from delift_core.projection import PROJECTION_KIND, projection_key
    from ui import registry

    pool = demo_handle(6)
    cache, manager = services()
    at = with_data(page("2_Score.py"), pool=pool).run()
    wait_for_jobs()  # the speed measurement
    at.button(key="score_start").click().run()
    assert_clean(at)
    states = wait_for_jobs()
    (scored,) = [s for s in states if s.kind == tasks.SCORE]
    (mapped,) = [s for s in states if s.kind == tasks.MAP]
    assert scored.state == "done" and mapped.state == "done", (scored.error, mapped.error)
    assert set(scored.result) == {"stage_key", "passes", "seconds"}
    assert scored.message.endswith("scores saved")
    # The map job ran after the score job had ended, and only it asked for the map.
    assert mapped.params["after"] == scored.id and mapped.started >= scored.finished
    ds = registry.dataset_for(pool, cache)
    assert map_calls == [(mapped.id, ds.hash)]
    assert registry.cached_embeddings(cache, ds) is None  # exact mode: nothing embedded

    # With the map and the embeddings in the cache, a new run queues no map job.
    coords = np.zeros((6, 2), dtype=np.float32)
    cache.put_array(PROJECTION_KIND, projection_key(registry.map_key(ds), 6, 0), coords)
    embedder = registry.load_embedder_handle()
    embed_records(ds.records, embedder.model, embedder.key, cache)
    params = tasks.score_params({"pool": pool}, "default", ScoringConfig(mode="sparse", k=2))
    tasks.submit_score(manager, cache, params)
    assert [s.state for s in wait_for_jobs() if s.kind == tasks.SCORE] == ["done", "done"]
    assert len(manager.list_jobs(kind=tasks.MAP)) == 1


def _gate_worker_model_load(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Hold the first model load in the job worker until `release` is set; `started` is set
    when it begins (the page's own model id lookup, in the script thread, is not held)."""
    from ui import registry

    real_load = registry.load_lm
    started, release = threading.Event(), threading.Event()

    def load_lm(name: str):
        if threading.current_thread().name == "delift-jobs" and not started.is_set():
            started.set()
            release.wait(60)
        return real_load(name)

    monkeypatch.setattr(registry, "load_lm", load_lm)
    return started, release


def test_starting_to_score_cancels_the_running_speed_measurement(monkeypatch):
    from ui import estimates

    started, release = _gate_worker_model_load(monkeypatch)
    cache, manager = services()
    at = with_data(page("2_Score.py"), pool=demo_handle(8)).run()
    assert started.wait(60)  # the first visit's speed measurement is loading the model
    (measuring,) = manager.list_jobs(kind=tasks.CALIBRATE)
    assert measuring.state == "running"
    at.button(key="score_start").click().run()
    assert_clean(at)
    assert manager.snapshot(measuring.id).cancel_requested
    at.run()
    assert _metrics(at)["Estimated time"] == "measuring..."
    assert "the scoring job measures the speed as it runs" in messages(at.caption)
    release.set()
    states = {s.kind: s for s in wait_for_jobs()}
    assert states[tasks.CALIBRATE].state == "cancelled"
    assert "a score run measures the speed" in states[tasks.CALIBRATE].error
    assert states[tasks.SCORE].state == "done", states[tasks.SCORE].error
    # The estimate works without the measurement: the score run stored its own speed.
    estimates.forget_rates()
    assert estimates.get_rate("default", cache) > 0
    at.run()
    assert_clean(at)
    assert not any("Speed measurement failed" in w for w in messages(at.warning))


def test_a_queued_speed_measurement_of_the_same_model_is_skipped_when_scoring_starts():
    from ui import registry

    cache, manager = services()
    pool = demo_handle(6)
    gate = threading.Event()
    blocker = manager.submit("wait", {}, lambda ctx: gate.wait(60))
    sample = registry.dataset_for(pool, cache)
    same = tasks.submit_calibration(manager, cache, "default", sample, 32)
    other = tasks.submit_calibration(manager, cache, "/no/such/model", sample, 32)
    params = tasks.score_params({"pool": pool}, "default", ScoringConfig())
    score_id = tasks.submit_score(manager, cache, params, map_after=False)
    assert manager.snapshot(same).state == "cancelled"  # at once: it had not started
    assert manager.snapshot(other).state == "queued"  # another model's measurement stays
    manager.cancel(other)
    gate.set()
    assert manager.wait(blocker, timeout=60).state == "done"
    assert manager.wait(score_id, timeout=120).state == "done"
