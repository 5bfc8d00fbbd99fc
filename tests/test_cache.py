"""The DuckDB cache: round trips, first write wins, threads, a file locked by another process."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from delift_core.cache import UtilityCache, default_cache_path
from delift_core.errors import CacheError


def test_pairs_and_baselines_round_trip(tmp_path):
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        cache.store_pairs("s", ["e1", "e2"], ["t1", "t1"], [0.1, 0.2], [-1.0, -2.0])
        cache.store_pairs("s", ["e1"], ["t1"], [9.0], [9.0])  # duplicate: first value stays
        cache.store_baselines("s", ["t1"], [0.5], [-3.0])
        assert cache.load_pairs("s", ["e1", "e2"], ["t1"]) == {
            ("e1", "t1"): (0.1, -1.0),
            ("e2", "t1"): (0.2, -2.0),
        }
        assert cache.load_pairs("other", ["e1"], ["t1"]) == {}
        assert cache.load_baselines("s", ["t1", "t2"]) == {"t1": (0.5, -3.0)}
    with UtilityCache(tmp_path / "c.duckdb") as again:
        assert again.count_pairs("s") == 2


def test_arrays_are_never_pickled(tmp_path):
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        cache.put_array("k", "x", np.arange(6, dtype=np.float32).reshape(2, 3), {"a": 1})
        np.testing.assert_array_equal(cache.get_array("k", "x"), np.arange(6).reshape(2, 3))
        assert cache.get_meta("k", "x") == {"a": 1}
        assert cache.get_array("k", "missing") is None
        with pytest.raises(ValueError):
            cache.put_array("k", "obj", np.array([{"a": 1}], dtype=object))


def test_concurrent_writers_and_readers(tmp_path):
    cache = UtilityCache(tmp_path / "c.duckdb")
    errors = []

    def writer(w: int) -> None:
        try:
            for b in range(20):
                ex = [f"e{w}-{b}-{i}" for i in range(10)]
                cache.store_pairs("s", ex, ["t"] * 10, np.ones(10), np.zeros(10))
                cache.load_pairs("s", ex, ["t"])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cache.count_pairs("s") == 4 * 20 * 10
    cache.close()


def test_file_held_by_another_process_is_a_clear_error(tmp_path):
    path = tmp_path / "c.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,sys,time; c=duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(CacheError, match="in use by another process"):
            UtilityCache(path, lock_wait=0.5)
    finally:
        holder.kill()
        holder.wait()


def test_default_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DELIFT_CACHE", str(tmp_path / "x.duckdb"))
    assert default_cache_path() == tmp_path / "x.duckdb"


def test_get_or_compute_reads_through_and_recomputes_what_is_rejected(tmp_path):
    from delift_core.cache import array_key, read_through

    calls = []

    def compute():
        calls.append(1)
        return np.arange(3, dtype=np.float32)

    with UtilityCache(tmp_path / "c.duckdb") as cache:
        first = cache.get_or_compute("embedding", ("m", "abc"), compute, meta={"n": 3})
        again = cache.get_or_compute("embedding", ("m", "abc"), compute)
        assert len(calls) == 1 and np.array_equal(first, again)
        assert cache.get_meta("embedding", array_key("m", "abc")) == {"n": 3}
        # a stored array the caller rejects (e.g. the wrong length) is computed again
        cache.get_or_compute("embedding", ("m", "abc"), compute, valid=lambda a: len(a) == 4)
        assert len(calls) == 2
    assert array_key("m", "abc") == "m|abc"  # the layout of keys stored before
    assert np.array_equal(read_through(None, "embedding", ("x",), compute), np.arange(3))
    assert len(calls) == 3
