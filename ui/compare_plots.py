"""The Compare page's map: the pool in grey with each saved selection overlaid in its method's
fixed colour and marker, the same in every view (and in the evaluation chart)."""

from __future__ import annotations

import html
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ui.plots import DISCARDED_COLOR, HOVER_TEXT_UP_TO, scatter_type, style_map, thin, trace_name

# Compare: one colour and marker per method, the same in every view. None is red (the Select
# page's "selected"), the pins' yellow or the pool's grey.
METHOD_STYLES: dict[str, tuple[str, str]] = {
    "delift-q": ("#1f77b4", "circle"),
    "delift": ("#2ca02c", "diamond"),
    "delift-se": ("#9467bd", "square"),
    "fl-only": ("#17becf", "triangle-up"),
    "random": ("#8c564b", "hexagon"),
    "full": ("#e377c2", "pentagon"),
}
# Methods not in the table (e.g. from a newer version) get one of these by a hash of the name.
OTHER_METHOD_STYLES: tuple[tuple[str, str], ...] = (
    ("#bcbd22", "triangle-down"),
    ("#393b79", "star"),
    ("#637939", "cross"),
    ("#7b4173", "star-triangle-up"),
)


def method_style(method: str) -> tuple[str, str]:
    """(colour, marker symbol) of a selection method on Compare: fixed per method, so a method
    looks the same whichever selections are shown with it."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    return OTHER_METHOD_STYLES[zlib.crc32(method.encode()) % len(OTHER_METHOD_STYLES)]


def compare_markers(methods: Sequence[str]) -> list[dict[str, Any]]:
    """Plotly marker settings for selections made by `methods` (one entry per selection).

    Each takes its method's colour and symbol (open, drawn over the grey pool). Selections of
    a method already shown keep both and are told apart by a centre dot, then by size.
    """
    seen: dict[str, int] = {}
    markers = []
    for method in methods:
        color, symbol = method_style(method)
        repeat = seen.get(method, 0)
        seen[method] = repeat + 1
        markers.append(
            {
                "color": color,
                "symbol": f"{symbol}-open" + ("-dot" if repeat else ""),
                "size": 10 + 4 * max(repeat - 1, 0),
                "line": {"width": 2, "color": color},
            }
        )
    return markers


def compare_map(
    coords: np.ndarray,
    hover: Sequence[str],
    groups: Mapping[str, np.ndarray],
    methods: Mapping[str, str],
) -> go.Figure:
    """The pool in grey with each named selection overlaid in its method's colour and marker
    (`compare_markers`). groups: selection name -> pool indices; methods: name -> method."""
    n = coords.shape[0]
    scatter = scatter_type(n)
    with_text = n <= HOVER_TEXT_UP_TO
    fig = go.Figure()
    every = np.arange(n)
    shown = thin(every)
    fig.add_trace(
        scatter(
            x=coords[shown, 0],
            y=coords[shown, 1],
            mode="markers",
            name=trace_name("pool", len(shown), n),
            marker={"color": DISCARDED_COLOR, "size": 5},
            customdata=shown,
            text=[hover[i] for i in shown] if with_text else None,
            hovertemplate="%{text}<extra></extra>" if with_text else "sample #%{customdata}",
        )
    )
    markers = compare_markers([methods[name] for name in groups])
    for (name, members), marker in zip(groups.items(), markers, strict=True):
        members = np.asarray(members, dtype=np.int64)
        idx = thin(members)
        label = html.escape(f"{name} · {methods[name]}")
        fig.add_trace(
            scatter(
                x=coords[idx, 0],
                y=coords[idx, 1],
                mode="markers",
                name=trace_name(label, len(idx), len(members)),
                marker=marker,
                customdata=idx,
                text=[hover[i] for i in idx] if with_text else None,
                hovertemplate=("%{text}" if with_text else "sample #%{customdata}")
                + "<extra>"
                + html.escape(name)
                + "</extra>",
            )
        )
    style_map(fig)
    return fig
