"""Format readers: bytes or files -> (line, raw record) pairs, before any schema check.

Each reader yields `(line, raw)` where `line` is 1-based (JSONL/CSV: the line in an editor, with
the CSV header as line 1; JSON array: the record's index + 1) and `raw` is the record as parsed
(normally a mapping; the caller refuses anything else). Errors are DataErrors naming the file
and, where known, the line. The rules these readers follow are listed in the docstring of
`delift_core.data.dataset`, the public entry point; Parquet and Arrow are read by `delift_core.data.columnar`.
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

from delift_core.data.schemas import SCHEMA_KEYS, TOO_LARGE, Notes, describe_value
from delift_core.errors import DataError

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
    (
        b"PK\x03\x04",
        "a zip archive (an Excel .xlsx workbook is one: save it as CSV); extract it first",
    ),
)
_COMPRESSED = {".gz", ".gzip", ".bz2", ".xz", ".zst", ".zip", ".7z"}
_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def detect_format(name: str, label: str) -> str:
    """The format ("jsonl" | "json" | "csv" | "parquet") from the extension of `name`."""
    suffix = Path(name).suffix.lower()
    if suffix in _COMPRESSED:
        raise DataError(
            f"is compressed ('{suffix}'); decompress it first. Supported: {SUPPORTED_FORMATS}",
            path=label,
        )
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
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00
        raise DataError("is encoded as UTF-32; save it as UTF-8", path=label)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError("is encoded as UTF-16; save it as UTF-8", path=label)
    nul = data.find(b"\x00")
    if nul >= 0:
        head = data[:64]
        even, odd = any(head[0::2]), any(head[1::2])
        if len(head) >= 4 and even != odd:
            raise DataError(
                "looks like UTF-16 without a byte order mark (every other byte is 0); save it as"
                " UTF-8",
                path=label,
            )
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


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _Duplicated(dict):
    """An object that held a key twice; `key` names it (only built to find where that was)."""

    key = ""


def _repeated_key(pairs: list[tuple[str, Any]]) -> str:
    counts = Counter(key for key, _ in pairs)
    return next(key for key, _ in pairs if counts[key] > 1)


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON parsers keep the last of repeated keys; refused instead, like repeated CSV columns.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey(_repeated_key(pairs))
    return obj


def _marking_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        obj = _Duplicated(obj)
        obj.key = _repeated_key(pairs)
    return obj


_DECODER = json.JSONDecoder(parse_int=_parse_int, object_pairs_hook=_strict_object)
_MARKING_DECODER = json.JSONDecoder(parse_int=_parse_int, object_pairs_hook=_marking_object)


def _find_duplicated(value: Any) -> _Duplicated | None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Duplicated):
            return item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _duplicate_error(text: str, key: str, label: str, line: int | None) -> DataError:
    """The error of a repeated key; for a whole JSON document, at the record holding it."""
    if line is None:
        try:
            value = _MARKING_DECODER.decode(text)
        except (json.JSONDecodeError, RecursionError):  # broken further on: place unknown
            value = None
        if isinstance(value, dict) and not isinstance(value, _Duplicated):
            value = next((item for item in value.values() if isinstance(item, list)), value)
        if isinstance(value, list):
            for index, record in enumerate(value, start=1):
                found = _find_duplicated(record)
                if found is not None:
                    line, key = index, found.key
                    break
    return DataError(
        "the same key appears twice in one object; JSON keeps only the last value, so the"
        " other would be lost without a word. Remove or rename one",
        path=label,
        line=line,
        field=key,
    )


# Deepest nesting of JSON arrays and objects accepted (records need 4 or 5 levels). The decoder's
# own limit is Python's recursion limit minus the stack already in use, so it differs between
# the CLI and the app (whose stack is deeper, about 90 levels left); this fixed limit, below
# both, makes them accept the same files.
MAX_JSON_DEPTH = 64
_TOO_DEEP = object()


def json_depth(value: Any) -> int:
    """Deepest nesting of lists and dicts in a decoded JSON value (a scalar is 0)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _parse_json(text: str, label: str, line: int | None) -> Any:
    try:
        value = _DECODER.decode(text)
    except _DuplicateKey as exc:
        raise _duplicate_error(text, exc.key, label, line) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"malformed JSON: {exc.msg} (column {exc.colno}, character {exc.pos})",
            path=label,
            line=exc.lineno if line is None else line,
        ) from None
    except RecursionError:
        value = _TOO_DEEP  # deeper than the stack allows, so deeper than the limit too
    # Counting brackets is cheap and bounds the depth: most texts need no closer look.
    if value is _TOO_DEEP or (
        text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH
    ):
        raise DataError(
            f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels of arrays and objects)",
            path=label,
            line=line,
        )
    return value


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
            if raw.startswith("\ufeff"):
                raise DataError(
                    "starts with a byte order mark (BOM), as where files were joined together;"
                    " remove it",
                    path=label,
                    line=number,
                )
            yield number, _parse_json(raw, label, number)
        except DataError as exc:
            yield number, Unparsed(_with_hint(exc, raw))


def _with_hint(exc: DataError, raw: str) -> DataError:
    """A JSON Lines parse error with the likely cause, for two common layouts that are not
    one record per line."""
    if not exc.reason.startswith("malformed JSON"):
        return exc
    if raw.strip() in ("{", "["):
        hint = (
            "the file looks like JSON spread over several lines; JSON Lines needs one record"
            " per line (or name the file .json)"
        )
    elif "\r" in raw.rstrip("\r"):
        hint = (
            "a carriage return (CR) alone inside this line may separate records, as in old Mac"
            " files; save the file with LF line ends"
        )
    else:
        return exc
    return DataError(f"{exc.reason}; {hint}", path=exc.path, line=exc.line, field=exc.field)


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
        if len(header) == 1:
            found = [name for sep, name in _SEPARATORS.items() if sep in header[0]]
            if found:
                raise DataError(
                    f"the header is one column, {header[0][:60]!r}: the columns seem separated"
                    f" by {found[0]}; save it with commas between columns",
                    path=label,
                    line=reader.line_num,
                )
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
            if row == header:
                raise DataError(
                    "repeats the header row, as where files were joined together; remove it",
                    path=label,
                    line=line,
                )
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
