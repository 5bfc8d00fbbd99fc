"""The cache's DuckDB file: one connection per process shared by its threads, waiting for
another process that holds the file, errors that name the file and the way out, and letting the
file go while idle (`release_after`) so that another process can use it meanwhile.

DuckDB lets one process hold a file at a time. What is stored, and how, is `cache.py`'s.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import duckdb

from delift_core.errors import CacheError

log = logging.getLogger(__name__)

CACHE_ENV = "DELIFT_CACHE"
LOCK_WAIT_S = 10.0  # how long to wait for another process to release the file

_LOCKED = re.compile(r"could not set lock|conflicting lock", re.I)
_PID = re.compile(r"\(PID (\d+)\)")
_DAMAGED = (
    "corrupt",
    "checksum",
    "could not read enough bytes",
    "not a valid duckdb database",
    "truncated",
)


def cache_error(path: Path, exc: BaseException, action: str, waited: float = 0.0) -> CacheError:
    """The CacheError for a DuckDB (or OS) error met trying to `action` ("open", "read",
    "write to") the cache at `path`: held by another process, damaged, or another fault."""
    text = str(exc)
    detail = text.splitlines()[0][:300] if text else type(exc).__name__
    if _LOCKED.search(text):
        pid = _PID.search(text)
        holder = f" (process {pid.group(1)})" if pid else ""
        return CacheError(
            f"the cache {path} is in use by another process{holder}; waited {waited:.1f} s for"
            f" it. Let that run finish or stop it, or choose another file with --cache or"
            f" ${CACHE_ENV}"
        )
    if any(marker in text.lower() for marker in _DAMAGED):
        return CacheError(
            f"the cache {path} is damaged ({detail}). It was left as it is. Move it aside (e.g."
            f" mv {path} {path}.broken): a new, empty cache is then started at that path and"
            f" scores are computed again. Or choose another file with --cache or ${CACHE_ENV}"
        )
    return CacheError(f"cannot {action} the cache {path}: {detail}")


class CacheFile:
    """A DuckDB file shared by the threads of one process (one connection, one lock).

    lock_wait: seconds to wait for another process holding the file before a CacheError.
    release_after: when set, close the file after that many seconds without use and open it
        again on the next use (waiting up to `lock_wait` if another process holds it then).
    """

    def __init__(
        self, path: Path, *, lock_wait: float = LOCK_WAIT_S, release_after: float | None = None
    ) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._lock_wait = lock_wait
        self._release_after = release_after
        self._depth = 0  # nested _guard blocks in progress
        self._last_used = time.monotonic()
        self._timer: threading.Timer | None = None
        self._closed = False
        self._con: duckdb.DuckDBPyConnection | None = self._open()

    @property
    def held(self) -> bool:
        """True while this process holds the file open."""
        return self._con is not None

    def acquire(self) -> None:
        """Hold the file again if it was let go while idle (waiting up to `lock_wait` for
        another process); a CacheError naming the file if it cannot be had."""
        with self._guard("open"):
            pass

    def _open(self) -> duckdb.DuckDBPyConnection:
        started = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._connect(self._lock_wait)
        except (duckdb.Error, OSError) as exc:
            raise cache_error(self.path, exc, "open", time.monotonic() - started) from exc

    def _connect(self, lock_wait: float) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + max(0.0, lock_wait)
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                left = deadline - time.monotonic()
                if not _LOCKED.search(str(exc)) or left <= 0:
                    raise
                log.info("cache %s is held by another process; waiting", self.path)
                time.sleep(min(0.25, left))

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """DuckDB errors inside become CacheErrors naming the file (under the connection lock).
        Opens the file again if it was released while idle."""
        with self._lock:
            if self._closed:
                raise CacheError(f"the cache {self.path} was closed")
            if self._con is None:
                self._con = self._open()
                log.debug("cache %s opened again", self.path)
            self._depth += 1
            try:
                yield
            except duckdb.Error as exc:
                raise cache_error(self.path, exc, action) from exc
            finally:
                self._depth -= 1
                self._last_used = time.monotonic()
                if self._depth == 0:
                    self._schedule_release()

    def _schedule_release(self) -> None:
        # A timer thread rather than a job: it only closes a connection, never runs user work.
        if self._release_after is None or self._timer is not None:
            return
        self._timer = threading.Timer(self._release_after, self._release_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _release_if_idle(self) -> None:
        with self._lock:
            self._timer = None
            if self._con is None or self._closed or self._release_after is None:
                return
            if self._depth or time.monotonic() - self._last_used < self._release_after:
                self._schedule_release()  # used meanwhile: look again later
                return
            self._con.close()
            self._con = None
            log.debug("cache %s released after %.1f s idle", self.path, self._release_after)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
