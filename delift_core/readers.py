"""Format readers: bytes or files -> (line, raw record) pairs, before any schema check.

Each reader yields `(line, raw)` where `line` is 1-based (JSONL/CSV: the line in an editor, with
the CSV header as line 1; JSON array, Parquet, HF: the record's index + 1) and `raw` is the
record as parsed (normally a mapping; the caller refuses anything else). Errors are DataErrors
naming the file and, where known, the line. The rules these readers follow are listed in the
docstring of `delift_core.data`, the public entry point.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from delift_core.errors import DataError
from delift_core.schemas import SCHEMA_KEYS, TOO_LARGE, Notes, describe_value

SUPPORTED_FORMATS = ".jsonl, .ndjson, .json, .csv, .parquet, or a folder saved by Hugging Face datasets.save_to_disk"
_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
_MAGIC = (
    (b"PAR1", "a Parquet file; give it the .parquet extension"),
    (b"ARROW1", "an Arrow file, not text"),
    (b"\x1f\x8b", "gzip-compressed; decompress it first"),
    (b"PK\x03\x04", "a zip archive; extract it first"),
)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def detect_format(name: str, label: str) -> str:
    """The format ("jsonl" | "json" | "csv" | "parquet") from the extension of `name`."""
    suffix = Path(name).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        shown = f"'{suffix}'" if suffix else "without an extension"
        raise DataError(
            f"unsupported file type {shown}; supported: {SUPPORTED_FORMATS}", path=label
        )
    return _SUFFIX_FORMATS[suffix]


def _decode(data: bytes, label: str, notes: Notes) -> str:
    """Bytes -> text, refusing binary data and reporting bad UTF-8 by line and byte offset."""
    if not data:
        raise DataError("file is empty (0 bytes)", path=label)
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise DataError(f"this is {what}", path=label)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError("is encoded as UTF-16; save it as UTF-8", path=label)
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise DataError(
            f"is binary, not text (NUL byte at byte offset {nul})", path=label, line=line
        )
    start = 0
    if data.startswith(codecs.BOM_UTF8):
        start = len(codecs.BOM_UTF8)
        notes.add("bom", "UTF-8 byte order mark (BOM) at the start removed", line=1)
    try:
        text = str(memoryview(data)[start:], "utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - data.rfind(b"\n", 0, offset)
        raise DataError(
            f"not valid UTF-8: byte 0x{data[offset]:02x} at byte offset {offset} (column {column});"
            " save the file as UTF-8",
            path=label,
            line=line,
        ) from None
    return text


def _parse_int(literal: str) -> int | object:
    # Longer than any int64: do not build a huge int (Python refuses past 4300 digits anyway).
    return int(literal) if len(literal) <= 20 else TOO_LARGE


_DECODER = json.JSONDecoder(parse_int=_parse_int)


def _parse_json(text: str, label: str, line: int | None) -> Any:
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"malformed JSON: {exc.msg} (column {exc.colno}, character {exc.pos})",
            path=label,
            line=exc.lineno if line is None else line,
        ) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", path=label, line=line) from None


def read_text_rows(data: bytes, fmt: str, label: str, notes: Notes) -> Iterator[tuple[int, Any]]:
    """(line, raw) pairs of a JSONL, JSON or CSV file's bytes; `fmt` from detect_format."""
    text = _decode(data, label, notes)
    if not text.strip(" \t\r\n"):
        raise DataError("holds no records (only whitespace)", path=label)
    if fmt != "csv" and "\r\n" in text:  # CRLF is the CSV standard (RFC 4180): no warning there
        notes.add("crlf", "Windows (CRLF) line endings; read as plain line ends")
    if fmt == "csv":
        return _read_csv_rows(text, label, notes)
    if fmt == "json":
        return _read_json_rows(text, label, notes)
    return _read_jsonl_rows(text, label, notes)


class Unparsed:
    """A JSON Lines line that is not valid JSON: it stands in the row stream, so that the caller
    decides between refusing the file (raise `error`) and skipping the line (skip_invalid)."""

    def __init__(self, error: DataError) -> None:
        self.error = error


