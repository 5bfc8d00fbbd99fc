"""Stored evaluations of saved selections (written by ui.evaluation), shown on the Compare
page: which ones concern a set of selections, a one-line description, the table and the chart.
No Streamlit."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from delift_core.cache import UtilityCache
from ui import compare_plots, plots, workspaces
from ui.evaluation import RESULT_KIND, RESULT_VERSION, indices_hash, workspace_of

METRIC_LABELS = {
    "logprob": "mean log-prob per answer token",
    "rouge1": "ROUGE-1",
    "rougeL": "ROUGE-L",
    "cosine": "cosine similarity to the gold answer",
    "exact": "exact match",
}


def stored_results(cache: UtilityCache, names: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """(key, meta) of stored evaluations that include any of `names`, newest first."""
    return [
        (key, meta)
        for key, meta, _ in cache.list_arrays(RESULT_KIND)
        if meta.get("version") == RESULT_VERSION and names & set(meta.get("selections") or ())
    ]


def describe(meta: Mapping[str, Any]) -> str:
    """One line naming a stored evaluation (for a picker)."""
    held = meta["held_out"]
    source = (
        f"{held['fraction']:.0%} split of the pool"
        if held["source"] == "split"
        else f"target set {held.get('label', '')}"
    )
    protocol = "in-context" if meta["protocol"] == "icl" else "fine-tuned"
    return (
        f"{meta['created']} · {protocol} · {', '.join(meta['selections'])} · "
        f"{held['items']:,} held-out items ({source})"
    )


def measured_metrics(meta: Mapping[str, Any]) -> list[str]:
    """Metrics with a value for every set, in the library's order."""
    summary = meta["summary"]
    return [m for m in METRIC_LABELS if summary and all(m in v for v in summary.values())]


def stale_selections(cache: UtilityCache, meta: Mapping[str, Any]) -> list[str]:
    """Selections of a stored evaluation that were saved again (or deleted) since."""
    changed = []
    for name, digest in meta.get("selection_hashes", {}).items():
        indices = cache.get_array(workspaces.selection_kind(workspace_of(meta)), name)
        if indices is None or indices_hash(indices) != digest:
            changed.append(name)
    return changed


def _interval(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return ""
    return f"[{entry['low']:+.3f}, {entry['high']:+.3f}]"


def reading(vs: Mapping[str, Any] | None) -> str:
    """What a paired interval against Random says."""
    if not vs:
        return ""
    if vs["low"] > 0:
        return "better than Random"
    if vs["high"] < 0:
        return "worse than Random"
    return "no clear difference"


def result_table(meta: Mapping[str, Any], metric: str = "logprob") -> pd.DataFrame:
    """One row per set: rows used, mean and 95% interval of `metric`, and the paired
    difference against the Random set of the same size with its interval."""
    rows = []
    for s in meta["sets"]:
        entry = meta["summary"][s["label"]].get(metric)
        vs = entry["vs"].get(s["reference"]) if entry and s["reference"] else None
        rows.append(
            {
                "set": s["label"],
                "method": s["method"],
                "rows": s["rows"],
                "held-out rows removed": s["removed"],
                "mean": round(entry["mean"], 4) if entry else None,
                "95% interval": _interval(entry),
                "compared with": s["reference"] or "",
                "vs Random": round(vs["mean"], 4) if vs else None,
                "vs Random 95% interval": _interval(vs),
                "reading": reading(vs),
            }
        )
    return pd.DataFrame(rows)


def result_chart(meta: Mapping[str, Any], metric: str = "logprob") -> go.Figure:
    """Left: each set's mean with its 95% bootstrap interval; right: each selection minus the
    Random set of its size, with the paired bootstrap interval (0 = no difference)."""
    sets = meta["sets"]
    summary = meta["summary"]
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.12,
        subplot_titles=(METRIC_LABELS[metric], "difference vs Random (paired)"),
    )  # fmt: skip

    def bar(shown: list[dict], entries: list[dict], col: int, paired: bool) -> None:
        # Names are user text: escaped, as everywhere in plots.py.
        against = [html.escape(f" minus {s['reference']}") if paired else "" for s in shown]
        fig.add_trace(
            go.Bar(
                x=[html.escape(plots.shorten(s["label"], 30)) for s in shown],
                y=[e["mean"] for e in entries],
                marker={"color": [compare_plots.method_style(s["method"])[0] for s in shown]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [e["high"] - e["mean"] for e in entries],
                    "arrayminus": [e["mean"] - e["low"] for e in entries],
                },
                customdata=[
                    [e["low"], e["high"], e["n"], a] for e, a in zip(entries, against, strict=True)
                ],
                hovertemplate="%{x}%{customdata[3]}: %{y:.4f} [%{customdata[0]:.4f},"
                " %{customdata[1]:.4f}], %{customdata[2]} items<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=col,
        )

    shown = [s for s in sets if metric in summary[s["label"]]]
    bar(shown, [summary[s["label"]][metric] for s in shown], 1, False)
    paired = [
        s for s in shown if s["reference"] and s["reference"] in summary[s["label"]][metric]["vs"]
    ]
    bar(paired, [summary[s["label"]][metric]["vs"][s["reference"]] for s in paired], 2, True)
    fig.add_hline(y=0, line_color=plots.EXCLUDED_COLOR, line_width=1, row=1, col=2)
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig
