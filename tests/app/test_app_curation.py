"""Select page, curating: colour the map by any column, search the texts (matches ringed on the
map and listed in the linked table), pin or exclude the points picked on the map, filter the view
or constrain the selection by the filter, read why a row is discarded, and reopen the same view
from a link."""

from __future__ import annotations

import json

import numpy as np
from apptools import assert_clean, demo_handle, frame, messages, page, score, services, with_data
from test_app_select import _array, _delift_order, _figure, _pick_on_map

from delift_core.coverage import best_cover, covers_best
from delift_core.embeddings import record_text
from delift_core.pipeline import load_stage
from delift_core.search import search_rows
from delift_core.select.kernels import utility_kernels
from ui import registry

N = 12
IDS = [f"demo-{i + 1:04d}" for i in range(N)]


def _records(n: int = N):
    return registry.load_source(demo_handle(n)["spec"], None).records


def _select_page(pool, method: str = "delift"):
    at = with_data(page("3_Select.py"), pool=pool).run()
    at.selectbox(key="select_method").set_value(method).run()
    assert_clean(at)
    return at


def _linked(at):
    """The linked table (the only one with a length column)."""
    return frame(at, "id", "status", "gain", "length")


def _drawn(at) -> set[int]:
    """The pool indices of the points the map draws (a hidden row has no coordinates)."""
    drawn = set()
    for trace in _figure(at, "select_map")["data"]:
        x = np.asarray(_array(trace["x"]), dtype=float)
        drawn |= {int(i) for i, v in zip(_array(trace["customdata"]), x, strict=True) if v == v}
    return drawn


def test_colour_by_a_categorical_or_numeric_column_and_size_by_one():
    n = 16  # more distinct lengths than a legend takes (map_colour.CONTINUOUS_ABOVE)
    pool = demo_handle(n)
    score(pool, with_map=True)
    at = _select_page(pool)
    records = _records(n)
    families = sorted({r.fields["family"] for r in records})

    at.selectbox(key="select_map_colour").set_value("family").run()
    assert_clean(at)
    traces = _figure(at, "select_map")["data"]
    # One trace per (family, status) present, one legend entry (a toggle) per family.
    assert {t["legendgroup"] for t in traces} == set(families)
    assert sum(t.get("showlegend", True) for t in traces) == len(families)
    assert sorted(int(i) for t in traces for i in _array(t["customdata"])) == list(range(n))

    # A numeric column with many values gets a colour scale with a colour bar instead.
    at.selectbox(key="select_map_colour").set_value("length").run()
    assert_clean(at)
    figure = _figure(at, "select_map")
    assert figure["layout"]["coloraxis"]["colorbar"]["title"]["text"] == "length"
    lengths = {i: len(r.instruction) + len(r.input) + len(r.output) for i, r in enumerate(records)}
    for trace in figure["data"][:2]:
        idx, colour = _array(trace["customdata"]), _array(trace["marker"]["color"])
        assert [lengths[int(i)] for i in idx] == colour.tolist()

    # Size follows a numeric column: the longest text gets the largest marker.
    at.selectbox(key="select_map_size").set_value("length").run()
    assert_clean(at)
    sizes = {}
    for trace in _figure(at, "select_map")["data"][:2]:
        for i, s in zip(_array(trace["customdata"]), _array(trace["marker"]["size"]), strict=True):
            sizes[int(i)] = float(s)
    longest, shortest = max(lengths, key=lengths.get), min(lengths, key=lengths.get)
    assert sizes[longest] > sizes[shortest]


