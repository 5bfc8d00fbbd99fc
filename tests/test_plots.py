"""The maps stay light at 100k points (WebGL, thinned traces, no per-point hover text), and the
pool map colours by any column, rings search matches and sizes by a column."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from ui import compare_plots, map_colour, plots


def test_small_map_keeps_every_point_and_its_text():
    coords = np.random.default_rng(0).normal(size=(50, 2))
    hover = plots.hover_lines([f"id{i}" for i in range(50)], ["<b>x</b>"] * 50)
    assert "&lt;b&gt;" in hover[0]  # user text is escaped
    fig, traces = plots.selection_map(coords, hover, np.arange(50), np.ones(50), 10)
    assert isinstance(fig.data[0], go.Scatter)
    assert sorted(np.concatenate(traces).tolist()) == list(range(50))
    assert len(fig.data[1].x) == 10 and fig.data[1].text[0].startswith("<b>id0</b>")


def test_hundred_thousand_points_are_thinned_and_fast():
    n = 100_000
    coords = np.random.default_rng(1).normal(size=(n, 2)).astype(np.float32)
    hover = [""] * n
    order = np.random.default_rng(2).permutation(n)
    fig, traces = plots.selection_map(coords, hover, order, np.ones(n), 30_000)
    groups = {"a": order[:30_000], "b": order[-30_000:]}
    compare = compare_plots.compare_map(coords, hover, groups, {"a": "delift", "b": "random"})
    for figure in (fig, compare):
        assert all(isinstance(t, go.Scattergl) for t in figure.data)
        assert all(len(t.x) <= plots.MAX_POINTS_PER_TRACE for t in figure.data)
        assert all(t.text is None for t in figure.data)
    assert "of 70,000 shown" in fig.data[0].name
    # Points of a thinned trace still map back to pool indices for click-to-inspect.
    assert set(traces[1].tolist()) == set(order[:30_000].tolist())


def test_category_map_has_a_trace_per_category_and_status():
    coords = np.random.default_rng(3).normal(size=(9, 2))
    labels = ["good"] * 5 + ["poor"] * 3 + ["<dup>"]
    order = np.array([0, 5, 8, 1, 2, 3, 4, 6, 7])
    fig, traces = plots.category_map(coords, [""] * 9, order, np.ones(9), 3, labels)
    # good: selected + discarded, poor: selected + discarded, <dup>: selected only.
    assert len(fig.data) == len(traces) == 5
    assert [t.legendgroup for t in fig.data] == ["good", "good", "poor", "poor", "<dup>"]
    assert [t.showlegend for t in fig.data] == [True, False, True, False, True]
    assert fig.data[0].name == "good (1 of 5 selected)" and "&lt;dup&gt;" in fig.data[4].name
    filled = [t for t in fig.data if t.marker.symbol == "circle"]
    assert sorted(int(i) for t in filled for i in t.customdata) == [0, 5, 8]
    assert fig.data[0].marker.color == fig.data[1].marker.color != fig.data[2].marker.color
    # Clicked points map back to pool indices through the trace list, as on selection_map.
    event = {"selection": {"points": [{"curve_number": 3, "point_index": 1}]}}
    assert plots.selected_indices(event, traces) == [int(traces[3][1])]


def test_category_map_at_a_hundred_thousand_points():
    n = 100_000
    coords = np.random.default_rng(4).normal(size=(n, 2)).astype(np.float32)
    labels = ["a" if i % 4 else "b" for i in range(n)]
    order = np.random.default_rng(5).permutation(n)
    fig, traces = plots.category_map(coords, [""] * n, order, np.ones(n), 10_000, labels)
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    assert all(len(t.x) <= plots.MAX_POINTS_PER_TRACE and t.text is None for t in fig.data)
    assert fig.data[0].name.endswith("a sample shown")  # "a": 75,000 points, 67,500 discarded
    assert sum(len(t) for t in traces) == sum(len(t.x) for t in fig.data)


def test_selection_histogram_counts_known_values_by_status():
    values = np.array([0.1, 0.2, 0.2, 0.9, np.nan, 0.5])
    chosen = np.array([True, False, True, False, True, False])
    fig = plots.selection_histogram(values, chosen, "quality <score>", bins=4)
    selected, discarded = fig.data
    assert selected.name == "selected samples (2)" and discarded.name == "discarded samples (3)"
    assert selected.y.sum() == 2 and discarded.y.sum() == 3  # NaN is left out
    assert fig.layout.barmode == "stack" and "&lt;score&gt;" in fig.layout.xaxis.title.text
    assert not plots.selection_histogram(np.full(3, np.nan), chosen[:3], "x").data


def test_pinned_and_excluded_are_marked_and_map_back_to_pool_indices():
    coords = np.random.default_rng(6).normal(size=(10, 2))
    order = np.array([3, 0, 1, 2, 4, 5, 6, 7, 8])  # 9 is excluded: never picked
    fig, traces = plots.selection_map(coords, [""] * 10, order, np.ones(9), 4, [3, 0], [9])
    assert len(fig.data) == len(traces) == 4
    assert [t.name for t in fig.data[2:]] == ["pinned (2)", "excluded (1)"]
    assert fig.data[2].marker.symbol == "star" and fig.data[3].marker.symbol == "x"
    assert traces[2].tolist() == [0, 3] and traces[3].tolist() == [9]
    event = {"selection": {"points": [{"curve_number": 3, "point_index": 0}]}}
    assert plots.selected_indices(event, traces) == [9]
    # Without pins or exclusions no overlay is drawn; the category map takes them too.
    assert len(plots.selection_map(coords, [""] * 10, order, np.ones(9), 4)[0].data) == 2
    labels = ["a"] * 5 + ["b"] * 5
    fig, traces = plots.category_map(coords, [""] * 10, order, np.ones(9), 4, labels, [], [9])
    assert fig.data[-1].name == "excluded (1)" and traces[-1].tolist() == [9]


def test_each_method_keeps_one_colour_and_marker_on_compare():
    coords = np.random.default_rng(7).normal(size=(12, 2))
    hover = [""] * 12
    three = {"x": np.arange(4), "y": np.arange(4, 8), "z": np.arange(8, 12)}
    methods = {"x": "delift", "y": "random", "z": "fl-only"}
    both = compare_plots.compare_map(coords, hover, three, methods).data[1:]
    two = compare_plots.compare_map(coords, hover, {k: three[k] for k in ("z", "y")}, methods).data[
        1:
    ]

    def looks(traces) -> dict[str, tuple[str, str]]:
        return {
            t.name.split(" · ")[1].split(" ")[0]: (t.marker.color, t.marker.symbol) for t in traces
        }

    assert looks(two) == {m: looks(both)[m] for m in ("fl-only", "random")}
    assert len(set(looks(both).values())) == 3
    assert both[0].name == "x · delift (4)"
    # Red means "selected" on Select; yellow and grey are the pins and the pool.
    taken = {plots.SELECTED_COLOR, plots.PINNED_COLOR, plots.DISCARDED_COLOR, plots.EXCLUDED_COLOR}
    styles = [*compare_plots.METHOD_STYLES.values(), *compare_plots.OTHER_METHOD_STYLES]
    assert not {color for color, _ in styles} & taken
    assert len({color for color, _ in styles}) == len(styles)
    # A method not in the table still gets a fixed look; a repeated method is told apart by a
    # centre dot, then by size, and keeps its colour.
    assert compare_plots.method_style("newer") == compare_plots.method_style("newer")
    markers = compare_plots.compare_markers(["delift", "random", "delift", "delift"])
    symbol, color = (
        compare_plots.METHOD_STYLES["delift"][1],
        compare_plots.METHOD_STYLES["delift"][0],
    )
    assert [m["symbol"] for m in markers[::2]] == [f"{symbol}-open", f"{symbol}-open-dot"]
    assert markers[3]["symbol"] == f"{symbol}-open-dot" and markers[3]["size"] > markers[2]["size"]
    assert {markers[i]["color"] for i in (0, 2, 3)} == {color}


# -- colouring by any column (ui.map_colour) ---------------------------------------------------


def _pool(n: int, seed: int = 8):
    coords = np.random.default_rng(seed).normal(size=(n, 2))
    return coords, [f"<b>s{i}</b>" for i in range(n)], np.arange(n), np.linspace(1, 0, n)


def test_the_kind_of_colouring_follows_dtype_and_distinct_values():
    assert map_colour.colour_kind(np.arange(13.0)) == "continuous"
    assert map_colour.colour_kind(np.arange(12.0)) == "categorical"  # few levels: a legend
    assert map_colour.colour_kind(["a", "b"] * 20) == "categorical"
    assert map_colour.colour_kind([True, False] * 20) == "categorical"
    assert map_colour.colour_kind([str(i / 7) for i in range(30)]) == "continuous"  # numeric text
    assert map_colour.colour_kind([None] * 5) == "categorical"
    assert map_colour.numeric_values(["1", None, "", 2.5]).tolist()[::3] == [1.0, 2.5]
    assert np.isnan(map_colour.numeric_values(["1", None, "", 2.5])[1:3]).all()
    assert map_colour.numeric_values(["1", "two"]) is None
    assert map_colour.numeric_values([1, True]) is None
    assert map_colour.category_labels([3.0, 2.5, None, "", "x", float("nan")]) == [
        "3",
        "2.5",
        "(missing)",
        "(missing)",
        "x",
        "(missing)",
    ]
    # Lists and dicts (JSON fields) are text, never numbers.
    assert map_colour.numeric_values([[1], 2]) is None
    assert map_colour.category_labels([["a"], "b", {"k": 1}]) == ["['a']", "b", "{'k': 1}"]
    many = [f"c{i:02d}" for i in range(25)] + ["c00"] * 5
    lumped = map_colour.category_labels(many, max_categories=5)
    assert len(set(lumped)) == 5 and lumped.count("(other)") == 21 and lumped[-1] == "c00"


def test_a_categorical_column_gets_a_legend_entry_per_category():
    coords, hover, order, gains = _pool(12)
    family = ["qa", "math", "code"] * 4
    fig, traces = map_colour.column_map(coords, hover, order, gains, 6, family, name="family")
    # Three categories, each with selected (0..5) and discarded (6..11) points.
    assert len(fig.data) == len(traces) == 6
    assert [t.showlegend for t in fig.data] == [True, False] * 3
    assert sorted({t.legendgroup for t in fig.data}) == ["code", "math", "qa"]
    assert {t.marker.symbol for t in fig.data} == {"circle", "circle-open"}
    for trace, idx in zip(fig.data, traces, strict=True):
        assert {family[i] for i in idx} == {trace.legendgroup}
        assert (trace.marker.symbol == "circle") == all(i < 6 for i in idx)
    # Few numeric levels are categories too, named without a trailing ".0".
    levels = np.array([1.0, 2.0, 3.0] * 4)
    fig, _ = map_colour.column_map(coords, hover, order, gains, 6, levels, name="stars")
    assert sorted({t.legendgroup for t in fig.data}) == ["1", "2", "3"]
    assert fig.layout.coloraxis.colorbar.title.text is None


def test_a_continuous_column_gets_a_colour_bar_and_keeps_the_status_visible():
    coords, hover, order, gains = _pool(30)
    values = np.arange(30.0)
    values[5] = np.nan
    fig, traces = map_colour.column_map(coords, hover, order, gains, 10, values, name="len<gth>")
    discarded, selected, missing = fig.data
    assert fig.layout.coloraxis.colorbar.title.text == "len&lt;gth&gt;"
    assert fig.layout.coloraxis.colorscale is not None
    finite = values[np.isfinite(values)]
    assert fig.layout.coloraxis.cmin == pytest.approx(np.percentile(finite, 2))
    assert fig.layout.coloraxis.cmax == pytest.approx(np.percentile(finite, 98))
    assert discarded.marker.coloraxis == selected.marker.coloraxis == "coloraxis"
    assert selected.marker.symbol == "circle" and discarded.marker.symbol == "circle-open"
    assert traces[1].tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9] and traces[2].tolist() == [5]
    assert list(selected.marker.color) == [values[i] for i in traces[1]]
    assert (
        missing.name == "no len&lt;gth&gt; (1)"
        and missing.marker.color == map_colour.NO_VALUE_COLOR
    )
    assert sorted(np.concatenate(traces).tolist()) == list(range(30))
    # Text is never a colour scale.
    with pytest.raises(ValueError, match="no numeric values"):
        map_colour.column_map(coords, hover, order, gains, 10, ["a"] * 30, kind="continuous")


def test_search_matches_are_ringed_on_top_and_map_back_to_pool_indices():
    coords, hover, order, gains = _pool(20)
    fig, traces = map_colour.column_map(
        coords,
        hover,
        order,
        gains,
        5,
        np.arange(20.0),
        pinned=[1],
        excluded=[19],
        highlight=[7, 3, 7],
    )
    assert [t.name for t in fig.data[-3:]] == ["pinned (1)", "excluded (1)", "search matches (2)"]
    ring = fig.data[-1]
    assert ring.marker.symbol == "circle-open" and ring.marker.line.width == 2
    assert ring.customdata.tolist() == [3, 7] and traces[-1].tolist() == [3, 7]
    assert ring.text[0].startswith("<b>s3</b>")
    event = {"selection": {"points": [{"curve_number": len(traces) - 1, "point_index": 1}]}}
    assert plots.selected_indices(event, traces) == [7]
    # No matches, no ring; the plain selected / discarded map takes a highlight too.
    assert len(map_colour.column_map(coords, hover, order, gains, 5, highlight=[])[0].data) == 2
    fig, _ = map_colour.column_map(coords, hover, order, gains, 5, highlight=[0])
    assert [t.name for t in fig.data] == ["discarded (15)", "selected (5)", "search matches (1)"]


def test_marker_size_can_follow_a_numeric_column():
    coords, hover, order, gains = _pool(20)
    sizes = np.arange(20.0)
    sizes[4] = np.nan
    expected = map_colour.marker_sizes(sizes)
    assert expected[4] == map_colour.SIZE_RANGE[0] and expected.max() == map_colour.SIZE_RANGE[1]
    assert np.all(np.diff(expected[5:]) >= 0)
    fig, traces = map_colour.column_map(
        coords, hover, order, gains, 5, ["a", "b"] * 10, pinned=[2], sizes=sizes
    )
    for trace, idx in zip(fig.data[:-1], traces[:-1], strict=True):
        np.testing.assert_allclose(trace.marker.size, expected[idx])
    assert fig.data[-1].marker.size == plots.MARK_MARKERS["pinned"]["size"]  # marks keep theirs
    with pytest.raises(ValueError, match="sizes for 20 points"):
        map_colour.column_map(coords, hover, order, gains, 5, sizes=np.ones(3))


def test_colouring_a_hundred_thousand_points_stays_webgl_and_thinned():
    n = 100_000
    rng = np.random.default_rng(9)
    coords = rng.normal(size=(n, 2)).astype(np.float32)
    order = rng.permutation(n)
    labels = np.array(list("abcdef"))[rng.integers(0, 6, n)]
    for values in (labels, rng.random(n)):
        fig, traces = map_colour.column_map(
            coords, [""] * n, order, np.ones(n), 30_000, values, highlight=order[:500]
        )
        assert all(isinstance(t, go.Scattergl) for t in fig.data)
        assert all(len(t.x) <= plots.MAX_POINTS_PER_TRACE and t.text is None for t in fig.data)
        assert sum(len(t) for t in traces) == sum(len(t.x) for t in fig.data)
    assert len(fig.data) == 3  # continuous: discarded, selected, ring
