"""The Select page's pool map coloured by any column: categorical columns get one colour per
value (a legend entry per category, which toggles it), continuous ones a colour scale with a
colour bar. Selected points stay filled circles and discarded ones open circles under any
colouring; points matched by a search are ringed on top; marker size can follow a numeric column.

Built on `ui.plots` (WebGL above plots.WEBGL_ABOVE points, thinned traces, escaped hover text).
Every map returns (figure, traces): per trace, the pool indices of its points, for
`plots.selected_indices`.
"""

from __future__ import annotations

import html
from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ui import plots

# Numeric columns with more distinct values than this get a colour scale, others a legend.
CONTINUOUS_ABOVE = 12
# A categorical map shows at most this many categories; the rest share one "(other)" colour.
MAX_CATEGORIES = 20
MISSING = "(missing)"
OTHER = "(other)"
COLOUR_SCALE = "Viridis"
NO_VALUE_COLOR = "#d9dde3"
HIGHLIGHT_MARKER = {"symbol": "circle-open", "size": 15, "color": "#111111", "line": {"width": 2}}
SIZE_RANGE = (4.0, 16.0)  # marker diameters (px) when size follows a column

Kind = Literal["categorical", "continuous"]


def _factorize(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct values) as pd.factorize, missing values coded -1; values that cannot be
    hashed (lists, dicts from JSON fields) are taken as their text."""
    try:
        return pd.factorize(series, use_na_sentinel=True)
    except TypeError:
        hashable = [v if isinstance(v, Hashable) else str(v) for v in series.tolist()]
        return pd.factorize(pd.Series(hashable, dtype=object), use_na_sentinel=True)


def numeric_values(values: Sequence[object] | np.ndarray | pd.Series) -> np.ndarray | None:
    """The values as float64 (missing -> NaN) when every present value is a number (or numeric
    text); None for text, booleans and columns with no value at all."""
    series = pd.Series(values, copy=False)
    if pd.api.types.is_bool_dtype(series):
        return None
    if pd.api.types.is_numeric_dtype(series):
        out = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return out if np.isfinite(out).any() else None
    # True == 1 for hashing, so booleans are looked for before distinct values are taken.
    if {bool, np.bool_, list, dict} & set(map(type, series.tolist())):
        return None
    # Text and mixed columns: each distinct value is converted once (pools repeat labels).
    codes, uniques = _factorize(series)
    distinct = pd.Series(uniques, dtype=object)
    blank = (distinct.astype(str).str.strip() == "").to_numpy()
    converted = pd.to_numeric(distinct[~blank], errors="coerce")
    if converted.isna().any():
        return None
    numbers = np.full(len(distinct) + 1, np.nan)  # the last one: missing (code -1)
    numbers[np.flatnonzero(~blank)] = converted.to_numpy(dtype=np.float64)
    out = numbers[codes]
    return out if np.isfinite(out).any() else None


def colour_kind(values: Sequence[object] | np.ndarray | pd.Series) -> Kind:
    """ "continuous" for a numeric column with more than CONTINUOUS_ABOVE distinct values,
    "categorical" otherwise (text, booleans, a few numeric levels)."""
    numbers = numeric_values(values)
    if numbers is None:
        return "categorical"
    distinct = np.unique(numbers[np.isfinite(numbers)])
    return "continuous" if len(distinct) > CONTINUOUS_ABOVE else "categorical"


def _label(value: object) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return MISSING
    if isinstance(value, float | np.floating):
        number = float(value)
        if not np.isfinite(number):
            return MISSING
        return str(int(number)) if number.is_integer() else f"{number:g}"
    text = str(value)
    return text if text.strip() else MISSING


def category_labels(
    values: Sequence[object] | np.ndarray | pd.Series, max_categories: int = MAX_CATEGORIES
) -> list[str]:
    """One text label per value (missing or empty -> MISSING, 3.0 -> "3"); beyond the
    `max_categories` - 1 most frequent labels, the rest become OTHER."""
    codes, uniques = _factorize(pd.Series(values, copy=False))
    # Each distinct value is named once; the last name is that of missing values (code -1).
    names = np.asarray([_label(v) for v in uniques] + [MISSING], dtype=object)
    labels = names[codes]
    counts = pd.Series(labels).value_counts(sort=False)
    if len(counts) <= max_categories:
        return labels.tolist()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    keep = np.asarray([name for name, _ in ranked[: max(max_categories - 1, 0)]], dtype=object)
    return np.where(np.isin(labels, keep), labels, OTHER).tolist()


def colour_range(values: np.ndarray) -> tuple[float, float]:
    """The colour scale's (low, high): the 2nd to 98th percentile of the finite values, so that
    a few extreme values (the first pick's gain) do not flatten the others; the full range when
    that is empty."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [2, 98]))
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return low, high


def marker_sizes(values: np.ndarray, size_range: tuple[float, float] = SIZE_RANGE) -> np.ndarray:
    """Marker diameters (px) from a numeric column, linear over `colour_range`, clipped to
    `size_range`; missing values get the smallest size."""
    values = np.asarray(values, dtype=np.float64)
    low, high = colour_range(values)
    small, large = size_range
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    return np.where(np.isfinite(scaled), small + scaled * (large - small), small)


def value_map(
    coords: np.ndarray,
    hover: Sequence[str],
    order: np.ndarray,
    gains: np.ndarray,
    count: int,
    values: np.ndarray,
    *,
    name: str,
    pinned: Sequence[int] = (),
    excluded: Sequence[int] = (),
) -> tuple[go.Figure, list[np.ndarray]]:
    """Map of the pool coloured by a continuous column `values` (n,) float, with a colour bar
    titled `name`. Traces: discarded (open circles), selected (filled), then points without a
    value (grey) when there are any, then the pinned / excluded marks (`plots.overlay_marks`)."""
    n = coords.shape[0]
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"{values.shape[0]} values for {n} points")
    rank, gain, chosen = plots.pick_state(n, order, gains, count)
    scatter = plots.scatter_type(n)
    known = np.isfinite(values)
    low, high = colour_range(values)
    title = html.escape(plots.shorten(name, 40))
    fig = go.Figure()
    traces: list[np.ndarray] = []
    for status, mask in (("discarded", ~chosen & known), ("selected", chosen & known)):
        every = np.flatnonzero(mask)
        idx = plots.thin(every)
        traces.append(idx)
        text, template = plots.hover_text(hover, idx, rank, gain, n)
        selected = status == "selected"
        fig.add_trace(
            scatter(
                x=coords[idx, 0],
                y=coords[idx, 1],
                mode="markers",
                name=plots.trace_name(status, len(idx), len(every)),
                opacity=1.0 if selected else 0.6,
                marker={
                    "color": values[idx],
                    "coloraxis": "coloraxis",
                    "size": 8 if selected else 6,
                    "symbol": "circle" if selected else "circle-open",
                    "line": {"width": 0 if selected else 1},
                },
                customdata=idx,
                text=text,
                hovertemplate=template.replace(
                    "<extra></extra>", f"<br>{title} %{{marker.color:.4g}}<extra>{status}</extra>"
                ),
            )
        )
    every = np.flatnonzero(~known)
    if len(every):
        idx = plots.thin(every)
        traces.append(idx)
        text, template = plots.hover_text(hover, idx, rank, gain, n)
        fig.add_trace(
            scatter(
                x=coords[idx, 0],
                y=coords[idx, 1],
                mode="markers",
                name=plots.trace_name(f"no {title}", len(idx), len(every)),
                marker={
                    "color": NO_VALUE_COLOR,
                    "size": np.where(chosen[idx], 8, 6),
                    "symbol": np.where(chosen[idx], "circle", "circle-open"),
                },
                customdata=idx,
                text=text,
                hovertemplate=template,
            )
        )
    traces += plots.overlay_marks(fig, coords, hover, rank, gain, pinned, excluded)
    plots.style_map(fig)
    fig.update_layout(
        coloraxis={
            "colorscale": COLOUR_SCALE,
            "cmin": low,
            "cmax": high,
            "colorbar": {"title": {"text": title}, "thickness": 12},
        }
    )
    return fig, traces


