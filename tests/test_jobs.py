"""The job manager: one worker, progress, cancel, failures, order, consistent snapshots."""

from __future__ import annotations

import threading
import time

import pytest

from delift_core.cache import UtilityCache
from delift_core.errors import CancelledError, ConfigError, DataError
from delift_core.jobs import JobContext, JobManager


@pytest.fixture()
def manager():
    m = JobManager()
    yield m
    m.shutdown(timeout=5)


def _wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_progress_and_result(manager):
    seen = []

    def work(ctx: JobContext) -> int:
        for i in range(1, 6):
            ctx.report("counting", i, 5, eta_s=5 - i, message=f"step {i}")
            seen.append(manager.snapshot(ctx.job_id).done)
        return 42

    job_id = manager.submit("count", {"n": 5}, work)
    state = manager.wait(job_id, timeout=5)
    assert state.state == "done" and state.result == 42 and state.error is None
    assert seen == [1, 2, 3, 4, 5]
    assert (state.phase, state.done, state.total, state.message) == ("counting", 5, 5, "step 5")
    assert state.fraction == 1.0 and state.eta_s is None
    assert state.started is not None and state.finished >= state.started
    assert state.params == {"n": 5} and state.kind == "count"


def test_eta_is_reset_when_counts_change_without_one(manager):
    gate = threading.Event()

    def work(ctx: JobContext) -> None:
        ctx.report("a", 1, 10, eta_s=9.0)
        gate.wait(5)
        ctx.report("a", 2, 10)

    job_id = manager.submit("eta", {}, work)
    _wait_until(lambda: manager.snapshot(job_id).done == 1)
    assert manager.snapshot(job_id).eta_s == 9.0
    gate.set()
    manager.wait(job_id, timeout=5)
    assert manager.snapshot(job_id).eta_s is None


def test_cancel_running_job_stops_within_a_second(manager):
    started = threading.Event()

    def work(ctx: JobContext) -> None:
        started.set()
        while True:
            ctx.raise_if_cancelled()
            time.sleep(0.01)

    job_id = manager.submit("spin", {}, work)
    assert started.wait(5)
    t0 = time.monotonic()
    assert manager.cancel(job_id) is True
    state = manager.wait(job_id, timeout=1.0)
    assert state.state == "cancelled", state
    assert time.monotonic() - t0 < 1.0
    assert state.cancel_requested
    assert manager.cancel(job_id) is False  # already finished


def test_cancel_queued_job_never_runs(manager):
    gate = threading.Event()
    ran = []
    first = manager.submit("block", {}, lambda ctx: gate.wait(5))
    second = manager.submit("never", {}, lambda ctx: ran.append(1))
    assert manager.snapshot(second).state == "queued"
    assert manager.cancel(second) is True
    assert manager.snapshot(second).state == "cancelled"
    gate.set()
    assert manager.wait(first, timeout=5).state == "done"
    time.sleep(0.05)
    assert ran == []


def test_failure_is_captured_and_worker_survives(manager):
    def broken(ctx: JobContext) -> None:
        raise ValueError("boom")

    def bad_data(ctx: JobContext) -> None:
        raise DataError("no such field", path="x.jsonl", line=3)

    a = manager.submit("broken", {}, broken)
    b = manager.submit("bad", {}, bad_data)
    c = manager.submit("fine", {}, lambda ctx: "ok")
    sa, sb, sc = (manager.wait(j, timeout=5) for j in (a, b, c))
    assert sa.state == "failed" and sa.error == "ValueError: boom"
    # The library's own errors keep their actionable message as is.
    assert sb.state == "failed" and sb.error == "x.jsonl, line 3: no such field"
    assert sc.state == "done" and sc.result == "ok"


def test_cancelled_error_raised_by_the_job_means_cancelled(manager):
    def stop(ctx: JobContext) -> None:
        raise CancelledError("stopped")

    assert manager.wait(manager.submit("stop", {}, stop), timeout=5).state == "cancelled"


def test_jobs_run_one_at_a_time_in_submission_order(manager):
    order, running, overlap = [], [0], []
    lock = threading.Lock()

    def make(i: int):
        def work(ctx: JobContext) -> None:
            with lock:
                running[0] += 1
                overlap.append(running[0])
            order.append(i)
            time.sleep(0.02)
            with lock:
                running[0] -= 1

        return work

    gate = threading.Event()
    blocker = manager.submit("block", {}, lambda ctx: gate.wait(5))
    ids = [manager.submit("step", {"i": i}, make(i)) for i in range(5)]
    _wait_until(lambda: manager.snapshot(blocker).state == "running")
    assert [manager.snapshot(j).state for j in ids] == ["queued"] * 5
    assert [j.id for j in manager.list_jobs(active_only=True)] == [*reversed(ids), blocker]
    gate.set()
    for j in ids:
        assert manager.wait(j, timeout=5).state == "done"
    assert order == list(range(5))
    assert max(overlap) == 1


