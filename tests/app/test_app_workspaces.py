"""Workspaces in the app: two browser sessions on one cache do not see each other's uploads or
saved selections until both open one named workspace; the URL keeps a session's workspace; the
app prunes workspaces left unused past the retention period when it starts."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from apptools import (
    assert_clean,
    demo_handle,
    messages,
    page,
    score,
    services,
    wait_for_jobs,
    with_data,
)

from ui import workspaces

ROWS = [
    {"instruction": f"Private question {i}", "input": "", "output": f"private answer {i}"}
    for i in range(6)
]


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _upload_pool(at, name: str) -> dict:
    """Upload ROWS as the pool on the Data page of session `at`; returns the pool handle."""
    at.switch_page("pages/1_Data.py").run()
    at.radio(key="data_source").set_value("upload").run()
    at.file_uploader(key="data_upload").set_value((name, _jsonl(ROWS), "application/jsonl"))
    at.checkbox(key="data_confirm_replace").check().run()
    at.button(key="data_load").click().run()
    assert_clean(at)
    return at.session_state["data"]["pool"]


def _save_on_select(at, name: str) -> None:
    at.switch_page("pages/3_Select.py").run()
    at.text_input(key="select_name").set_value(name).run()
    at.button(key="select_save").click().run()
    assert_clean(at)
    assert any(f"as {name}" in m.replace("\\", "") for m in messages(at.success))


def _export_names(at) -> list[str]:
    at.switch_page("pages/5_Export.py").run()
    assert not at.exception
    if any("No saved selections" in m for m in messages(at.info)):
        return []
    return list(at.selectbox(key="export_name").options)


def _earlier_uploads(at) -> list[str]:
    at.switch_page("pages/1_Data.py").run()
    at.radio(key="data_source").set_value("upload").run()
    found = [s for s in at.selectbox if s.key == "data_earlier_upload"]
    return list(found[0].options[1:]) if found else []


def _offered_scores(at) -> list[str]:
    """The scored stages the Select page offers in its Scores list (none: an empty list)."""
    at.switch_page("pages/3_Select.py").run()
    assert not at.exception
    found = [s for s in at.selectbox if s.key == "select_stage_key"]
    return [str(o) for o in found[0].options] if found else []


def _open_workspace(at, name: str) -> None:
    at.sidebar.text_input(key="workspace_name").set_value(name).run()
    at.sidebar.button(key="workspace_open").click().run()
    assert_clean(at)
    assert at.session_state["workspace"] == name


def test_sessions_see_only_their_workspace_until_they_share_one():
    a, b = page("1_Data.py").run(), page("1_Data.py").run()
    own_a, own_b = a.session_state["workspace"], b.session_state["workspace"]
    assert own_a != own_b and own_a.startswith("session-")
    assert own_a in messages(a.sidebar.text)
    pool = _upload_pool(a, "private.jsonl")
    assert pool["spec"]["workspace"] == own_a
    score(pool, with_map=True)
    _save_on_select(a, "mine")
    assert _export_names(a) == ["mine"]
    assert "Private question" in a.code[0].value  # A's Export previews its rows
    assert _earlier_uploads(a) == ["private.jsonl"]
    cache, _ = services()
    assert [n for n, _ in workspaces.list_selections(cache, own_a)] == ["mine"]

    # Session B, on the same cache: neither the upload nor the selection is listed.
    with_data(b, pool=demo_handle(6))
    assert _export_names(b) == []
    assert not any("Private question" in c.value for c in b.code)
    assert _earlier_uploads(b) == []
    assert not any("private.jsonl" in label for label in _offered_scores(b))
    assert any("private.jsonl" in label for label in _offered_scores(a))

    # Both open one named workspace: what is stored there is listed in both.
    _open_workspace(a, "team-a")
    assert _export_names(a) == []  # "mine" stays in A's own workspace
    _save_on_select(a, "for-the-team")
    _open_workspace(b, "team-a")
    assert _export_names(b) == ["for-the-team"]
    assert "Private question" in b.code[0].value
    assert _export_names(a) == ["for-the-team"]
    # An upload made in the named workspace is offered to the other session, and loads there.
    _upload_pool(a, "team.jsonl")
    assert _earlier_uploads(b) == ["team.jsonl"]
    b.selectbox(key="data_earlier_upload").set_value(
        b.selectbox(key="data_earlier_upload").options[1]
    )
    b.checkbox(key="data_confirm_replace").check().run()
    b.button(key="data_load").click().run()
    assert_clean(b)
    assert b.session_state["data"]["pool"]["label"] == "team.jsonl"
    assert b.session_state["data"]["pool"]["rows"] == len(ROWS)


def test_the_url_keeps_the_workspace_and_opens_a_named_one():
    a = page("5_Export.py").run()
    own = a.session_state["workspace"]
    assert a.query_params["workspace"] == own  # a reload or a restart opens it again
    again = page("5_Export.py")
    again.query_params["workspace"] = own
    again.run()
    assert again.session_state["workspace"] == own
    named = page("0_Home.py")
    named.query_params["workspace"] = "team-b"
    assert_clean(named.run())
    assert named.session_state["workspace"] == "team-b"
    bad = page("0_Home.py")
    bad.query_params["workspace"] = "../etc"
    bad.run()
    assert not bad.exception
    (error,) = messages(bad.sidebar.error)
    assert "letters, digits and dashes" in error
    assert bad.session_state["workspace"].startswith("session-")
    assert bad.query_params["workspace"] == bad.session_state["workspace"]


def test_app_start_prunes_unused_workspaces_and_keeps_scores(monkeypatch, caplog):
    from ui import services as app_services

    monkeypatch.setenv(workspaces.RETENTION_ENV, "10")
    cache = app_services.get_cache()  # the cache alone: the job manager is not open yet
    now = datetime.now(UTC)
    for workspace, age in (("old-team", 15), ("new-team", 5)):
        workspaces.save_selection(cache, workspace, "picked", np.arange(2), np.zeros(2), {})
        workspaces.store_upload(cache, workspace, "f.jsonl", f"{workspace}\n".encode())
        workspaces.touch(cache, workspace, now - timedelta(days=age))
    cache.store_baselines("scope", ["t"], [0.5], [-1.0])
    with caplog.at_level(logging.INFO, logger="ui.services"):
        at = page("0_Home.py").run()  # the first page opens the job manager: pruned now
    assert_clean(at)
    assert "removed 1 workspace(s) unused for 10 days" in caplog.text
    assert workspaces.list_selections(cache, "old-team") == []
    assert workspaces.list_uploads(cache, "old-team") == []
    assert [n for n, _ in workspaces.list_selections(cache, "new-team")] == ["picked"]
    assert len(workspaces.list_uploads(cache, "new-team")) == 1
    assert cache.load_baselines("scope", ["t"]) == {"t": (0.5, -1.0)}


def _listed_jobs(at) -> set[str]:
    """Job ids in the Score page's finished-jobs table."""
    tables = [d.value for d in at.dataframe if "job" in d.value.columns]
    return set(tables[0]["job"]) if tables else set()


