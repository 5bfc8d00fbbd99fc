"""Saved selections (delift_core/selection_store.py): the stored record and its versions, the
export manifest and `_delift` annotations; and the budget rule (config.selection_size)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from delift_core.config import SelectionSize, selection_size
from delift_core.errors import ConfigError, DataError
from delift_core.selection_store import (
    SCHEMA_VERSION,
    SavedSelection,
    check_pool,
    default_name,
    delift_annotations,
    export_annotations,
    export_manifest,
    file_stem,
    manifest_bytes,
)

POOL = {
    "label": "demo (rows 1-8)",
    "path": None,
    "hash": "a" * 16,
    "rows": 8,
    "schema": "alpaca",
    "spec": {"kind": "demo", "offset": 0, "limit": 8, "field_map": None},
    "created": "2024-01-01 00:00:00",  # stored with the stage; not part of a manifest
}
TARGETS = {**POOL, "label": "targets", "hash": "b" * 16, "rows": 3}


def _selection(**changes: object) -> SavedSelection:
    fields = {
        "name": "curated",
        "method": "delift-q",
        "stage": "task",
        "indices": np.array([4, 0, 2]),
        "gains": np.array([0.5, 0.25, np.nan]),
        "pool": POOL,
        "stage_key": "stage-1",
        "kernel": "minmax",
        "metric": "rms",
        "seed": 0,
        "quality_weight": 0.0,
        "quality_gate": 0.5,
        "quality_signal": "help_logprob",
        "fraction": 0.38,
        "pinned_ids": ["demo-0005"],
        "excluded_ids": ["demo-0002", "demo-0004"],
        "pool_size": 8,
        "objective": 0.75,
        "targets": TARGETS,
        "model": {"name": "tiny"},
        "scoring": {"mode": "exact"},
        "created": "2024-05-01 12:00:00",
    }
    return SavedSelection(**(fields | changes))


def test_round_trip_through_json():
    selection = _selection()
    assert selection.indices == (4, 0, 2) and selection.gains == (0.5, 0.25, None)
    assert selection.count == 3 and selection.pool_hash == "a" * 16
    record = json.loads(json.dumps(selection.to_dict()))  # as the cache stores it
    assert record["schema_version"] == SCHEMA_VERSION
    # The keys the other pages and older readers use keep their names.
    assert record["count"] == 3 and record["n"] == 8 and record["gains"] == [0.5, 0.25, None]
    assert record["pinned_ids"] == ["demo-0005"] and record["fraction"] == 0.38
    assert "indices" not in record  # stored as an array beside the record
    again = SavedSelection.from_dict(record, [4, 0, 2])
    assert again == selection
    assert again.to_dict() == selection.to_dict()


def test_a_count_budget_has_no_fraction_and_the_store_key_names_the_selection():
    selection = _selection(fraction=None)
    record = selection.to_dict()
    assert record["fraction"] is None
    renamed = SavedSelection.from_dict(record, selection.indices, name="stored-as")
    assert renamed.name == "stored-as" and renamed.fraction is None


def test_records_without_a_version_are_read_as_version_1():
    # As the Select page saved them before the version field existed (its full layout) ...
    current = _selection().to_dict()
    del current["schema_version"]
    assert SavedSelection.from_dict(current, [4, 0, 2]) == _selection()
    # ... and as older versions did: no name, count, pool size, pins or quality prior.
    oldest = {
        "method": "delift",
        "stage": "instruction",
        "kernel": "minmax",
        "stage_key": "stage-1",
        "fraction": 0.5,
        "pool": POOL,
        "targets": None,
        "existing": None,
        "model": {"name": "tiny"},
    }
    selection = SavedSelection.from_dict(oldest, np.array([4, 0, 2]), name="older")
    assert selection.name == "older" and selection.count == 3
    assert selection.gains == (None, None, None)
    assert selection.pinned_ids == () and selection.excluded_ids == ()
    assert selection.quality_weight is None and selection.quality_signal is None
    assert selection.metric is None and selection.pool_size is None and selection.created == ""
    assert SavedSelection.from_dict(selection.to_dict(), selection.indices) == selection


def test_a_newer_version_is_refused_with_what_to_do():
    record = _selection().to_dict() | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(DataError, match="newer DELIFT Studio") as caught:
        SavedSelection.from_dict(record, [4, 0, 2])
    assert caught.value.field == "schema_version" and "'curated'" in str(caught.value)
    assert f"schema {SCHEMA_VERSION + 1}" in str(caught.value)
    with pytest.raises(DataError, match="invalid schema version"):
        SavedSelection.from_dict(record | {"schema_version": "2"}, [4, 0, 2])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"method": None}, "method"),
        ({"stage": 3}, "stage"),
        ({"pool": {"label": "no spec"}}, "pool"),
        ({"name": ""}, "name"),
        ({"gains": [0.5]}, "gains"),
    ],
)
def test_unreadable_records_name_the_field(change, field):
    record = _selection().to_dict() | change
    with pytest.raises(DataError) as caught:
        SavedSelection.from_dict(record, [4, 0, 2])
    assert caught.value.field == field


def test_manifest_describes_the_selection_and_its_export():
    manifest = export_manifest(_selection(), pool_size=8, fmt="alpaca", annotate=True)
    assert manifest["selection"] == "curated" and manifest["stage_key"] == "stage-1"
    assert (manifest["method"], manifest["stage"], manifest["kernel"]) == (
        "delift-q",
        "task",
        "minmax",
    )
    assert (manifest["metric"], manifest["seed"], manifest["objective"]) == ("rms", 0, 0.75)
    assert manifest["budget"] == {"fraction": 0.38, "count": 3, "pool_size": 8}
    assert manifest["inputs"]["pool"] == {
        k: POOL[k] for k in ("label", "path", "hash", "rows", "schema", "spec")
    }
    assert manifest["inputs"]["targets"]["hash"] == "b" * 16
    assert manifest["inputs"]["existing"] is None
    assert manifest["model"] == {"name": "tiny"} and manifest["scoring"] == {"mode": "exact"}
    assert manifest["export"] == {
        "format": "alpaca",
        "annotations": True,
        "order": "selection order, first pick first",
    }
    assert manifest["indices"] == [4, 0, 2]
    assert manifest["pinned_ids"] == ["demo-0005"]
    assert manifest["excluded_ids"] == ["demo-0002", "demo-0004"]
    assert "delift-studio" in manifest["versions"] and manifest["created"].endswith("Z")
    download = json.loads(manifest_bytes(manifest, "curated.jsonl", 3))
    assert download["output"] == {"file": "curated.jsonl", "rows": 3}
    assert {k: v for k, v in download.items() if k != "output"} == manifest


def test_annotations_rank_the_rows_in_pick_order():
    assert export_annotations(_selection()) == [
        {"rank": 1, "gain": 0.5, "method": "delift-q", "stage": "task"},
        {"rank": 2, "gain": 0.25, "method": "delift-q", "stage": "task"},
        {"rank": 3, "gain": None, "method": "delift-q", "stage": "task"},
    ]
    extra = [{"quality": 0.9}, {"quality": 0.1}]
    rows = delift_annotations("delift", "instruction", np.array([1.0, np.nan]), extra)
    assert rows[1] == {
        "rank": 2,
        "gain": None,
        "method": "delift",
        "stage": "instruction",
        "quality": 0.1,
    }
    with pytest.raises(ValueError, match="one extra annotation per selected row"):
        delift_annotations("delift", "instruction", [1.0], extra)


def test_a_changed_pool_is_refused():
    selection = _selection()
    check_pool(selection, "a" * 16)
    with pytest.raises(DataError, match="has changed since it was selected") as caught:
        check_pool(selection, "c" * 16)
    assert "c" * 16 in str(caught.value) and "a" * 16 in str(caught.value)
    check_pool(_selection(pool={**POOL, "hash": None}), "c" * 16)  # nothing recorded to check


def test_default_names_and_file_stems():
    assert default_name("delift-q", "instruction", 3, 8, as_fraction=True) == (
        "delift-q-instruction-38pct"
    )
    assert default_name("random", "task", 5, 8, as_fraction=False) == "random-task-5"
    assert file_stem("my picks/v2 (final)") == "my-picks-v2-final"
    assert file_stem("../..") == "selection"


@pytest.mark.parametrize(
    ("budget", "available", "pinned", "method", "expected"),
    [
        (0.3, 8, 0, "delift", SelectionSize(2, 2, False)),  # round(0.3 * 8)
        (5, 8, 0, "delift", SelectionSize(5, 5, False)),  # a count
        (0.3, 8, 3, "delift", SelectionSize(3, 2, False)),  # raised to the pins
        (1.0, 5, 0, "delift", SelectionSize(5, 5, True)),  # capped at those not excluded
        (1.0, 5, 2, "delift", SelectionSize(5, 5, True)),
        (0.3, 6, 0, "full", SelectionSize(6, 6, False)),  # full keeps every available sample
    ],
)
def test_selection_size(budget, available, pinned, method, expected):
    size = selection_size(budget, 8, available=available, pinned=pinned, method=method)
    assert size == expected
    assert size.raised_to_pins == (expected.count > expected.budget)


def test_selection_size_refuses_a_budget_larger_than_the_pool():
    with pytest.raises(ConfigError, match="larger than the pool"):
        selection_size(9, 8, available=8, pinned=0, method="delift")
