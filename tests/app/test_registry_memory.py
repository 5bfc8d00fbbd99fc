"""The app's process registry is bounded by bytes, not by a count: datasets (estimated from their
texts) and uploaded files' bytes, least recently used first out; what was dropped is loaded
again from its source when next used."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from delift_core.cache import UtilityCache
from delift_core.data.dataset import load_dataset
from delift_core.errors import ConfigError
from ui import memory, registry, workspaces


def _write(path, rows: int, chars: int):
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            record = {"instruction": f"Question {i}?", "input": "", "output": "a" * chars}
            handle.write(json.dumps(record) + "\n")
    return path


def _spec(path, offset: int = 0) -> dict:
    return {"kind": "path", "path": str(path), "offset": offset, "limit": None, "field_map": None}


def test_datasets_are_dropped_by_bytes_least_recently_used_first(tmp_path, monkeypatch):
    path = _write(tmp_path / "long.jsonl", rows=200, chars=5_000)  # about 1.2 MB each load
    monkeypatch.setenv("DELIFT_DATASET_MEMORY_MB", "3")
    first = registry.load_source(_spec(path, 0), None)
    size = memory.dataset_bytes(first)
    assert 1_000_000 < size < 1_500_000
    second = registry.load_source(_spec(path, 1), None)
    assert registry.load_source(_spec(path, 0), None) is first  # reused, and now most recent
    third = registry.load_source(_spec(path, 2), None)  # three offsets of one file: over 3 MB
    held = registry.memory_in_use()["datasets"]
    assert held == size + memory.dataset_bytes(third) <= 3 * 2**20
    # The least recently used (offset 1) went; its handle still works: it is loaded again.
    handle = registry.make_handle(_spec(path, 1), second)
    again = registry.dataset_for(handle, None)
    assert again is not second and again.hash == second.hash
    assert registry.memory_in_use()["datasets"] <= 3 * 2**20


def test_many_small_datasets_stay_when_they_fit(tmp_path):
    # A count limit (16 before) would drop data that takes almost no memory.
    path = _write(tmp_path / "short.jsonl", rows=30, chars=10)
    loaded = [registry.load_source(_spec(path, offset), None) for offset in range(25)]
    assert all(registry.load_source(_spec(path, i), None) is ds for i, ds in enumerate(loaded))


def test_the_size_estimate_is_close_to_the_memory_a_dataset_takes(tmp_path):
    for chars in (20, 2_000):
        path = _write(tmp_path / f"rows{chars}.jsonl", rows=2_000, chars=chars)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            ds = load_dataset(path)
            taken = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        estimate = memory.dataset_bytes(ds)
        assert 0.6 * taken < estimate < 1.6 * taken, (chars, estimate, taken)


def test_uploads_in_memory_are_bounded_and_read_back_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DELIFT_UPLOAD_MEMORY_MB", "1")
    blobs = [
        json.dumps({"instruction": f"q{i}", "output": "a" * 600_000}).encode() for i in range(3)
    ]
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        digests = [
            workspaces.store_upload(cache, "t", f"u{i}.jsonl", b) for i, b in enumerate(blobs)
        ]
        assert registry.memory_in_use()["uploads"] == len(blobs[2])  # one fits in 1 MB
        spec = {"kind": "upload", "name": "u0.jsonl", "digest": digests[0], "offset": 0}
        ds = registry.load_source(spec, cache)  # its bytes left memory: read from the cache
        assert ds.records[0].instruction == "q0"


def test_a_bad_memory_setting_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DELIFT_DATASET_MEMORY_MB", "lots")
    path = _write(tmp_path / "d.jsonl", rows=2, chars=5)
    with pytest.raises(ConfigError, match=r"\$DELIFT_DATASET_MEMORY_MB must be a number"):
        registry.load_source(_spec(path), None)