def test_snapshots_are_consistent_under_concurrent_readers(manager):
    steps = 3000

    def work(ctx: JobContext) -> None:
        for i in range(steps):
            ctx.report(f"phase {i % 7}", i, steps, eta_s=float(i), message=str(i))

    problems: list[str] = []
    stop = threading.Event()
    job_id = manager.submit("race", {}, work)

    def read() -> None:
        while not stop.is_set():
            s = manager.snapshot(job_id)
            if s.state == "running" and s.message:
                i = int(s.message)
                if s.done != i or s.phase != f"phase {i % 7}" or s.eta_s != float(i):
                    problems.append(f"torn snapshot: {s}")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for r in readers:
        r.start()
    manager.wait(job_id, timeout=30)
    stop.set()
    for r in readers:
        r.join()
    assert problems == []
    final = manager.snapshot(job_id)
    assert final.state == "done" and final.done == final.total == steps


def test_snapshot_params_are_copies(manager):
    params = {"nested": {"a": 1}}
    job_id = manager.submit("copy", params, lambda ctx: None)
    params["nested"]["a"] = 2
    snap = manager.snapshot(job_id)
    snap.params["nested"]["a"] = 3
    assert manager.snapshot(job_id).params == {"nested": {"a": 1}}


def test_bad_arguments(manager):
    with pytest.raises(ConfigError, match="JSON"):
        manager.submit("x", {"f": object()}, lambda ctx: None)
    with pytest.raises(ConfigError, match="no job"):
        manager.snapshot("missing")


def test_runs_are_recorded_and_unfinished_runs_listed(tmp_path):
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        manager = JobManager(cache)
        try:
            done = manager.submit("score", {"rows": 3}, lambda ctx: None)
            manager.wait(done, timeout=5)
            failed = manager.submit("score", {"rows": 4}, lambda ctx: 1 / 0)
            manager.wait(failed, timeout=5)
            stored = {r["id"]: r for r in cache.list_runs()}
            assert stored[done]["state"] == "done" and stored[done]["params"] == {"rows": 3}
            assert stored[failed]["state"] == "failed"
            assert "ZeroDivisionError" in stored[failed]["message"]
            # A run left "running" by a server that stopped is offered for resuming.
            cache.save_run("old-run", "score", "running", {"rows": 5})
            assert [r["id"] for r in manager.unfinished_runs("score")] == ["old-run"]
            assert manager.unfinished_runs("map") == []
            manager.mark_run("old-run", "resumed", "resumed as job x")
            assert manager.unfinished_runs() == []
        finally:
            manager.shutdown()


def test_shutdown_stops_running_and_queued_jobs_and_leaves_them_resumable(tmp_path):
    cache = UtilityCache(tmp_path / "c.duckdb")
    manager = JobManager(cache)
    started = threading.Event()

    def spin(ctx: JobContext) -> None:
        started.set()
        while not ctx.cancelled():
            time.sleep(0.01)
        raise CancelledError("stopped")

    a = manager.submit("spin", {}, spin)
    b = manager.submit("later", {}, lambda ctx: None)
    assert started.wait(5)
    manager.shutdown(timeout=5)
    assert manager.snapshot(a).state == "interrupted"
    assert manager.snapshot(b).state == "cancelled"
    with pytest.raises(ConfigError, match="shut down"):
        manager.submit("x", {}, lambda ctx: None)
    # The next server on the same cache offers both: neither was stopped by a user.
    stored = {r["id"]: r["state"] for r in JobManager(cache).unfinished_runs()}
    assert stored == {a: "interrupted", b: "queued"}
    cache.close()


def test_a_job_cancelled_by_its_user_is_not_offered_again(tmp_path):
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        manager = JobManager(cache)
        started = threading.Event()

        def spin(ctx: JobContext) -> None:
            started.set()
            while not ctx.cancelled():
                time.sleep(0.01)
            raise CancelledError("stopped")

        job = manager.submit("spin", {}, spin)
        assert started.wait(5)
        manager.cancel(job)
        assert manager.wait(job, timeout=5).state == "cancelled"
        manager.shutdown(timeout=5)
        assert JobManager(cache).unfinished_runs() == []
