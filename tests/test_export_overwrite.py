"""An existing export is never replaced without an explicit choice (library and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from delift_core.cli import main
from delift_core.data.dataset import dataset_from_rows
from delift_core.errors import ConfigError
from delift_core.export import export_subset, subset_rows

ROWS = [
    {"id": f"r{i}", "instruction": f"Task {i}", "input": "", "output": f"{i}"} for i in range(6)
]


@pytest.fixture()
def rows():
    return subset_rows(dataset_from_rows(ROWS).records, [0, 1], "alpaca")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_existing_export_is_kept_unless_overwrite(tmp_path, rows):
    target = tmp_path / "subset.jsonl"
    export_subset(target, rows, {"v": 1})
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError, match="already exists") as caught:
        export_subset(target, rows[:1], {"v": 2})
    assert str(target) in str(caught.value)
    assert _snapshot(tmp_path) == before  # nothing replaced, no leftovers
    paths = export_subset(target, rows[:1], {"v": 2}, overwrite=True)
    assert len(paths.jsonl.read_text().splitlines()) == 1
    assert json.loads(paths.manifest.read_text())["v"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subset.jsonl", "subset.manifest.json"]


def test_a_manifest_alone_also_blocks_the_export(tmp_path, rows):
    (tmp_path / "subset.manifest.json").write_text("{}\n")
    with pytest.raises(ConfigError, match="subset.manifest.json already exists"):
        export_subset(tmp_path / "subset.jsonl", rows, {})
    assert [p.name for p in tmp_path.iterdir()] == ["subset.manifest.json"]


def test_a_link_in_place_of_the_file_is_not_followed_or_replaced(tmp_path, rows):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (tmp_path / "subset.jsonl").symlink_to(victim)
    with pytest.raises(ConfigError, match="already exists"):
        export_subset(tmp_path / "subset.jsonl", rows, {})
    assert victim.read_text() == "keep me\n"


def test_a_file_appearing_during_the_export_is_not_replaced(tmp_path, rows, monkeypatch):
    from delift_core import export

    target = tmp_path / "subset.jsonl"
    real = export.write_bytes_atomic

    def racing(path, data):
        written = real(path, data)
        target.write_text("written by someone else\n")  # lands between the check and the link
        return written

    monkeypatch.setattr(export, "write_bytes_atomic", racing)
    with pytest.raises(ConfigError, match="appeared"):
        export_subset(target, rows, {})
    assert target.read_text() == "written by someone else\n"
    assert [p.name for p in tmp_path.iterdir()] == ["subset.jsonl"]


def _select(tmp_path: Path, out: Path, *extra: str) -> int:
    pool = tmp_path / "pool.jsonl"
    if not pool.exists():
        pool.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    args = ["select", str(pool), "--method", "random", "--budget", "2", "--out", str(out)]
    return main([*args, "--cache", str(tmp_path / "c.duckdb"), *extra])


def test_cli_select_refuses_to_overwrite_without_the_flag(tmp_path, capsys):
    out = tmp_path / "subset.jsonl"
    assert _select(tmp_path, out, "--seed", "1") == 0
    before = out.read_bytes(), (tmp_path / "subset.manifest.json").read_bytes()
    capsys.readouterr()
    assert _select(tmp_path, out, "--seed", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    assert (out.read_bytes(), (tmp_path / "subset.manifest.json").read_bytes()) == before
    assert _select(tmp_path, out, "--seed", "2", "--overwrite") == 0
    manifest = json.loads((tmp_path / "subset.manifest.json").read_text())
    assert manifest["selection"]["seed"] == 2
