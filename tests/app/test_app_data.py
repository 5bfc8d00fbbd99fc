"""Data page: demo set, upload and local path; preview, statistics, errors and removal."""

from __future__ import annotations

import json

from apptools import assert_clean, frame, messages, page

from ui.registry import source_label


def _rows_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_demo_slice_loads_as_pool_with_preview_and_stats():
    at = page("1_Data.py").run()
    assert_clean(at)
    # Start-up loaded 60 demo rows; load a 6-row slice instead.
    at.number_input(key="data_demo_limit").set_value(6).run()
    at.number_input(key="data_demo_offset").set_value(10).run()
    at.button(key="data_load").click().run()
    # A pool is loaded: replacing it takes an explicit tick, and nothing changes without one.
    assert any("tick 'Replace the loaded pool'" in e for e in messages(at.error))
    assert at.session_state["data"]["pool"]["rows"] == 60
    at.checkbox(key="data_confirm_replace").check().run()
    at.button(key="data_load").click().run()
    assert_clean(at)
    assert "Loaded 6 rows as the pool." in messages(at.success)
    pool = at.session_state["data"]["pool"]
    assert pool["rows"] == 6 and pool["spec"] == {
        "kind": "demo",
        "offset": 10,
        "limit": 6,
        "field_map": None,
    }
    preview = frame(at, "id", "instruction")
    assert list(preview["id"]) == [f"demo-{i:04d}" for i in range(11, 17)]
    assert {"instruction", "input", "output", "family", "quality"} <= set(preview.columns)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == "6" and metrics["Schema"] == "alpaca"
    assert metrics["Exact duplicates"] == "0"


def test_upload_as_targets_warns_about_overlap_and_can_be_removed():
    at = page("1_Data.py").run()
    demo_first = json.loads(open_demo_line())  # the start-up pool holds demo rows 1-60
    rows = [demo_first, {"instruction": "Say hi.", "input": "", "output": "Hi!"}]
    at.radio(key="data_role").set_value("targets").run()
    at.radio(key="data_source").set_value("upload").run()
    uploader = at.file_uploader(key="data_upload")
    assert "200 MB" in uploader.label
    uploader.set_value(("targets.jsonl", _rows_jsonl(rows), "application/jsonl")).run()
    at.button(key="data_load").click().run()
    assert_clean(at)
    targets = at.session_state["data"]["targets"]
    assert targets["rows"] == 2 and targets["label"] == "targets.jsonl"
    assert any(
        "1 record(s) of the targets also appear in the pool" in w for w in messages(at.warning)
    )
    at.button(key="data_remove_targets").click().run()
    assert "targets" not in at.session_state["data"]
    assert "pool" in at.session_state["data"]


def open_demo_line() -> str:
    from ui.registry import DEMO_PATH

    with open(DEMO_PATH, encoding="utf-8") as handle:
        return handle.readline()


def test_invalid_upload_shows_the_line_and_keeps_the_old_data():
    at = page("1_Data.py").run()
    before = at.session_state["data"]["pool"]
    at.radio(key="data_source").set_value("upload").run()
    bad = b'{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n'
    at.file_uploader(key="data_upload").set_value(("bad.jsonl", bad, "application/jsonl")).run()
    at.checkbox(key="data_confirm_replace").check().run()
    at.button(key="data_load").click().run()
    assert not at.exception
    errors = messages(at.error)
    assert len(errors) == 1 and "bad" in errors[0] and "line 2" in errors[0]
    assert at.session_state["data"]["pool"] == before


