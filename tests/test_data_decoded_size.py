"""Columnar files are refused before they fill the memory: a Parquet file (or a Hugging Face
folder of compressed Arrow files) far smaller on disk than its decoded data is measured from its
footer and batch by batch, and refused past data.MAX_DECODED_BYTES with both sizes named."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from delift_core.data import dataset as data
from delift_core.data.dataset import load_bytes, load_dataset
from delift_core.errors import DataError

LIMIT = 1024**2  # 1 MiB
ROWS = 2_000
LONG = "x" * 5_000  # 2,000 rows x 5,000 characters: about 10 MB once decoded


@pytest.fixture()
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(data, "MAX_DECODED_BYTES", LIMIT)
    return LIMIT


def repeated_parquet(path: Path) -> Path:
    """A Parquet file of one long string repeated on every row: a few KB on disk."""
    table = pa.table({"instruction": [LONG] * ROWS, "output": ["y"] * ROWS})
    pq.write_table(table, path, compression="zstd")
    return path


def test_a_small_parquet_that_decodes_past_the_limit_is_refused_before_its_rows_are_built(
    tmp_path: Path, small_limit: int
) -> None:
    path = repeated_parquet(tmp_path / "bomb.parquet")
    assert path.stat().st_size < 20_000  # 10 MB of text in a few KB
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            load_dataset(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert str(path) in message
    assert "decodes to more than 1.0 MiB in memory" in message
    assert f"of {ROWS:,}" in message and "the file is" in message
    assert "Split it" in message
    assert info.value.line is None and info.value.field is None
    # The first batch alone (1,024 rows, 5 MB) is past the limit: no row became a Python str.
    assert peak < 2 * LIMIT, peak


def test_an_upload_is_refused_the_same_way(small_limit: int, tmp_path: Path) -> None:
    blob = repeated_parquet(tmp_path / "bomb.parquet").read_bytes()
    with pytest.raises(DataError, match=r"<upload:bomb\.parquet>: decodes to more than 1\.0 MiB"):
        load_bytes(blob, "bomb.parquet")


def test_the_same_file_loads_when_it_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = repeated_parquet(tmp_path / "fits.parquet")
    monkeypatch.setattr(data, "MAX_DECODED_BYTES", 64 * LIMIT)
    ds = load_dataset(path)
    assert len(ds) == ROWS and ds.records[0].instruction == LONG


def test_a_file_whose_footer_already_says_too_much_is_refused_unread(
    tmp_path: Path, small_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100,000 rows x 2 columns: at least 8 bytes per value (offsets), 1.5 MiB.
    path = tmp_path / "many.parquet"
    pq.write_table(pa.table({"instruction": ["a"] * 100_000, "output": ["b"] * 100_000}), path)

    def never(*_args, **_kwargs):
        raise AssertionError("rows were read")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", never)
    with pytest.raises(DataError, match=r"decodes to at least 1\.5 MiB in memory \(100,000 rows"):
        load_dataset(path)


def test_text_columns_keep_their_values_and_types() -> None:
    # Text columns are read dictionary-encoded to be measured; the values must not change.
    table = pa.table(
        {
            "instruction": ["a", "b", "a"],
            "output": ["x", "y", "z"],
            "blob": pa.array([b"\x00\x01", b"", None], pa.binary()),
            "big": pa.array(["p", None, "r"], pa.large_string()),
            "n": [1, 2, 3],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ds = load_bytes(buf.getvalue(), "t.parquet")
    assert [dict(r.fields) for r in ds.records] == table.to_pylist()
    assert isinstance(ds.records[0].fields["blob"], bytes)


def write_compressed_hf(folder: Path, rows: int) -> Path:
    folder.mkdir()
    table = pa.table({"instruction": [LONG] * rows, "output": ["y"] * rows})
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with (
        pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema, options=options) as writer,
    ):
        writer.write_table(table, max_chunksize=256)
    state = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "dataset_info.json").write_text("{}")
    return folder


def test_a_hugging_face_folder_of_compressed_arrow_is_bounded_too(
    tmp_path: Path, small_limit: int
) -> None:
    folder = write_compressed_hf(tmp_path / "hf", ROWS)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 100_000
    with pytest.raises(DataError) as info:
        load_dataset(folder)
    message = str(info.value)
    assert message.startswith(f"{folder}: decodes to more than 1.0 MiB in memory")
    assert "its 1 Arrow file(s) hold" in message
    small = write_compressed_hf(tmp_path / "small", 100)  # 500 KB decoded: fits
    assert len(load_dataset(small)) == 100
