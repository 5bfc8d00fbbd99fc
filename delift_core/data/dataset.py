"""Load, validate and describe instruction-tuning datasets.

Formats, chosen by extension: JSON Lines (.jsonl, .ndjson), JSON (.json: an array of records,
or an object holding one such array, like {"data": [...]}), CSV (.csv, header row first),
Parquet (.parquet), and a folder written by Hugging Face `datasets.save_to_disk` (Arrow IPC
stream files, read with pyarrow; the `datasets` package is not needed).

Schemas, detected from the first record and then required of every record:
  alpaca             {instruction, input?, output}
  prompt_completion  {prompt, completion}: prompt becomes the instruction, input is ""
  sharegpt           {conversations: [{from: human|user, value}, {from: gpt|assistant, value}]}
  messages           {messages: [{role: user|assistant|system, content}]}
  mapped             any fields, named by a field map {canonical name: source field}
For conversations the first user turn is the instruction and the first assistant turn after it
the output; system turns are skipped (they stay in `Record.fields`).

Rules, the same for every format:
  - instruction and output must be non-empty text; input is optional (missing or null gives "").
  - A number in a text field is converted with str() and a warning (numeric answers are common
    in maths sets). Booleans, lists, objects, and null in a required field are errors.
  - NaN, Infinity and integers outside the signed 64-bit range are refused anywhere in a record:
    JSON does not allow the first two, and the JSONL export must stay valid JSON.
  - A text field holds at most MAX_FIELD_CHARS characters; a file at most MAX_FILE_BYTES. A
    Parquet file or Hugging Face folder may also decode to at most MAX_DECODED_BYTES in memory:
    checked from the Parquet footer before any row is read, then batch by batch while reading,
    so that a small, highly compressed file cannot fill the memory.
  - CRLF line ends are accepted; JSON and JSONL files get a warning, CSV files (where CRLF is the
    standard row end) do not. Line breaks inside CSV cells are kept as they are.
  - Blank lines in JSONL and CSV rows whose cells are all blank are skipped with a warning.
  - A key repeated in one JSON object, or a column name repeated in a CSV or Parquet file, is an
    error: one of the values would be lost without a word.
Every error is a DataError naming the file, and the line (JSONL/CSV: the line in an editor;
JSON array, Parquet, HF: the record's index + 1) and field where known. Warnings are returned in
`Dataset.warnings`, one per kind, saying where it first happened and how often.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from delift_core.data.columnar import find_arrow_files, read_arrow_rows, read_parquet_rows
from delift_core.data.readers import SUPPORTED_FORMATS, Unparsed, detect_format, read_text_rows
from delift_core.data.schemas import (
    CANONICAL_FIELDS,
    MAX_FIELD_CHARS,
    Notes,
    check_values,
    describe_value,
    detect_schema,
    extract_texts,
)
from delift_core.errors import ConfigError, DataError

__all__ = [
    "CANONICAL_FIELDS",
    "MAX_DECODED_BYTES",
    "MAX_FIELD_CHARS",
    "MAX_FILE_BYTES",
    "SUPPORTED_FORMATS",
    "Dataset",
    "Record",
    "dataset_from_rows",
    "dataset_stats",
    "hash_record",
    "hash_records",
    "load_bytes",
    "load_dataset",
]

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 2 * 1024**3
# Decoded columns of a Parquet file or HF folder (Arrow bytes: text plus offsets, 8 bytes per
# number): as much as a text file may hold, however small the file is on disk.
MAX_DECODED_BYTES = MAX_FILE_BYTES


@dataclass(frozen=True)
class Record:
    """One training example: the canonical texts plus where it came from.

    id: the source's "id" field (as str) when every record has one and they are unique,
    otherwise `hash[:12]`, with "-2", "-3"... appended to repeats of the same content.
    hash: sha256 hex of json.dumps([instruction, input, output], ensure_ascii=False).
    line: 1-based line (JSONL; CSV with the header as line 1) or index + 1 (JSON, Parquet, HF).
    fields: every field of the source record, unchanged (read-only).
    """

    id: str
    instruction: str
    input: str
    output: str
    hash: str
    line: int
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def prompt(self) -> str:
        """The text the model conditions on (docs/design.md §2)."""
        return f"Instruction: {self.instruction}\nInput: {self.input}\n"

    @property
    def response(self) -> str:
        """The gold answer as scored: the output with one leading space."""
        return " " + self.output


@dataclass(frozen=True)
class Dataset:
    """A validated dataset. `hash` is sha256 over the records' hashes, in order."""

    path: str
    format: str  # "jsonl" | "json" | "csv" | "parquet" | "hf" | "memory"
    schema: str  # "alpaca" | "prompt_completion" | "sharegpt" | "messages" | "mapped"
    records: tuple[Record, ...]
    hash: str
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.records)

    def head(self, n: int) -> Dataset:
        """The first n records (ids kept) with the dataset hash recomputed."""
        if n < 0:
            raise ConfigError(f"head() needs n >= 0; got {n}")
        records = self.records[:n]
        return replace(self, records=records, hash=hash_records(records))