def test_search_rings_the_matches_on_the_map_lists_them_and_pins_them():
    pool = demo_handle(N)
    score(pool, with_map=True)
    at = _select_page(pool)
    expected = search_rows(_records(), "sentence").tolist()
    assert 0 < len(expected) < N

    at.text_input(key="select_search").set_value("sentence").run()
    assert_clean(at)
    ring = _figure(at, "select_map")["data"][-1]
    assert ring["name"] == f"search matches ({len(expected)})"
    assert sorted(_array(ring["customdata"]).tolist()) == expected
    assert list(_linked(at)["id"]) == [IDS[i] for i in expected]
    assert f"{len(expected)} rows match the search." in messages(at.caption)

    # The linked rows' buttons act on them.
    at.button(key="select_pin_linked").click().run()
    assert_clean(at)
    assert at.multiselect(key="select_pinned").value == [IDS[i] for i in expected]

    # Semantic search: the rows nearest the query by the embedder that drew the map, nearest
    # first (the test embedder gives a row's own text its own vector).
    at.toggle(key="select_search_semantic").set_value(True)
    at.text_input(key="select_search").set_value(record_text(_records()[5])).run()
    assert_clean(at)
    assert "10 rows match the search." in messages(at.caption)
    assert _linked(at)["id"].iloc[0] == IDS[5]
    assert _figure(at, "select_map")["data"][-1]["name"] == "search matches (10)"
    at.toggle(key="select_search_semantic").set_value(False).run()

    # An empty search rings and lists nothing.
    at.text_input(key="select_search").set_value("").run()
    assert not any(
        t["name"].startswith("search matches") for t in _figure(at, "select_map")["data"]
    )
    assert not any("length" in d.value.columns for d in at.dataframe)


def test_points_picked_on_the_map_are_pinned_or_excluded_by_its_buttons():
    pool = demo_handle(N)
    key = score(pool, with_map=True)
    at = _select_page(pool)
    _pick_on_map(at, [1, 2])
    assert_clean(at)
    at.button(key="select_pin_picked").click().run()
    assert_clean(at)
    assert at.multiselect(key="select_pinned").value == [IDS[1], IDS[2]]

    # A new pick replaces the last one; excluding a pinned sample moves it to the exclusions.
    _pick_on_map(at, [2, 5])
    at.button(key="select_exclude_picked").click().run()
    assert_clean(at)
    assert at.multiselect(key="select_pinned").value == [IDS[1]]
    assert at.multiselect(key="select_excluded").value == [IDS[2], IDS[5]]
    selected = next(m for m in at.metric if m.label == "Selected")
    assert selected.delta == "1 pinned · 2 excluded"
    traces = _figure(at, "select_map")["data"]
    marks = {t["name"].split(" ")[0]: sorted(_array(t["customdata"]).tolist()) for t in traces}
    assert marks["pinned"] == [1] and marks["excluded"] == [2, 5]
    # The picks stay linked, now excluded; the saved selection is the greedy with that pin and
    # those exclusions (4 = 30% of 12).
    linked = _linked(at).set_index("id")
    assert linked.loc[[IDS[2], IDS[5]], "status"].tolist() == ["excluded", "excluded"]
    at.text_input(key="select_name").set_value("picked").run()
    at.button(key="select_save").click().run()
    assert_clean(at)
    cache, _ = services()
    indices, meta = registry.load_selection(cache, "picked")
    expected = _delift_order(key, N, pinned=[1], excluded=[2, 5])
    np.testing.assert_array_equal(indices, expected[:4])
    assert indices[0] == 1 and not {2, 5} & set(indices.tolist())
    assert meta["pinned_ids"] == [IDS[1]] and meta["excluded_ids"] == [IDS[2], IDS[5]]


