"""Plotly figures of the app: the pool map (selected vs discarded, or by category; pinned and
excluded samples marked), the objective curve, the histogram of a per-sample value and the
comparison map (`ui.compare_plots`). User text appears only as hover text, HTML-escaped.
Colouring the pool map by any column, search rings and marker sizes: `ui.map_colour`, built on
the public helpers here (scatter_type, pick_state, hover_text, overlay_marks, style_map).
The comparison map's look per method: `ui.compare_plots`."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

# Above this many points WebGL markers keep the map responsive.
WEBGL_ABOVE = 5000
SELECTED_COLOR = "#e4572e"
DISCARDED_COLOR = "#b8c0cc"
PINNED_COLOR = "#f2b705"
EXCLUDED_COLOR = "#5f6b7a"
# Curation marks drawn over a map's points: pinned samples as stars, excluded ones as crosses.
MARK_MARKERS = {
    "pinned": {"symbol": "star", "size": 14, "color": PINNED_COLOR, "line": {"width": 1}},
    "excluded": {"symbol": "x", "size": 9, "color": EXCLUDED_COLOR},
}
PALETTE = ("#1f77b4", "#e4572e", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
# Colours of a categorical map: enough distinct ones for the 20 categories the page allows.
CATEGORY_COLORS = PALETTE + tuple(qualitative.Dark24)
# Above this many points per trace, a seeded random sample is drawn (the legend says so).
MAX_POINTS_PER_TRACE = 50_000
# Above this many points, hover shows only the sample number; its text comes on click.
HOVER_TEXT_UP_TO = 20_000


def scatter_type(n: int) -> type:
    return go.Scattergl if n > WEBGL_ABOVE else go.Scatter


def thin(idx: np.ndarray, limit: int = MAX_POINTS_PER_TRACE) -> np.ndarray:
    """At most `limit` of the indices, a seeded random sample kept in index order."""
    if len(idx) <= limit:
        return idx
    keep = np.random.default_rng(0).choice(len(idx), limit, replace=False)
    return idx[np.sort(keep)]


def trace_name(name: str, shown: int, total: int) -> str:
    return f"{name} ({total:,})" if shown == total else f"{name} ({shown:,} of {total:,} shown)"


def shorten(text: str, limit: int = 80) -> str:
    """One line of at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def hover_lines(ids: Sequence[str], instructions: Sequence[str]) -> list[str]:
    """Escaped 'id · instruction' hover headers, one per point."""
    return [
        f"<b>{html.escape(str(i))}</b><br>{html.escape(shorten(t))}"
        for i, t in zip(ids, instructions, strict=True)
    ]


