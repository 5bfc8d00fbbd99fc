"""The maps stay light at 100k points: WebGL, thinned traces, no per-point hover text."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ui import plots


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
    compare = plots.compare_map(coords, hover, groups, {"a": "delift", "b": "random"})
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
    both = plots.compare_map(coords, hover, three, methods).data[1:]
    two = plots.compare_map(coords, hover, {k: three[k] for k in ("z", "y")}, methods).data[1:]

    def looks(traces) -> dict[str, tuple[str, str]]:
        return {
            t.name.split(" · ")[1].split(" ")[0]: (t.marker.color, t.marker.symbol) for t in traces
        }

    assert looks(two) == {m: looks(both)[m] for m in ("fl-only", "random")}
    assert len(set(looks(both).values())) == 3
    assert both[0].name == "x · delift (4)"
    # Red means "selected" on Select; yellow and grey are the pins and the pool.
    taken = {plots.SELECTED_COLOR, plots.PINNED_COLOR, plots.DISCARDED_COLOR, plots.EXCLUDED_COLOR}
    styles = [*plots.METHOD_STYLES.values(), *plots.OTHER_METHOD_STYLES]
    assert not {color for color, _ in styles} & taken
    assert len({color for color, _ in styles}) == len(styles)
    # A method not in the table still gets a fixed look; a repeated method is told apart by a
    # centre dot, then by size, and keeps its colour.
    assert plots.method_style("newer") == plots.method_style("newer")
    markers = plots.compare_markers(["delift", "random", "delift", "delift"])
    symbol, color = plots.METHOD_STYLES["delift"][1], plots.METHOD_STYLES["delift"][0]
    assert [m["symbol"] for m in markers[::2]] == [f"{symbol}-open", f"{symbol}-open-dot"]
    assert markers[3]["symbol"] == f"{symbol}-open-dot" and markers[3]["size"] > markers[2]["size"]
    assert {markers[i]["color"] for i in (0, 2, 3)} == {color}