def test_a_filter_hides_rows_and_as_a_constraint_excludes_them_from_the_selection():
    pool = demo_handle(N)
    key = score(pool, with_map=True)
    at = _select_page(pool)
    families = [r.fields["family"] for r in _records()]
    kept = [i for i, f in enumerate(families) if f == "grammar"]
    others = [i for i in range(N) if i not in kept]
    plain = _delift_order(key, N)
    assert set(plain[:3].tolist()) - set(kept), "the plain selection must pick another family"

    at.slider(key="select_budget").set_value(0.25)
    at.multiselect(key="select_filter_columns").set_value(["family"]).run()
    at.multiselect(key="select_filter_values:family").set_value(["grammar"]).run()
    assert_clean(at)
    # For the view only: the selection is unchanged, the rows left out have no point.
    assert at.metric[0].value == f"3 of {N}" and not at.metric[0].delta
    assert _drawn(at) == set(kept)
    assert set(_linked(at)["id"]) == {IDS[i] for i in kept}

    # As a constraint: the others leave the ground set, so the selection is the greedy on the rest.
    at.checkbox(key="select_filter_constrain").check().run()
    assert_clean(at)
    expected = _delift_order(key, N, excluded=others)
    assert at.metric[0].delta == f"{len(others)} excluded"
    at.text_input(key="select_name").set_value("grammar-only").run()
    at.button(key="select_save").click().run()
    cache, _ = services()
    indices, meta = registry.load_selection(cache, "grammar-only")
    np.testing.assert_array_equal(indices, expected[:3])
    assert set(indices.tolist()) <= set(kept)
    assert meta["excluded_ids"] == [IDS[i] for i in others]


def test_why_names_the_selected_row_that_covers_a_discarded_one():
    pool = demo_handle(N)
    key = score(pool, with_map=True)
    at = _select_page(pool)
    order = _delift_order(key, N)
    chosen = order[:4]  # 30% of 12
    cache, _ = services()
    kernel = utility_kernels([load_stage(cache, key).pool.rms], "minmax")[0]
    # A discarded row some selected row covers.
    row = next(int(i) for i in order[4:] if best_cover(kernel, int(i), chosen) is not None)
    cover, value = best_cover(kernel, row, chosen)

    at.selectbox(key="select_why").set_value(row).run()
    assert_clean(at)
    lines = messages(at.text)
    first = next(t for t in lines if t.startswith("Discarded:"))
    assert first.startswith(f"Discarded: {IDS[cover]} (")
    assert f"covers it with help {value:.2f}" in first
    rank = int(np.flatnonzero(order == row)[0]) + 1
    assert f"It comes at rank {rank} of the pick order" in "\n".join(lines)
    # The rows that cover it best, selected or not, from the kernel's row.
    best_by, best_value = covers_best(kernel.T, row)[0]
    covered = next(t for t in lines if t.startswith("The rows that cover it best"))
    prefix = f"The rows that cover it best, selected or not: {IDS[best_by]} ("
    assert covered.startswith(prefix), covered
    assert f"({best_value:.2f}" in covered


def test_a_link_reopens_the_same_view_and_the_view_is_written_back():
    pool = demo_handle(N)
    score(pool, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool)
    link = {
        "method": "delift",
        "count": "5",
        "colour": "family",
        "search": "sentence",
        "filter": json.dumps({"categories": {"family": ["grammar"]}}),
        "constrain": "1",
        "stage": "no-such-stage",  # not valid: the page's default stands
    }
    for name, value in link.items():
        at.query_params[name] = value
    at.run()
    assert_clean(at)
    assert at.selectbox(key="select_method").value == "delift"
    assert at.radio(key="select_budget_mode").value == "count"
    assert at.number_input(key="select_budget_count").value == 5
    assert at.selectbox(key="select_map_colour").value == "family"
    assert at.text_input(key="select_search").value == "sentence"
    assert at.multiselect(key="select_filter_columns").value == ["family"]
    assert at.multiselect(key="select_filter_values:family").value == ["grammar"]
    assert at.checkbox(key="select_filter_constrain").value
    assert at.radio(key="select_stage").value == "instruction"
    assert at.metric[0].value == f"5 of {N}"

    # The page writes its view back, so the address bar is a link to it.
    params = dict(at.query_params)
    assert params["stage"] == "instruction" and params["count"] == "5"
    assert json.loads(params["filter"]) == {"categories": {"family": ["grammar"]}}
    at.selectbox(key="select_map_colour").set_value("length").run()
    assert at.query_params["colour"] == "length"
    # Later runs keep the curator's changes, not the link's.
    assert at.selectbox(key="select_map_colour").value == "length"


