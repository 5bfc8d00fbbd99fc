"""The app's cache lets the file go when idle, so another process (the CLI) can use it; a
process that holds it makes the other wait, then fail with a clear CacheError."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from delift_core.cache import UtilityCache
from delift_core.errors import CacheError

# Another process opens the cache, checks what the first one wrote, and writes its own array.
OTHER = """
import sys
import numpy as np
from delift_core.cache import UtilityCache
from delift_core.errors import CacheError
try:
    with UtilityCache(sys.argv[1], lock_wait=float(sys.argv[2])) as cache:
        assert cache.get_array("embeddings", "first").tolist() == [1.0, 2.0]
        cache.put_array("embeddings", "second", np.array([3.0]))
except CacheError as exc:
    print(exc)
    sys.exit(3)
"""


def _other_process(path, lock_wait: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", OTHER, str(path), str(lock_wait)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _wait_released(cache: UtilityCache, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while cache.held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not cache.held, "the idle cache was never released"


def test_idle_cache_lets_another_process_in_and_opens_again(tmp_path):
    path = tmp_path / "c.duckdb"
    cache = UtilityCache(path, release_after=0.2)
    try:
        cache.put_array("embeddings", "first", np.array([1.0, 2.0]))
        _wait_released(cache)
        done = _other_process(path, lock_wait=20)
        assert done.returncode == 0, done.stdout + done.stderr
        # Opened again on the next use, and it sees what the other process wrote.
        assert cache.get_array("embeddings", "second").tolist() == [3.0]
        assert cache.held
    finally:
        cache.close()
    assert not cache.held
    with pytest.raises(CacheError, match="closed"):
        cache.get_array("embeddings", "first")


def test_a_held_cache_makes_the_other_process_wait_then_fail_clearly(tmp_path):
    path = tmp_path / "c.duckdb"
    with UtilityCache(path) as cache:  # no release_after: the CLI's way, held for the run
        cache.put_array("embeddings", "first", np.array([1.0, 2.0]))
        done = _other_process(path, lock_wait=0.5)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "is in use by another process" in done.stdout
    assert "waited" in done.stdout


def test_use_keeps_the_cache_held(tmp_path):
    """Each use restarts the idle clock: a cache used more often than release_after stays open
    (no reopen per call)."""
    cache = UtilityCache(tmp_path / "c.duckdb", release_after=3.0)
    try:
        for i in range(8):
            cache.put_array("embeddings", f"k{i}", np.array([float(i)]))
            time.sleep(0.05)
            assert cache.held
        _wait_released(cache)
    finally:
        cache.close()


def test_acquire_reopens_a_released_cache(tmp_path):
    cache = UtilityCache(tmp_path / "c.duckdb", release_after=0.1)
    try:
        _wait_released(cache)
        cache.acquire()
        assert cache.held
    finally:
        cache.close()
