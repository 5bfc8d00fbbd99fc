"""Export: schemas, annotations, manifest, atomic writes, confined paths."""

from __future__ import annotations

import json

import pytest

from delift_core.data.dataset import dataset_from_rows
from delift_core.errors import ConfigError
from delift_core.export import confined_path, export_subset, jsonl_bytes, subset_rows

ROWS = [
    {"id": "a", "instruction": "Say hi", "input": "", "output": "hi", "extra": 1},
    {"id": "b", "instruction": "Translate", "input": "<b>chat</b>", "output": "cat", "extra": 2},
    {"id": "c", "instruction": "Count", "input": "1 2", "output": "2", "extra": 3},
]


@pytest.fixture()
def records():
    return dataset_from_rows(ROWS).records


def test_original_keeps_every_field_in_selection_order(records):
    rows = subset_rows(records, [2, 0], "original")
    assert rows == [ROWS[2], ROWS[0]]


def test_alpaca_and_messages(records):
    assert subset_rows(records, [1], "alpaca") == [
        {"instruction": "Translate", "input": "<b>chat</b>", "output": "cat"}
    ]
    (row,) = subset_rows(records, [1], "messages")
    assert row["messages"][0] == {"role": "user", "content": "Translate\n\n<b>chat</b>"}
    assert row["messages"][1] == {"role": "assistant", "content": "cat"}
    assert row["id"] == records[1].id  # kept as metadata
    (plain,) = subset_rows(records, [0], "messages")
    assert plain["messages"][0]["content"] == "Say hi"


def test_annotations_and_errors(records):
    rows = subset_rows(records, [1], "alpaca", [{"rank": 1, "gain": 0.5}])
    assert rows[0]["_delift"] == {"rank": 1, "gain": 0.5}
    with pytest.raises(ConfigError):
        subset_rows(records, [5], "alpaca")
    with pytest.raises(ConfigError):
        subset_rows(records, [0], "yaml")
    with pytest.raises(ConfigError):
        subset_rows(records, [0, 1], "alpaca", [{"rank": 1}])


def test_jsonl_keeps_text_verbatim():
    data = jsonl_bytes([{"t": "<script>x</script> é"}])
    assert data.decode("utf-8") == '{"t": "<script>x</script> é"}\n'


def test_export_writes_jsonl_and_manifest_atomically(tmp_path, records):
    target = tmp_path / "out" / "subset.jsonl"
    paths = export_subset(target, subset_rows(records, [0, 1], "alpaca"), {"method": "delift"})
    assert [json.loads(x)["output"] for x in paths.jsonl.read_text().splitlines()] == ["hi", "cat"]
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["method"] == "delift" and manifest["output"]["rows"] == 2
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "subset.jsonl",
        "subset.manifest.json",
    ]
    with pytest.raises(ConfigError):
        export_subset(tmp_path / "subset.txt", [], {})


def test_failed_write_leaves_previous_file_intact(tmp_path, records, monkeypatch):
    target = tmp_path / "subset.jsonl"
    target.write_text("previous\n")

    def broken(rows):
        yield b'{"partial": '
        raise OSError("disk full")

    from delift_core import files

    with pytest.raises(OSError):
        files.write_chunks_atomic(target, broken([]))
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["subset.jsonl"]


@pytest.mark.parametrize("name", ["../escape.jsonl", "/etc/passwd", "a/../../b.jsonl", ""])
def test_confined_path_refuses_escapes(tmp_path, name):
    with pytest.raises(ConfigError):
        confined_path(tmp_path, name)


def test_confined_path_refuses_symlink_escape(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "link").symlink_to(outside)
    with pytest.raises(ConfigError):
        confined_path(folder, "link/x.jsonl")
    assert confined_path(folder, "ok.jsonl") == (folder / "ok.jsonl").resolve()


def test_exported_files_get_the_usual_permissions(tmp_path, records):
    import os

    umask = os.umask(0)
    os.umask(umask)
    paths = export_subset(tmp_path / "s.jsonl", subset_rows(records, [0], "alpaca"), {})
    for path in (paths.jsonl, paths.manifest):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
