"""Columnar readers: Parquet files and folders saved by Hugging Face `datasets.save_to_disk`
(Arrow IPC files), as (line, raw) pairs like the text readers in `delift_core.data.readers`.

`line` is the record's index + 1. A columnar file can be far smaller than its data (a long
string repeated on every row compresses to a few bytes, and Arrow files may be compressed too),
so its size on disk says little about the memory it needs: each reader takes `max_bytes`, the
most its columns may take once decoded, and refuses the file with a DataError naming both sizes
before the rows past that point become Python objects.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from delift_core.data.readers import SUPPORTED_FORMATS
from delift_core.errors import DataError


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _decoded_bytes(batch: Any) -> int:
    """Bytes the columns of an Arrow record batch take once decoded. A dictionary column (text
    columns of Parquet files are read so) counts each row's value in full, as plain strings
    would hold it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            lengths = pc.take(pc.binary_length(column.dictionary), column.indices)
            total += int(pc.sum(lengths).as_py() or 0) + 8 * len(column)  # values + offsets
        else:
            total += column.nbytes
    return total


def _checked_rows(
    batches: Iterator[Any], label: str, max_bytes: int, sizes: str
) -> Iterator[tuple[int, Any]]:
    """(line, raw) pairs of Arrow record batches. Each batch is measured before its rows become
    Python objects; once the batches so far decode to more than `max_bytes`, a DataError names
    both sizes (`sizes`: what is known of the whole, like "; the file is 1.0 KiB")."""
    import pyarrow as pa

    line, decoded = 0, 0
    for batch in batches:
        decoded += _decoded_bytes(batch)
        if decoded > max_bytes:
            raise DataError(
                f"decodes to more than {_fmt_bytes(max_bytes)} in memory (already"
                f" {_fmt_bytes(decoded)} by row {line + batch.num_rows:,}{sizes}); files that"
                f" decode to more than {_fmt_bytes(max_bytes)} are refused. Split it into"
                " smaller files",
                path=label,
            )
        try:
            rows = batch.to_pylist()
        except (pa.ArrowException, ValueError) as exc:
            raise DataError(f"cannot be read ({exc})", path=label, line=line + 1) from None
        for row in rows:
            line += 1
            yield line, row


def read_parquet_rows(
    source: Any, label: str, *, max_bytes: int, file_bytes: int | None = None
) -> Iterator[tuple[int, Any]]:
    """(line, raw) pairs of a Parquet file (a path or a binary file object).

    A Parquet file can be far smaller than its data (a long string repeated compresses to a few
    bytes), so its size on disk says little. The row groups' uncompressed sizes in its footer
    are checked before anything is read, then each batch's decoded size while reading; past
    `max_bytes` the file is refused with a DataError naming both sizes. Text columns are read
    dictionary-encoded, so that a value repeated on many rows is measured before it is copied.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
        meta = parquet.metadata
        file_size = "" if file_bytes is None else f"; the file is {_fmt_bytes(file_bytes)}"
        # At least the uncompressed pages, and 8 bytes per value (offsets, numbers).
        footer = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        least = max(footer, 8 * meta.num_rows * meta.num_columns)
        if least > max_bytes:
            raise DataError(
                f"decodes to at least {_fmt_bytes(least)} in memory ({meta.num_rows:,} rows"
                f"{file_size}); files that decode to more than {_fmt_bytes(max_bytes)} are"
                " refused. Split it into smaller files",
                path=label,
            )
        repeated = [name for name, n in Counter(parquet.schema_arrow.names).items() if n > 1]
        if repeated:
            raise DataError(
                f"duplicate column name {repeated[0]!r}; each row would keep only one of them."
                " Rename one",
                path=label,
            )
        text = [
            f.name
            for f in parquet.schema_arrow
            if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_binary(f.type)
            or pa.types.is_large_binary(f.type)
        ]
        if text:
            parquet = pq.ParquetFile(source, read_dictionary=text, metadata=meta)
        batches = parquet.iter_batches(batch_size=1024)
        sizes = f" of {meta.num_rows:,}{file_size}"
        yield from _checked_rows(batches, label, max_bytes, sizes)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path=label) from None


def find_arrow_files(folder: Path, label: str) -> list[Path]:
    """The data files of a `save_to_disk` folder, in order (state.json's list when present)."""
    if (folder / "dataset_dict.json").exists():
        splits = sorted(child.name for child in folder.iterdir() if child.is_dir())
        raise DataError(
            f"holds several splits ({', '.join(splits) or 'none'}); point at one split folder,"
            f" e.g. {folder / (splits[0] if splits else 'train')}",
            path=label,
        )
    state = folder / "state.json"
    if not (state.exists() or (folder / "dataset_info.json").exists()):
        raise DataError(
            "is a folder, not a Hugging Face dataset saved with save_to_disk (expected"
            f" state.json, dataset_info.json and data-*.arrow); supported: {SUPPORTED_FORMATS}",
            path=label,
        )
    if state.exists():
        try:
            names = [item["filename"] for item in json.loads(state.read_bytes())["_data_files"]]
            if not all(isinstance(name, str) and Path(name).name == name for name in names):
                raise ValueError("file names must be plain names inside the folder")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"state.json cannot be read ({type(exc).__name__}: {exc})", path=label
            ) from None
        files = [folder / name for name in names]
    else:
        files = sorted(folder.glob("data-*.arrow"))
    if not files:
        raise DataError("holds no data-*.arrow files", path=label)
    for file in files:
        if not file.is_file():
            raise DataError(f"data file {file.name} is missing", path=label)
    return files


def read_arrow_rows(files: list[Path], label: str, *, max_bytes: int) -> Iterator[tuple[int, Any]]:
    """(line, raw) pairs of the Arrow files of a save_to_disk folder (`label`), counted across
    files. Arrow files may be compressed: as for Parquet, each batch's decoded size is measured
    before its rows are read, and past `max_bytes` (all files together) the folder is refused."""
    size = sum(file.stat().st_size for file in files)
    sizes = f"; its {len(files)} Arrow file(s) hold {_fmt_bytes(size)}"
    return _checked_rows(_arrow_batches(files), label, max_bytes, sizes)


def _arrow_batches(files: list[Path]) -> Iterator[Any]:
    import pyarrow as pa

    for file in files:
        try:
            with pa.memory_map(str(file)) as source:
                is_file_format = source.read(6) == b"ARROW1"
                source.seek(0)
                reader = pa.ipc.open_file(source) if is_file_format else pa.ipc.open_stream(source)
                if is_file_format:
                    for i in range(reader.num_record_batches):
                        yield reader.get_batch(i)
                else:
                    yield from reader
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"not a readable Arrow file ({exc})", path=str(file)) from None
