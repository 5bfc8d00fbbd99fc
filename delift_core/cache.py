"""DuckDB store for utility scores, arrays (embeddings, projections, selections) and runs.

Scores are stored per pair, keyed by content hashes: a pair's value depends only on the two
records' text, the model and the template, so it is reused across datasets, subsets and modes
(a sparse run's pairs serve a later exact run). Rows are written as they are computed, so an
interrupted run resumes where it stopped.

One process at a time may hold the file; how it is held (waiting for another process, letting
it go while idle, errors naming the file) is `cache_file.py`'s. A damaged file (truncated,
overwritten in part, not a DuckDB file) gives a CacheError naming it and the way out, and is
left exactly as it is: opening and reading it never write to it. Opening finds a damaged header
or a truncated file; `verify` reads everything and finds damage anywhere, which `check_cache`
runs before long work.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from delift_core.cache_file import CACHE_ENV, LOCK_WAIT_S, CacheFile, cache_error

log = logging.getLogger(__name__)

# Every column of every table, read by `verify`.
_COLUMNS = {
    "baseline": ("scope", "target", "rms", "logp"),
    "pairs": ("scope", "example", "target", "rms", "logp"),
    "arrays": ("kind", "key", "data", "meta", "created"),
    "runs": ("id", "kind", "state", "params", "message", "created", "updated"),
}

# Every kind of array the `arrays` table holds, and what it is (keys: `array_key`). The app's own
# kinds are listed here too, so that this is the one list; the app may scope some by workspace
# ("selection:<workspace>", "upload:<workspace>").
ARRAY_KINDS: dict[str, str] = {
    "embedding": "unit-norm sentence embeddings of records (or, prefixed 'prompt', of prompts)",
    "projection": "2-D map coordinates of a set of embeddings",
    "stage": "a scored stage's matrices and answer scores",
    "stage-index": "a scored stage's description (meta only)",
    "eval-logprob": "an evaluation item's answer log-prob and token count",
    "eval-generation": "an evaluation item's generated answer (meta only)",
    "selection": "a saved selection's picked indices (app)",
    "upload": "an uploaded file's bytes (app)",
    "workspace": "when a workspace was last used (app)",
    "evaluation": "an evaluation's per-item results (app, Compare page)",
    "speed": "measured forward passes per second of a model (app)",
    "setting": "an app setting, e.g. resuming runs at start (app)",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline (
    scope VARCHAR, target VARCHAR, rms DOUBLE, logp DOUBLE, PRIMARY KEY (scope, target));
CREATE TABLE IF NOT EXISTS pairs (
    scope VARCHAR, example VARCHAR, target VARCHAR, rms DOUBLE, logp DOUBLE,
    PRIMARY KEY (scope, example, target));
CREATE TABLE IF NOT EXISTS arrays (
    kind VARCHAR, key VARCHAR, data BLOB, meta VARCHAR, created TIMESTAMP,
    PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS runs (
    id VARCHAR PRIMARY KEY, kind VARCHAR, state VARCHAR, params VARCHAR, message VARCHAR,
    created TIMESTAMP, updated TIMESTAMP);
"""


def default_cache_path() -> Path:
    """$DELIFT_CACHE, else $XDG_CACHE_HOME/delift/cache.duckdb, else ~/.cache/delift/..."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "delift" / "cache.duckdb"


def check_cache(path: str | os.PathLike | None = None, *, lock_wait: float = LOCK_WAIT_S) -> Path:
    """Open the cache file at `path` (default: default_cache_path()), read all of it (`verify`)
    and close it again: a CacheError now, before long work such as loading a model, when it is
    damaged or held by another process. A missing file passes (it is created when first
    opened). Returns the path checked."""
    target = Path(path) if path is not None else default_cache_path()
    if target.exists():
        with UtilityCache(target, lock_wait=lock_wait) as cache:
            cache.verify()
    return target


def scope_key(model_id: str, template_hash: str) -> str:
    """Everything besides the two texts that a pair's score depends on."""
    return f"{model_id}|{template_hash}"


def array_key(*parts: object) -> str:
    """The key of an array from its parts, joined by "|" (e.g. embedder id and content hash)."""
    return "|".join(str(p) for p in parts)