def hash_record(instruction: str, input_text: str, output: str) -> str:
    """sha256 hex of the canonical texts; equal content gives equal hashes in every format."""
    blob = json.dumps([instruction, input_text, output], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def hash_records(records: Iterable[Record]) -> str:
    """sha256 hex over the concatenated record hashes, in order."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(record.hash.encode("ascii"))
    return digest.hexdigest()


def load_dataset(
    path: str | os.PathLike[str],
    *,
    field_map: Mapping[str, str] | None = None,
    limit: int | None = None,
    offset: int = 0,
    skip_invalid: bool = False,
) -> Dataset:
    """Read and validate a file or HF dataset folder; skip the first `offset` records, then keep
    the next `limit` records if given.

    With skip_invalid, records that fail validation (an empty output, a wrong type...) are left
    out with one warning per kind of problem naming the first such line and the count; the file
    itself must still be readable, and `offset` and `limit` count the records kept.

    With an offset, the first offset + limit records are read and validated as a whole (schema,
    ids, warnings), the first `offset` of them are then dropped and `hash` is that of the records
    kept: a slice keeps the ids it has in the longer read. An offset that leaves no record is a
    DataError.
    """
    label = os.fspath(path)
    names = _check_options(field_map, limit, offset)
    try:
        target = Path(label).expanduser()
        exists = target.exists()
    except (OSError, ValueError) as exc:
        raise DataError(f"invalid path ({exc})", path=label) from None
    if not exists:
        raise DataError("file not found", path=label)
    notes = Notes(label)
    if target.is_dir():
        files = find_arrow_files(target, label)
        _check_size(sum(f.stat().st_size for f in files), label)
        rows = read_arrow_rows(files, label, max_bytes=MAX_DECODED_BYTES)
        return _build(label, "hf", rows, names, limit, notes, skip_invalid, offset)
    fmt = detect_format(target.name, label)
    if not target.is_file():
        raise DataError("is not a regular file", path=label)
    size = target.stat().st_size
    _check_size(size, label)
    if fmt == "parquet":
        rows = read_parquet_rows(str(target), label, max_bytes=MAX_DECODED_BYTES, file_bytes=size)
        return _build(label, fmt, rows, names, limit, notes, skip_invalid, offset)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot be read ({exc.strerror or exc})", path=label) from None
    rows = read_text_rows(data, fmt, label, notes)
    return _build(label, fmt, rows, names, limit, notes, skip_invalid, offset)


def load_bytes(
    data: bytes,
    name: str,
    *,
    field_map: Mapping[str, str] | None = None,
    limit: int | None = None,
    offset: int = 0,
    skip_invalid: bool = False,
) -> Dataset:
    """Read an uploaded file's bytes; the format comes from `name`, the path is "<upload:name>".

    limit, offset and skip_invalid as in load_dataset.
    """
    label = f"<upload:{name}>"
    names = _check_options(field_map, limit, offset)
    fmt = detect_format(name, label)
    _check_size(len(data), label)
    notes = Notes(label)
    if fmt == "parquet":
        rows = read_parquet_rows(
            io.BytesIO(data), label, max_bytes=MAX_DECODED_BYTES, file_bytes=len(data)
        )
    else:
        rows = read_text_rows(data, fmt, label, notes)
    return _build(label, fmt, rows, names, limit, notes, skip_invalid, offset)


def dataset_from_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    source: str = "<memory>",
    field_map: Mapping[str, str] | None = None,
) -> Dataset:
    """Validate in-memory rows exactly like a file; `line` is the row index + 1."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise DataError("rows must be a sequence of mappings", path=source)
    names = _check_options(field_map, None)
    return _build(source, "memory", enumerate(rows, start=1), names, None, Notes(source))


def dataset_stats(ds: Dataset) -> dict[str, Any]:
    """Summary for display.

    Returns {"rows": int, "chars": {name: {"mean": float, "median": float, "max": int}} for
    instruction/input/output, "fields": {source field: records having it}, "duplicates": records
    whose hash repeats an earlier one, "empty_input": records with blank input}.
    """
    chars = {}
    for name in CANONICAL_FIELDS:
        lengths = [len(getattr(record, name)) for record in ds.records]
        chars[name] = {
            "mean": statistics.fmean(lengths) if lengths else 0.0,
            "median": float(statistics.median(lengths)) if lengths else 0.0,
            "max": max(lengths, default=0),
        }
    return {
        "rows": len(ds),
        "chars": chars,
        "fields": dict(Counter(key for record in ds.records for key in record.fields)),
        "duplicates": len(ds) - len({record.hash for record in ds.records}),
        "empty_input": sum(1 for record in ds.records if not record.input.strip()),
    }


def _check_options(
    field_map: Mapping[str, str] | None, limit: int | None, offset: int = 0
) -> dict | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a whole number >= 1; got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"offset must be a whole number >= 0; got {offset!r}")
    if field_map is None:
        return None
    unknown = sorted(set(field_map) - set(CANONICAL_FIELDS))
    if unknown:
        raise ConfigError(f"field map keys must be instruction, input or output; got {unknown}")
    for key, value in field_map.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"field map entry {key!r} must name a source field; got {value!r}")
    return {name: field_map.get(name, name) for name in CANONICAL_FIELDS}


