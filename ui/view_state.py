"""The Select page's view in the URL query string, so that a link reopens the same view.

A view is a dict with any of these keys (VIEW_KEYS):

    stage, method, kernel     the page's choices (text)
    budget_mode               "fraction" or "count": which of the two budgets is meant
    fraction                  budget as a fraction of the pool, 0.01 to 1
    count                     budget as a number of samples, >= 1
    colour, size              the columns the map is coloured and sized by (text)
    rows                      the linked table's rows (one of ui.curation.ROW_SCOPES)
    search                    the search box's query
    filter                    a ui.curation.RowFilter (its search: only the rows matching
                              the search are kept)
    constrain                 bool: the filter is a hard constraint on selection

`encode_view` and `decode_view` are pure; `read_view`, `write_view` and `restore_once` are the
thin Streamlit side. Values in a link are never trusted: `decode_view` keeps only those that are
valid and allowed, and the page's defaults stand for the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import streamlit as st

from ui.curation import RowFilter

CHOICE_KEYS = ("stage", "method", "kernel", "colour", "size", "rows")
BUDGET_MODES = ("fraction", "count")
VIEW_KEYS = (*CHOICE_KEYS, "budget_mode", "fraction", "count", "search", "filter", "constrain")
# The query-string parameters written (budget_mode is implied by which budget is present).
PARAM_KEYS = tuple(k for k in VIEW_KEYS if k != "budget_mode")
FRACTION_RANGE = (0.01, 1.0)
MAX_SEARCH = 200  # characters of a search query taken from a link
MAX_FILTER = 4000  # characters of a filter's JSON taken from a link
RESTORED_KEY = "view_state_restored"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def encode_view(view: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters of a view: text values, with empty values, an inactive filter and a
    false `constrain` left out. With budget_mode only that budget is written; without it, at most
    one of fraction and count may be given. ValueError for an unknown key or a bad value."""
    unknown = sorted(set(view) - set(VIEW_KEYS))
    if unknown:
        raise ValueError(f"unknown view keys: {', '.join(unknown)}")
    mode = view.get("budget_mode")
    if mode is not None and mode not in BUDGET_MODES:
        raise ValueError(f"budget_mode must be 'fraction' or 'count'; got {mode!r}")
    if mode is None and view.get("fraction") is not None and view.get("count") is not None:
        raise ValueError("a view has one budget: give fraction or count, or a budget_mode")
    out: dict[str, str] = {}
    for key in CHOICE_KEYS:
        if view.get(key) not in (None, ""):
            out[key] = str(view[key])
    if mode in (None, "fraction") and view.get("fraction") is not None:
        out["fraction"] = f"{float(view['fraction']):g}"
    if mode in (None, "count") and view.get("count") is not None:
        out["count"] = str(int(view["count"]))
    search = str(view.get("search") or "").strip()
    if search:
        out["search"] = search
    row_filter = view.get("filter")
    if row_filter is not None:
        if not isinstance(row_filter, RowFilter):
            raise ValueError("filter must be a RowFilter")
        if row_filter.active:
            out["filter"] = json.dumps(row_filter.to_dict(), separators=(",", ":"), sort_keys=True)
    if view.get("constrain"):
        out["constrain"] = "1"
    return out


def _last(value: str | Sequence[str]) -> str:
    """A parameter's value; its last one when it was given more than once."""
    if isinstance(value, str):
        return value
    values = list(value)
    return str(values[-1]) if values else ""


def _fraction(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    low, high = FRACTION_RANGE
    # Two decimals: the page's slider moves in steps of 0.01.
    return round(value, 2) if math.isfinite(value) and low <= value <= high else None


def _count(text: str, allowed: Collection[int] | None) -> int | None:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        return None
    value = int(digits)
    if value < 1 or (allowed is not None and value not in allowed):
        return None
    return value


def _filter(text: str, columns: Collection[str] | None) -> RowFilter | None:
    if len(text) > MAX_FILTER:
        return None
    try:
        row_filter = RowFilter.from_dict(json.loads(text))
    except (ValueError, TypeError):  # json's errors are ValueErrors
        return None
    if columns is not None:
        row_filter = row_filter.restrict(columns)
    return row_filter if row_filter.active else None


def decode_view(
    params: Mapping[str, str | Sequence[str]],
    allowed: Mapping[str, Collection[Any]],
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The view a query string describes, `defaults` where a value is missing or not valid.

    allowed: the valid values per key: each of CHOICE_KEYS is kept only when `allowed` lists
    the value (a choice key absent from `allowed` is never taken from a link); "count" may give
    the valid counts (e.g. range(1, n + 1)); "filter_columns" the columns a filter may name
    (conditions on others are dropped). A count wins over a fraction when a link has both;
    budget_mode says which was read. Unknown parameters are ignored.
    """
    view: dict[str, Any] = dict(defaults or {})
    values = {key: _last(params[key]) for key in PARAM_KEYS if key in params}
    for key in CHOICE_KEYS:
        if key in values and key in allowed and values[key] in allowed[key]:
            view[key] = values[key]
    fraction = _fraction(values["fraction"]) if "fraction" in values else None
    count = _count(values["count"], allowed.get("count")) if "count" in values else None
    if count is not None:
        view.update(budget_mode="count", count=count)
    elif fraction is not None:
        view.update(budget_mode="fraction", fraction=fraction)
    search = values.get("search", "").strip()
    if search and len(search) <= MAX_SEARCH:
        view["search"] = search
    if "filter" in values:
        row_filter = _filter(values["filter"], allowed.get("filter_columns"))
        if row_filter is not None:
            view["filter"] = row_filter
    flag = values.get("constrain", "").strip().lower()
    if flag in TRUE + FALSE:
        view["constrain"] = flag in TRUE
    return view


def widget_values(view: Mapping[str, Any], widget_keys: Mapping[str, str]) -> dict[str, Any]:
    """Session-state values that put a view into the page's widgets: widget_keys maps a view
    key to its widget's key; view keys without a widget are left out."""
    return {widget_keys[k]: v for k, v in view.items() if k in widget_keys}


# -- Streamlit --------------------------------------------------------------------------------


def read_view(
    allowed: Mapping[str, Collection[Any]], defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The view in this page's URL (decode_view of st.query_params)."""
    params = {key: st.query_params.get_all(key) for key in st.query_params}
    return decode_view(params, allowed, defaults)


def write_view(view: Mapping[str, Any]) -> None:
    """Put a view into the URL. Only the view's own parameters change, and only those that
    differ (writing the same value again would still add a browser history entry)."""
    encoded = encode_view(view)
    for key in PARAM_KEYS:
        current = st.query_params.get(key)
        if key not in encoded and current is not None:
            del st.query_params[key]
        elif key in encoded and current != encoded[key]:
            st.query_params[key] = encoded[key]


def restore_once(
    allowed: Mapping[str, Collection[Any]],
    widget_keys: Mapping[str, str],
    flag: str = RESTORED_KEY,
) -> dict[str, Any]:
    """On a session's first run of the page, set the widgets from the URL's view (before they
    are drawn) and return that view; later runs return {} and leave the widgets alone, so the
    curator's changes are not undone by the link they came from."""
    if st.session_state.get(flag):
        return {}
    st.session_state[flag] = True
    view = read_view(allowed)
    for key, value in widget_values(view, widget_keys).items():
        st.session_state[key] = value
    return view