def read_through(
    cache: UtilityCache | None,
    kind: str,
    key_parts: Sequence[object],
    compute: Callable[[], np.ndarray],
    *,
    meta: dict | None = None,
    valid: Callable[[np.ndarray], bool] | None = None,
) -> np.ndarray:
    """`cache.get_or_compute(...)`, or just `compute()` without a cache."""
    if cache is None:
        return compute()
    return cache.get_or_compute(kind, key_parts, compute, meta=meta, valid=valid)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class UtilityCache(CacheFile):
    """The cache: utility scores, arrays and runs in one DuckDB file (see CacheFile for how the
    file is held).

    lock_wait: seconds to wait for another process holding the file before a CacheError.
    release_after: when set, close the file after that many seconds without use and open it
        again on the next use (waiting up to `lock_wait` if another process holds it then).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        lock_wait: float = LOCK_WAIT_S,
        release_after: float | None = None,
    ) -> None:
        target = Path(path) if path is not None else default_cache_path()
        super().__init__(target, lock_wait=lock_wait, release_after=release_after)
        try:
            with self._guard("open"):
                # Catalog only: on an existing file this writes nothing.
                self._con.execute(_SCHEMA).fetchall()
                self._check_length()
        except BaseException:
            self.close()
            raise

    def _check_length(self) -> None:
        """CacheError when the file is shorter than the blocks it says it uses (truncated)."""
        if not self.path.is_file() or Path(f"{self.path}.wal").exists():
            return  # blocks replayed from the log may not be in the file yet
        block, used = self._con.execute(
            "SELECT block_size, used_blocks FROM pragma_database_size()"
            " WHERE database_name = current_database()"
        ).fetchall()[0]
        length = self.path.stat().st_size
        if length < block * used:
            raise cache_error(
                self.path,
                duckdb.Error(f"truncated: {length} bytes hold fewer than its {used} data blocks"),
                "open",
            )

    def verify(self) -> None:
        """Read every stored value once: DuckDB checks each block's checksum as it reads it, so
        damage anywhere in the file is found now, not midway through a run. Reads the whole
        file (about two seconds per GB on a 2-core CPU); CacheError naming the file when a block
        is damaged."""
        with self._guard("read"):
            for table, columns in _COLUMNS.items():
                # A hash of every value: DuckDB answers min() or count() from its statistics
                # without reading the data.
                values = ", ".join(f"bit_xor(hash({column}))" for column in columns)
                self._con.execute(f"SELECT {values} FROM {table}").fetchall()

    # -- utility scores -------------------------------------------------------------------

    def load_baselines(self, scope: str, targets: Sequence[str]) -> dict[str, tuple[float, float]]:
        """Stored (rms, logp) of the no-example pass, by target hash."""
        if not targets:
            return {}
        table = pa.table({"h": pa.array(sorted(set(targets)), pa.string())})
        with self._guard("read"):
            self._con.register("want_t", table)
            try:
                rows = self._con.execute(
                    "SELECT target, rms, logp FROM baseline JOIN want_t ON target = h "
                    "WHERE scope = ?",
                    [scope],
                ).fetchall()
            finally:
                self._con.unregister("want_t")
        return {t: (r, lp) for t, r, lp in rows}

    def load_pairs(
        self, scope: str, examples: Sequence[str], targets: Sequence[str]
    ) -> dict[tuple[str, str], tuple[float, float]]:
        """Stored (rms, logp) with the example, by (example hash, target hash)."""
        if not examples or not targets:
            return {}
        want_e = pa.table({"h": pa.array(sorted(set(examples)), pa.string())})
        want_t = pa.table({"h": pa.array(sorted(set(targets)), pa.string())})
        with self._guard("read"):
            self._con.register("want_e", want_e)
            self._con.register("want_t", want_t)
            try:
                cols = self._con.execute(
                    "SELECT example, target, rms, logp FROM pairs "
                    "JOIN want_e ON example = want_e.h JOIN want_t ON target = want_t.h "
                    "WHERE scope = ?",
                    [scope],
                ).fetchnumpy()
            finally:
                self._con.unregister("want_e")
                self._con.unregister("want_t")
        keys = zip(cols["example"].tolist(), cols["target"].tolist(), strict=True)
        vals = zip(cols["rms"].tolist(), cols["logp"].tolist(), strict=True)
        return dict(zip(keys, vals, strict=True))

    def store_baselines(
        self, scope: str, targets: Sequence[str], rms: Sequence[float], logp: Sequence[float]
    ) -> None:
        table = pa.table(
            {
                "scope": pa.array([scope] * len(targets), pa.string()),
                "target": pa.array(list(targets), pa.string()),
                "rms": pa.array(np.asarray(rms, dtype=np.float64)),
                "logp": pa.array(np.asarray(logp, dtype=np.float64)),
            }
        )
        self._insert("baseline", table)

    def store_pairs(
        self,
        scope: str,
        examples: Sequence[str],
        targets: Sequence[str],
        rms: Sequence[float],
        logp: Sequence[float],
    ) -> None:
        table = pa.table(
            {
                "scope": pa.array([scope] * len(targets), pa.string()),
                "example": pa.array(list(examples), pa.string()),
                "target": pa.array(list(targets), pa.string()),
                "rms": pa.array(np.asarray(rms, dtype=np.float64)),
                "logp": pa.array(np.asarray(logp, dtype=np.float64)),
            }
        )
        self._insert("pairs", table)

    def _insert(self, name: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        with self._guard("write to"):
            self._con.register("incoming", table)
            try:
                # Several writers may compute the same pair; the first stored value wins.
                self._con.execute(f"INSERT OR IGNORE INTO {name} SELECT * FROM incoming").fetchall()
            finally:
                self._con.unregister("incoming")

    def count_pairs(self, scope: str | None = None) -> int:
        with self._guard("read"):
            if scope is None:
                return self._con.execute("SELECT count(*) FROM pairs").fetchall()[0][0]
            return self._con.execute(
                "SELECT count(*) FROM pairs WHERE scope = ?", [scope]
            ).fetchall()[0][0]

    # -- arrays (embeddings, projections, selections) -------------------------------------

    def get_or_compute(
        self,
        kind: str,
        key_parts: Sequence[object],
        compute: Callable[[], np.ndarray],
        *,
        meta: dict | None = None,
        valid: Callable[[np.ndarray], bool] | None = None,
    ) -> np.ndarray:
        """The array stored under (kind, array_key(*key_parts)), or `compute()` stored there.
        A stored array that `valid` rejects is computed again and replaced."""
        key = array_key(*key_parts)
        stored = self.get_array(kind, key)
        if stored is not None and (valid is None or valid(stored)):
            return stored
        value = compute()
        self.put_array(kind, key, value, meta)
        return value

    def put_array(self, kind: str, key: str, array: np.ndarray, meta: dict | None = None) -> None:
        """Store a numeric array (npy bytes, never pickled) under (kind, key)."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        with self._guard("write to"):
            self._con.execute(
                "INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?, ?)",
                [kind, key, buf.getvalue(), json.dumps(meta or {}), _now()],
            ).fetchall()

    def get_array(self, kind: str, key: str) -> np.ndarray | None:
        with self._guard("read"):
            row = self._con.execute(
                "SELECT data FROM arrays WHERE kind = ? AND key = ?", [kind, key]
            ).fetchall()
        if not row:
            return None
        return np.load(io.BytesIO(row[0][0]), allow_pickle=False)

    def get_meta(self, kind: str, key: str) -> dict | None:
        with self._guard("read"):
            row = self._con.execute(
                "SELECT meta FROM arrays WHERE kind = ? AND key = ?", [kind, key]
            ).fetchall()
        return json.loads(row[0][0]) if row else None

    def delete_array(self, kind: str, key: str) -> None:
        """Remove the array stored under (kind, key), if any."""
        with self._guard("write to"):
            self._con.execute(
                "DELETE FROM arrays WHERE kind = ? AND key = ?", [kind, key]
            ).fetchall()

    def list_arrays(self, kind: str) -> list[tuple[str, dict, datetime]]:
        """(key, meta, created) of every array of a kind, newest first."""
        with self._guard("read"):
            rows = self._con.execute(
                "SELECT key, meta, created FROM arrays WHERE kind = ? ORDER BY created DESC",
                [kind],
            ).fetchall()
        return [(k, json.loads(m), c) for k, m, c in rows]

    # -- runs (jobs) ----------------------------------------------------------------------

    def save_run(
        self, run_id: str, kind: str, state: str, params: dict[str, Any], message: str = ""
    ) -> None:
        with self._guard("write to"):
            now = _now()
            self._con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "state = excluded.state, message = excluded.message, updated = excluded.updated",
                [run_id, kind, state, json.dumps(params), message, now, now],
            ).fetchall()

    def list_runs(self, state: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT id, kind, state, params, message, created, updated FROM runs"
        args: list[Any] = []
        if state is not None:
            query += " WHERE state = ?"
            args.append(state)
        with self._guard("read"):
            rows = self._con.execute(query + " ORDER BY created DESC", args).fetchall()
        keys = ("id", "kind", "state", "params", "message", "created", "updated")
        out = [dict(zip(keys, row, strict=True)) for row in rows]
        for run in out:
            run["params"] = json.loads(run["params"])
        return out
