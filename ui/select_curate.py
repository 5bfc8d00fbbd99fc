"""Select page: curating the pool. The per-row columns a curator colours, filters and reads (the
pool's fields, text length, the quality score and signals, then the selection's status, rank and
gain), the search box (substring, or semantic with the loaded embedder), the filter on any
columns and the text search (for the view, and optionally a hard constraint on the selection) and
the linked table of the rows picked on the map or found by the search, or of every selected,
discarded or any row, with buttons that pin or exclude them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from delift_core.data.dataset import Dataset
from delift_core.errors import DeliftError
from delift_core.quality import quality_score
from delift_core.search import embed_query, match_texts, row_texts, search_semantic
from ui import curation, layout, registry, select_marks
from ui.curation import RowFilter
from ui.map_colour import category_labels, colour_kind, numeric_values
from ui.select_marks import EXCLUDE_KEY, PIN_KEY, PoolView
from ui.select_settings import Scores

SEARCH_KEY, SEMANTIC_KEY, TOP_K_KEY = "select_search", "select_search_semantic", "select_search_k"
FILTER_COLUMNS_KEY, CONSTRAIN_KEY = "select_filter_columns", "select_filter_constrain"
KEEP_MATCHES_KEY = "select_filter_search"  # the filter keeps only the search's matches
ROWS_KEY = "select_linked_rows"  # which rows the linked table lists (curation.ROW_SCOPES)
SCOPE_LABELS = {
    curation.PICKED: "picked on the map or found",
    "selected": "selected",
    "discarded": "discarded",
    "all": "all",
}
SCOPE_WORDS = {  # the linked table's caption
    "selected": "selected at this budget",
    "discarded": "discarded at this budget",
    "all": "the whole pool",
}
TEXTS_KEY = "select_search_texts"  # (pool hash, row_texts) kept between searches
SELECTION_COLUMNS = ("rank", "gain")  # columns that depend on the selection (not filterable)
HIDDEN = ("id", "status", *curation.TEXT_COLUMNS)  # not offered for colour or filter
SEMANTIC_TOP_K = 10


def range_key(column: str) -> str:
    """Session key of the range slider of a numeric filter column."""
    return f"select_filter_range:{column}"


def values_key(column: str) -> str:
    """Session key of the category multiselect of a categorical filter column."""
    return f"select_filter_values:{column}"


@dataclass(frozen=True)
class Columns:
    """The pool's per-row columns that do not depend on the selection (quality score and
    signals, length, the pool's own fields), and the quality inputs of the full table."""

    signals: dict[str, np.ndarray] | None
    fields: list[str]

    def names(self) -> list[str]:
        """The selection-independent column names (those a filter may use), in table order."""
        empty = np.zeros(0)
        table = curation.row_table(
            [],
            np.zeros(0, dtype=np.int64),
            empty,
            0,
            quality=empty if self.signals is not None else None,
            signals={k: empty for k in self.signals or {}},
            fields=self.fields,
        )
        return [c for c in table.columns if c not in HIDDEN and c not in SELECTION_COLUMNS]

    def colour_names(self) -> list[str]:
        """Columns the map may be coloured by: rank and gain, then the others."""
        return [*SELECTION_COLUMNS, *self.names()]


def pool_columns(scores: Scores, fields: Sequence[str]) -> Columns:
    """The columns of the scored pool: its quality signals (None for a stage scored without
    answer scores) and the source fields to show."""
    return Columns(registry.pool_quality(scores.cache, scores.key, scores.meta), list(fields))


def row_table(
    view: PoolView,
    columns: Columns,
    signal: str,
    order: np.ndarray,
    gains: np.ndarray,
    count: int,
    pins: Sequence[int] = (),
    outs: Sequence[int] = (),
) -> pd.DataFrame:
    """The per-row table (ui.curation.row_table) of the pool at this selection; an empty order
    gives the selection-independent columns."""
    quality = quality_score(columns.signals, signal) if columns.signals is not None else None
    return curation.row_table(
        view.pool.records,
        order,
        gains,
        count,
        pinned=pins,
        excluded=outs,
        quality=quality,
        signals=columns.signals,
        fields=columns.fields,
    )


def static_table(view: PoolView, columns: Columns, signal: str) -> pd.DataFrame:
    """The per-row table without the selection's columns (what a constraint may read)."""
    table = row_table(view, columns, signal, np.zeros(0, dtype=np.int64), np.zeros(0), 0)
    return table.drop(columns=["status", *SELECTION_COLUMNS])


# -- filter ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filtered:
    """The view's filter: the rows it keeps (mask over the pool) and whether it is also a
    constraint on the selection, with the pool indices it then leaves out of the ground set."""

    row_filter: RowFilter
    mask: np.ndarray
    constrain: bool
    outs: list[int]

    def ground_outs(self, outs: Sequence[int]) -> list[int]:
        """The curator's exclusions together with those of the constraint."""
        return sorted(set(outs) | set(self.outs))


