"""Select: pick stage, method, kernel and budget with instant feedback; curate the pool (colour,
size, search and filter the map, pin or exclude rows, read why a row was picked or not); save
named selections for Compare and Export. The view lives in the URL, so a link reopens it.

The page reads top to bottom as it is shown; each section lives in a ui/select_* module."""

from __future__ import annotations

import streamlit as st

from delift_core.config import selection_size
from delift_core.errors import DeliftError
from ui import (
    explain,
    layout,
    map_colour,
    registry,
    select_curate,
    select_map,
    select_marks,
    select_save,
    select_settings,
    select_summary,
    select_tables,
    select_view,
    select_why,
)

svc = layout.setup_page("Select")
manager, cache = svc.manager, svc.cache

st.title("Select")
pool_handle = layout.require_pool()

# Which scores to select from, and how.
scores = select_settings.choose_scores(cache, pool_handle["hash"])
try:
    pool = registry.load_source(scores.meta["pool"]["spec"], cache)
except DeliftError as exc:
    st.error(f"The scored data cannot be loaded: {layout.escape_md(exc)}")
    st.stop()
view = select_marks.PoolView(pool)
n = len(view)
# The pool's own label fields (e.g. the demo's `quality` and `family`) are columns of the per-row
# table, next to length, the quality signals and the selection's rank and gain. Fields a field
# map read the texts from are the texts themselves.
field_map = scores.meta["pool"]["spec"].get("field_map") or {}
extra = explain.extra_fields(pool.records, exclude=list(field_map.values()))
columns = select_curate.pool_columns(scores, extra)
select_view.restore(scores.meta, n, columns.colour_names(), columns.names())
settings = select_settings.settings_controls(scores.meta, n)

# The curator's pins and exclusions, the filter (optionally a constraint), then the selection.
pins, outs = select_marks.curation(view)
static = select_curate.static_table(view, columns, settings.quality_signal)
filtered = select_curate.filter_section(view, static, columns.names(), pins)
outs = filtered.ground_outs(outs)
try:
    result = select_summary.full_order(scores, settings, pins, outs)
except registry.EmbeddingsPending as exc:
    # The map's job computes the embeddings: start it if needed and come back when it is done.
    st.warning(layout.escape_md(exc))
    select_map.wait_for_embeddings(scores, manager, view)
    st.stop()
size = selection_size(
    settings.budget, n, available=result.size, pinned=len(pins), method=settings.method
)
select_summary.size_notes(size, len(pins))
shown = select_summary.Shown(result, size.count, pins, outs)
objective = select_summary.objective(scores, settings, shown)
select_summary.metrics(objective, shown, n)
table = select_curate.row_table(
    view, columns, settings.quality_signal, result.order, result.gains, size.count, pins, outs
)

left, right = st.columns([3, 2])
with right:
    select_summary.objective_curve(objective, settings.method, shown, n)
with left:
    numeric = [c for c in columns.colour_names() if map_colour.numeric_values(table[c]) is not None]
    colour_by, size_by = select_map.colour_choice(columns.colour_names(), numeric)
    query, matches = select_curate.search_box(scores, view)
    map_picks = select_map.pool_map(
        scores, manager, view, shown, table, colour_by, size_by, matches, filtered.mask
    )

quality = select_tables.quality_section(scores, view, shown, settings.quality_signal, extra)
select_tables.inspect_section(scores, view, shown, quality, map_picks, settings)
linked = select_curate.linked_section(view, table, map_picks, matches, filtered)
select_why.why_section(scores, view, settings, shown, table, linked, map_picks)
select_save.save_section(scores, view, settings, shown, objective.value)
select_view.write(settings, colour_by, size_by, query, filtered)
