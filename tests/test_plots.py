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
    compare = plots.compare_map(coords, hover, {"a": order[:30_000], "b": order[-30_000:]})
    for figure in (fig, compare):
        assert all(isinstance(t, go.Scattergl) for t in figure.data)
        assert all(len(t.x) <= plots.MAX_POINTS_PER_TRACE for t in figure.data)
        assert all(t.text is None for t in figure.data)
    assert "of 70,000 shown" in fig.data[0].name
    # Points of a thinned trace still map back to pool indices for click-to-inspect.
    assert set(traces[1].tolist()) == set(order[:30_000].tolist())
