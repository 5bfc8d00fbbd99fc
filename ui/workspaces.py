"""Workspaces: who sees which uploads, saved selections and evaluations. No Streamlit.

A workspace is a name (letters, digits and dashes). Each browser session gets a new random one
by default (ui.state), so other sessions do not list what it stores; people share on purpose by
switching to one named workspace (or opening the app with ?workspace=NAME). Selections saved
before workspaces existed belong to the workspace "shared", which opens only on purpose.

Storage, in the cache's arrays:
- saved selections: kind "selection:<workspace>" (kind "selection" for "shared"), key = name;
- uploads: the bytes stay content-addressed (kind "upload", key = sha256), so that a score run
  resumes from its spec after a restart; each workspace that uploaded a file holds a record
  (kind "upload:<workspace>", key = sha256) naming it;
- evaluations (ui.evaluation) carry their workspace in their meta;
- kind "workspace", key = name: when the workspace was last used (meta {"used": ISO time}).
Scores (pairs, stages, embeddings) stay shared by content hash: they hold numbers, not texts.

prune_workspaces removes the uploads, selections and evaluations of workspaces not used for
$DELIFT_WORKSPACE_RETENTION_DAYS days (default 30); the app runs it when it starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache
from delift_core.errors import ConfigError, DataError
from ui import memory

log = logging.getLogger(__name__)

SHARED = "shared"  # selections saved before workspaces existed; opens only on purpose
WORKSPACE_KIND = "workspace"
UPLOAD_KIND = "upload"  # the bytes, by sha256 (content-addressed, like scores)
SELECTION_KIND = "selection"
EVALUATION_KIND = "evaluation"  # ui.evaluation.RESULT_KIND
RETENTION_ENV = "DELIFT_WORKSPACE_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")
_EMPTY = np.zeros(0, dtype=np.uint8)
_lock = threading.Lock()
_uploads = memory.ByteBoundedStore()  # digest -> (name, bytes), this process only


def check_name(name: str) -> str:
    """The workspace name, stripped; ConfigError unless it is 1-40 letters, digits and dashes
    starting with a letter or digit."""
    name = str(name or "").strip()
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"workspace {name!r}: use 1 to 40 letters, digits and dashes, starting with a"
            " letter or digit"
        )
    return name


def new_session_id() -> str:
    """A fresh random workspace name for one browser session."""
    return f"session-{secrets.token_hex(8)}"


def retention_days() -> int:
    """$DELIFT_WORKSPACE_RETENTION_DAYS (default 30); ConfigError unless a whole number >= 1."""
    raw = os.environ.get(RETENTION_ENV, "").strip()
    if not raw:
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if days < 1:
        raise ConfigError(f"{RETENTION_ENV}={raw!r}: give a whole number of days, at least 1")
    return days


def selection_kind(workspace: str) -> str:
    return SELECTION_KIND if workspace == SHARED else f"{SELECTION_KIND}:{workspace}"


def upload_kind(workspace: str) -> str:
    return f"{UPLOAD_KIND}:{workspace}"


def _utc(now: datetime | None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)


def touch(cache: UtilityCache, workspace: str, now: datetime | None = None) -> None:
    """Record that a workspace is in use now (its retention period starts again)."""
    cache.put_array(WORKSPACE_KIND, workspace, _EMPTY, {"used": _utc(now).isoformat()})


def known(cache: UtilityCache) -> dict[str, datetime]:
    """Every workspace with a use recorded -> when it was last used (UTC)."""
    return {
        key: _utc(datetime.fromisoformat(meta["used"]))
        for key, meta, _ in cache.list_arrays(WORKSPACE_KIND)
        if meta.get("used")
    }


# -- saved selections -----------------------------------------------------------------------


def list_selections(cache: UtilityCache, workspace: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, meta) of the workspace's saved selections, newest first."""
    return [(key, meta) for key, meta, _ in cache.list_arrays(selection_kind(workspace))]


