"""Curating the pool on the Select page, without Streamlit: the per-row table every view reads
(status, rank, gain, quality, signals, text length, the pool's own fields, the texts), filters
over it (`RowFilter`), the filter as a hard constraint on selection, and the linked table of the
rows picked on the map or found by a search, or of every selected, discarded or any row
(`ROW_SCOPES`).

The per-row table is indexed by pool position 0..n-1, so a mask over it is a mask over the pool
and `table.index` of any slice gives pool positions back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from delift_core.search import SEARCH_FIELDS, SEARCH_MODES, match_texts, row_texts
from ui.map_colour import category_labels, numeric_values
from ui.plots import shorten

SELECTED, PINNED, DISCARDED, EXCLUDED = "selected", "selected (pinned)", "discarded", "excluded"
STATUSES = (SELECTED, PINNED, DISCARDED, EXCLUDED)
TEXT_COLUMNS = ("instruction", "input", "output")
# The linked table's leading columns, in this order where present; the rest follow as they are.
CURATOR_COLUMNS = ("id", "status", "rank", "gain", "quality score", "quality", *TEXT_COLUMNS)
SNIPPET = 100  # characters of each text shown in the linked table
# What the linked table lists: the rows picked on the map (or found by the search), or every
# selected row (pinned too), every discarded row (excluded too), every row.
PICKED = "picked"
ROW_SCOPES = (PICKED, "selected", "discarded", "all")
SCOPE_STATUSES = {
    "selected": (SELECTED, PINNED),
    "discarded": (DISCARDED, EXCLUDED),
    "all": STATUSES,
}


def row_table(
    records: Sequence[Any],
    order: np.ndarray,
    gains: np.ndarray,
    count: int,
    *,
    pinned: Collection[int] = (),
    excluded: Collection[int] = (),
    quality: np.ndarray | None = None,
    signals: Mapping[str, np.ndarray] | None = None,
    fields: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per pool sample, indexed by pool position.

    Columns: id; status (one of STATUSES at this budget: the first `count` of `order` are
    selected, pinned and excluded as the curator marked them); rank (1-based pick position,
    <NA> when never picked); gain (the pick's marginal gain, NaN when none); quality score
    (when `quality` (n,) is given); each of `signals` (n,) (e.g. self_utility); length (characters
    of instruction + input + output); each source field in `fields` (numeric where every value
    is a number, else text; named "<name> (field)" where the name is taken); and the full
    instruction, input and output.
    """
    n = len(records)
    order = np.asarray(order, dtype=np.int64)
    rank = np.full(n, -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    gain = np.full(n, np.nan)
    gain[order] = np.asarray(gains, dtype=np.float64)
    status = np.full(n, DISCARDED, dtype=object)
    status[order[:count]] = SELECTED
    status[np.asarray(list(pinned), dtype=np.int64)] = PINNED
    status[np.asarray(list(excluded), dtype=np.int64)] = EXCLUDED
    table = pd.DataFrame(
        {
            "id": [r.id for r in records],
            "status": status,
            "rank": pd.arrays.IntegerArray(rank + 1, mask=rank < 0),
            "gain": gain,
        }
    )
    if quality is not None:
        table["quality score"] = np.asarray(quality, dtype=np.float64)
    for name, values in (signals or {}).items():
        table[name] = np.asarray(values, dtype=np.float64)
    texts = {name: [getattr(r, name) for r in records] for name in TEXT_COLUMNS}
    table["length"] = np.fromiter(
        (sum(len(t) for t in parts) for parts in zip(*texts.values(), strict=True)),
        dtype=np.int64,
        count=n,
    )
    for name in fields:
        column = f"{name} (field)" if name in table.columns or name in TEXT_COLUMNS else name
        raw = [r.fields.get(name) for r in records]
        numbers = numeric_values(raw)
        table[column] = numbers if numbers is not None else category_labels(raw, max(n, 1))
    for name, values in texts.items():
        table[name] = values
    return table


def _bound(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number or None; got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{what} must be finite; got {value!r}")
    return number


@dataclass(frozen=True)
class RowFilter:
    """Which rows of the per-row table to keep.

    ranges: column -> (low, high), inclusive, None for an open end; rows with no value there
    fail. categories: column -> the values to keep (compared as `category_labels` text); an
    empty set is no condition. search: a text query over instruction / input / output
    (`delift_core.search`, mode `search_mode`); "" is no condition. All conditions must hold.
    """

    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    categories: Mapping[str, Collection[str]] = field(default_factory=dict)
    search: str = ""
    search_mode: str = "substring"

    def __post_init__(self) -> None:
        ranges = {}
        for column, bounds in dict(self.ranges).items():
            if not isinstance(bounds, Sequence) or isinstance(bounds, str) or len(bounds) != 2:
                raise ValueError(f"the range of {column!r} must be (low, high); got {bounds!r}")
            low = _bound(bounds[0], f"the low end of {column!r}")
            high = _bound(bounds[1], f"the high end of {column!r}")
            if low is not None and high is not None and low > high:
                raise ValueError(f"the range of {column!r} is empty: {low} > {high}")
            if low is not None or high is not None:
                ranges[str(column)] = (low, high)
        categories = {}
        for column, kept in dict(self.categories).items():
            if isinstance(kept, str):
                raise ValueError(f"the categories of {column!r} must be a collection of values")
            if kept:
                categories[str(column)] = frozenset(str(v) for v in kept)
        if self.search_mode not in SEARCH_MODES:
            raise ValueError(f"search mode must be one of {', '.join(SEARCH_MODES)}")
        object.__setattr__(self, "ranges", ranges)
        object.__setattr__(self, "categories", categories)
        object.__setattr__(self, "search", str(self.search or "").strip())

    @property
    def active(self) -> bool:
        """True when any condition is set."""
        return bool(self.ranges or self.categories or self.search)

    @property
    def columns(self) -> set[str]:
        return set(self.ranges) | set(self.categories)

    @classmethod
    def all_of(cls, filters: Sequence[RowFilter]) -> RowFilter:
        """One filter holding every condition of `filters` (each on its own columns). ValueError
        when two name the same column or search for different texts."""
        ranges: dict[str, tuple[float | None, float | None]] = {}
        categories: dict[str, Collection[str]] = {}
        searches = {(f.search, f.search_mode) for f in filters if f.search}
        if len(searches) > 1:
            raise ValueError("filters that search for different texts cannot be combined")
        for one in filters:
            clash = sorted(one.columns & (set(ranges) | set(categories)))
            if clash:
                raise ValueError(f"two filters on {', '.join(map(repr, clash))}")
            ranges.update(one.ranges)
            categories.update(one.categories)
        search, mode = next(iter(searches), ("", "substring"))
        return cls(ranges, categories, search, mode)

    def restrict(self, columns: Collection[str]) -> RowFilter:
        """This filter without the conditions on columns not in `columns` (e.g. a filter from a
        link, opened on data without those columns)."""
        return RowFilter(
            {c: b for c, b in self.ranges.items() if c in columns},
            {c: v for c, v in self.categories.items() if c in columns},
            self.search,
            self.search_mode,
        )

    def apply(self, table: pd.DataFrame, texts: Sequence[str] | None = None) -> np.ndarray:
        """Boolean mask (len(table),) of the rows meeting every condition.

        texts: the rows' search haystacks (`delift_core.search.row_texts` over the same rows),
        to reuse between searches; built from the table's text columns when None. Raises
        ValueError naming a column the table lacks or a range on a non-numeric column.
        """
        mask = np.ones(len(table), dtype=bool)
        missing = sorted(self.columns - set(table.columns))
        if missing:
            raise ValueError(f"the table has no column {', '.join(map(repr, missing))}")
        for column, (low, high) in self.ranges.items():
            values = numeric_values(table[column])
            if values is None and not table[column].isna().all():
                raise ValueError(f"column {column!r} is not numeric: filter it by categories")
            if values is None:  # no value at all: no row can lie in a range
                return np.zeros(len(table), dtype=bool)
            inside = np.isfinite(values)
            if low is not None:
                inside &= values >= low
            if high is not None:
                inside &= values <= high
            mask &= inside
        for column, kept in self.categories.items():
            labels = np.asarray(category_labels(table[column], max(len(table), 1)), dtype=object)
            mask &= np.isin(labels, list(kept))
        if self.search:
            if texts is None:
                fields = [c for c in SEARCH_FIELDS if c in table.columns]
                if not fields:
                    raise ValueError("the table has no text column to search")
                texts = row_texts(table[fields].to_dict("records"), fields)
            if len(texts) != len(table):
                raise ValueError(f"{len(texts)} search texts for {len(table)} rows")
            hits = np.zeros(len(table), dtype=bool)
            hits[match_texts(texts, self.search, self.search_mode)] = True
            mask &= hits
        return mask

    def describe(self) -> str:
        """One line for a caption, e.g. "quality in {good}; length 10 to 200; text "rain"";
        "" when nothing is set."""
        parts = []
        for column, kept in self.categories.items():
            parts.append(f"{column} in {{{', '.join(sorted(kept))}}}")
        for column, (low, high) in self.ranges.items():
            if low is None:
                parts.append(f"{column} ≤ {high:g}")
            elif high is None:
                parts.append(f"{column} ≥ {low:g}")
            else:
                parts.append(f"{column} {low:g} to {high:g}")
        if self.search:
            parts.append(f'text "{self.search}"')
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (`from_dict` reads it back); conditions not set are left out."""
        out: dict[str, Any] = {}
        if self.ranges:
            out["ranges"] = {c: list(b) for c, b in self.ranges.items()}
        if self.categories:
            out["categories"] = {c: sorted(v) for c, v in self.categories.items()}
        if self.search:
            out["search"] = self.search
        if self.search_mode != "substring":
            out["search_mode"] = self.search_mode
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowFilter:
        """The filter `to_dict` wrote; ValueError for anything else."""
        if not isinstance(data, Mapping) or set(data) - {
            "ranges",
            "categories",
            "search",
            "search_mode",
        }:
            raise ValueError("a filter is a mapping of ranges, categories, search, search_mode")
        ranges, categories = data.get("ranges") or {}, data.get("categories") or {}
        search = data.get("search") or ""
        if not isinstance(ranges, Mapping) or not isinstance(categories, Mapping):
            raise ValueError("ranges and categories must be mappings")
        if not isinstance(search, str):
            raise ValueError("search must be text")
        return cls(ranges, categories, search, data.get("search_mode") or "substring")


def excluded_by_filter(
    mask: np.ndarray, ids: Sequence[str], keep: Collection[int] = ()
) -> list[str]:
    """The ids of the rows a filter leaves out (mask False), in pool order: the filter used as a
    hard constraint, these rows leave the ground set. Positions in `keep` (the pinned rows: a
    pin is the curator's explicit choice) are never in it."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (len(ids),):
        raise ValueError(f"a mask of {mask.shape[0]} rows for {len(ids)} ids")
    out = ~mask
    kept = np.asarray(list(keep), dtype=np.int64)
    out[kept[(kept >= 0) & (kept < len(ids))]] = False
    return [ids[i] for i in np.flatnonzero(out)]


def scope_positions(table: pd.DataFrame, scope: str) -> np.ndarray:
    """Pool positions (int64, ascending) of the rows of a status scope of the per-row table:
    "selected" (pinned rows too), "discarded" (excluded rows too) or "all". ValueError for
    another scope (PICKED rows come from the map, not the table)."""
    if scope not in SCOPE_STATUSES:
        raise ValueError(f"scope must be one of {', '.join(SCOPE_STATUSES)}; got {scope!r}")
    inside = table["status"].isin(SCOPE_STATUSES[scope]).to_numpy(dtype=bool)
    return table.index.to_numpy(dtype=np.int64)[inside]


def linked_rows(
    table: pd.DataFrame, positions: Sequence[int], snippet: int = SNIPPET
) -> pd.DataFrame:
    """The rows of `table` at pool `positions` (map picks or search hits) for the linked table.

    Order as given, repeats and positions outside the table dropped; index: pool positions.
    Columns: CURATOR_COLUMNS first where present (texts shortened to `snippet` characters, the
    input left out when every shown input is empty), then the others as in `table`.
    """
    picks = pd.Index(positions, dtype="int64").drop_duplicates()
    picks = picks[picks.isin(table.index)]
    rows = table.loc[picks]
    lead = [c for c in CURATOR_COLUMNS if c in rows.columns]
    if "input" in lead and not rows["input"].astype(str).str.strip().any():
        lead.remove("input")
    ordered = lead + [c for c in rows.columns if c not in CURATOR_COLUMNS]
    rows = rows[ordered].copy()
    for column in TEXT_COLUMNS:
        if column in rows.columns:
            rows[column] = [shorten(t, snippet) for t in rows[column]]
    return rows
