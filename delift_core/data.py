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
  - A text field holds at most MAX_FIELD_CHARS characters; a file at most MAX_FILE_BYTES.
  - CRLF line ends are accepted; JSON and JSONL files get a warning, CSV files (where CRLF is the
    standard row end) do not. Line breaks inside CSV cells are kept as they are.
  - Blank lines in JSONL and CSV rows whose cells are all blank are skipped with a warning.
Every error is a DataError naming the file, and the line (JSONL/CSV: the line in an editor;
JSON array, Parquet, HF: the record's index + 1) and field where known. Warnings are returned in
`Dataset.warnings`, one per kind, saying where it first happened and how often.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from delift_core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 2 * 1024**3
MAX_FIELD_CHARS = 1_000_000
CANONICAL_FIELDS = ("instruction", "input", "output")
SUPPORTED_FORMATS = ".jsonl, .ndjson, .json, .csv, .parquet, or a folder saved by Hugging Face datasets.save_to_disk"
_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
_SCHEMA_KEYS = (
    ("instruction", "alpaca"),
    ("prompt", "prompt_completion"),
    ("conversations", "sharegpt"),
    ("messages", "messages"),
)
_FLAT_NAMES: dict[str, dict[str, str | None]] = {
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output"},
    "prompt_completion": {"instruction": "prompt", "input": None, "output": "completion"},
}
# (list field, role key, text key, user roles, assistant roles, roles that are skipped)
_TURN_SCHEMAS = {
    "sharegpt": (
        "conversations",
        "from",
        "value",
        {"human", "user"},
        {"gpt", "assistant"},
        {"system"},
    ),
    "messages": (
        "messages",
        "role",
        "content",
        {"user"},
        {"assistant"},
        {"system", "developer", "tool", "function"},
    ),
}
_MAGIC = (
    (b"PAR1", "a Parquet file; give it the .parquet extension"),
    (b"ARROW1", "an Arrow file, not text"),
    (b"\x1f\x8b", "gzip-compressed; decompress it first"),
    (b"PK\x03\x04", "a zip archive; extract it first"),
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT64 = (-(2**63), 2**63 - 1)
_TOO_LARGE = object()  # stands in for a JSON integer literal too long to be an int64


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
        """The text the model conditions on (DESIGN.md §2)."""
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
) -> Dataset:
    """Read and validate a file or HF dataset folder; keep the first `limit` records if given."""
    label = os.fspath(path)
    names = _check_options(field_map, limit)
    try:
        target = Path(label).expanduser()
        exists = target.exists()
    except (OSError, ValueError) as exc:
        raise DataError(f"invalid path ({exc})", path=label) from None
    if not exists:
        raise DataError("file not found", path=label)
    notes = _Notes(label)
    if target.is_dir():
        files = _find_arrow_files(target, label)
        _check_size(sum(f.stat().st_size for f in files), label)
        return _build(label, "hf", _read_arrow_rows(files), names, limit, notes)
    fmt = _format_of(target.name, label)
    if not target.is_file():
        raise DataError("is not a regular file", path=label)
    _check_size(target.stat().st_size, label)
    if fmt == "parquet":
        return _build(label, fmt, _read_parquet_rows(str(target), label), names, limit, notes)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot be read ({exc.strerror or exc})", path=label) from None
    return _build(label, fmt, _read_text_rows(data, fmt, label, notes), names, limit, notes)


def load_bytes(
    data: bytes,
    name: str,
    *,
    field_map: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> Dataset:
    """Read an uploaded file's bytes; the format comes from `name`, the path is "<upload:name>"."""
    label = f"<upload:{name}>"
    names = _check_options(field_map, limit)
    fmt = _format_of(name, label)
    _check_size(len(data), label)
    notes = _Notes(label)
    if fmt == "parquet":
        return _build(label, fmt, _read_parquet_rows(io.BytesIO(data), label), names, limit, notes)
    return _build(label, fmt, _read_text_rows(data, fmt, label, notes), names, limit, notes)


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
    return _build(source, "memory", enumerate(rows, start=1), names, None, _Notes(source))


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


class _Notes:
    """Warnings met while loading: one per kind, with its first place and a count."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._items: dict[str, list[Any]] = {}

    def add(self, kind: str, message: str, *, line: int | None = None, name: str | None = None):
        item = self._items.setdefault(kind, [line, name, message, 0])
        item[3] += 1

    def render(self) -> tuple[str, ...]:
        out = []
        for line, name, message, count in self._items.values():
            text = str(DataError(message, path=self.path, line=line, field=name))
            out.append(text + (f" ({count} times in all)" if count > 1 else ""))
        return tuple(out)


def _check_options(field_map: Mapping[str, str] | None, limit: int | None) -> dict | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a whole number >= 1; got {limit!r}")
    if field_map is None:
        return None
    unknown = sorted(set(field_map) - set(CANONICAL_FIELDS))
    if unknown:
        raise ConfigError(f"field map keys must be instruction, input or output; got {unknown}")
    for key, value in field_map.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"field map entry {key!r} must name a source field; got {value!r}")
    return {name: field_map.get(name, name) for name in CANONICAL_FIELDS}


def _format_of(name: str, label: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        shown = f"'{suffix}'" if suffix else "without an extension"
        raise DataError(
            f"unsupported file type {shown}; supported: {SUPPORTED_FORMATS}", path=label
        )
    return _SUFFIX_FORMATS[suffix]


def _check_size(size: int, label: str) -> None:
    if size > MAX_FILE_BYTES:
        raise DataError(
            f"is {size / 1024**3:.1f} GiB; files over {MAX_FILE_BYTES // 1024**3} GiB are refused."
            " Split it into smaller files",
            path=label,
        )


def _decode(data: bytes, label: str, notes: _Notes) -> str:
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
    return int(literal) if len(literal) <= 20 else _TOO_LARGE


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


def _read_text_rows(data: bytes, fmt: str, label: str, notes: _Notes) -> Iterator[tuple[int, Any]]:
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


def _read_jsonl_rows(text: str, label: str, notes: _Notes) -> Iterator[tuple[int, Any]]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip(" \t\r"):
            notes.add("blank", "blank line skipped", line=number)
            continue
        yield number, _parse_json(raw, label, number)


def _read_json_rows(text: str, label: str, notes: _Notes) -> Iterator[tuple[int, Any]]:
    try:
        value = _parse_json(text, label, None)
    except DataError as exc:
        if "Extra data" not in exc.reason:
            raise
        try:  # a .json file holding JSON Lines is common; accept it when every line is an object
            rows = list(_read_jsonl_rows(text, label, _Notes(label)))
        except DataError:
            raise exc from None
        if not all(isinstance(row, Mapping) for _, row in rows):
            raise exc from None
        notes.add(
            "jsonl", "holds JSON Lines (one object per line), not one JSON value; read as such"
        )
        return iter(rows)
    if isinstance(value, dict):
        if any(key in value for key, _ in _SCHEMA_KEYS):
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
        raise DataError(f"must hold an array of records; got {_describe(value)}", path=label)
    return enumerate(value, start=1)


def _read_csv_rows(text: str, label: str, notes: _Notes) -> Iterator[tuple[int, Any]]:
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


def _note_formulas(record: dict[str, str], line: int, notes: _Notes) -> None:
    for name, cell in record.items():
        if cell[:1] in ("=", "+", "-", "@") and not _NUMBER.fullmatch(cell):
            notes.add(
                "formula",
                "cell starts with =, +, - or @ (a spreadsheet formula); kept as text. Exports are"
                " JSONL, where it is inert, but take care if you open the data in a spreadsheet",
                line=line,
                name=name,
            )


def _read_parquet_rows(source: Any, label: str) -> Iterator[tuple[int, Any]]:
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


def _find_arrow_files(folder: Path, label: str) -> list[Path]:
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


def _read_arrow_rows(files: list[Path]) -> Iterator[tuple[int, Any]]:
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


def _build(
    label: str,
    fmt: str,
    rows: Iterable[tuple[int, Any]],
    names: dict | None,
    limit: int | None,
    notes: _Notes,
) -> Dataset:
    schema: str | None = None
    items: list[tuple[int, tuple[str, str, str], Mapping[str, Any]]] = []
    for line, raw in rows:
        if not isinstance(raw, Mapping):
            raise DataError(f"record is not an object; got {_describe(raw)}", path=label, line=line)
        _check_values(raw, label, line)
        if schema is None:
            schema = "mapped" if names is not None else _detect_schema(raw, label, line)
        items.append((line, _extract(raw, schema, names, label, line, notes), raw))
        if limit is not None and len(items) >= limit:
            break
    if schema is None:
        raise DataError("holds no records", path=label)
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
    logger.info("loaded %d records from %s (%s, %s)", len(records), label, fmt, schema)
    return Dataset(label, fmt, schema, records, hash_records(records), warnings)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a value of type {type(value).__name__}"


def _check_values(raw: Mapping[Any, Any], label: str, line: int) -> None:
    """Refuse what JSON or the export cannot hold, naming the top-level field that holds it."""
    for key, value in raw.items():
        if not isinstance(key, str):
            raise DataError(f"field names must be text; got {key!r}", path=label, line=line)
        problem = _find_bad_value(value)
        if problem:
            raise DataError(problem, path=label, line=line, field=key)


def _find_bad_value(value: Any) -> str | None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "holds invalid Unicode (a lone surrogate such as \\ud800)"
        elif item is _TOO_LARGE or (
            isinstance(item, int)
            and not isinstance(item, bool)
            and not _INT64[0] <= item <= _INT64[1]
        ):
            return "holds an integer too large for 64 bits; store it as text"
        elif isinstance(item, float) and not math.isfinite(item):
            kind = "NaN" if math.isnan(item) else "Infinity (or a number too large for a float)"
            return f"holds {kind}, which JSON does not allow"
        elif isinstance(item, Decimal) and not item.is_finite():
            return "holds NaN or Infinity, which JSON does not allow"
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def _list_fields(raw: Mapping[str, Any]) -> str:
    keys = [repr(key) for key in raw]
    return (", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")) or "none"


def _detect_schema(raw: Mapping[str, Any], label: str, line: int) -> str:
    for key, schema in _SCHEMA_KEYS:
        if key in raw:
            return schema
    raise DataError(
        "no known schema (alpaca instruction/input/output, prompt/completion, ShareGPT"
        f" conversations or OpenAI messages); fields found: {_list_fields(raw)}. Pass a field map"
        " naming the fields, e.g. --field instruction=question --field output=answer"
        " (field_map={'instruction': 'question', 'output': 'answer'})",
        path=label,
        line=line,
    )


def _extract(
    raw: Mapping[str, Any],
    schema: str,
    names: dict | None,
    label: str,
    line: int,
    notes: _Notes,
) -> tuple[str, str, str]:
    """(instruction, input, output) of one record under the detected schema."""
    if schema in _TURN_SCHEMAS:
        return _extract_turns(raw, schema, label, line, notes)
    names = names if names is not None else _FLAT_NAMES[schema]
    texts = []
    for canonical in CANONICAL_FIELDS:
        source = names[canonical]
        required = canonical != "input"
        if source is None or (source not in raw and not required):
            texts.append("")
            continue
        if source not in raw:
            raise DataError(
                f"required field is missing (schema {schema}, from the first record); fields"
                f" found: {_list_fields(raw)}. If it has another name, pass a field map, e.g."
                f" --field {canonical}=<name>",
                path=label,
                line=line,
                field=source,
            )
        texts.append(_coerce_text(raw[source], required, label, line, source, notes))
    return texts[0], texts[1], texts[2]


def _extract_turns(
    raw: Mapping[str, Any], schema: str, label: str, line: int, notes: _Notes
) -> tuple[str, str, str]:
    key, role_key, text_key, users, assistants, skipped = _TURN_SCHEMAS[schema]
    turns = raw.get(key)
    if not isinstance(turns, list):
        found = "it is missing" if key not in raw else f"got {_describe(turns)}"
        raise DataError(f"must be a list of turns; {found}", path=label, line=line, field=key)
    user = reply = None
    user_turns = 0
    known = sorted(users | assistants | skipped)
    for index, turn in enumerate(turns):
        where = f"{key}[{index}]"
        if not isinstance(turn, Mapping):
            raise DataError(
                f"a turn must be an object with '{role_key}' and '{text_key}'; got {_describe(turn)}",
                path=label,
                line=line,
                field=where,
            )
        role = turn.get(role_key)
        if not isinstance(role, str) or role.lower() not in known:
            raise DataError(
                f"unknown role {role!r}; expected one of {', '.join(known)}",
                path=label,
                line=line,
                field=f"{where}.{role_key}",
            )
        if role.lower() in users:
            user_turns += 1
            user = index if user is None else user
        elif role.lower() in assistants and user is not None and reply is None:
            reply = index
    if user is None or reply is None:
        missing = "/".join(sorted(users if user is None else assistants))
        after = "" if user is None else " after the first user turn"
        raise DataError(f"has no {missing} turn{after}", path=label, line=line, field=key)
    if user_turns > 1:
        notes.add(
            f"multi:{key}",
            "holds more than one exchange; only the first user turn and the reply after it are used",
            line=line,
            name=key,
        )
    texts = []
    for index in (user, reply):
        value = turns[index].get(text_key)
        name = f"{key}[{index}].{text_key}"
        if (
            isinstance(value, list)
            and value
            and all(
                isinstance(part, Mapping) and isinstance(part.get("text"), str) for part in value
            )
        ):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
            value = "".join(part["text"] for part in value)
        texts.append(_coerce_text(value, True, label, line, name, notes))
    return texts[0], "", texts[1]


def _coerce_text(
    value: Any, required: bool, label: str, line: int, name: str, notes: _Notes
) -> str:
    """Text of one field. Numbers become str with a warning; other non-text values are errors."""
    if value is None and not required:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        text = str(value)
        notes.add(f"number:{name}", "number converted to text", line=line, name=name)
    else:
        raise DataError(f"must be text; got {_describe(value)}", path=label, line=line, field=name)
    if len(text) > MAX_FIELD_CHARS:
        raise DataError(
            f"holds {len(text):,} characters; the limit is {MAX_FIELD_CHARS:,} per field",
            path=label,
            line=line,
            field=name,
        )
    if required and not text.strip():
        raise DataError("is empty; it must hold text", path=label, line=line, field=name)
    return text


def _assign_ids(
    items: list[tuple[int, tuple[str, str, str], Mapping[str, Any]]],
    hashes: list[str],
    notes: _Notes,
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


def _note_duplicates(records: tuple[Record, ...], notes: _Notes) -> None:
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