def load_selection(
    cache: UtilityCache, workspace: str, name: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """A saved selection's pool indices (int64, in pick order) and its meta."""
    kind = selection_kind(workspace)
    indices, meta = cache.get_array(kind, name), cache.get_meta(kind, name)
    if indices is None or meta is None:
        raise ConfigError(f"no saved selection named {name!r} in workspace {workspace!r}")
    return indices.astype(np.int64), meta


def find_selection(cache: UtilityCache, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """A selection of this name in any workspace, the newest first (tools and tests, which
    run outside a browser session)."""
    found = []
    for workspace in [SHARED, *known(cache)]:
        kind = selection_kind(workspace)
        found += [(created, kind) for key, _, created in cache.list_arrays(kind) if key == name]
    if not found:
        raise ConfigError(f"no saved selection named {name!r}")
    kind = max(found)[1]
    return cache.get_array(kind, name).astype(np.int64), cache.get_meta(kind, name)


def save_selection(
    cache: UtilityCache,
    workspace: str,
    name: str,
    indices: np.ndarray,
    gains: np.ndarray,
    meta: dict[str, Any],
) -> None:
    """Store a named selection in a workspace (indices in pick order; gains in meta, NaN as
    None)."""
    name = name.strip()
    if not name or len(name) > 80:
        raise ConfigError("give the selection a name of 1 to 80 characters")
    gain_list = [None if not np.isfinite(g) else float(g) for g in np.asarray(gains, float)]
    array = np.asarray(indices, dtype=np.int64)
    cache.put_array(selection_kind(workspace), name, array, {**meta, "gains": gain_list})
    touch(cache, workspace)


# -- uploads --------------------------------------------------------------------------------


def store_upload(cache: UtilityCache, workspace: str, name: str, data: bytes) -> str:
    """Keep an uploaded file's bytes (in memory, bounded by $DELIFT_UPLOAD_MEMORY_MB, and in
    the cache, once per content) as one of the workspace's uploads; returns its sha256."""
    digest = hashlib.sha256(data).hexdigest()
    limit = memory.upload_limit()
    with _lock:
        _uploads.put(digest, (name, data), len(data), limit)
    if cache.get_meta(UPLOAD_KIND, digest) is None:
        array = np.frombuffer(data, dtype=np.uint8)
        cache.put_array(UPLOAD_KIND, digest, array, {"name": name, "bytes": len(data)})
    record_upload(cache, workspace, digest, name, len(data))
    return digest


def upload_bytes(cache: UtilityCache | None, digest: str) -> bytes:
    """An uploaded file's bytes by sha256 (memory first, then the cache)."""
    with _lock:
        kept = _uploads.get(digest)
    if kept is not None:
        return kept[1]
    stored = None if cache is None else cache.get_array(UPLOAD_KIND, digest)
    if stored is None:
        raise DataError("the uploaded file is no longer available; upload it again")
    return stored.tobytes()


def uploads_in_memory() -> int:
    """Bytes of uploaded files held in memory now."""
    with _lock:
        return _uploads.total_bytes


def forget_uploads() -> None:
    """Drop the uploaded files held in memory (tests)."""
    with _lock:
        _uploads.clear()


def record_upload(cache: UtilityCache, workspace: str, digest: str, name: str, size: int) -> None:
    """Note that a workspace holds the uploaded file `digest` (its bytes are stored once)."""
    cache.put_array(upload_kind(workspace), digest, _EMPTY, {"name": name, "bytes": size})
    touch(cache, workspace)


def list_uploads(cache: UtilityCache, workspace: str) -> list[tuple[str, dict[str, Any]]]:
    """(sha256, {"name", "bytes"}) of the files uploaded in a workspace, newest first."""
    return [(key, meta) for key, meta, _ in cache.list_arrays(upload_kind(workspace))]


def spec_visible(spec: dict[str, Any], workspace: str) -> bool:
    """Whether a data source spec (ui.registry.load_source) may be offered to a session of
    `workspace`: an upload only to the workspace it was uploaded in (uploads from before
    workspaces: "shared"); demo set and local paths to every session."""
    if spec.get("kind") != "upload":
        return True
    return str(spec.get("workspace") or SHARED) == workspace


# -- retention ------------------------------------------------------------------------------


def prune_workspaces(cache: UtilityCache, now: datetime | None, days: int) -> list[str]:
    """Remove the saved selections, upload records and evaluations of every workspace last used
    more than `days` days before `now`, and the bytes of uploads no other workspace holds.
    Scores are kept. Returns the workspaces removed (each logged)."""
    cutoff = _utc(now) - timedelta(days=days)
    used = known(cache)
    stale = sorted(ws for ws, when in used.items() if when < cutoff)
    kept = [ws for ws in used if ws not in stale] + ([SHARED] if SHARED not in used else [])
    for workspace in stale:
        selections = cache.list_arrays(selection_kind(workspace))
        uploads = cache.list_arrays(upload_kind(workspace))
        for key, _, _ in selections:
            cache.delete_array(selection_kind(workspace), key)
        removed = 0
        for digest, _, _ in uploads:
            cache.delete_array(upload_kind(workspace), digest)
            if not any(cache.get_meta(upload_kind(ws), digest) for ws in kept):
                cache.delete_array(UPLOAD_KIND, digest)
                removed += 1
        evaluations = [
            key
            for key, meta, _ in cache.list_arrays(EVALUATION_KIND)
            if meta.get("workspace") == workspace
        ]
        for key in evaluations:
            cache.delete_array(EVALUATION_KIND, key)
        cache.delete_array(WORKSPACE_KIND, workspace)
        if removed:
            forget_uploads()  # the others are read again from the cache when used
        log.info(
            "workspace %s unused since %s: removed %d selection(s), %d upload(s), %d evaluation(s)",
            workspace,
            used[workspace].date(),
            len(selections),
            removed,
            len(evaluations),
        )
    return stale


def job_visible(params: dict[str, Any], workspace: str) -> bool:
    """Whether a job is shown in `workspace`: jobs started there, and those that belong to no
    workspace (speed measurements, jobs from before workspaces). Another workspace's job names
    its data, so it is not listed; it only takes the worker's turn."""
    owner = params.get("workspace")
    return owner is None or owner == workspace
