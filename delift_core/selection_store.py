"""Saved selections: the record stored beside a selection's indices, and what an export of it
writes (the manifest and the `_delift` annotations of each row).

The record is a JSON object (the cache's meta of kind "selection"); the indices are stored as an
int64 array beside it. Version 1 is the layout the app has always written; records saved before
the version field existed are read as version 1, with defaults for the fields they lack (pins
and exclusions, the quality prior, the pool size). A record of a newer version is refused with
a message that says so, never half read.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from delift_core.errors import DataError
from delift_core.export import build_manifest

SCHEMA_VERSION = 1
ROLES: tuple[str, ...] = ("pool", "targets", "existing")
# What the manifest tells of each input set (the stored description holds the same keys).
_INPUT_KEYS = ("label", "path", "hash", "rows", "schema", "spec")
EXPORT_ORDER = "selection order, first pick first"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class SavedSelection:
    """A named selection of one scored pool, as the Select page saves it.

    indices: pool indices in pick order; gains: each pick's marginal gain (None where the
    method has none: random, full). pool / targets / existing: the stored descriptions of the
    input sets ({label, path, hash, rows, schema, spec}); model and scoring: how the stage was
    scored. fraction is None for a budget given as a number of samples. The quality prior
    (quality_weight, quality_gate, quality_signal) is None in records saved before it existed;
    side_weight likewise, and duplicate_threshold is None when off or not recorded.
    """

    name: str
    method: str
    stage: str
    indices: tuple[int, ...]
    pool: Mapping[str, Any]
    gains: tuple[float | None, ...] = ()
    stage_key: str | None = None
    kernel: str | None = None
    metric: str | None = None
    seed: int | None = None
    quality_weight: float | None = None
    quality_gate: float | None = None
    quality_signal: str | None = None
    side_weight: float | None = None
    duplicate_threshold: float | None = None
    fraction: float | None = None
    pinned_ids: tuple[str, ...] = ()
    excluded_ids: tuple[str, ...] = ()
    pool_size: int | None = None
    objective: float | None = None
    targets: Mapping[str, Any] | None = None
    existing: Mapping[str, Any] | None = None
    model: Mapping[str, Any] | None = None
    scoring: Mapping[str, Any] | None = None
    created: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        indices = tuple(int(i) for i in self.indices)
        gains = tuple(_gain(g) for g in self.gains) if len(self.gains) else (None,) * len(indices)
        if len(gains) != len(indices):
            raise DataError(
                f"the saved selection {self.name!r} has {len(gains)} gains for {len(indices)}"
                " picks; save it again on the Select page",
                field="gains",
            )
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "gains", gains)
        object.__setattr__(self, "pinned_ids", tuple(self.pinned_ids))
        object.__setattr__(self, "excluded_ids", tuple(self.excluded_ids))

    @property
    def count(self) -> int:
        """The number of samples selected."""
        return len(self.indices)

    @property
    def pool_hash(self) -> str | None:
        """The content hash of the pool the selection was made from (None if not recorded)."""
        return self.pool.get("hash")

    def to_dict(self) -> dict[str, Any]:
        """The record stored beside the indices (JSON types only; the indices are not in it)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "stage_key": self.stage_key,
            "method": self.method,
            "stage": self.stage,
            "kernel": self.kernel,
            "metric": self.metric,
            "seed": self.seed,
            "quality_weight": self.quality_weight,
            "quality_gate": self.quality_gate,
            "quality_signal": self.quality_signal,
            "side_weight": self.side_weight,
            "duplicate_threshold": self.duplicate_threshold,
            "fraction": self.fraction,
            "count": self.count,
            "pinned_ids": list(self.pinned_ids),
            "excluded_ids": list(self.excluded_ids),
            "n": self.pool_size,  # the key version 1 has always used for the pool size
            "objective": self.objective,
            "pool": dict(self.pool),
            "targets": _plain(self.targets),
            "existing": _plain(self.existing),
            "model": _plain(self.model),
            "scoring": _plain(self.scoring),
            "created": self.created,
            "gains": list(self.gains),
        }

    @classmethod
    def from_dict(
        cls, record: Mapping[str, Any], indices: Sequence[int], *, name: str | None = None
    ) -> SavedSelection:
        """The selection of a stored record and its indices. `name` (the key it is stored
        under) wins over the record's own; records without a version are version 1. DataError,
        naming the field, for a record this version cannot read."""
        label = name or record.get("name")
        if not isinstance(label, str) or not label:
            raise DataError("a saved selection has no name", field="name")
        version = record.get("schema_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise DataError(
                f"the saved selection {label!r} has an invalid schema version {version!r}",
                field="schema_version",
            )
        if version > SCHEMA_VERSION:
            raise DataError(
                f"the saved selection {label!r} was saved by a newer DELIFT Studio (selection"
                f" schema {version}; this version reads up to {SCHEMA_VERSION}): update DELIFT"
                " Studio to use it, or save the selection again with this version",
                field="schema_version",
            )
        for key in ("method", "stage"):
            if not isinstance(record.get(key), str):
                raise DataError(
                    f"the saved selection {label!r} has no {key}; save it again on the Select page",
                    field=key,
                )
        pool = record.get("pool")
        if not isinstance(pool, Mapping) or not isinstance(pool.get("spec"), Mapping):
            raise DataError(
                f"the saved selection {label!r} does not record where its pool came from; save"
                " it again on the Select page",
                field="pool",
            )
        return cls(
            name=label,
            method=record["method"],
            stage=record["stage"],
            indices=tuple(int(i) for i in indices),
            pool=pool,
            gains=tuple(record.get("gains") or ()),
            stage_key=record.get("stage_key"),
            kernel=record.get("kernel"),
            metric=record.get("metric"),
            seed=record.get("seed"),
            quality_weight=record.get("quality_weight"),
            quality_gate=record.get("quality_gate"),
            quality_signal=record.get("quality_signal"),
            side_weight=record.get("side_weight"),
            duplicate_threshold=record.get("duplicate_threshold"),
            fraction=record.get("fraction"),
            # Selections saved before pinning existed have neither.
            pinned_ids=tuple(record.get("pinned_ids") or ()),
            excluded_ids=tuple(record.get("excluded_ids") or ()),
            pool_size=record.get("n"),
            objective=record.get("objective"),
            targets=record.get("targets"),
            existing=record.get("existing"),
            model=record.get("model"),
            scoring=record.get("scoring"),
            created=record.get("created") or "",
        )


