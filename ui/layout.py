"""Page scaffolding shared by every page: config, default data, sidebar, formatting helpers."""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from delift_core.cache import UtilityCache
from delift_core.errors import DeliftError
from delift_core.jobs import JobManager
from ui import registry, services, state, workspaces

log = logging.getLogger(__name__)

FAVICON = Path(__file__).resolve().parents[1] / "assets" / "favicon.png"
# Sent inline as a data: URL. Given as a file, Streamlit serves it as a media file whose address
# changes on every page run, and the browser's later request for the old address gets a 404.
FAVICON_URL = "data:image/png;base64," + base64.b64encode(FAVICON.read_bytes()).decode("ascii")
# Rows of the demo set loaded at start-up: small enough to score in minutes on a CPU.
DEMO_START_ROWS = 60
TOUCHED = "workspace_touched"  # the workspace whose use this session has recorded
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


@dataclass(frozen=True)
class Services:
    cache: UtilityCache
    manager: JobManager
    workspace: str  # this session's (ui.workspaces): uploads and selections are stored there


def escape_md(text: Any) -> str:
    """Text made inert for Streamlit markdown (st.error, st.success, labels)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", "  \n")


def fmt_seconds(seconds: float | None) -> str:
    """'45 s', '3 min 20 s', '2 h 5 min' ('unknown' for None)."""
    if seconds is None:
        return "unknown"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def fmt_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def setup_page(title: str) -> Services:
    """Configure the page, open the cache and job manager, load the demo pool on first visit
    and draw the sidebar. Stops the page with an error when the cache cannot be opened.

    The browser tab shows the bundled icon: a Material icon there would be fetched from an
    outside host, and the app makes no outside requests."""
    st.set_page_config(page_title=f"{title} · DELIFT Studio", page_icon=FAVICON_URL, layout="wide")
    try:
        workspace = state.current_workspace() or workspaces.SHARED
        svc = Services(services.get_cache(), services.get_manager(), workspace)
        svc.cache.acquire()  # a command-line run may hold it: wait a little, then say so
        if st.session_state.get(TOUCHED) != workspace:  # one write per session and workspace
            workspaces.touch(svc.cache, workspace)
            st.session_state[TOUCHED] = workspace
    except DeliftError as exc:
        st.error(f"The cache cannot be opened: {escape_md(exc)}")
        st.stop()
        raise  # st.stop() raises; this keeps type checkers content
    _load_default_pool(svc.cache)
    _draw_sidebar(svc, workspace)
    return svc


def _load_default_pool(cache: UtilityCache) -> None:
    if state.data_initialised():
        return
    st.session_state[state.DATA] = {}
    spec = {"kind": "demo", "offset": 0, "limit": DEMO_START_ROWS, "field_map": None}
    try:
        ds = registry.load_source(spec, cache)
    except DeliftError as exc:  # a broken checkout must not break every page
        log.warning("cannot load the demo set: %s", exc)
        return
    state.set_handle("pool", registry.make_handle(spec, ds))


def _workspace_box(workspace: str) -> None:
    """The session's workspace, and a field to open a named one (shared on purpose)."""
    st.caption("Workspace")
    st.text(workspace)
    error = st.session_state.pop(state.WORKSPACE_ERROR, None)
    if error:
        st.error(f"Not opened: {escape_md(error)}")
    name = st.text_input(
        "Open a named workspace",
        key="workspace_name",
        placeholder="team-a",
        help="Uploads, saved selections and evaluations belong to a workspace; other browser"
        " sessions see them only by opening the same workspace (letters, digits, dashes)."
        " A new session starts in a private one. The address bar carries it: ?workspace=NAME.",
    )
    if st.button("Open", key="workspace_open", disabled=not name.strip()):
        try:
            state.switch_workspace(name)
        except DeliftError as exc:
            st.session_state[state.WORKSPACE_ERROR] = str(exc)
        st.rerun()


def _draw_sidebar(svc: Services, workspace: str) -> None:
    with st.sidebar:
        _workspace_box(workspace)
        st.caption("Loaded data")
        any_data = False
        for role, handle in state.handles().items():
            if handle is not None:
                any_data = True
                st.text(f"{role}: {handle['label']} · {handle['rows']:,} rows")
        if not any_data:
            st.text("nothing loaded")
        active = svc.manager.list_jobs(active_only=True)
        if active:
            st.caption("Background jobs")
            for job in active:
                if workspaces.job_visible(job.params, workspace):
                    st.text(f"{job.kind}: {job.state}" + (f" · {job.phase}" if job.phase else ""))
                else:  # it takes the worker's turn, but its data is not this workspace's
                    st.text(f"{job.kind}: {job.state} (another workspace)")
        if registry.test_mode():
            st.caption("Test mode: tiny random model")


def require_pool() -> dict[str, Any]:
    """The pool handle, or an empty state pointing to the Data page (stops the page)."""
    handle = state.get_handle("pool")
    if handle is None:
        st.info("No data loaded: go to Data to load a pool.")
        st.page_link("pages/1_Data.py", label="Go to Data", icon=":material/database:")
        st.stop()
    return handle
