"""Export a selected subset as JSONL with a manifest beside it (atomic writes)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from delift_core import __version__
from delift_core.errors import ConfigError
from delift_core.files import write_bytes_atomic, write_json_atomic

FORMATS: tuple[str, ...] = ("original", "alpaca", "messages")
_VERSIONED = ("torch", "transformers", "submodlib-py", "duckdb", "numpy", "scipy")


@dataclass(frozen=True)
class ExportPaths:
    jsonl: Path
    manifest: Path


def to_row(record: Any, fmt: str) -> dict[str, Any]:
    """One record in the chosen schema: its original fields, alpaca, or OpenAI messages."""
    if fmt == "original":
        return dict(record.fields)
    if fmt == "alpaca":
        return {"instruction": record.instruction, "input": record.input, "output": record.output}
    if fmt == "messages":
        user = record.instruction + (f"\n\n{record.input}" if record.input else "")
        return {
            "messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": record.output},
            ]
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


def export_subset(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    manifest: Mapping[str, Any],
) -> ExportPaths:
    """Write rows to `path` (JSONL) and `<stem>.manifest.json` beside it, both atomically."""
    target = Path(path)
    if target.suffix != ".jsonl":
        raise ConfigError(f"export file must end in .jsonl; got {target.name}")
    if target.exists() and target.is_dir():
        raise ConfigError(f"{target} is a folder; give a .jsonl file path")
    manifest_path = target.with_name(f"{target.stem}.manifest.json")
    jsonl = write_bytes_atomic(target, jsonl_bytes(rows))
    full = dict(manifest) | {"output": {"file": target.name, "rows": len(rows)}}
    return ExportPaths(jsonl, write_json_atomic(manifest_path, full))