def _gain(value: Any) -> float | None:
    """A gain as stored: a float, or None where there is none (NaN included)."""
    if value is None:
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def default_name(method: str, stage: str, count: int, pool_size: int, *, as_fraction: bool) -> str:
    """The name offered for a selection: `<method>-<stage>-30pct` (the share of the pool
    selected, in whole percent) when the budget is a fraction, `<method>-<stage>-120` (the
    count) when it is a number of samples."""
    size = f"{round(100 * count / pool_size)}pct" if as_fraction else f"{count}"
    return f"{method}-{stage}-{size}"


def file_stem(name: str) -> str:
    """A selection's name made safe as a file name: runs of other characters become '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "selection"


def check_pool(selection: SavedSelection, pool_hash: str) -> None:
    """DataError when the pool loaded now is not the one the selection was made from: its
    indices would name other rows."""
    recorded = selection.pool_hash
    if recorded and pool_hash != recorded:
        raise DataError(
            f"the pool of '{selection.name}' has changed since it was selected: its content hash"
            f" is now {pool_hash}, the selection recorded {recorded}. Exporting would write"
            " other rows; load the data again, score and select anew"
        )


def delift_annotations(
    method: str,
    stage: str,
    gains: Sequence[float | None],
    extra: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The `_delift` object of each exported row, in selection order: rank (1 = the first
    pick), gain (None where the method has none), method and stage, then extra[r]'s keys."""
    if extra is not None and len(extra) != len(gains):
        raise ValueError("one extra annotation per selected row is needed")
    return [
        {
            "rank": rank + 1,
            "gain": _gain(gain),
            "method": method,
            "stage": stage,
            **(extra[rank] if extra is not None else {}),
        }
        for rank, gain in enumerate(gains)
    ]


def export_annotations(selection: SavedSelection) -> list[dict[str, Any]]:
    """The `_delift` annotations of a saved selection's rows (delift_annotations)."""
    return delift_annotations(selection.method, selection.stage, selection.gains)


def describe_input(info: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the manifest records of one input set (None where the stage has none)."""
    if not info:
        return None
    return {key: info.get(key) for key in _INPUT_KEYS}


def export_manifest(
    selection: SavedSelection, *, pool_size: int, fmt: str, annotate: bool
) -> dict[str, Any]:
    """The manifest of an export of `selection` in format `fmt` (build_manifest adds the
    package versions and the time). pool_size: the rows of the pool loaded for the export."""
    return build_manifest(
        selection=selection.name,
        method=selection.method,
        stage=selection.stage,
        kernel=selection.kernel,
        metric=selection.metric,
        seed=selection.seed,
        budget={"fraction": selection.fraction, "count": selection.count, "pool_size": pool_size},
        objective=selection.objective,
        inputs={role: describe_input(getattr(selection, role)) for role in ROLES},
        model=_plain(selection.model),
        scoring=_plain(selection.scoring),
        stage_key=selection.stage_key,
        export={"format": fmt, "annotations": annotate, "order": EXPORT_ORDER},
        indices=list(selection.indices),
        # The curator's choices, as `delift select --pin/--exclude` records them.
        pinned_ids=list(selection.pinned_ids),
        excluded_ids=list(selection.excluded_ids),
    )


def manifest_bytes(manifest: Mapping[str, Any], file_name: str, rows: int) -> bytes:
    """The manifest as downloaded beside the JSONL file `file_name` of `rows` rows (UTF-8,
    indented), with the same `output` entry export_subset writes."""
    full = dict(manifest) | {"output": {"file": file_name, "rows": rows}}
    return (json.dumps(full, indent=2, ensure_ascii=False) + "\n").encode()