def filter_section(
    view: PoolView, table: pd.DataFrame, names: Sequence[str], pins: Sequence[int]
) -> Filtered:
    """The Filter expander: conditions on any number of columns (a range for a numeric one,
    categories for the others), optionally only the rows matching the search box's text
    search, and whether the filter constrains the selection (pins are never excluded)."""
    keep_all = np.ones(len(view), dtype=bool)
    expander, note = st.expander("Filter"), st.container()  # the note: always one element
    with expander:
        st.caption(
            "Show only the rows whose values lie in the chosen ranges and categories (every "
            "condition must hold) and, if ticked, that match the search: the map and the "
            "linked table follow. As a constraint, the rows left out are excluded from the "
            "selection too (pinned rows stay)."
        )
        f1, f2 = st.columns([1, 2])
        held = st.session_state.get(FILTER_COLUMNS_KEY)
        if held is not None:  # columns of another pool, or from a link
            known = [c for c in held if c in names]
            if known != list(held):
                st.session_state[FILTER_COLUMNS_KEY] = known
        chosen = f1.multiselect(
            "Filter by", names, key=FILTER_COLUMNS_KEY, placeholder="Choose columns"
        )
        conditions = [_condition(f2, table, column) for column in chosen]
        # The search box is drawn above the map, after the selection this filter may constrain:
        # its query (and mode) is read from its state, which holds what the curator typed.
        query = str(st.session_state.get(SEARCH_KEY) or "").strip()
        semantic = bool(st.session_state.get(SEMANTIC_KEY))
        keep_matches = st.checkbox(
            "Keep only the rows that match the search",
            key=KEEP_MATCHES_KEY,
            disabled=semantic,
            help="The text search of the search box above the map, as one more condition. "
            "Not for the semantic search: its matches are the nearest rows, not a condition.",
        )
        constrain = st.checkbox(
            "Use the filter as a constraint on the selection",
            key=CONSTRAIN_KEY,
            help="Rows the filter leaves out are excluded from the ground set (pinned rows "
            "never are), so the selection picks only among the rows shown.",
        )
    if keep_matches and not semantic and query:
        conditions.append(RowFilter(search=query))
    row_filter = RowFilter.all_of(conditions)
    if not row_filter.active:
        return Filtered(row_filter, keep_all, False, [])
    mask = row_filter.apply(table, _texts(view.pool) if row_filter.search else None)
    outs: list[int] = []
    if constrain:
        left_out = curation.excluded_by_filter(mask, view.ids, keep=pins)
        outs = [view.position[s] for s in left_out]
    shown = f"Filter {row_filter.describe()}: {int(mask.sum()):,} of {len(view):,} rows shown"
    note.caption(
        layout.escape_md(shown)
        + (f"; {len(outs):,} excluded from the selection." if constrain else ".")
    )
    return Filtered(row_filter, mask, constrain, outs)


def _condition(where, table: pd.DataFrame, column: str) -> RowFilter:
    """The range slider or the category multiselect of one column."""
    values = table[column]
    numbers = numeric_values(values)
    if numbers is not None and colour_kind(values) == "continuous":
        finite = numbers[np.isfinite(numbers)]
        low, high = float(finite.min()), float(finite.max())
        if high <= low:
            return RowFilter()
        key = range_key(column)
        held = st.session_state.get(key)
        if held is not None:  # from a link, or a pool whose range was wider
            clipped = (max(low, min(held)), min(high, max(held)))
            if tuple(held) != clipped:
                st.session_state[key] = clipped
        default = {} if key in st.session_state else {"value": (low, high)}
        chosen = where.slider(f"{column} between", low, high, key=key, **default)
        if tuple(chosen) == (low, high):
            return RowFilter()
        return RowFilter(ranges={column: tuple(chosen)})
    labels = sorted(set(category_labels(values, max(len(values), 1))))
    key = values_key(column)
    if key in st.session_state:
        known = [v for v in st.session_state[key] if v in labels]
        if known != list(st.session_state[key]):
            st.session_state[key] = known
    kept = where.multiselect(f"{column} is one of", labels, key=key)
    return RowFilter(categories={column: kept})


# -- search ---------------------------------------------------------------------------------


def _texts(pool: Dataset) -> list[str]:
    """The search haystacks of the pool, built once per pool."""
    held = st.session_state.get(TEXTS_KEY)
    if held is None or held[0] != pool.hash:
        held = (pool.hash, row_texts(pool.records))
        st.session_state[TEXTS_KEY] = held
    return held[1]