def pick_state(
    n: int, order: np.ndarray, gains: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pool index: its rank in `order` (-1 if never picked), its gain and whether it is among
    the first `count` picks."""
    rank = np.full(n, -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    gain = np.full(n, np.nan)
    gain[order] = gains
    chosen = np.zeros(n, dtype=bool)
    chosen[order[:count]] = True
    return rank, gain, chosen


def hover_text(
    hover: Sequence[str], idx: np.ndarray, rank: np.ndarray, gain: np.ndarray, n: int
) -> tuple[list[str] | None, str]:
    """Hover text and template of a map trace; large maps show the sample number only."""
    if n > HOVER_TEXT_UP_TO:
        return None, "sample #%{customdata}<extra></extra>"
    text = [
        f"{hover[i]}<br>rank {rank[i] + 1 if rank[i] >= 0 else '–'}"
        + (f" · gain {gain[i]:.4f}" if np.isfinite(gain[i]) else "")
        for i in idx
    ]
    return text, "%{text}<extra></extra>"


def selection_map(
    coords: np.ndarray,
    hover: Sequence[str],
    order: np.ndarray,
    gains: np.ndarray,
    count: int,
    pinned: Sequence[int] = (),
    excluded: Sequence[int] = (),
) -> tuple[go.Figure, list[np.ndarray]]:
    """Map of the pool: the first `count` picks of `order` highlighted.

    coords (n, 2); hover: one escaped header per point; order/gains: the full pick order and
    gains; pinned / excluded: pool indices the curator pinned or excluded, marked on top
    (`overlay_marks`). Returns the figure and, per trace, the pool indices of its points (for
    selections).
    """
    n = coords.shape[0]
    rank, gain, chosen = pick_state(n, order, gains, count)
    scatter = scatter_type(n)
    fig = go.Figure()
    traces = []
    for name, mask, color, size in (
        ("discarded", ~chosen, DISCARDED_COLOR, 6),
        ("selected", chosen, SELECTED_COLOR, 8),
    ):
        every = np.flatnonzero(mask)
        idx = thin(every)
        traces.append(idx)
        text, template = hover_text(hover, idx, rank, gain, n)
        fig.add_trace(
            scatter(
                x=coords[idx, 0],
                y=coords[idx, 1],
                mode="markers",
                name=trace_name(name, len(idx), len(every)),
                marker={"color": color, "size": size, "line": {"width": 0}},
                customdata=idx,
                text=text,
                hovertemplate=template,
            )
        )
    traces += overlay_marks(fig, coords, hover, rank, gain, pinned, excluded)
    style_map(fig)
    return fig, traces


def category_map(
    coords: np.ndarray,
    hover: Sequence[str],
    order: np.ndarray,
    gains: np.ndarray,
    count: int,
    labels: Sequence[str],
    pinned: Sequence[int] = (),
    excluded: Sequence[int] = (),
) -> tuple[go.Figure, list[np.ndarray]]:
    """Map of the pool coloured by a categorical label, one colour per category.

    Selected points (the first `count` of `order`) are filled circles, discarded ones faint open
    circles, so the selection stays visible under any colouring. Each non-empty (category,
    status) pair is one trace; a category has one legend entry, which toggles both of its traces.
    Pinned and excluded samples are marked on top (`overlay_marks`). Returns the figure and, per
    trace, the pool indices of its points (as `selection_map`).
    """
    n = coords.shape[0]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} points")
    rank, gain, chosen = pick_state(n, order, gains, count)
    # Integer codes per category: comparing ints, not strings, keeps 100k points fast.
    names, codes, counts = np.unique(
        np.asarray([str(v) for v in labels], dtype=str), return_inverse=True, return_counts=True
    )
    # Largest categories first, so the first colours go to the bulk of the pool.
    ranked = np.lexsort((names, -counts))
    scatter = scatter_type(n)
    fig = go.Figure()
    traces = []
    for c, code in enumerate(ranked):
        category = str(names[code])
        color = CATEGORY_COLORS[c % len(CATEGORY_COLORS)]
        members = codes.reshape(-1) == code
        total, picked = int(members.sum()), int((members & chosen).sum())
        name = f"{html.escape(shorten(category, 40))} ({picked:,} of {total:,} selected)"
        if max(picked, total - picked) > MAX_POINTS_PER_TRACE:
            name += ", a sample shown"
        legend = True
        for status, mask in (("selected", members & chosen), ("discarded", members & ~chosen)):
            every = np.flatnonzero(mask)
            if not len(every):
                continue
            idx = thin(every)
            traces.append(idx)
            text, template = hover_text(hover, idx, rank, gain, n)
            selected = status == "selected"
            fig.add_trace(
                scatter(
                    x=coords[idx, 0],
                    y=coords[idx, 1],
                    mode="markers",
                    name=name,
                    legendgroup=category,
                    showlegend=legend,
                    opacity=1.0 if selected else 0.5,
                    marker={
                        "color": color,
                        "size": 8 if selected else 6,
                        "symbol": "circle" if selected else "circle-open",
                        "line": {"width": 0 if selected else 1, "color": color},
                    },
                    customdata=idx,
                    text=text,
                    hovertemplate=template.replace("<extra></extra>", f"<extra>{status}</extra>"),
                )
            )
            legend = False
    traces += overlay_marks(fig, coords, hover, rank, gain, pinned, excluded)
    style_map(fig)
    return fig, traces


def overlay_marks(
    fig: go.Figure,
    coords: np.ndarray,
    hover: Sequence[str],
    rank: np.ndarray,
    gain: np.ndarray,
    pinned: Sequence[int],
    excluded: Sequence[int],
) -> list[np.ndarray]:
    """Overlay the curator's pins (stars) and exclusions (grey crosses) on a map, one trace
    each, only where there are any; returns the pool indices of each added trace, in order.

    Overlays rather than separate categories: the points keep their place in the selected /
    discarded (or category) traces, so the map reads the same with or without curation.
    """
    n = coords.shape[0]
    scatter = scatter_type(n)
    traces = []
    for name, members in (("pinned", pinned), ("excluded", excluded)):
        marker = MARK_MARKERS[name]
        every = np.unique(np.asarray(members, dtype=np.int64))
        if not len(every):
            continue
        idx = thin(every)
        traces.append(idx)
        text, template = hover_text(hover, idx, rank, gain, n)
        fig.add_trace(
            scatter(
                x=coords[idx, 0],
                y=coords[idx, 1],
                mode="markers",
                name=trace_name(name, len(idx), len(every)),
                marker=marker,
                customdata=idx,
                text=text,
                hovertemplate=template.replace("<extra></extra>", f"<extra>{name}</extra>"),
            )
        )
    return traces


def selection_histogram(
    values: np.ndarray, chosen: np.ndarray, label: str, bins: int = 30
) -> go.Figure:
    """Stacked histogram of one per-sample value, selected vs discarded (NaN values left out).

    Counts are binned here, so the figure stays small for any pool size. values (n,) float;
    chosen (n,) bool; label: the x-axis title.
    """
    values = np.asarray(values, dtype=np.float64)
    chosen = np.asarray(chosen, dtype=bool)
    known = np.isfinite(values)
    fig = go.Figure()
    if known.any():
        edges = np.histogram_bin_edges(values[known], bins=bins)
        centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        for name, mask, color in (
            ("selected", chosen, SELECTED_COLOR),
            ("discarded", ~chosen, DISCARDED_COLOR),
        ):
            counts, _ = np.histogram(values[known & mask], bins=edges)
            fig.add_trace(
                go.Bar(
                    x=centers,
                    y=counts,
                    width=widths,
                    # "samples" keeps this legend distinct from the map's "selected (n)".
                    name=f"{name} samples ({int((known & mask).sum()):,})",
                    marker={"color": color},
                    customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                    hovertemplate="%{customdata[0]:.3f} to %{customdata[1]:.3f}: %{y:,}"
                    + f"<extra>{name}</extra>",
                )
            )
    fig.update_layout(
        barmode="stack",
        bargap=0,
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title=html.escape(label),
        yaxis_title="samples",
        legend={"orientation": "h", "y": 1.1, "x": 0},
    )
    return fig


def style_map(fig: go.Figure) -> None:
    fig.update_layout(
        height=520,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.06, "x": 0},
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
    )


def objective_curve(objective: np.ndarray, n: int, count: int) -> go.Figure:
    """Objective value after each pick against the budget (% of the pool), with the current
    budget marked."""
    picks = np.arange(1, len(objective) + 1)
    fig = go.Figure(
        go.Scatter(
            x=100.0 * picks / n,
            y=objective,
            mode="lines",
            name="objective",
            hovertemplate="%{x:.1f}% of the pool: %{y:.4f}<extra></extra>",
        )
    )
    fig.add_vline(x=100.0 * count / n, line_dash="dash", line_color=SELECTED_COLOR)
    fig.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="budget (% of the pool)",
        yaxis_title="objective",
        showlegend=False,
    )
    return fig


def selected_indices(event: Any, traces: Sequence[np.ndarray]) -> list[int]:
    """Pool indices of the points a user clicked or lasso/box-selected on `selection_map`."""
    if not event:
        return []
    selection = event.get("selection") if isinstance(event, Mapping) else None
    points = (selection or {}).get("points") or []
    out: list[int] = []
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, list):
            custom = custom[0] if custom else None
        if custom is not None:
            out.append(int(custom))
            continue
        curve, index = point.get("curve_number"), point.get("point_index")
        if curve is None or index is None or not 0 <= curve < len(traces):
            continue
        if 0 <= index < len(traces[curve]):
            out.append(int(traces[curve][index]))
    return list(dict.fromkeys(out))
