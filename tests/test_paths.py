"""Confinement of local paths: data roots, the export root, links, and the off switch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from delift_core import paths
from delift_core.data.dataset import load_dataset
from delift_core.errors import ConfigError, DataError, PathError

ROW = {"instruction": "Say hi", "input": "", "output": "hi"}


@pytest.fixture()
def tree(tmp_path, monkeypatch):
    """data/ (the only data root) with a file, outside/ with a file, and a clean environment."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    for folder in (data, outside):
        (folder / "rows.jsonl").write_text(json.dumps(ROW) + "\n")
    monkeypatch.setenv(paths.DATA_ROOTS_ENV, str(data))
    monkeypatch.delenv(paths.LOCAL_PATHS_ENV, raising=False)
    monkeypatch.delenv(paths.EXPORT_ROOT_ENV, raising=False)
    return tmp_path


def test_defaults_are_the_working_directory_and_the_home_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_ROOTS_ENV, raising=False)
    monkeypatch.delenv(paths.EXPORT_ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.data_roots() == (tmp_path.resolve(), (Path.home() / "data").resolve())
    assert paths.export_root() == (tmp_path / "out").resolve()


def test_roots_are_separated_by_pathsep(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(paths.DATA_ROOTS_ENV, f"{a}{os.pathsep}{os.pathsep}{b}")
    assert paths.data_roots() == (a.resolve(), b.resolve())


def test_paths_under_a_root_pass_resolved(tree):
    inside = tree / "data" / "rows.jsonl"
    assert paths.check_data_path(str(inside)) == inside.resolve()
    # ".." that stays inside, and the root itself, pass too.
    assert paths.check_data_path(f"{tree}/data/sub/../rows.jsonl") == inside.resolve()
    assert paths.check_data_path(tree / "data") == (tree / "data").resolve()
    assert len(load_dataset(paths.check_data_path(inside))) == 1


def test_outside_gives_one_message_whether_or_not_the_file_exists(tree):
    messages = []
    for name in ("rows.jsonl", "no-such-file.jsonl"):
        target = str(tree / "outside" / name)
        with pytest.raises(PathError) as caught:
            paths.check_data_path(target)
        messages.append(str(caught.value).replace(target, "<path>"))
        assert isinstance(caught.value, DataError)  # the pages' DataError handlers catch it
    assert messages[0] == messages[1]
    assert "outside the folders this app may read" in messages[0]
    assert "DELIFT_DATA_ROOTS" in messages[0]
    escape = f"{tree}/data/../outside/rows.jsonl"
    with pytest.raises(PathError):
        paths.check_data_path(escape)


def test_links_are_followed_before_the_check(tree):
    data = tree / "data"
    (data / "link.jsonl").symlink_to(tree / "outside" / "rows.jsonl")
    (data / "dir-link").symlink_to(tree / "outside")
    (data / "dangling.jsonl").symlink_to(tree / "outside" / "missing.jsonl")
    for name in ("link.jsonl", "dir-link/rows.jsonl", "dangling.jsonl"):
        with pytest.raises(PathError):
            paths.check_data_path(data / name)
    # A link that stays inside the roots is fine.
    (data / "alias.jsonl").symlink_to(data / "rows.jsonl")
    assert paths.check_data_path(data / "alias.jsonl") == (data / "rows.jsonl").resolve()


def test_a_dataset_folder_cannot_link_to_files_outside(tree):
    folder = tree / "data" / "hf"
    folder.mkdir()
    (folder / "state.json").write_text("{}")
    (folder / "data-00000-of-00001.arrow").symlink_to(tree / "outside" / "rows.jsonl")
    with pytest.raises(PathError):
        paths.check_data_path(folder)


def test_unusable_paths_are_refused_like_outside_ones(tree):
    with pytest.raises(PathError):
        paths.check_data_path(f"{tree}/data/a\x00b.jsonl")
    with pytest.raises(DataError, match="give a file or folder path"):
        paths.check_data_path("  ")


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false", "no"])
def test_local_paths_can_be_turned_off(tree, monkeypatch, value):
    monkeypatch.setenv(paths.LOCAL_PATHS_ENV, value)
    assert paths.local_paths_enabled() is False
    with pytest.raises(PathError, match="turned off"):
        paths.check_data_path(tree / "data" / "rows.jsonl")


def test_a_mistyped_switch_is_an_error_not_on(monkeypatch):
    monkeypatch.setenv(paths.LOCAL_PATHS_ENV, "of")
    with pytest.raises(ConfigError, match="DELIFT_LOCAL_PATHS"):
        paths.local_paths_enabled()
    monkeypatch.setenv(paths.LOCAL_PATHS_ENV, "on")
    assert paths.local_paths_enabled() is True


def test_exports_stay_under_the_export_root(tree, monkeypatch):
    root = tree / "exports"
    monkeypatch.setenv(paths.EXPORT_ROOT_ENV, str(root))
    assert paths.export_target(root, "a.jsonl") == (root / "a.jsonl").resolve()
    assert paths.export_target(root / "team" / "x", "a.jsonl") == (root / "team/x/a.jsonl")
    outside = []
    for folder in (tree / "outside", tree / "no-such-folder", f"{root}/../outside"):
        with pytest.raises(PathError) as caught:
            paths.export_target(folder, "a.jsonl")
        outside.append(str(caught.value).replace(str(folder), "<folder>"))
        assert "DELIFT_EXPORT_ROOT" in outside[-1]
    assert len(set(outside)) == 1
    root.mkdir()
    (root / "link").symlink_to(tree / "outside")
    with pytest.raises(PathError):
        paths.export_target(root / "link", "a.jsonl")
    with pytest.raises(ConfigError):
        paths.export_target(root, "../a.jsonl")
    assert not list((tree / "outside").glob("a.jsonl"))