def add_highlight(
    fig: go.Figure,
    traces: list[np.ndarray],
    coords: np.ndarray,
    hover: Sequence[str],
    order: np.ndarray,
    gains: np.ndarray,
    count: int,
    highlight: Sequence[int],
    label: str = "search matches",
) -> None:
    """Ring the pool indices `highlight` (e.g. search matches) on top of the map: one trace,
    last, appended to `traces` too; nothing when `highlight` is empty."""
    every = np.unique(np.asarray(highlight, dtype=np.int64))
    if not len(every):
        return
    n = coords.shape[0]
    rank, gain, _ = plots.pick_state(n, order, gains, count)
    idx = plots.thin(every)
    text, template = plots.hover_text(hover, idx, rank, gain, n)
    fig.add_trace(
        plots.scatter_type(n)(
            x=coords[idx, 0],
            y=coords[idx, 1],
            mode="markers",
            name=plots.trace_name(html.escape(label), len(idx), len(every)),
            marker=HIGHLIGHT_MARKER,
            customdata=idx,
            text=text,
            hovertemplate=template.replace(
                "<extra></extra>", f"<extra>{html.escape(label)}</extra>"
            ),
        )
    )
    traces.append(idx)


def column_map(
    coords: np.ndarray,
    hover: Sequence[str],
    order: np.ndarray,
    gains: np.ndarray,
    count: int,
    values: Sequence[object] | np.ndarray | pd.Series | None = None,
    *,
    name: str = "",
    kind: Kind | Literal["auto"] = "auto",
    pinned: Sequence[int] = (),
    excluded: Sequence[int] = (),
    highlight: Sequence[int] = (),
    sizes: np.ndarray | None = None,
) -> tuple[go.Figure, list[np.ndarray]]:
    """The pool map coloured by `values` (one per point; None: selected vs discarded).

    kind "auto" picks `colour_kind(values)`. Categorical columns use `plots.category_map` with
    `category_labels`; continuous ones `value_map`. sizes (n,): a numeric column the markers of
    the point traces follow (`marker_sizes`); highlight: pool indices ringed on top
    (`add_highlight`). Returns (figure, traces) as `plots.selection_map`.
    """
    args = (coords, hover, order, gains, count)
    if values is None:
        fig, traces = plots.selection_map(*args, pinned, excluded)
    else:
        if kind == "auto":
            kind = colour_kind(values)
        if kind == "continuous":
            numbers = numeric_values(values)
            if numbers is None:
                raise ValueError(f"column {name!r} has no numeric values to colour by")
            fig, traces = value_map(*args, numbers, name=name, pinned=pinned, excluded=excluded)
        elif kind == "categorical":
            labels = category_labels(values)
            fig, traces = plots.category_map(*args, labels, pinned, excluded)
        else:
            raise ValueError(f"kind must be 'auto', 'categorical' or 'continuous'; got {kind!r}")
    if sizes is not None:
        px = marker_sizes(sizes)
        if px.shape != (coords.shape[0],):
            raise ValueError(f"{px.shape[0]} sizes for {coords.shape[0]} points")
        marks = sum(1 for m in (pinned, excluded) if len(m))
        for trace, idx in zip(fig.data[: len(fig.data) - marks], traces, strict=False):
            trace.marker.size = px[idx]
    add_highlight(fig, traces, *args, highlight)
    return fig, traces