def test_local_path_with_field_map_and_missing_file(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_bytes(_rows_jsonl([{"q": f"question {i}", "a": f"answer {i}"} for i in range(4)]))
    at = page("1_Data.py").run()
    at.radio(key="data_source").set_value("path").run()
    at.text_input(key="data_path").set_value(str(tmp_path / "missing.jsonl")).run()
    at.checkbox(key="data_confirm_replace").check().run()
    at.button(key="data_load").click().run()
    assert any("file not found" in e for e in messages(at.error))

    at.text_input(key="data_path").set_value(str(path))
    at.text_input(key="data_field_instruction").set_value("q")
    at.text_input(key="data_field_output").set_value("a")
    at.radio(key="data_role").set_value("existing").run()
    at.button(key="data_load").click().run()
    assert_clean(at)
    existing = at.session_state["data"]["existing"]
    assert existing["rows"] == 4 and existing["spec"]["field_map"] == {
        "instruction": "q",
        "output": "a",
    }
    preview = at.dataframe[-1].value
    assert list(preview["instruction"]) == [f"question {i}" for i in range(4)]


def test_user_text_is_never_rendered_as_markdown(tmp_path):
    evil = "**bold** <script>alert(1)</script> [link](http://x)"
    path = tmp_path / "evil.jsonl"
    path.write_bytes(_rows_jsonl([{"instruction": evil, "output": "ok"}]))
    at = page("1_Data.py").run()
    at.radio(key="data_source").set_value("path").run()
    at.text_input(key="data_path").set_value(str(path)).run()
    at.checkbox(key="data_confirm_replace").check().run()
    at.button(key="data_load").click().run()
    assert_clean(at)
    # The text reaches the page only through a dataframe cell, never through markdown.
    assert all(evil not in str(m.value) for m in at.markdown)
    assert frame(at, "id", "instruction")["instruction"][0] == evil


def test_skip_invalid_records_loads_the_rest_and_lists_what_was_left_out():
    at = page("1_Data.py").run()
    before = at.session_state["data"]["pool"]
    at.radio(key="data_source").set_value("upload").run()
    rows = b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": ""}\n'
    rows += b'{"instruction": "d", "output": "e"}\n'
    rows += b'{"instruction": "f", \n'  # malformed JSON: skipped too
    at.file_uploader(key="data_upload").set_value(("gaps.jsonl", rows, "application/jsonl")).run()
    at.checkbox(key="data_confirm_replace").check().run()
    at.button(key="data_load").click().run()
    assert any("line 2" in e for e in messages(at.error))
    assert at.session_state["data"]["pool"] == before
    at.checkbox(key="data_skip_invalid").check().run()
    at.button(key="data_load").click().run()
    assert_clean(at)
    pool = at.session_state["data"]["pool"]
    assert pool["rows"] == 2 and pool["spec"]["skip_invalid"] is True
    assert pool["label"] == "gaps.jsonl (skipping invalid)"
    assert any("line 2, field 'output'" in c.value and "skipped" in c.value for c in at.code)
    assert any("line 4" in c.value and "malformed JSON" in c.value for c in at.code)


def test_source_labels_say_when_rows_count_valid_records_only():
    spec = {"kind": "path", "path": "/d/p3.jsonl", "offset": 10, "limit": 50}
    assert source_label(spec) == "p3.jsonl (rows 11-60)"
    skipping = source_label({**spec, "skip_invalid": True})
    assert skipping == "p3.jsonl (valid rows 11-60, skipping invalid)"
    assert source_label({"kind": "path", "path": "/d/p3.jsonl"}) == "p3.jsonl"


def test_field_names_are_offered_on_the_page_and_never_break_the_demo(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n")
    at = page("1_Data.py").run()
    at.radio(key="data_role").set_value("targets").run()
    at.radio(key="data_source").set_value("path").run()
    at.text_input(key="data_path").set_value(str(path)).run()
    at.button(key="data_load").click().run()
    error = messages(at.error)[0]
    assert "'Field names' above" in error and "--field" not in error
    assert at.expander[0].proto.expanded  # the form is open where the error points
    at.text_input(key="data_field_instruction").set_value("question")
    at.text_input(key="data_field_output").set_value("answer").run()
    assert "2 set: instruction, output" in at.expander[0].label
    at.button(key="data_load").click().run()
    assert_clean(at)
    assert at.session_state["data"]["targets"]["rows"] == 2
    # The next demo load ignores the names set for the CSV.
    at.radio(key="data_source").set_value("demo").run()
    at.radio(key="data_role").set_value("existing").run()
    at.number_input(key="data_demo_limit").set_value(5).run()
    at.button(key="data_load").click().run()
    assert_clean(at)
    assert at.session_state["data"]["existing"]["spec"]["field_map"] is None


def test_row_offsets_are_applied_by_the_data_layer_as_before(tmp_path):
    import pytest

    from delift_core.data.dataset import hash_records, load_dataset
    from delift_core.errors import DataError
    from ui import registry

    bad = {"instruction": "no answer", "input": "", "output": ""}
    rows = [{"instruction": f"Say {i}.", "input": "", "output": str(i)} for i in range(6)]
    path = tmp_path / "slices.jsonl"
    path.write_bytes(_rows_jsonl([rows[0], bad, rows[1], rows[0], bad, *rows[2:]]))
    spec = {"kind": "path", "path": str(path), "offset": 2, "limit": 3, "skip_invalid": True}
    ds = registry.load_source(spec, None)
    # What the page loaded before the data layer had an offset: offset + limit valid records,
    # the first `offset` of them dropped and the rest hashed again.
    longer = load_dataset(path, limit=5, skip_invalid=True)
    assert ds.records == longer.records[2:] and ds.hash == hash_records(longer.records[2:])
    assert [r.line for r in ds.records] == [4, 6, 7] and ds.warnings == longer.warnings
    assert registry.make_handle(spec, ds)["label"] == (
        "slices.jsonl (valid rows 3-5, skipping invalid)"
    )
    beyond = {**spec, "offset": 7, "limit": None}
    with pytest.raises(DataError, match="only 7 rows: nothing left after skipping 7"):
        registry.load_source(beyond, None)
