"""Background jobs: one worker thread runs submitted jobs one at a time, in order.

This module is the only place the project starts threads. Scoring saturates the CPU, so jobs are
serialised: a second job waits in the visible "queued" state. Readers (the web app's script
threads) see a job through `snapshot()`, a frozen copy taken under the manager's lock, so the
phase, counts and message they read always belong together. The job function runs in the worker
and talks back only through its `JobContext` (progress, cancel flag); it never touches the UI.

When a cache is given, each state change is written to the cache's `runs` table, so that after a
restart the app can list runs that never finished and resume them (resuming means submitting the
same parameters again: the utility cache skips every row already computed).
"""

from __future__ import annotations

import atexit
import copy
import json
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from delift_core.cache import UtilityCache
from delift_core.errors import CacheError, CancelledError, ConfigError, DeliftError

log = logging.getLogger(__name__)

STATES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE_STATES: tuple[str, ...] = ("queued", "running")
# Stored states of runs a stopped server left unfinished ("interrupted": stopped by shutdown).
UNFINISHED_STATES: tuple[str, ...] = (*ACTIVE_STATES, "interrupted")
# Finished jobs kept in memory for listing; older ones are dropped (the runs table keeps them).
KEEP_FINISHED = 200


@dataclass(frozen=True)
class JobState:
    """A consistent copy of one job.

    state: queued | running | done | failed | cancelled | interrupted (stopped by shutdown).
    done/total: units of work of the current phase (for scoring: forward passes). eta_s:
    estimated seconds left in the phase, or None.
    error: the failure message (state "failed"); result: what the job function returned.
    created/started/finished: time.time() stamps (None until reached).
    """

    id: str
    kind: str
    params: dict[str, Any]
    state: str
    phase: str
    done: int
    total: int
    eta_s: float | None
    message: str
    error: str | None
    result: Any
    created: float
    started: float | None
    finished: float | None
    cancel_requested: bool

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.state in ACTIVE_STATES

    @property
    def fraction(self) -> float:
        """done / total of the current phase, in [0, 1] (0 when the total is unknown)."""
        if self.total <= 0:
            return 0.0
        return min(1.0, max(0.0, self.done / self.total))

    @property
    def elapsed_s(self) -> float:
        """Seconds since the job started (0 while queued)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started


JobFn = Callable[["JobContext"], Any]


@dataclass
class _Job:
    """Mutable record of a job; only touched under the manager's lock."""

    id: str
    kind: str
    params: dict[str, Any]
    fn: JobFn | None
    state: str = "queued"
    phase: str = ""
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str = ""
    error: str | None = None
    result: Any = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    cancel_requested: bool = False

    def freeze(self) -> JobState:
        return JobState(
            id=self.id,
            kind=self.kind,
            params=copy.deepcopy(self.params),
            state=self.state,
            phase=self.phase,
            done=self.done,
            total=self.total,
            eta_s=self.eta_s,
            message=self.message,
            error=self.error,
            result=self.result,
            created=self.created,
            started=self.started,
            finished=self.finished,
            cancel_requested=self.cancel_requested,
        )


class JobContext:
    """What a running job function may use: progress reports and the cancel flag."""

    def __init__(self, manager: JobManager, job_id: str) -> None:
        self._manager = manager
        self.job_id = job_id

    def report(
        self,
        phase: str | None = None,
        done: int | None = None,
        total: int | None = None,
        eta_s: float | None = None,
        message: str | None = None,
    ) -> None:
        """Update progress; fields left as None keep their value, except eta_s, which is reset
        whenever done or total is given (an ETA belongs to the counts it came with)."""
        self._manager._update(self.job_id, phase, done, total, eta_s, message)

    def cancelled(self) -> bool:
        """True once cancel() was called for this job; the function should stop soon."""
        return self._manager._cancel_requested(self.job_id)

    def raise_if_cancelled(self) -> None:
        """Raise CancelledError when cancel was requested."""
        if self.cancelled():
            raise CancelledError("the job was cancelled")