def _plain_captions(at) -> list[str]:
    """The captions as read on the page (without their Markdown escapes)."""
    return [m.replace("\\", "") for m in messages(at.caption)]


def _linked_ids(at) -> list[str]:
    return list(_linked(at)["id"])


def test_the_linked_table_lists_the_selected_the_discarded_or_all_rows():
    pool = demo_handle(N)
    key = score(pool, with_map=True)
    at = _select_page(pool)
    chosen = _delift_order(key, N)[:4]  # 30% of 12
    selected = {IDS[i] for i in chosen}
    matches = search_rows(_records(), "sentence").tolist()
    assert matches and set(matches) - set(chosen.tolist()), "some match must be discarded"

    rows = at.radio(key="select_linked_rows")
    assert rows.value == "picked" and not any("length" in d.value.columns for d in at.dataframe)
    rows.set_value("selected").run()
    assert_clean(at)
    assert set(_linked_ids(at)) == selected
    assert set(_linked(at)["status"]) == {"selected"}
    assert at.query_params["rows"] == "selected"
    at.radio(key="select_linked_rows").set_value("discarded").run()
    assert_clean(at)
    assert set(_linked_ids(at)) == set(IDS) - selected
    assert f"{N - 4} rows (discarded at this budget). Click a column header to sort." in messages(
        at.caption
    )
    # The linked rows' buttons act on every row listed.
    at.button(key="select_exclude_linked").click().run()
    assert at.multiselect(key="select_excluded").value == [i for i in IDS if i not in selected]
    at.multiselect(key="select_excluded").set_value([]).run()

    # With a search, only the matches of the scope; with a filter, only the rows it keeps.
    at.text_input(key="select_search").set_value("sentence").run()
    assert_clean(at)
    assert set(_linked_ids(at)) == {IDS[i] for i in matches} - selected
    at.radio(key="select_linked_rows").set_value("all").run()
    assert _linked_ids(at) == [IDS[i] for i in matches]  # pool order
    at.multiselect(key="select_filter_columns").set_value(["quality"]).run()
    at.multiselect(key="select_filter_values:quality").set_value(["poor"]).run()
    assert_clean(at)
    poor = [i for i, r in enumerate(_records()) if r.fields["quality"] == "poor"]
    assert set(_linked_ids(at)) == {IDS[i] for i in matches if i in poor}
    caption = f"{len(_linked_ids(at))} row"
    assert any(
        c.startswith(caption) and "(the whole pool, matching the search, within the filter)" in c
        for c in messages(at.caption)
    )

    # Back to the map's picks: the default, so the link leaves it out.
    at.radio(key="select_linked_rows").set_value("picked").run()
    assert "rows" not in at.query_params


def test_a_link_opens_the_linked_table_on_its_rows():
    pool = demo_handle(N)
    key = score(pool, with_map=True)
    chosen = _delift_order(key, N)[:4]
    at = with_data(page("3_Select.py"), pool=pool)
    at.query_params.update({"method": "delift", "rows": "selected"})
    at.run()
    assert_clean(at)
    assert at.radio(key="select_linked_rows").value == "selected"
    assert set(_linked_ids(at)) == {IDS[i] for i in chosen}

    # A scope no page offers is not taken.
    at = with_data(page("3_Select.py"), pool=pool)
    at.query_params["rows"] = "everything"
    at.run()
    assert_clean(at)
    assert at.radio(key="select_linked_rows").value == "picked"


