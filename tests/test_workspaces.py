"""Workspaces (ui.workspaces): names, selections and uploads kept per workspace, and pruning of
workspaces left unused past the retention period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from delift_core.cache import UtilityCache
from delift_core.errors import ConfigError, DataError
from ui import workspaces

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
META = {"method": "delift", "pool": {"hash": "p"}}


@pytest.fixture()
def cache(tmp_path):
    with UtilityCache(tmp_path / "cache.duckdb") as opened:
        yield opened
    workspaces.forget_uploads()


@pytest.mark.parametrize("name", ["team-a", "A1", "x", "session-0123abcd", "a" * 40])
def test_valid_names(name):
    assert workspaces.check_name(f" {name} ") == name


@pytest.mark.parametrize("name", ["", "-a", "team a", "a/b", "../x", "é", "a" * 41, "a_b"])
def test_invalid_names_are_refused(name):
    with pytest.raises(ConfigError, match="letters, digits and dashes"):
        workspaces.check_name(name)


def test_session_names_are_new_and_valid():
    names = {workspaces.new_session_id() for _ in range(20)}
    assert len(names) == 20
    assert all(workspaces.check_name(n) == n for n in names)


def test_selections_are_listed_in_their_workspace_only(cache):
    workspaces.save_selection(cache, "team-a", "picked", np.arange(3), np.zeros(3), META)
    assert [n for n, _ in workspaces.list_selections(cache, "team-a")] == ["picked"]
    assert workspaces.list_selections(cache, "team-b") == []
    with pytest.raises(ConfigError, match="no saved selection named 'picked' in workspace"):
        workspaces.load_selection(cache, "team-b", "picked")
    # One name in two workspaces: two selections.
    workspaces.save_selection(cache, "team-b", "picked", np.arange(5), np.zeros(5), META)
    assert len(workspaces.load_selection(cache, "team-a", "picked")[0]) == 3
    assert len(workspaces.load_selection(cache, "team-b", "picked")[0]) == 5
    assert len(workspaces.find_selection(cache, "picked")[0]) == 5  # the newest of any


def test_selections_saved_before_workspaces_belong_to_shared(cache):
    cache.put_array("selection", "old", np.arange(2, dtype=np.int64), {**META, "gains": []})
    assert [n for n, _ in workspaces.list_selections(cache, workspaces.SHARED)] == ["old"]
    assert workspaces.list_selections(cache, "session-1") == []
    assert list(workspaces.find_selection(cache, "old")[0]) == [0, 1]


def test_uploads_are_recorded_per_workspace_and_stored_once(cache):
    digest = workspaces.store_upload(cache, "team-a", "rows.jsonl", b'{"a": 1}\n')
    assert workspaces.store_upload(cache, "team-b", "same.jsonl", b'{"a": 1}\n') == digest
    assert [d for d, _ in workspaces.list_uploads(cache, "team-a")] == [digest]
    assert workspaces.list_uploads(cache, "team-b")[0][1]["name"] == "same.jsonl"
    assert workspaces.list_uploads(cache, "team-c") == []
    assert len(cache.list_arrays(workspaces.UPLOAD_KIND)) == 1


def _fill(cache: UtilityCache, workspace: str, upload: bytes, used: datetime) -> str:
    workspaces.save_selection(cache, workspace, "picked", np.arange(3), np.zeros(3), META)
    digest = workspaces.store_upload(cache, workspace, f"{workspace}.jsonl", upload)
    meta = {"workspace": workspace, "selections": ["picked"]}
    cache.put_array(workspaces.EVALUATION_KIND, f"eval-{workspace}", np.zeros((2, 2)), meta)
    workspaces.touch(cache, workspace, used)
    return digest


def test_prune_removes_old_workspaces_and_keeps_recent_ones_and_scores(cache):
    old_only = _fill(cache, "old", b"old rows\n", NOW - timedelta(days=31))
    both = _fill(cache, "recent", b"shared rows\n", NOW - timedelta(days=29))
    workspaces.store_upload(cache, "old", "copy.jsonl", b"shared rows\n")
    workspaces.touch(cache, "old", NOW - timedelta(days=31))
    cache.put_array("selection", "legacy", np.arange(2), META)  # "shared", never opened
    cache.put_array("embedding", "e", np.ones(4), {})  # scores and embeddings stay
    cache.store_baselines("scope", ["t"], [0.5], [-1.0])

    assert workspaces.prune_workspaces(cache, NOW, 30) == ["old"]

    assert workspaces.list_selections(cache, "old") == []
    assert workspaces.list_uploads(cache, "old") == []
    assert cache.get_meta(workspaces.UPLOAD_KIND, old_only) is None
    with pytest.raises(DataError, match="no longer available"):
        workspaces.upload_bytes(cache, old_only)
    assert cache.get_meta(workspaces.EVALUATION_KIND, "eval-old") is None
    assert "old" not in workspaces.known(cache)
    # The recent workspace keeps everything, the bytes it shares with the old one included.
    assert [n for n, _ in workspaces.list_selections(cache, "recent")] == ["picked"]
    assert workspaces.upload_bytes(cache, both) == b"shared rows\n"
    assert cache.get_meta(workspaces.EVALUATION_KIND, "eval-recent") is not None
    assert [n for n, _ in workspaces.list_selections(cache, workspaces.SHARED)] == ["legacy"]
    assert cache.get_array("embedding", "e") is not None
    assert cache.load_baselines("scope", ["t"]) == {"t": (0.5, -1.0)}
    # Nothing more to prune until the recent workspace is old too.
    assert workspaces.prune_workspaces(cache, NOW, 30) == []
    assert workspaces.prune_workspaces(cache, NOW + timedelta(days=2), 30) == ["recent"]
    assert cache.get_meta(workspaces.UPLOAD_KIND, both) is None


def test_retention_setting(monkeypatch):
    monkeypatch.delenv(workspaces.RETENTION_ENV, raising=False)
    assert workspaces.retention_days() == 30
    monkeypatch.setenv(workspaces.RETENTION_ENV, " 7 ")
    assert workspaces.retention_days() == 7
    for bad in ("0", "-3", "week", "1.5"):
        monkeypatch.setenv(workspaces.RETENTION_ENV, bad)
        with pytest.raises(ConfigError, match=workspaces.RETENTION_ENV):
            workspaces.retention_days()


def test_upload_specs_are_offered_to_their_workspace_only():
    upload = {"kind": "upload", "name": "f.jsonl", "digest": "d", "workspace": "team-a"}
    assert workspaces.spec_visible(upload, "team-a")
    assert not workspaces.spec_visible(upload, "team-b")
    older = {"kind": "upload", "name": "f.jsonl", "digest": "d"}  # before workspaces
    assert workspaces.spec_visible(older, workspaces.SHARED)
    assert not workspaces.spec_visible(older, "team-a")
    assert workspaces.spec_visible({"kind": "demo"}, "team-b")
    assert workspaces.spec_visible({"kind": "path", "path": "/data/x.jsonl"}, "team-b")
