"""Select page: its view in the URL (ui.view_state). On a session's first run the widgets take
the link's stage, method, kernel, budget, colour, size, linked rows, search and filter; every
run writes the page's current choices back, so the address bar is always a link to this view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from delift_core.config import KERNELS
from ui import select_curate, view_state
from ui.curation import PICKED, ROW_SCOPES, RowFilter
from ui.select_curate import Filtered
from ui.select_map import COLOUR_KEY, NO_SIZE, SELECTION, SIZE_KEY
from ui.select_settings import COUNT_KEY, METHOD_CHOICES, Settings

WIDGET_KEYS = {
    "stage": "select_stage",
    "method": "select_method",
    "kernel": "select_kernel",
    "budget_mode": "select_budget_mode",
    "fraction": "select_budget",
    "count": COUNT_KEY,
    "colour": COLOUR_KEY,
    "size": SIZE_KEY,
    "rows": select_curate.ROWS_KEY,
    "search": select_curate.SEARCH_KEY,
    "constrain": select_curate.CONSTRAIN_KEY,
}


def _stages(meta: dict[str, Any]) -> list[str]:
    return [
        "instruction",
        *(s for s, r in (("task", "targets"), ("continual", "existing")) if meta.get(r)),
    ]


def restore(meta: dict[str, Any], n: int, colours: Sequence[str], filters: Sequence[str]) -> None:
    """Set the widgets from the link this session opened the page with (first run only)."""
    allowed = {
        "stage": _stages(meta),
        "method": METHOD_CHOICES,
        "kernel": list(KERNELS),
        "colour": [SELECTION, *colours],
        "size": [NO_SIZE, *colours],
        "count": range(1, n + 1),
        "rows": ROW_SCOPES,
        "filter_columns": list(filters),
    }
    view = view_state.restore_once(allowed, WIDGET_KEYS)
    row_filter = view.get("filter")
    if isinstance(row_filter, RowFilter):
        _restore_filter(row_filter)


def _restore_filter(row_filter: RowFilter) -> None:
    """The filter's widgets: its columns, each one's range or categories, and its search."""
    for column, (low, high) in row_filter.ranges.items():
        held = (
            low if low is not None else float("-inf"),
            high if high is not None else float("inf"),
        )
        st.session_state[select_curate.range_key(column)] = held
    for column, kept in row_filter.categories.items():
        st.session_state[select_curate.values_key(column)] = sorted(kept)
    st.session_state[select_curate.FILTER_COLUMNS_KEY] = [
        *row_filter.ranges,
        *row_filter.categories,
    ]
    if row_filter.search:
        st.session_state[select_curate.SEARCH_KEY] = row_filter.search
        st.session_state[select_curate.KEEP_MATCHES_KEY] = True


def write(settings: Settings, colour: str, size: str, search: str, filtered: Filtered) -> None:
    """Put the page's choices into the URL."""
    rows = st.session_state.get(select_curate.ROWS_KEY, PICKED)
    view = {
        "stage": settings.stage,
        "method": settings.method,
        "kernel": settings.kernel,
        "budget_mode": settings.budget_mode,
        settings.budget_mode: settings.budget,
        "colour": None if colour == SELECTION else colour,
        "size": None if size == NO_SIZE else size,
        "rows": None if rows == PICKED else rows,
        "search": search,
        "filter": filtered.row_filter,
        "constrain": filtered.constrain and filtered.row_filter.active,
    }
    view_state.write_view(view)