def test_the_search_as_a_filter_hides_the_rest_and_as_a_constraint_excludes_it():
    pool = demo_handle(N)
    key = score(pool, with_map=True)
    at = _select_page(pool)
    matches = search_rows(_records(), "sentence").tolist()
    others = [i for i in range(N) if i not in matches]
    plain = _delift_order(key, N)
    assert set(plain[:3].tolist()) & set(others), "the plain selection must pick a non-match"

    at.slider(key="select_budget").set_value(0.25)
    at.text_input(key="select_search").set_value("sentence").run()
    assert _drawn(at) == set(range(N))  # a search alone rings, it hides nothing
    at.checkbox(key="select_filter_search").check().run()
    assert_clean(at)
    assert _drawn(at) == set(matches)
    assert at.metric[0].value == f"3 of {N}" and not at.metric[0].delta
    shown = f'Filter text "sentence": {len(matches)} of {N} rows shown.'
    assert shown in _plain_captions(at)
    assert json.loads(at.query_params["filter"]) == {"search": "sentence"}

    # As a constraint, like any filter: the rows that do not match leave the ground set.
    at.checkbox(key="select_filter_constrain").check().run()
    assert_clean(at)
    assert at.metric[0].delta == f"{len(others)} excluded"
    at.text_input(key="select_name").set_value("sentences").run()
    at.button(key="select_save").click().run()
    cache, _ = services()
    indices, meta = registry.load_selection(cache, "sentences")
    np.testing.assert_array_equal(indices, _delift_order(key, N, excluded=others)[:3])
    assert meta["excluded_ids"] == [IDS[i] for i in others]

    # Together with a column condition: both must hold.
    at.multiselect(key="select_filter_columns").set_value(["family"]).run()
    at.multiselect(key="select_filter_values:family").set_value(["summary"]).run()
    assert_clean(at)
    summaries = {i for i, r in enumerate(_records()) if r.fields["family"] == "summary"}
    assert _drawn(at) == set(matches) & summaries
    assert at.metric[0].delta == f"{N - len(set(matches) & summaries)} excluded"

    # The semantic search is no condition: the box is off and the filter keeps its columns.
    at.toggle(key="select_search_semantic").set_value(True).run()
    assert_clean(at)
    assert at.checkbox(key="select_filter_search").disabled
    assert _drawn(at) == summaries


def test_a_link_keeps_only_the_search_matches():
    pool = demo_handle(N)
    score(pool, with_map=True)
    matches = search_rows(_records(), "sentence").tolist()
    at = with_data(page("3_Select.py"), pool=pool)
    at.query_params.update(
        {"filter": json.dumps({"search": "sentence"}), "constrain": "1", "method": "delift"}
    )
    at.run()
    assert_clean(at)
    assert at.text_input(key="select_search").value == "sentence"
    assert at.checkbox(key="select_filter_search").value
    assert _drawn(at) == set(matches)
    assert at.metric[0].delta == f"{N - len(matches)} excluded"


def test_filters_on_several_columns_at_once():
    pool = demo_handle(N)
    score(pool, with_map=True)
    at = _select_page(pool)
    records = _records()
    kept = {
        i
        for i, r in enumerate(records)
        if r.fields["family"] == "grammar" and r.fields["quality"] == "good"
    }
    grammar = {i for i, r in enumerate(records) if r.fields["family"] == "grammar"}
    assert kept and kept != grammar

    at.multiselect(key="select_filter_columns").set_value(["family", "quality"]).run()
    at.multiselect(key="select_filter_values:family").set_value(["grammar"])
    at.multiselect(key="select_filter_values:quality").set_value(["good"]).run()
    assert_clean(at)
    assert _drawn(at) == kept
    shown = f"Filter family in {{grammar}}; quality in {{good}}: {len(kept)} of {N} rows shown."
    assert shown in _plain_captions(at)
    link = json.loads(at.query_params["filter"])
    assert link == {"categories": {"family": ["grammar"], "quality": ["good"]}}

    # Dropping a column drops its condition.
    at.multiselect(key="select_filter_columns").set_value(["family"]).run()
    assert _drawn(at) == grammar

    # A link with both conditions sets both.
    at = with_data(page("3_Select.py"), pool=pool)
    at.query_params["filter"] = json.dumps(link)
    at.run()
    assert_clean(at)
    assert at.multiselect(key="select_filter_columns").value == ["family", "quality"]
    assert at.multiselect(key="select_filter_values:quality").value == ["good"]
    assert _drawn(at) == kept
