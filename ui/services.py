"""Cached resources of the app: the DuckDB cache and the job manager (one per process).

Both are keyed by the cache path ($DELIFT_CACHE or the default), so tests that point
$DELIFT_CACHE at a temporary file get their own. Models are loaded by jobs in the worker thread
(ui.registry), never in the script thread.
"""

from __future__ import annotations

import logging

import streamlit as st

from delift_core.cache import UtilityCache, default_cache_path
from delift_core.errors import ConfigError
from delift_core.jobs import JobManager
from ui import tasks, workspaces

log = logging.getLogger(__name__)


def cache_path() -> str:
    return str(default_cache_path())


# The app lets the cache file go after this many idle seconds, so that the CLI can use the same
# cache while the app is open (DuckDB lets one process hold a file at a time).
CACHE_RELEASE_S = 2.0


@st.cache_resource(show_spinner=False)
def _open_cache(path: str) -> UtilityCache:
    return UtilityCache(path, release_after=CACHE_RELEASE_S)


@st.cache_resource(show_spinner=False)
def _open_manager(path: str) -> JobManager:
    cache = _open_cache(path)
    prune(cache)
    manager = JobManager(cache)
    started = tasks.resume_unfinished(manager, cache)
    if started:
        log.info("resumed %d unfinished run(s) after a restart", len(started))
    return manager


def prune(cache: UtilityCache) -> list[str]:
    """Remove the uploads, selections and evaluations of workspaces unused for
    $DELIFT_WORKSPACE_RETENTION_DAYS (logged); a bad setting removes nothing."""
    try:
        days = workspaces.retention_days()
    except ConfigError as exc:
        log.warning("workspaces are not pruned: %s", exc)
        return []
    removed = workspaces.prune_workspaces(cache, None, days)
    if removed:
        log.info("removed %d workspace(s) unused for %d days", len(removed), days)
    return removed


def get_cache() -> UtilityCache:
    """The process's UtilityCache (raises CacheError when the file is locked or unreadable)."""
    return _open_cache(cache_path())


def get_manager() -> JobManager:
    """The process's JobManager, recording runs in the cache."""
    return _open_manager(cache_path())


def max_upload_mb() -> int:
    """The upload size limit of the server (server.maxUploadSize), in MB."""
    return int(st.get_option("server.maxUploadSize"))


def shutdown() -> None:
    """Stop the job manager, close the cache and drop both from Streamlit's resource cache
    (used by tests, which point $DELIFT_CACHE at a new file each time)."""
    path = cache_path()
    _open_manager(path).shutdown(timeout=10.0)
    _open_cache(path).close()
    _open_manager.clear()
    _open_cache.clear()
