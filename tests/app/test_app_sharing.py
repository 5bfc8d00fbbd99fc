"""A shared deployment: local paths confined to the data roots or turned off, exports confined to
the export root, and an existing export replaced only when the user asks."""

from __future__ import annotations

import json

from apptools import assert_clean, messages, page, with_data
from test_app_export import _saved_selection

ROW = {"instruction": "Say hi", "input": "", "output": "hi"}


def _files(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "elsewhere"
    for folder in (data, outside):
        folder.mkdir()
        (folder / "rows.jsonl").write_text(json.dumps(ROW) + "\n")
    return data, outside


def _load_path(at, path: str):
    at.radio(key="data_source").set_value("path").run()
    at.text_input(key="data_path").set_value(path).run()
    at.checkbox(key="data_confirm_replace").check().run()  # the demo pool is loaded at start
    at.button(key="data_load").click().run()
    return at


def test_data_page_reads_only_under_the_data_roots(tmp_path, monkeypatch):
    data, outside = _files(tmp_path)
    monkeypatch.setenv("DELIFT_DATA_ROOTS", str(data))
    (data / "link.jsonl").symlink_to(outside / "rows.jsonl")
    at = page("1_Data.py").run()
    before = at.session_state["data"]["pool"]
    errors = []
    for path in (outside / "rows.jsonl", outside / "missing.jsonl", data / "link.jsonl"):
        _load_path(at, str(path))
        (error,) = messages(at.error)
        assert path.stem in error and "is outside" in error
        errors.append(error[error.index("is outside") :])  # the words after the path
        assert at.session_state["data"]["pool"] == before  # nothing loaded
    assert "outside the folders this app may read" in errors[0]
    assert errors[0] == errors[1] == errors[2]  # existing, missing, linked: the same words
    _load_path(at, str(data / "rows.jsonl"))
    assert_clean(at)
    assert at.session_state["data"]["pool"]["rows"] == 1


def test_local_paths_off_leaves_uploads_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DELIFT_LOCAL_PATHS", "off")
    at = page("1_Data.py").run()
    assert_clean(at)
    assert at.radio(key="data_source").options == ["Demo set", "Upload a file"]


def test_export_folder_must_lie_under_the_export_root(tmp_path):
    pool, _ = _saved_selection()
    at = with_data(page("5_Export.py"), pool=pool).run()
    assert at.text_input(key="export_folder").value == str((tmp_path / "out").resolve())
    outside = tmp_path / "elsewhere"
    at.text_input(key="export_folder").set_value(str(outside)).run()
    at.button(key="export_write").click().run()
    assert not at.exception
    (error,) = messages(at.error)
    assert "Nothing was written" in error and "outside the export folder" in error
    assert not outside.exists()


def test_an_existing_export_is_replaced_only_when_asked(tmp_path):
    pool, _ = _saved_selection()
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "picked.jsonl").write_text("earlier export\n")
    at = with_data(page("5_Export.py"), pool=pool).run()
    assert at.checkbox(key="export_overwrite").value is False
    at.button(key="export_write").click().run()
    (error,) = messages(at.error)
    assert "Nothing was written" in error and "already exists" in error
    assert (folder / "picked.jsonl").read_text() == "earlier export\n"
    assert sorted(p.name for p in folder.iterdir()) == ["picked.jsonl"]
    at.checkbox(key="export_overwrite").check().run()
    at.button(key="export_write").click().run()
    assert_clean(at)
    assert "Written:" in messages(at.success)
    assert len((folder / "picked.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in folder.iterdir()) == ["picked.jsonl", "picked.manifest.json"]
