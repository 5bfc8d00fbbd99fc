"""Parquet/Arrow values JSON cannot hold are exported as text in the original format."""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from delift_core.data.dataset import dataset_from_rows, load_bytes, load_dataset
from delift_core.errors import DataError
from delift_core.export import export_subset, json_value, jsonl_bytes, subset_rows

BASE = {"instruction": ["Say hi", "Count"], "output": ["hi", "2"]}
CASES = {
    "timestamp_us": (
        pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 123456), None], pa.timestamp("us")),
        ["2024-01-02T03:04:05.123456", None],
    ),
    "timestamp_ns": (
        pa.array([1_704_164_645_123_456_789, 0], pa.timestamp("ns")),
        ["2024-01-02T03:04:05.123456789", "1970-01-01T00:00:00"],
    ),
    "timestamp_tz": (
        pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("s", tz="UTC")),
        ["2024-01-02T03:04:05+00:00", None],
    ),
    "date32": (
        pa.array([dt.date(2024, 2, 29), dt.date(1, 1, 1)], pa.date32()),
        ["2024-02-29", "0001-01-01"],
    ),
    "date64": (pa.array([dt.date(2024, 2, 29), None], pa.date64()), ["2024-02-29", None]),
    "decimal": (
        pa.array([Decimal("12.30"), Decimal("-0.05")], pa.decimal128(10, 2)),
        ["12.30", "-0.05"],
    ),
    "decimal_large": (
        pa.array([Decimal("123456789012345678901234567890.5"), None], pa.decimal256(40, 1)),
        ["123456789012345678901234567890.5", None],
    ),
    "binary": (
        pa.array([b"\x00\xffhi", b""], pa.binary()),
        [base64.b64encode(b"\x00\xffhi").decode(), ""],
    ),
    "large_binary": (pa.array([b"abc", None], pa.large_binary()), ["YWJj", None]),
    "fixed_binary": (pa.array([b"\x01\x02", b"\x03\x04"], pa.binary(2)), ["AQI=", "AwQ="]),
    "time": (pa.array([dt.time(1, 2, 3, 4), None], pa.time64("us")), ["01:02:03.000004", None]),
    "duration": (
        pa.array([dt.timedelta(seconds=90, microseconds=500000), None], pa.duration("us")),
        ["PT90.5S", None],
    ),
    "nested": (
        pa.array(
            [[{"at": dt.date(2024, 1, 1), "raw": b"x"}], []],
            pa.list_(pa.struct([("at", pa.date32()), ("raw", pa.binary())])),
        ),
        [[{"at": "2024-01-01", "raw": "eA=="}], []],
    ),
}


def _parquet(tmp_path, name: str, column: pa.Array):
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.table({**BASE, name: column}), path)
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_parquet_column_exports_as_json_text(tmp_path, name):
    column, expected = CASES[name]
    pool = load_dataset(_parquet(tmp_path, name, column))
    target = tmp_path / "out" / "subset.jsonl"
    export_subset(target, subset_rows(pool.records, [0, 1], "original"), {"n": 2})
    rows = [json.loads(line) for line in target.read_text("utf-8").splitlines()]
    assert [row[name] for row in rows] == expected
    assert [row["output"] for row in rows] == ["hi", "2"]


def test_uploaded_parquet_and_arrow_folder_export_the_same(tmp_path):
    column, expected = CASES["timestamp_us"]
    path = _parquet(tmp_path, "timestamp_us", column)
    uploaded = load_bytes(path.read_bytes(), "x.parquet")
    rows = subset_rows(uploaded.records, [0, 1], "original")
    assert [json.loads(line)["timestamp_us"] for line in jsonl_bytes(rows).splitlines()] == expected
    folder = tmp_path / "hf"
    folder.mkdir()
    table = pa.table({**BASE, "decimal": CASES["decimal"][0]})
    arrow = folder / "data-00000-of-00001.arrow"
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    (folder / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
    )
    hf = load_dataset(folder)
    lines = jsonl_bytes(subset_rows(hf.records, [0, 1], "original")).splitlines()
    assert [json.loads(line)["decimal"] for line in lines] == ["12.30", "-0.05"]


def test_json_value_keeps_json_types_and_writes_decimals_without_exponents():
    assert json_value({"a": [1, 2.5, True, None, "x"]}) == {"a": [1, 2.5, True, None, "x"]}
    assert json_value(Decimal("1E+2")) == "100"
    assert json_value(dt.timedelta(days=-1)) == "-PT86400S"
    with pytest.raises(TypeError):
        json_value(object())


def test_a_value_json_cannot_hold_names_the_line_and_field():
    pool = dataset_from_rows([{**{k: v[0] for k, v in BASE.items()}, "odd": {1, 2}}])
    with pytest.raises(DataError) as caught:
        subset_rows(pool.records, [0], "original")
    assert caught.value.line == 1 and caught.value.field == "odd"
    assert "set" in str(caught.value)
