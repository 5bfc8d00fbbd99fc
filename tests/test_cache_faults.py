"""A damaged or busy cache: one clear CacheError, the file left as it is, found before the model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from delift_core.cache import UtilityCache, check_cache
from delift_core.cli import main
from delift_core.errors import CacheError

N_PAIRS = 20_000


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory) -> Path:
    """A cache holding a few MB of pairs, an array and a run (deterministic content)."""
    path = tmp_path_factory.mktemp("good") / "cache.duckdb"
    rng = np.random.default_rng(0)
    with UtilityCache(path) as cache:
        examples = [f"e{i:05d}" for i in range(N_PAIRS)]
        targets = [f"t{i % 97:03d}" for i in range(N_PAIRS)]
        cache.store_pairs("s", examples, targets, rng.random(N_PAIRS), rng.random(N_PAIRS))
        cache.store_baselines("s", ["t001"], [0.5], [-3.0])
        cache.put_array("k", "x", np.arange(1000.0))
        cache.save_run("r1", "score", "done", {"rows": 3})
    return path


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _overwritten_midway(data: bytes) -> bytes:
    # A megabyte of garbage in the middle: several of DuckDB's 256 KiB blocks.
    middle = len(data) // 2 - 512 * 1024
    return data[:middle] + bytes(range(256)) * 4096 + data[middle + 1024 * 1024 :]


def _not_duckdb(data: bytes) -> bytes:
    return b"id,score\n" + b"a,1\n" * 1000


DAMAGE = {"truncated": _truncated, "garbage": _overwritten_midway, "not_duckdb": _not_duckdb}


def _damaged_copy(good: Path, folder: Path, kind: str) -> Path:
    path = folder / f"{kind}.duckdb"
    path.write_bytes(DAMAGE[kind](good.read_bytes()))
    return path


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_cache_is_one_clear_error_and_stays_as_it_was(good_cache, tmp_path, kind):
    path = _damaged_copy(good_cache, tmp_path, kind)
    before = path.read_bytes()
    with pytest.raises(CacheError) as caught:
        check_cache(path)
    message = str(caught.value)
    assert str(path) in message and "damaged" in message
    assert "Move it aside" in message and "a new, empty cache is then started" in message
    assert "Traceback" not in message and "\n" not in message
    # Opened, read and closed: not one byte changed, and no WAL or other file beside it.
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("kind", ["truncated", "not_duckdb"])
def test_opening_alone_finds_a_bad_header_or_a_truncated_file(good_cache, tmp_path, kind):
    path = _damaged_copy(good_cache, tmp_path, kind)
    before = path.read_bytes()
    with pytest.raises(CacheError, match="damaged"):
        UtilityCache(path)
    assert path.read_bytes() == before


def test_damage_met_while_reading_is_a_cache_error_too(good_cache, tmp_path):
    path = _damaged_copy(good_cache, tmp_path, "garbage")
    before = path.read_bytes()
    cache = UtilityCache(path)  # the header is fine: the damage is in the data
    try:
        with pytest.raises(CacheError, match="damaged"):
            cache.load_pairs("s", [f"e{i:05d}" for i in range(N_PAIRS)], ["t001"])
    finally:
        cache.close()
    assert path.read_bytes() == before


def test_a_healthy_cache_passes_the_check_unchanged(good_cache):
    before = good_cache.read_bytes()
    assert check_cache(good_cache) == good_cache
    assert good_cache.read_bytes() == before


def test_check_of_a_missing_cache_creates_nothing(tmp_path):
    check_cache(tmp_path / "new" / "cache.duckdb")
    assert list(tmp_path.iterdir()) == []


HOLDER = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
    " time.sleep(float(sys.argv[2]))"
)


def _hold(path: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_waits_a_bounded_time_then_gets_a_clear_error(tmp_path):
    path = tmp_path / "c.duckdb"
    holder = _hold(path, 60)
    try:
        started = time.monotonic()
        with pytest.raises(CacheError) as caught:
            UtilityCache(path, lock_wait=1.0)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert 1.0 <= waited < 10.0
    message = str(caught.value)
    assert str(path) in message and "in use by another process" in message
    assert f"process {holder.pid}" in message and "waited 1." in message
    assert "--cache" in message and "IO Error" not in message


def test_a_lock_released_within_the_wait_is_taken(tmp_path):
    path = tmp_path / "c.duckdb"
    holder = _hold(path, 1.0)
    try:
        with UtilityCache(path, lock_wait=30.0) as cache:
            assert cache.count_pairs() == 0
    finally:
        holder.wait()


@pytest.mark.parametrize("command", ["score", "select", "eval"])
def test_cli_checks_the_cache_before_loading_the_model(
    good_cache, tmp_path, monkeypatch, capsys, command
):
    from delift_core.cli import scoring

    loaded = []

    def never(*args, **kwargs):
        loaded.append(args)
        raise AssertionError("the model must not load before the cache is checked")

    monkeypatch.setattr(scoring, "load_causal_lm", never)
    monkeypatch.setattr(scoring, "load_embedder", never)
    cache = _damaged_copy(good_cache, tmp_path, "garbage")
    before = cache.read_bytes()
    pool = tmp_path / "pool.jsonl"
    rows = [{"instruction": f"Task {i}", "input": "", "output": f"{i}"} for i in range(4)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / {"score": "scores", "select": "subset.jsonl", "eval": "report.json"}[command]
    test = tmp_path / "test.jsonl"
    test.write_text(
        "".join(json.dumps({**r, "instruction": f"Test {r['output']}"}) + "\n" for r in rows)
    )
    extra = ["--test", str(test)] if command == "eval" else []
    code = main([command, str(pool), "--out", str(out), "--cache", str(cache), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and loaded == []
    assert len(err) == 1 and str(cache) in err[0] and "damaged" in err[0]
    assert cache.read_bytes() == before and not out.exists()
