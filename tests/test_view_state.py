"""The Select page's view in the URL: encoded as text, decoded with every value validated."""

from __future__ import annotations

import pytest

from ui.curation import RowFilter
from ui.view_state import decode_view, encode_view, widget_values

ALLOWED = {
    "stage": ["instruction", "task"],
    "method": ["delift-q", "delift", "random"],
    "kernel": ["minmax", "clip"],
    "colour": ["selection", "family", "gain"],
    "size": ["length"],
    "count": range(1, 501),
    "rows": ["picked", "selected", "discarded", "all"],
    "filter_columns": ["family", "length", "rank"],
}
FILTER = RowFilter({"length": (10, None)}, {"family": ["qa", "math"]}, "capital")


def test_a_view_survives_the_round_trip():
    view = {
        "stage": "task",
        "method": "delift",
        "kernel": "clip",
        "budget_mode": "fraction",
        "fraction": 0.25,
        "count": 40,  # not the budget in use: not written
        "colour": "family",
        "size": "length",
        "rows": "discarded",
        "search": "  rain  ",
        "filter": FILTER,
        "constrain": True,
    }
    params = encode_view(view)
    assert all(isinstance(v, str) for v in params.values())
    assert "count" not in params and params["fraction"] == "0.25" and params["search"] == "rain"
    assert params["constrain"] == "1"
    decoded = decode_view(params, ALLOWED)
    expected = {k: v for k, v in view.items() if k != "count"}
    assert decoded == {**expected, "search": "rain"}
    by_count = decode_view(encode_view({"budget_mode": "count", "count": 40}), ALLOWED)
    assert by_count == {"budget_mode": "count", "count": 40}


def test_empty_values_are_left_out_of_the_link():
    view = {"stage": "task", "colour": "", "search": " ", "filter": RowFilter(), "constrain": False}
    assert encode_view(view) == {"stage": "task"}


def test_encoding_refuses_what_no_page_would_hold():
    with pytest.raises(ValueError, match="unknown view keys: colour_by"):
        encode_view({"colour_by": "x"})
    with pytest.raises(ValueError, match="one budget"):
        encode_view({"fraction": 0.3, "count": 5})
    with pytest.raises(ValueError, match="budget_mode"):
        encode_view({"budget_mode": "percent"})
    with pytest.raises(ValueError, match="RowFilter"):
        encode_view({"filter": {"ranges": {}}})


def test_bad_or_unknown_values_fall_back_to_the_defaults():
    defaults = {"stage": "instruction", "method": "delift-q", "fraction": 0.3}
    params = {
        "stage": "continual",  # not allowed for these scores
        "method": "<script>",
        "kernel": "clip",
        "fraction": "1.5",
        "colour": "family",
        "size": "family",  # not a numeric column
        "rows": "everything",  # not a scope of the linked table
        "search": "x" * 201,
        "filter": "{not json",
        "constrain": "maybe",
        "utm_source": "mail",
    }
    view = decode_view(params, ALLOWED, defaults)
    assert view == {**defaults, "kernel": "clip", "colour": "family"}
    # A choice key the page does not list is never taken from a link.
    assert decode_view({"stage": "task"}, {}) == {}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"fraction": "0.333"}, {"budget_mode": "fraction", "fraction": 0.33}),
        ({"fraction": "0"}, {}),
        ({"fraction": "nan"}, {}),
        ({"fraction": "inf"}, {}),
        ({"count": "500"}, {"budget_mode": "count", "count": 500}),
        ({"count": "501"}, {}),  # larger than the pool
        ({"count": "0"}, {}),
        ({"count": "-3"}, {}),
        ({"count": "2.5"}, {}),
        ({"count": "²"}, {}),
        ({"count": "12", "fraction": "0.5"}, {"budget_mode": "count", "count": 12}),
        ({"count": "x", "fraction": "0.5"}, {"budget_mode": "fraction", "fraction": 0.5}),
        ({"constrain": "true"}, {"constrain": True}),
        ({"constrain": "0"}, {"constrain": False}),
        ({"method": ["random", "delift"]}, {"method": "delift"}),  # the last of repeats
        ({"method": []}, {}),
    ],
)
def test_budgets_flags_and_repeats(params, expected):
    assert decode_view(params, ALLOWED) == expected


def test_filters_from_a_link_keep_only_known_columns():
    text = encode_view({"filter": RowFilter({"length": (1, 2), "score": (0, 1)}, {"x": ["a"]})})
    assert decode_view(text, ALLOWED)["filter"] == RowFilter({"length": (1, 2)})
    # Only unknown columns: no filter at all.
    only_unknown = encode_view({"filter": RowFilter({"score": (0, 1)})})
    assert "filter" not in decode_view(only_unknown, ALLOWED)
    bad = [
        '{"ranges": {"length": [5, 1]}}',  # empty range
        '{"ranges": {"length": "5..9"}}',
        '{"categories": {"family": "qa"}}',
        '{"colour": "red"}',
        "[1, 2]",
        '{"search": 3}',
    ]
    for value in bad:
        assert decode_view({"filter": value}, ALLOWED) == {}, value
    # Without a list of columns, any column is kept.
    assert decode_view(text, {})["filter"].columns == {"length", "score", "x"}


def test_a_filter_that_keeps_only_the_search_matches_survives_a_link():
    row_filter = RowFilter({"length": (10, 90)}, {"family": ["qa"]}, "capital city")
    params = encode_view({"search": "capital city", "filter": row_filter})
    assert decode_view(params, ALLOWED)["filter"] == row_filter
    # Restricted to known columns, the search stays: it names no column.
    only_search = RowFilter({"score": (0, 1)}, search="rain")
    assert decode_view(encode_view({"filter": only_search}), ALLOWED)["filter"] == RowFilter(
        search="rain"
    )


def test_widget_values_map_view_keys_to_widget_keys():
    view = {"stage": "task", "fraction": 0.2, "filter": FILTER}
    keys = {"stage": "select_stage", "fraction": "select_budget"}
    assert widget_values(view, keys) == {"select_stage": "task", "select_budget": 0.2}


def _page():
    import streamlit as st

    from ui import view_state

    allowed = {"method": ["delift", "random"], "count": range(1, 101)}
    keys = {"method": "m", "count": "c"}
    restored = view_state.restore_once(allowed, keys)
    method = st.selectbox("Method", ["delift", "random"], key="m")
    # No explicit default: the value comes from the link or the widget's minimum.
    count = st.number_input("Budget", 1, 100, key="c")
    st.write(f"restored={sorted(restored)}")
    view_state.write_view({"method": method, "budget_mode": "count", "count": count})


def test_a_link_sets_the_widgets_once_and_the_url_follows_them():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_page)
    at.query_params.update({"method": "random", "count": "42", "other": "kept"})
    at.run()
    assert not at.exception
    assert at.selectbox[0].value == "random" and at.number_input[0].value == 42
    assert at.markdown[0].value == "restored=['budget_mode', 'count', 'method']"
    assert at.query_params == {"method": "random", "count": "42", "other": "kept"}
    at.selectbox[0].set_value("delift").run()
    assert at.markdown[0].value == "restored=[]"  # the link is read once per session
    assert at.query_params["method"] == "delift" and at.query_params["count"] == "42"
