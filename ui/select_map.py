"""Select page: the map of the pool, coloured (and sized) by selection or by any column of the
per-row table, search matches ringed, rows the filter leaves out hidden; points picked on it are
inspected below and can be pinned or excluded. The map is
computed by a background job of its own: queued right after a score run, or started here when a
stage has none (e.g. one scored by the CLI)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from delift_core.errors import DeliftError
from delift_core.jobs import JobManager, JobState
from ui import layout, map_colour, plots, registry, select_marks, tasks
from ui.select_marks import PoolView
from ui.select_settings import Scores
from ui.select_summary import Shown

COLOUR_KEY, SIZE_KEY = "select_map_colour", "select_map_size"
SELECTION, NO_SIZE = "selection", "(same size)"


def colour_choice(columns: Sequence[str], numeric: Sequence[str]) -> tuple[str, str]:
    """What the map is coloured by ("selection", or a column of the per-row table) and sized
    by (NO_SIZE, or a numeric column)."""
    c1, c2 = st.columns([3, 2])
    # A choice that is no longer offered (another pool) goes back to the default; set, not
    # dropped, so that the browser shows it too.
    if st.session_state.get(COLOUR_KEY, SELECTION) not in (SELECTION, *columns):
        st.session_state[COLOUR_KEY] = SELECTION
    colour_by = c1.selectbox(
        "Colour the map by",
        [SELECTION, *columns],
        key=COLOUR_KEY,
        help="selection: selected vs discarded. A column: one colour per value for a "
        "categorical one (click a legend entry to hide it), a colour scale for a numeric one; "
        "selected samples filled, discarded ones open.",
    )
    if st.session_state.get(SIZE_KEY, NO_SIZE) not in (NO_SIZE, *numeric):
        st.session_state[SIZE_KEY] = NO_SIZE
    size_by = c2.selectbox("Size the points by", [NO_SIZE, *numeric], key=SIZE_KEY)
    if colour_by == SELECTION:
        st.caption(
            "Map of the pool: selected and discarded samples (click, box or lasso to inspect)"
        )
    else:
        st.caption(
            f"Map of the pool by {layout.escape_md(colour_by)}: filled circles are selected, "
            "open circles discarded (click, box or lasso to inspect)"
        )
    return colour_by, size_by


def pool_map(
    scores: Scores,
    manager: JobManager,
    view: PoolView,
    shown: Shown,
    table: pd.DataFrame,
    colour_by: str,
    size_by: str = NO_SIZE,
    highlight: Sequence[int] = (),
    visible: np.ndarray | None = None,
) -> list[str]:
    """The map with the pin and exclude buttons, or word of its job while it is computed.
    table: the per-row table the colour and size columns come from; highlight: pool indices
    ringed (search matches); visible: mask of the rows the filter keeps (None: all).
    Returns the sample ids picked on the map (kept across reruns)."""
    coords = registry.cached_map(scores.cache, view.pool)
    if coords is None:
        _wait_for_map(scores, manager, view)
        return select_marks.map_picks(view)
    if visible is not None and not visible.all():
        coords = coords.astype(np.float64, copy=True)
        coords[~visible] = np.nan  # Plotly draws no point without coordinates
    records, result = view.pool.records, shown.result
    hover = plots.hover_lines(view.ids, [r.instruction for r in records])
    values = None if colour_by == SELECTION else table[colour_by]
    sizes = None if size_by == NO_SIZE else map_colour.numeric_values(table[size_by])
    figure, traces = map_colour.column_map(
        coords,
        hover,
        result.order,
        result.gains,
        shown.count,
        values,
        name=colour_by,
        pinned=shown.pins,
        excluded=shown.outs,
        highlight=highlight,
        sizes=sizes,
    )
    event = st.plotly_chart(
        figure,
        key="select_map",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
    )
    picked = plots.selected_indices(event, traces)
    picks = select_marks.remember_map_picks(view, [view.ids[i] for i in picked])
    select_marks.mark_buttons(picks)
    return picks


def waiting_text(jobs: Sequence[JobState]) -> str:
    """What Select says while the map is on its way: `jobs` are the active map and score jobs
    (newest first)."""
    maps = [j for j in jobs if j.kind == tasks.MAP]
    job = next((j for j in maps if j.state == "running"), maps[-1] if maps else jobs[-1])
    if job.kind == tasks.SCORE:
        return "The map is computed when the scoring job ends: it appears here when ready."
    if job.state == "queued":
        return "The map is queued behind another job: it appears here when ready."
    detail = {"embedding": " (embedding the texts first)", "map": " (UMAP layout)"}
    return f"The map is being computed{detail.get(job.phase, '')}: it appears here when ready."


def wait_for_embeddings(scores: Scores, manager: JobManager, view: PoolView) -> None:
    """Start the map's job (it embeds every set first) unless one is running, and rerun the page
    when it has finished."""
    _wait_for_map(scores, manager, view, map_needed=False)


def _wait_for_map(
    scores: Scores, manager: JobManager, view: PoolView, map_needed: bool = True
) -> None:
    """Start the map's job unless one is running, and rerun the page when the map is ready
    (map_needed) or when the job has finished."""
    cache, meta = scores.cache, scores.meta

    def busy() -> list[JobState]:
        jobs = manager.list_jobs(active_only=True)
        return [j for j in jobs if j.kind in (tasks.MAP, tasks.SCORE)]

    handles = {r: meta.get(r) for r in tasks.ROLES}
    ended = [
        j for j in manager.list_jobs(kind=tasks.MAP)
        if all(j.params.get(r) == handles[r] for r in tasks.ROLES)
    ]  # fmt: skip
    last = ended[0] if ended else None  # newest first
    if not busy() and last is not None and last.state in ("failed", "cancelled"):
        # Not again by itself: a job that fails would be started on every rerun.
        reason = last.error if last.state == "failed" else "it was cancelled"
        st.error(f"The map (and the embeddings it computes) failed: {layout.escape_md(reason)}")
        if not st.button("Compute the map again", key="select_map_retry"):
            return
    if not busy():
        try:
            tasks.submit_map(manager, cache, handles)
        except DeliftError as exc:
            st.error(f"The map cannot be computed: {layout.escape_md(exc)}")

    @st.fragment(run_every=2.0 if busy() else None)
    def wait_for_map() -> None:
        running = busy()
        ready = map_needed and registry.cached_map(cache, view.pool) is not None
        if ready or not running:
            # Ready, or the job that was running belonged to other data: start over.
            st.rerun()
        st.info(waiting_text(running))

    if busy():
        wait_for_map()
