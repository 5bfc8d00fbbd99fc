"""DuckDB store for utility scores, arrays (embeddings, projections, selections) and runs.

Scores are stored per pair, keyed by content hashes: a pair's value depends only on the two
records' text, the model and the template, so it is reused across datasets, subsets and modes
(a sparse run's pairs serve a later exact run). Rows are written as they are computed, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from delift_core.errors import CacheError

log = logging.getLogger(__name__)

CACHE_ENV = "DELIFT_CACHE"

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


def scope_key(model_id: str, template_hash: str) -> str:
    """Everything besides the two texts that a pair's score depends on."""
    return f"{model_id}|{template_hash}"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class UtilityCache:
    """A DuckDB file shared by the threads of one process (one connection, one lock)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(self.path))
            self._con.execute(_SCHEMA).fetchall()
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise CacheError(
                    f"the cache {self.path} is in use by another process; close it or "
                    f"choose another file with --cache or ${CACHE_ENV}"
                ) from exc
            raise CacheError(f"cannot open the cache {self.path}: {exc}") from exc
        except (duckdb.Error, OSError) as exc:
            raise CacheError(f"cannot open the cache {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> UtilityCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- utility scores -------------------------------------------------------------------

    def load_baselines(self, scope: str, targets: Sequence[str]) -> dict[str, tuple[float, float]]:
        """Stored (rms, logp) of the no-example pass, by target hash."""
        if not targets:
            return {}
        table = pa.table({"h": pa.array(sorted(set(targets)), pa.string())})
        with self._lock:
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
        with self._lock:
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
        with self._lock:
            self._con.register("incoming", table)
            try:
                # Several writers may compute the same pair; the first stored value wins.
                self._con.execute(f"INSERT OR IGNORE INTO {name} SELECT * FROM incoming").fetchall()
            except duckdb.Error as exc:
                raise CacheError(f"cannot write to the cache {self.path}: {exc}") from exc
            finally:
                self._con.unregister("incoming")

    def count_pairs(self, scope: str | None = None) -> int:
        with self._lock:
            if scope is None:
                return self._con.execute("SELECT count(*) FROM pairs").fetchall()[0][0]
            return self._con.execute(
                "SELECT count(*) FROM pairs WHERE scope = ?", [scope]
            ).fetchall()[0][0]

    # -- arrays (embeddings, projections, selections) -------------------------------------

    def put_array(self, kind: str, key: str, array: np.ndarray, meta: dict | None = None) -> None:
        """Store a numeric array (npy bytes, never pickled) under (kind, key)."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        with self._lock:
            try:
                self._con.execute(
                    "INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?, ?)",
                    [kind, key, buf.getvalue(), json.dumps(meta or {}), _now()],
                ).fetchall()
            except duckdb.Error as exc:
                raise CacheError(f"cannot write to the cache {self.path}: {exc}") from exc

    def get_array(self, kind: str, key: str) -> np.ndarray | None:
        with self._lock:
            row = self._con.execute(
                "SELECT data FROM arrays WHERE kind = ? AND key = ?", [kind, key]
            ).fetchall()
        if not row:
            return None
        return np.load(io.BytesIO(row[0][0]), allow_pickle=False)

    def get_meta(self, kind: str, key: str) -> dict | None:
        with self._lock:
            row = self._con.execute(
                "SELECT meta FROM arrays WHERE kind = ? AND key = ?", [kind, key]
            ).fetchall()
        return json.loads(row[0][0]) if row else None

    def list_arrays(self, kind: str) -> list[tuple[str, dict, datetime]]:
        """(key, meta, created) of every array of a kind, newest first."""
        with self._lock:
            rows = self._con.execute(
                "SELECT key, meta, created FROM arrays WHERE kind = ? ORDER BY created DESC",
                [kind],
            ).fetchall()
        return [(k, json.loads(m), c) for k, m, c in rows]

    # -- runs (jobs) ----------------------------------------------------------------------

    def save_run(
        self, run_id: str, kind: str, state: str, params: dict[str, Any], message: str = ""
    ) -> None:
        with self._lock:
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
        with self._lock:
            rows = self._con.execute(query + " ORDER BY created DESC", args).fetchall()
        keys = ("id", "kind", "state", "params", "message", "created", "updated")
        out = [dict(zip(keys, row, strict=True)) for row in rows]
        for run in out:
            run["params"] = json.loads(run["params"])
        return out
