"""A shared deployment: local paths confined to the data roots or turned off, exports confined to
the export root, and an existing export replaced only when the user asks."""

from __future__ import annotations

import json

from apptools import assert_clean, demo_handle, messages, services, wait_for_jobs, with_data
from test_app_export import _saved_selection, page  # opens the selections' workspace

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


def _type_model(at, path: str):
    at.text_input(key="score_model").set_value(path).run()
    assert not at.exception
    return at


def test_score_page_reads_model_folders_only_under_the_data_roots(tmp_path, monkeypatch):
    data, outside = _files(tmp_path)
    for folder in (data / "model", outside / "model"):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    (data / "link").symlink_to(outside / "model")
    monkeypatch.setenv("DELIFT_DATA_ROOTS", str(data))
    at = with_data(page("2_Score.py"), pool=demo_handle(4)).run()
    wait_for_jobs()
    _, manager = services()
    jobs_before = len(manager.list_jobs())
    errors = []
    for path in (outside / "model", outside / "missing", data / "link"):
        _type_model(at, str(path))
        (error,) = [e.replace("\\", "") for e in messages(at.error)]
        assert error.startswith("Model:") and path.name in error and "is outside" in error
        errors.append(error[error.index("is outside") :])
        assert not at.warning  # nothing said about the folder itself
        assert at.button(key="score_start").disabled
        assert not [b for b in at.button if b.key == "score_measure"]
    assert errors[0] == errors[1] == errors[2]  # existing, missing, linked: the same words
    assert len(manager.list_jobs()) == jobs_before
    # Inside a root, the folder itself is checked (here: not a complete model).
    _type_model(at, str(data / "model"))
    assert not at.error
    assert not at.button(key="score_start").disabled


def test_local_paths_off_leaves_the_embedded_model_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DELIFT_LOCAL_PATHS", "off")
    (tmp_path / "model").mkdir()
    at = with_data(page("2_Score.py"), pool=demo_handle(4)).run()
    assert_clean(at)
    _type_model(at, str(tmp_path / "model"))
    (error,) = messages(at.error)
    assert "turned off" in error and "use 'default'" in error
    assert at.button(key="score_start").disabled
    _type_model(at, "default")
    assert_clean(at)


def test_a_parquet_upload_that_decodes_past_the_limit_is_refused_with_its_sizes(monkeypatch):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from delift_core.data import dataset as data

    monkeypatch.setattr(data, "MAX_DECODED_BYTES", 2**20)
    buf = io.BytesIO()
    rows = 4_000
    pq.write_table(pa.table({"instruction": ["x" * 2_000] * rows, "output": ["y"] * rows}), buf)
    at = page("1_Data.py").run()
    before = at.session_state["data"]["pool"]
    at.radio(key="data_source").set_value("upload").run()
    upload = ("bomb.parquet", buf.getvalue(), "application/octet-stream")
    at.file_uploader(key="data_upload").set_value(upload).run()
    at.checkbox(key="data_confirm_replace").check().run()
    at.button(key="data_load").click().run()
    assert not at.exception
    (error,) = [e.replace("\\", "") for e in messages(at.error)]  # markdown escapes removed
    assert "bomb.parquet" in error and "decodes to more than 1.0 MiB" in error
    assert f"of {rows:,}" in error and "the file is" in error
    assert at.session_state["data"]["pool"] == before