class JobManager:
    """Runs submitted jobs one at a time on a single worker thread (started on first submit)."""

    def __init__(self, cache: UtilityCache | None = None) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._interrupted: set[str] = set()  # running jobs stopped by shutdown(), not a user

    # -- submitting and reading ----------------------------------------------------------

    def submit(self, kind: str, params: dict[str, Any], fn: JobFn) -> str:
        """Queue `fn(context)` and return the job id. params must be JSON-serialisable (they
        are stored in the runs table so that the job can be resubmitted after a restart)."""
        if not kind:
            raise ConfigError("a job needs a kind")
        try:
            json.dumps(params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"job parameters must be JSON-serialisable: {exc}") from exc
        job = _Job(
            id=uuid.uuid4().hex[:12],
            kind=kind,
            params=copy.deepcopy(params),
            fn=fn,
            created=time.time(),
        )
        if self._stopping:
            raise ConfigError("the job manager is shut down")
        # Recorded before the worker can see the job, so the stored states stay in order.
        self._record(job.id, kind, "queued", params)
        with self._lock:
            if self._stopping:
                raise ConfigError("the job manager is shut down")
            self._jobs[job.id] = job
            self._queue.append(job.id)
            self._ensure_worker()
            self._wake.notify_all()
        log.info("job %s (%s) queued", job.id, kind)
        return job.id

    def snapshot(self, job_id: str) -> JobState:
        """A frozen copy of the job; ConfigError for an unknown id."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise ConfigError(f"no job with id {job_id!r} in this process")
            return job.freeze()

    def list_jobs(self, kind: str | None = None, active_only: bool = False) -> list[JobState]:
        """Snapshots of known jobs, newest first, optionally of one kind or only active ones."""
        with self._lock:
            jobs = [
                j.freeze()
                for j in reversed(self._jobs.values())
                if (kind is None or j.kind == kind)
                and (not active_only or j.state in ACTIVE_STATES)
            ]
        return jobs

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop. A queued job is cancelled at once; a running one when its function
        next checks `cancelled()`. Returns False when the job had already finished."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise ConfigError(f"no job with id {job_id!r} in this process")
            if job.state == "queued":
                self._queue.remove(job_id)
                job.state, job.finished, job.cancel_requested = "cancelled", time.time(), True
                job.fn = None
                kind, params = job.kind, job.params
            elif job.state == "running":
                job.cancel_requested = True
                log.info("job %s: cancel requested", job_id)
                return True
            else:
                return False
        self._record(job_id, kind, "cancelled", params, "cancelled before it started")
        return True

    def wait(self, job_id: str, timeout: float | None = None) -> JobState:
        """Block until the job has finished or `timeout` seconds passed; returns its snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                job = self._jobs.get(job_id)
                if job is None:
                    raise ConfigError(f"no job with id {job_id!r} in this process")
                if job.state not in ACTIVE_STATES:
                    return job.freeze()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return job.freeze()
                self._wake.wait(timeout=left if left is not None else 1.0)

    def unfinished_runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Runs stored as queued/running that this process does not know: left over from a
        previous server that stopped. Each is {id, kind, state, params, message, created, ...}."""
        if self.cache is None:
            return []
        try:
            runs = self.cache.list_runs()
        except CacheError as exc:
            log.warning("cannot read stored runs: %s", exc)
            return []
        with self._lock:
            known = set(self._jobs)
        return [
            r
            for r in runs
            if r["state"] in UNFINISHED_STATES
            and r["id"] not in known
            and (kind is None or r["kind"] == kind)
        ]

    def mark_run(self, run_id: str, state: str, message: str = "") -> None:
        """Set the stored state of a left-over run (e.g. "resumed" or "dismissed")."""
        if self.cache is None:
            return
        for run in self.cache.list_runs():
            if run["id"] == run_id:
                self._record(run_id, run["kind"], state, run["params"], message)
                return
        raise ConfigError(f"no stored run with id {run_id!r}")

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every job, stop the worker and wait up to `timeout` seconds for it. Stopped jobs
        stay unfinished in the runs table (queued, or "interrupted" when running), so that
        `unfinished_runs` offers them after a restart."""
        with self._lock:
            self._stopping = True
            queued = list(self._queue)
            self._queue.clear()
            for job_id in queued:
                job = self._jobs[job_id]
                job.state, job.finished, job.fn = "cancelled", time.time(), None
            for job in self._jobs.values():
                if job.state == "running":
                    job.cancel_requested = True
                    self._interrupted.add(job.id)
            self._wake.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(timeout)

    # -- worker --------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        # Called with the lock held.
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="delift-jobs", daemon=True)
            self._worker.start()
            _live_managers.add(self)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if not self._queue:
                    return
                job = self._jobs[self._queue.popleft()]
                job.state, job.started = "running", time.time()
                fn, kind, params = job.fn, job.kind, job.params
                self._wake.notify_all()
            self._record(job.id, kind, "running", params)
            self._run(job.id, kind, params, fn)

    def _run(self, job_id: str, kind: str, params: dict[str, Any], fn: JobFn | None) -> None:
        state, error, result = "done", None, None
        try:
            assert fn is not None
            result = fn(JobContext(self, job_id))
        except CancelledError as exc:
            state, error = "cancelled", str(exc)
            with self._lock:
                if job_id in self._interrupted:  # the server stops: resumable after a restart
                    state, error = "interrupted", "the server stopped during the run"
        except DeliftError as exc:
            state, error = "failed", str(exc)
            log.warning("job %s (%s) failed: %s", job_id, kind, exc)
        except Exception as exc:  # a job's bug must not kill the worker
            state, error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("job %s (%s) failed", job_id, kind)
        with self._lock:
            job = self._jobs[job_id]
            job.state, job.error, job.result = state, error, result
            job.finished, job.eta_s, job.fn = time.time(), None, None
            if state == "done" and job.total:
                job.done = job.total
            message = error or job.message
            self._forget_old()
            self._wake.notify_all()
        self._record(job_id, kind, state, params, message)
        log.info("job %s (%s) %s", job_id, kind, state)

    def _forget_old(self) -> None:
        # Called with the lock held.
        finished = [j.id for j in self._jobs.values() if j.state not in ACTIVE_STATES]
        for job_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job_id]

    def _update(
        self,
        job_id: str,
        phase: str | None,
        done: int | None,
        total: int | None,
        eta_s: float | None,
        message: str | None,
    ) -> None:
        with self._lock:
            job = self._jobs[job_id]
            if phase is not None:
                job.phase = phase
            if done is not None or total is not None:
                job.eta_s = None
            if done is not None:
                job.done = int(done)
            if total is not None:
                job.total = int(total)
            if eta_s is not None:
                job.eta_s = float(eta_s)
            if message is not None:
                job.message = message

    def _cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            return self._jobs[job_id].cancel_requested

    def _record(
        self, job_id: str, kind: str, state: str, params: dict[str, Any], message: str = ""
    ) -> None:
        if self.cache is None:
            return
        try:
            self.cache.save_run(job_id, kind, state, params, message)
        except CacheError as exc:
            log.warning("cannot record job %s in the cache: %s", job_id, exc)


# Managers with a worker, stopped at interpreter exit: a job killed in the middle of a native
# call (a model forward pass) would otherwise abort the process instead of exiting cleanly.
_live_managers: weakref.WeakSet[JobManager] = weakref.WeakSet()


@atexit.register
def _stop_all_managers() -> None:
    for manager in list(_live_managers):
        manager.shutdown(timeout=10.0)