def _read_jsonl_rows(text: str, label: str, notes: Notes) -> Iterator[tuple[int, Any]]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip(" \t\r"):
            notes.add("blank", "blank line skipped", line=number)
            continue
        try:
            yield number, _parse_json(raw, label, number)
        except DataError as exc:
            yield number, Unparsed(exc)


def _read_json_rows(text: str, label: str, notes: Notes) -> Iterator[tuple[int, Any]]:
    try:
        value = _parse_json(text, label, None)
    except DataError as exc:
        if "Extra data" not in exc.reason:
            raise
        try:  # a .json file holding JSON Lines is common; accept it when every line is an object
            rows = list(_read_jsonl_rows(text, label, Notes(label)))
        except DataError:
            raise exc from None
        if not all(isinstance(row, Mapping) for _, row in rows):
            raise exc from None
        notes.add(
            "jsonl", "holds JSON Lines (one object per line), not one JSON value; read as such"
        )
        return iter(rows)
    if isinstance(value, dict):
        if any(key in value for key, _ in SCHEMA_KEYS):
            raise DataError("holds a single record; wrap it in [ ] to make a list", path=label)
        lists = [key for key, item in value.items() if isinstance(item, list)]
        if len(lists) != 1:
            found = ", ".join(map(repr, value)) or "none"
            raise DataError(
                "a top-level JSON object must hold exactly one list of records, like"
                f' {{"data": [...]}}; keys found: {found}',
                path=label,
            )
        value = value[lists[0]]
    if not isinstance(value, list):
        raise DataError(f"must hold an array of records; got {describe_value(value)}", path=label)
    return enumerate(value, start=1)


def _read_csv_rows(text: str, label: str, notes: Notes) -> Iterator[tuple[int, Any]]:
    if csv.field_size_limit() < 2**31 - 1:  # the default 128 KiB is too small for long texts
        csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)  # blank lines above the header
        if header is None:
            raise DataError("holds no records", path=label)
        repeated = [name for name, count in Counter(header).items() if count > 1]
        if repeated:
            raise DataError(
                f"duplicate column name {repeated[0]!r}", path=label, line=reader.line_num
            )
        end = reader.line_num
        for row in reader:
            line, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                notes.add("blank", "blank row skipped", line=line)
                continue
            if len(row) != len(header):
                raise DataError(
                    f"row has {len(row)} cells but the header has {len(header)} columns"
                    " (check quoting: an unclosed quote swallows the lines after it)",
                    path=label,
                    line=line,
                )
            record = dict(zip(header, row, strict=True))
            _note_formulas(record, line, notes)
            yield line, record
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path=label, line=reader.line_num) from None


def _note_formulas(record: dict[str, str], line: int, notes: Notes) -> None:
    for name, cell in record.items():
        if cell[:1] in ("=", "+", "-", "@") and not _NUMBER.fullmatch(cell):
            notes.add(
                "formula",
                "cell starts with =, +, - or @ (a spreadsheet formula); kept as text. Exports are"
                " JSONL, where it is inert, but take care if you open the data in a spreadsheet",
                line=line,
                name=name,
            )


def read_parquet_rows(source: Any, label: str) -> Iterator[tuple[int, Any]]:
    """(line, raw) pairs of a Parquet file (a path or a binary file object)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        line = 0
        for batch in pq.ParquetFile(source).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                line += 1
                yield line, row
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


def read_arrow_rows(files: list[Path]) -> Iterator[tuple[int, Any]]:
    """(line, raw) pairs of the Arrow files of a save_to_disk folder, counted across files."""
    import pyarrow as pa

    line = 0
    for file in files:
        try:
            with pa.memory_map(str(file)) as source:
                is_file_format = source.read(6) == b"ARROW1"
                source.seek(0)
                reader = pa.ipc.open_file(source) if is_file_format else pa.ipc.open_stream(source)
                batches = (
                    (reader.get_batch(i) for i in range(reader.num_record_batches))
                    if is_file_format
                    else reader
                )
                for batch in batches:
                    for row in batch.to_pylist():
                        line += 1
                        yield line, row
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"not a readable Arrow file ({exc})", path=str(file)) from None
