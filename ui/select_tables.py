"""Select page: the per-sample quality table with a histogram, and the inspection of chosen
samples (a table, one sample in full with the samples it helps and is helped by)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from delift_core.quality import quality_score
from ui import explain, layout, plots, registry, state
from ui.select_marks import PoolView
from ui.select_settings import Scores, Settings
from ui.select_summary import Shown

INSPECT_KEY = "select_inspect"


def quality_section(
    scores: Scores, view: PoolView, shown: Shown, signal: str, extra: Sequence[str]
) -> np.ndarray | None:
    """The Sample quality section. Returns each sample's quality score by `signal`, (n,) in
    [0, 1], or None for a stage scored without answer scores."""
    st.subheader("Sample quality")
    signals = registry.pool_quality(scores.cache, scores.key, scores.meta)
    if signals is None:
        st.info(f"No quality signals: {registry.RESCORE_HINT}.")
        return None
    quality = quality_score(signals, signal)
    st.caption(
        f"Quality score: each sample's rank by {signal} within the pool, from 0 (worst) "
        "to 1 (best). Status and rank are at the current budget; click a column header to sort."
    )
    t1, t2 = st.columns([3, 2])
    records, order = view.pool.records, shown.result.order
    table = explain.quality_table(records, signals, quality, order, shown.count, extra)
    t1.dataframe(
        table,
        hide_index=True,
        height=360,
        key="select_quality_table",
        column_config={
            "rank": st.column_config.NumberColumn(help=explain.RANK_HELP),
            **{
                name: st.column_config.NumberColumn(format="%.4f")
                for name in ["quality score", *signals]
            },
        },
    )
    # Signals without values (max_similarity before the embeddings exist) have no histogram.
    plotted = ["quality score", *(k for k, v in signals.items() if np.isfinite(v).any())]
    column = t2.selectbox("Histogram of", plotted, key="select_quality_hist")
    values = quality if column == "quality score" else signals[column]
    chosen_mask = np.zeros(len(view), dtype=bool)
    chosen_mask[shown.chosen] = True
    t2.plotly_chart(
        plots.selection_histogram(values, chosen_mask, column), key="select_quality_chart"
    )
    return quality


def _clear_inspection() -> None:
    """Button callback: forget the typed ids and the map's picks (runs before the rerun)."""
    st.session_state[INSPECT_KEY] = ""
    st.session_state[state.MAP_PICKS] = []


def inspect_section(
    scores: Scores,
    view: PoolView,
    shown: Shown,
    quality: np.ndarray | None,
    map_picks: list[str],
    settings: Settings,
) -> None:
    """The Inspect samples section: the samples typed by id or picked on the map, one row each,
    and one of them in full."""
    st.subheader("Inspect samples")
    i1, i2 = st.columns([5, 1], vertical_alignment="bottom")
    typed = i1.text_input(
        "Sample ids (comma-separated), in addition to points picked on the map",
        key=INSPECT_KEY,
        placeholder=", ".join(view.ids[int(i)] for i in shown.chosen[:3]),
    )
    found, missing = explain.parse_ids(typed, view.ids)
    if missing:
        st.warning(f"Not in the pool: {layout.escape_md(', '.join(missing[:10]))}")
    inspect = list(dict.fromkeys(found + [view.position[s] for s in map_picks]))
    i2.button("Clear", key="select_inspect_clear", on_click=_clear_inspection, disabled=not inspect)
    if not inspect:
        st.caption(
            "Nothing to inspect yet: click, box or lasso points on the map or type sample ids."
        )
        return
    st.caption(
        f"{len(inspect):,} samples, one row each; status and rank are at the current budget. "
        + explain.RANK_GAIN_NOTE
    )
    records, result = view.pool.records, shown.result
    count, pins, outs = shown.count, shown.pins, shown.outs
    st.dataframe(
        explain.inspection_table(
            records, inspect, result.order, result.gains, count, pins, outs, quality
        ),
        hide_index=True,
        key="select_inspect_table",
        column_config={
            "rank": st.column_config.NumberColumn(help=explain.RANK_HELP),
            "gain": st.column_config.NumberColumn(format="%.5f", help=explain.GAIN_HELP),
            "quality score": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    # One sample in full at a time: a card per sample would stack thousands of pixels.
    i = int(
        st.selectbox(
            "Read one in full",
            inspect,
            format_func=lambda j: view.label(view.ids[j]),
            key="select_inspect_one",
        )
    )
    rank_of = np.full(len(view), -1, dtype=np.int64)
    rank_of[result.order] = np.arange(result.size)
    record, rank = records[i], int(rank_of[i])
    status = explain.sample_status(i, rank, count, set(pins), set(outs))
    with st.container(border=True):
        gain = result.gains[rank] if rank >= 0 else np.nan
        st.text(
            f"{record.id} · {status} · rank {rank + 1 if rank >= 0 else '-'}"
            + (f" · gain {gain:.5f}" if np.isfinite(gain) else "")
            + (f" · quality score {quality[i]:.3f}" if quality is not None else "")
        )
        st.text(f"Instruction: {record.instruction}")
        if record.input:
            st.text(f"Input: {record.input}")
        st.text(f"Output: {record.output}")
        _neighbours(scores, view, i, settings.stage, settings.metric)


def _neighbours(scores: Scores, view: PoolView, i: int, stage: str, metric: str) -> None:
    """Whom sample i helps most (the targets in the task stage) and its most helpful examples."""
    cache, meta = scores.cache, scores.meta
    utilities = registry.stage_utilities(cache, scores.key)
    u_pool = utilities.pool.matrix(metric)
    records = view.pool.records
    h1, h2 = st.columns(2)
    if stage == "task" and meta.get("targets") and utilities.targets is not None:
        targets_ds = registry.load_source(meta["targets"]["spec"], cache)
        helps = explain.top_entries(utilities.targets.matrix(metric), i, "col")
        h1.caption("Targets it helps most")
        h1.dataframe(
            explain.entries_table(helps, targets_ds.records),
            hide_index=True,
            key="select_helps",
        )
    else:
        helps = explain.top_entries(u_pool, i, "col", exclude=i)
        h1.caption("Pool samples it helps most (as an example)")
        h1.dataframe(explain.entries_table(helps, records), hide_index=True, key="select_helps")
    helped = explain.top_entries(u_pool, i, "row", exclude=i)
    h2.caption("Its most helpful examples")
    h2.dataframe(explain.entries_table(helped, records), hide_index=True, key="select_helped")