def test_the_score_page_lists_only_this_workspaces_runs():
    """A run names its data (labels, file names): another workspace does not see it listed or
    announced as ready, while runs that belong to no workspace (speed measurements) are shared."""
    a = with_data(page("2_Score.py"), pool=demo_handle(6)).run()
    b = with_data(page("2_Score.py"), pool=demo_handle(6)).run()
    wait_for_jobs()  # the first visits' speed measurement
    a.run()
    a.button(key="score_start").click().run()
    assert_clean(a)
    states = {s.kind: s for s in wait_for_jobs()}
    score_job = states["score"]
    assert score_job.state == "done", score_job.error
    assert score_job.params["workspace"] == a.session_state["workspace"]

    a.run()
    b.run()
    assert_clean(a)
    assert_clean(b)
    assert score_job.id in _listed_jobs(a)
    assert "The scores of the data loaded now are ready (pool)." in messages(a.success)
    assert score_job.id not in _listed_jobs(b)
    assert states["calibrate"].id in _listed_jobs(b)  # no workspace: shared
    assert not any("scores" in m for m in messages(b.success))


def test_the_sidebar_shows_another_workspaces_run_without_its_data():
    """A run of another workspace takes the worker: the sidebar says so, naming no data."""
    _, manager = services()
    release = threading.Event()
    job = manager.submit(
        "score",
        {"workspace": "someone-else", "pool": {"label": "their-secret.jsonl"}},
        lambda ctx: release.wait(30),
    )
    try:
        deadline = time.monotonic() + 30
        while manager.snapshot(job).state != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        at = with_data(page("1_Data.py"), pool=demo_handle(6)).run()
        texts = [t.value for t in at.sidebar.text]
        assert "score: running (another workspace)" in texts
        assert not any("their-secret" in t for t in texts)
    finally:
        release.set()
        manager.wait(job, timeout=30)