def _check_size(size: int, label: str) -> None:
    # Kept here, not in readers.py, so the limit is read from this module when called.
    if size > MAX_FILE_BYTES:
        raise DataError(
            f"is {size / 1024**3:.1f} GiB; files over {MAX_FILE_BYTES // 1024**3} GiB are refused."
            " Split it into smaller files",
            path=label,
        )


def _build(
    label: str,
    fmt: str,
    rows: Iterable[tuple[int, Any]],
    names: dict | None,
    limit: int | None,
    notes: Notes,
    skip_invalid: bool = False,
    offset: int = 0,
) -> Dataset:
    # The first offset + limit records are read and validated together; the offset is dropped
    # at the end, so that a slice has the ids, schema and warnings of that longer read.
    if limit is not None:
        limit += offset
    schema: str | None = None
    items: list[tuple[int, tuple[str, str, str], Mapping[str, Any]]] = []
    skipped = 0
    for line, raw in rows:
        try:
            if isinstance(raw, Unparsed):
                raise raw.error
            if not isinstance(raw, Mapping):
                raise DataError(
                    f"record is not an object; got {describe_value(raw)}", path=label, line=line
                )
            check_values(raw, label, line)
            row_schema = schema
            if row_schema is None:
                row_schema = "mapped" if names is not None else detect_schema(raw, label, line)
            texts = extract_texts(raw, row_schema, names, label, line, notes)
        except DataError as exc:
            if not skip_invalid:
                raise
            skipped += 1
            notes.add(f"skip:{exc.field}:{exc.reason}", f"{exc.reason}; record skipped",
                      line=exc.line, name=exc.field)  # fmt: skip
            continue
        schema = row_schema
        items.append((line, texts, raw))
        if limit is not None and len(items) >= limit:
            break
    if schema is None:
        more = f" ({skipped} invalid records skipped)" if skipped else ""
        raise DataError(f"holds no records{more}", path=label)
    hashes = [hash_record(*texts) for _, texts, _ in items]
    ids = _assign_ids(items, hashes, notes)
    records = tuple(
        Record(rid, *texts, digest, line, MappingProxyType(dict(raw)))
        for rid, digest, (line, texts, raw) in zip(ids, hashes, items, strict=True)
    )
    _note_duplicates(records, notes)
    warnings = notes.render()
    for warning in warnings:
        logger.warning(warning)
    if offset:
        if offset >= len(records):
            raise DataError(
                f"only {len(records)} rows: nothing left after skipping {offset}", path=label
            )
        records = records[offset:]
    logger.info("loaded %d records from %s (%s, %s)", len(records), label, fmt, schema)
    return Dataset(label, fmt, schema, records, hash_records(records), warnings)


def _assign_ids(
    items: list[tuple[int, tuple[str, str, str], Mapping[str, Any]]],
    hashes: list[str],
    notes: Notes,
) -> list[str]:
    """Source ids when all records have distinct usable ones, else content-hash ids."""
    if any("id" in raw for _, _, raw in items):
        seen: dict[str, int] = {}
        for line, _, raw in items:
            value = raw.get("id")
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not value.strip():
                notes.add(
                    "id",
                    "record has no usable id (text or integer); using content-hash ids",
                    line=line,
                    name="id",
                )
                break
            if value in seen:
                notes.add(
                    "id",
                    f"duplicate id {value!r} (also at line {seen[value]}); using content-hash ids",
                    line=line,
                    name="id",
                )
                break
            seen[value] = line
        else:
            return list(seen)
    counts: Counter[str] = Counter()
    ids = []
    for digest in hashes:
        counts[digest] += 1
        ids.append(digest[:12] if counts[digest] == 1 else f"{digest[:12]}-{counts[digest]}")
    return ids


def _note_duplicates(records: tuple[Record, ...], notes: Notes) -> None:
    first_line: dict[str, int] = {}
    for record in records:
        if record.hash in first_line:
            notes.add(
                "duplicate",
                f"exact duplicate of line {first_line[record.hash]} (same instruction, input and"
                " output); kept",
                line=record.line,
            )
        else:
            first_line[record.hash] = record.line
