"""Export a selected subset as JSONL with a manifest beside it (atomic writes).

Values JSON cannot hold, as Parquet and Arrow files give them, are written as text: timestamps,
dates and times in ISO 8601, durations as ISO 8601 durations (PT1.5S), decimals as their
digits, binary values in base64. An existing export is replaced only when the caller says so.

Every output is JSON (JSON Lines and the manifest), never CSV or a spreadsheet: text starting
with = + - @ is data here, not a formula, and is written as it is. A CSV export, if one is
added, must quote such cells (prefix a ') in that format only.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import platform
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

from delift_core import __version__
from delift_core.errors import ConfigError, DataError
from delift_core.files import write_bytes_atomic, write_json_atomic

FORMATS: tuple[str, ...] = ("original", "alpaca", "messages")
_VERSIONED = ("torch", "transformers", "submodlib-py", "duckdb", "numpy", "scipy")


@dataclass(frozen=True)
class ExportPaths:
    jsonl: Path
    manifest: Path


def _iso_duration(value: dt.timedelta) -> str:
    if hasattr(value, "isoformat"):  # pandas.Timedelta (Arrow durations in ns) keeps its ns
        return value.isoformat()
    micros = value // dt.timedelta(microseconds=1)
    seconds, fraction = divmod(abs(micros), 1_000_000)
    text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".")
    return f"{'-' if micros < 0 else ''}PT{text}S"


def json_value(value: Any) -> Any:
    """`value` as JSON can hold it (see the module docstring); nested lists and objects are
    converted throughout. TypeError for a value of any other type."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):  # pandas.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _iso_duration(value)
    if isinstance(value, Decimal):
        return format(value, "f")  # digits, never an exponent: Decimal("1E+2") -> "100"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {key: json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    raise TypeError(f"a value of type {type(value).__name__}")


def _original_row(record: Any) -> dict[str, Any]:
    row = {}
    for name, value in record.fields.items():
        try:
            row[name] = json_value(value)
        except TypeError as exc:
            raise DataError(
                f"holds {exc}, which cannot be written as JSON; convert it to text first",
                line=record.line,
                field=name,
            ) from None
    return row


def to_row(record: Any, fmt: str) -> dict[str, Any]:
    """One record in the chosen schema: its original fields, alpaca, or OpenAI messages."""
    if fmt == "original":
        return _original_row(record)
    if fmt == "alpaca":
        return {"instruction": record.instruction, "input": record.input, "output": record.output}
    if fmt == "messages":
        user = record.instruction + (f"\n\n{record.input}" if record.input else "")
        return {
            "id": record.id,  # metadata beside the chat; trainers read "messages" only
            "messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": record.output},
            ],
        }
    raise ConfigError(f"export format must be one of {', '.join(FORMATS)}; got {fmt!r}")


def subset_rows(
    records: Sequence[Any],
    indices: Sequence[int],
    fmt: str = "original",
    annotations: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Rows of the selected records in selection order; annotations[r] goes under `_delift`."""
    if annotations is not None and len(annotations) != len(indices):
        raise ConfigError("one annotation per selected record is needed")
    rows = []
    for rank, index in enumerate(indices):
        if not 0 <= int(index) < len(records):
            raise ConfigError(f"selected index {index} is outside the pool of {len(records)}")
        row = to_row(records[int(index)], fmt)
        if annotations is not None:
            row["_delift"] = dict(annotations[rank])
        rows.append(row)
    return rows


def jsonl_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """UTF-8 JSONL, one object per line (text stays text: nothing is rendered or escaped to HTML)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def package_versions() -> dict[str, str]:
    versions = {"delift-studio": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_manifest(**fields: Any) -> dict[str, Any]:
    """Manifest with the caller's fields (inputs, model, method, ...) plus versions and time."""
    return {
        **fields,
        "versions": package_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def confined_path(folder: str | os.PathLike, name: str) -> Path:
    """`folder/name`, refusing names that would leave the folder (.., absolute, links)."""
    base = Path(folder).expanduser().resolve()
    if not name or Path(name).is_absolute() or any(part == ".." for part in Path(name).parts):
        raise ConfigError(f"file name {name!r} must be a plain name inside {base}")
    target = (base / name).resolve()
    if base != target.parent and base not in target.parents:
        raise ConfigError(f"file name {name!r} leads outside {base}")
    return target


def manifest_path(path: str | os.PathLike) -> Path:
    """Where the manifest of the export at `path` goes: `<stem>.manifest.json` beside it."""
    target = Path(path)
    return target.with_name(f"{target.stem}.manifest.json")


def check_new_export(path: str | os.PathLike) -> None:
    """ConfigError when the export file or its manifest already exists (call before long work,
    so that a run is not spent on output it may not write)."""
    for existing in (Path(path), manifest_path(path)):
        if existing.exists() or existing.is_symlink():
            raise ConfigError(
                f"{existing} already exists; nothing was written. Choose another file name, or"
                " allow overwriting it"
            )


def _write_new(target: Path, write: Callable[[Path], Path]) -> Path:
    """`write` to `target` unless something appears there meanwhile: a complete hidden file is
    linked to the name, which fails when the name is taken (a rename would replace it)."""
    staged = write(target.with_name(f".{target.name}.{uuid.uuid4().hex}.new"))
    try:
        os.link(staged, target)
    except FileExistsError:
        raise ConfigError(f"{target} appeared while exporting; nothing was replaced") from None
    except OSError:  # a file system without hard links: check, then rename
        if target.exists() or target.is_symlink():
            raise ConfigError(f"{target} appeared while exporting; nothing was replaced") from None
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    return target


def export_subset(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    manifest: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> ExportPaths:
    """Write rows to `path` (JSONL) and `<stem>.manifest.json` beside it, both atomically.

    An existing file of either name is a ConfigError and nothing is written, unless
    `overwrite`: then both are replaced (each atomically).
    """
    target = Path(path)
    if target.suffix != ".jsonl":
        raise ConfigError(f"export file must end in .jsonl; got {target.name}")
    if target.exists() and target.is_dir():
        raise ConfigError(f"{target} is a folder; give a .jsonl file path")
    data = jsonl_bytes(rows)
    full = dict(manifest) | {"output": {"file": target.name, "rows": len(rows)}}

    def write_rows(p: Path) -> Path:
        return write_bytes_atomic(p, data)

    def write_manifest(p: Path) -> Path:
        return write_json_atomic(p, full)

    if overwrite:
        return ExportPaths(write_rows(target), write_manifest(manifest_path(target)))
    check_new_export(target)
    jsonl = _write_new(target, write_rows)
    try:
        written = _write_new(manifest_path(target), write_manifest)
    except BaseException:
        jsonl.unlink(missing_ok=True)  # ours, written a moment ago: leave no half export
        raise
    return ExportPaths(jsonl, written)
