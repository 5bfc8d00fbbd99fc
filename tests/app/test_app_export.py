"""Export page: formats, annotations, downloads, and writing files confined to a folder.

The app runs in the test's temporary folder, so the export root is its ./out.
"""

from __future__ import annotations

import json

import numpy as np
from apptools import assert_clean, demo_handle, messages, score, services, with_data
from apptools import page as _page

from delift_core.pipeline import list_stages
from ui import registry

WS = "team-test"  # the workspace the selections are saved in


def page(name: str):
    """The page, opened in the workspace the selections are saved in."""
    at = _page(name)
    at.query_params["workspace"] = WS
    return at


def _saved_selection(name: str = "picked", **extra: object) -> tuple[dict, list[int]]:
    pool = demo_handle(6)
    key = score(pool)
    cache, _ = services()
    meta = dict(list_stages(cache))[key]
    order = [4, 0, 2]
    registry.save_selection(
        cache,
        name,
        np.asarray(order),
        np.asarray([0.5, 0.25, float("nan")]),
        {
            "method": "delift",
            "stage": "instruction",
            "kernel": "minmax",
            "stage_key": key,
            "fraction": 0.5,
            "pool": meta["pool"],
            "targets": None,
            "existing": None,
            "model": meta["model"],
            **extra,
        },
        WS,
    )
    return pool, order


def test_empty_state_without_selections():
    at = with_data(page("5_Export.py"), pool=demo_handle(6)).run()
    assert not at.exception
    assert any("No saved selections" in m for m in messages(at.info))


def test_preview_formats_and_annotations():
    pool, order = _saved_selection()
    at = with_data(page("5_Export.py"), pool=pool).run()
    assert_clean(at)
    assert [b.label for b in at.get("download_button")] == ["Download JSONL", "Download manifest"]
    first = json.loads(at.code[0].value.splitlines()[0])
    assert first["id"] == "demo-0005" and first["family"]  # original fields, pick order
    at.radio(key="export_format").set_value("messages").run()
    first = json.loads(at.code[0].value.splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["id"] == "demo-0005"
    at.checkbox(key="export_annotate").check().run()
    lines = [json.loads(line) for line in at.code[0].value.splitlines()]
    assert [row["_delift"]["rank"] for row in lines] == [1, 2, 3]
    assert lines[0]["_delift"]["gain"] == 0.5 and lines[2]["_delift"]["gain"] is None


def test_write_files_into_a_folder(tmp_path):
    pool, order = _saved_selection()
    folder = tmp_path / "out" / "exports"
    at = with_data(page("5_Export.py"), pool=pool).run()
    at.radio(key="export_format").set_value("alpaca")
    at.text_input(key="export_folder").set_value(str(folder))
    at.text_input(key="export_filename").set_value("subset.jsonl").run()
    at.button(key="export_write").click().run()
    assert_clean(at)
    assert "Written:" in messages(at.success)
    data = (folder / "subset.jsonl").read_bytes()
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    ds = registry.load_source(pool["spec"], None)
    assert rows == [
        {"instruction": r.instruction, "input": r.input, "output": r.output}
        for r in (ds.records[i] for i in order)
    ]
    manifest = json.loads((folder / "subset.manifest.json").read_text())
    assert manifest["selection"] == "picked" and manifest["indices"] == order
    assert manifest["output"] == {"file": "subset.jsonl", "rows": 3}
    assert manifest["export"]["format"] == "alpaca" and manifest["inputs"]["pool"]["rows"] == 6
    # Selections saved before pinning existed have none.
    assert manifest["pinned_ids"] == [] and manifest["excluded_ids"] == []


def test_manifest_carries_the_pinned_and_excluded_ids(tmp_path):
    pool, _ = _saved_selection(pinned_ids=["demo-0005"], excluded_ids=["demo-0002", "demo-0004"])
    folder = tmp_path / "out" / "exports"
    at = with_data(page("5_Export.py"), pool=pool).run()
    at.text_input(key="export_folder").set_value(str(folder)).run()
    at.button(key="export_write").click().run()
    assert_clean(at)
    manifest = json.loads((folder / "picked.manifest.json").read_text())
    assert manifest["pinned_ids"] == ["demo-0005"]
    assert manifest["excluded_ids"] == ["demo-0002", "demo-0004"]


def test_file_names_cannot_leave_the_folder(tmp_path):
    pool, _ = _saved_selection()
    folder = tmp_path / "out" / "exports"
    folder.mkdir(parents=True)
    at = with_data(page("5_Export.py"), pool=pool).run()
    at.text_input(key="export_folder").set_value(str(folder))
    at.text_input(key="export_filename").set_value("../escape.jsonl").run()
    at.button(key="export_write").click().run()
    assert not at.exception
    assert any("Nothing was written" in e for e in messages(at.error))
    assert not (tmp_path / "out" / "escape.jsonl").exists() and list(folder.iterdir()) == []


def test_the_default_selection_is_named_and_a_changed_pool_stops_the_export():
    pool, _ = _saved_selection("older")
    cache, _ = services()
    _, meta = registry.load_selection(cache, "older")
    changed = {**meta, "pool": {**meta["pool"], "hash": "0" * 16}}
    indices, _ = registry.load_selection(cache, "older")
    registry.save_selection(cache, "stale", indices, np.zeros(len(indices)), changed, WS)
    at = with_data(page("5_Export.py"), pool=pool)
    at.session_state["last_selection"] = "older"
    at.run()
    assert_clean(at)
    assert at.selectbox(key="export_name").value == "older"
    assert "'older' is the selection you saved last in this session." in messages(at.caption)
    at.selectbox(key="export_name").set_value("stale").run()
    errors = messages(at.error)
    assert len(errors) == 1 and "has changed since it was selected" in errors[0]
    assert "0" * 16 in errors[0] and meta["pool"]["hash"] in errors[0]
    assert not at.get("download_button")  # nothing to download from the wrong rows