def search_box(scores: Scores, view: PoolView) -> tuple[str, np.ndarray]:
    """The search box over instruction / input / output; returns the query and the matching
    pool indices (most similar first in semantic mode, else pool order)."""
    embeddings = registry.cached_embeddings(scores.cache, view.pool)
    s1, s2 = st.columns([3, 1], vertical_alignment="bottom")
    query = s1.text_input(
        "Search the texts",
        key=SEARCH_KEY,
        placeholder='words that must all occur; "a phrase" in quotes',
        help="Matching rows are ringed on the map and listed in the linked table below; "
        "the Filter can keep only them.",
    ).strip()
    semantic = s2.toggle(
        "Semantic",
        key=SEMANTIC_KEY,
        disabled=embeddings is None,
        help="The rows whose meaning is closest to the query, by the sentence embedder "
        "that drew the map"
        + (" (available once the map is computed)." if embeddings is None else "."),
    )
    if not query:
        return "", np.zeros(0, dtype=np.int64)
    if semantic and embeddings is not None:
        top_k = int(
            s2.number_input(
                "Semantic matches", 1, len(view), min(SEMANTIC_TOP_K, len(view)), key=TOP_K_KEY
            )
        )
        try:
            vector = embed_query(registry.load_embedder_handle().model, query)
            found, _ = search_semantic(vector, embeddings, top_k)
        except DeliftError as exc:
            st.warning(layout.escape_md(exc))
            return query, np.zeros(0, dtype=np.int64)
    else:
        found = match_texts(_texts(view.pool), query)
    # In the columns, so that the elements below (the map) keep their place while one types.
    s1.caption(f"{len(found):,} rows match the search.")
    return query, found


# -- linked table ---------------------------------------------------------------------------


def linked_section(
    view: PoolView,
    table: pd.DataFrame,
    picks: Sequence[str],
    matches: np.ndarray,
    filtered: Filtered,
) -> list[int]:
    """The Linked rows section: by default the rows picked on the map, then the search matches
    (or, with neither, the rows the filter keeps); or every selected, discarded or any row,
    narrowed to the search matches while there is a search. Always within the filter;
    sortable, with buttons that pin or exclude them. Returns their pool indices."""
    st.subheader("Linked rows")
    if st.session_state.get(ROWS_KEY, curation.PICKED) not in curation.ROW_SCOPES:
        st.session_state[ROWS_KEY] = curation.PICKED
    scope = st.radio(
        "Rows",
        curation.ROW_SCOPES,
        key=ROWS_KEY,
        format_func=SCOPE_LABELS.get,
        horizontal=True,
        help="Picked on the map or found: the points clicked, boxed or lassoed on the map and "
        "the search's matches. Selected, discarded or all: those rows at this budget (pinned "
        "rows are selected, excluded ones discarded), only the search's matches while there "
        "is a search.",
    )
    if scope == curation.PICKED:
        positions, what = _picked_or_found(view, picks, matches, filtered)
        empty = "No rows linked yet: click, box or lasso points on the map, or search the texts."
    else:
        positions = curation.scope_positions(table, scope).tolist()
        what = SCOPE_WORDS[scope]
        empty = f"No {scope} rows" if scope != "all" else "No rows"
        if str(st.session_state.get(SEARCH_KEY) or "").strip():
            found = set(matches.tolist())
            positions = [i for i in positions if i in found]
            what += ", matching the search"
            empty += " match the search"
        if filtered.row_filter.active:
            empty += " within the filter"
        empty += "."
    positions = [i for i in dict.fromkeys(positions) if filtered.mask[i]]
    if not positions:
        st.caption(empty)
        return []
    rows = curation.linked_rows(table, positions)
    st.caption(
        f"{len(rows):,} row{'s' if len(rows) != 1 else ''} ({what}"
        + (", within the filter" if filtered.row_filter.active else "")
        + "). Click a column header to sort."
    )
    st.dataframe(
        rows,
        hide_index=True,
        key="select_linked_table",
        column_config={
            "gain": st.column_config.NumberColumn(format="%.5f"),
            "quality score": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    ids = [view.ids[i] for i in rows.index]
    these = "this row" if len(ids) == 1 else f"these {len(ids):,} rows"
    b1, b2 = st.columns(2)
    b1.button(
        f"Pin {these}",
        key="select_pin_linked",
        on_click=select_marks.add_marks,
        args=(PIN_KEY, EXCLUDE_KEY, ids),
    )
    b2.button(
        f"Exclude {these}",
        key="select_exclude_linked",
        on_click=select_marks.add_marks,
        args=(EXCLUDE_KEY, PIN_KEY, ids),
    )
    return [int(i) for i in rows.index]


def _picked_or_found(
    view: PoolView, picks: Sequence[str], matches: np.ndarray, filtered: Filtered
) -> tuple[list[int], str]:
    """The rows picked on the map, then the search matches; with neither, the rows the filter
    keeps. Returns their pool indices and what they are, in words."""
    positions = [view.position[s] for s in picks] + [int(i) for i in matches]
    what = []
    if picks:
        what.append(f"{len(picks):,} picked on the map")
    if len(matches):
        what.append(f"{len(matches):,} matching the search")
    if not positions and filtered.row_filter.active:
        positions = np.flatnonzero(filtered.mask).tolist()
        what.append("the rows the filter keeps")
    return positions, "; ".join(what)
