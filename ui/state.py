"""Session-state keys and accessors. Session state holds small handles only: dataset handles
({spec, hash, label, rows}), the chosen stage key, selection names and the workspace, never
arrays or models."""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from delift_core.errors import ConfigError
from ui import workspaces

DATA = "data"  # {role: handle}
STAGE_KEY = "stage_key"  # the stage chosen on Select
LAST_SELECTION = "last_selection"  # name of the selection saved last
CALIBRATED = "calibrated_models"  # models whose speed this session has asked to measure
# Sample ids picked on Select's map, kept across reruns: the map loses its own selection
# whenever its figure changes (a new budget, method or pin redraws it).
MAP_PICKS = "select_map_picks"
MAP_EVENT = "select_map_event"  # the ids of the map's selection as last seen
WORKSPACE = "workspace"  # this session's workspace (ui.workspaces), also in the URL
WORKSPACE_PARAM = "workspace"  # ?workspace=NAME opens a workspace
WORKSPACE_ERROR = "workspace_error"  # why a ?workspace= value was not used

ROLES = ("pool", "targets", "existing")
ROLE_LABELS = {
    "pool": "Pool (the data to select from)",
    "targets": "Target set (task-specific stage)",
    "existing": "Existing set (continual stage)",
}


def handles() -> dict[str, dict[str, Any] | None]:
    """The loaded dataset handles by role (None where nothing is loaded)."""
    data = st.session_state.get(DATA) or {}
    return {role: data.get(role) for role in ROLES}


def get_handle(role: str) -> dict[str, Any] | None:
    return handles()[role]


def set_handle(role: str, handle: dict[str, Any]) -> None:
    data = dict(st.session_state.get(DATA) or {})
    data[role] = handle
    st.session_state[DATA] = data


def clear_handle(role: str) -> None:
    data = dict(st.session_state.get(DATA) or {})
    data.pop(role, None)
    st.session_state[DATA] = data


def data_initialised() -> bool:
    """True once this session has had a data dict (even an empty one, after removals)."""
    return DATA in st.session_state


def mark_calibrated(model: str) -> bool:
    """Remember that speed was measured for `model`; False if it already was this session."""
    done = set(st.session_state.get(CALIBRATED) or ())
    if model in done:
        return False
    st.session_state[CALIBRATED] = done | {model}
    return True


def current_workspace() -> str | None:
    """This browser session's workspace; None outside a script run (a job's worker thread, a
    tool). The first call of a session takes ?workspace=NAME when valid, else a new random
    name, and writes it into the URL, so that a reload or a server restart keeps it."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    asked = st.query_params.get(WORKSPACE_PARAM)
    if asked and asked != st.session_state.get(WORKSPACE):
        try:
            st.session_state[WORKSPACE] = workspaces.check_name(asked)
        except ConfigError as exc:
            st.session_state[WORKSPACE_ERROR] = str(exc)
    if not st.session_state.get(WORKSPACE):
        st.session_state[WORKSPACE] = workspaces.new_session_id()
    workspace = str(st.session_state[WORKSPACE])
    if st.query_params.get(WORKSPACE_PARAM) != workspace:
        st.query_params[WORKSPACE_PARAM] = workspace
    return workspace


def switch_workspace(name: str) -> str:
    """Make `name` this session's workspace (ConfigError when not a valid name)."""
    name = workspaces.check_name(name)
    st.session_state[WORKSPACE] = name
    st.query_params[WORKSPACE_PARAM] = name
    return name


KEPT_PREFIX = "kept_"  # a plain (non-widget) copy of a widget's value


def kept(key: str, default: Any) -> None:
    """Give the widget `key` its last value, or `default` the first time. Call before the widget
    (created without its own default) and `remember(key)` after it. Streamlit drops a widget's
    state when a run ends without it, and a run_every fragment calling st.rerun() can do so too
    (streamlit issues 10805, 9171): the page would silently go back to its defaults, e.g. the
    scoring mode from sparse to exact. A plain key is never dropped, so the choice survives."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(KEPT_PREFIX + key, default)


def remember(key: str) -> None:
    """Store the widget `key`'s current value where kept() finds it."""
    if key in st.session_state:
        st.session_state[KEPT_PREFIX + key] = st.session_state[key]
