"""Compare: saved selections of one pool side by side: size, overlap, coverage of clusters and
targets, one shared map, and evaluation results where they exist."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from delift_core.errors import DeliftError
from ui import compare, layout, plots, registry

svc = layout.setup_page("Compare")
cache = svc.cache

st.title("Compare")
saved = registry.list_selections(cache)
if len(saved) < 2:
    st.info("Save at least two selections on the Select page to compare them.")
    st.page_link("pages/3_Select.py", label="Go to Select", icon=":material/filter_alt:")
    st.stop()

metas = dict(saved)
names = list(metas)
first_pool = metas[names[0]]["pool"]["hash"]
default = [n for n in names if metas[n]["pool"]["hash"] == first_pool][:3]
chosen = st.multiselect("Selections to compare", names, default=default, key="compare_names")
if len(chosen) < 2:
    st.info("Choose two or more selections.")
    st.stop()
pool_hash = metas[chosen[0]]["pool"]["hash"]
others = [c for c in chosen if metas[c]["pool"]["hash"] != pool_hash]
if others:
    st.warning(
        f"{len(others)} selection(s) come from a different pool and are left out: "
        + layout.escape_md(", ".join(others))
    )
    chosen = [c for c in chosen if c not in others]
    if len(chosen) < 2:
        st.stop()

try:
    pool = registry.load_source(metas[chosen[0]]["pool"]["spec"], cache)
    sets = {name: registry.load_selection(cache, name)[0] for name in chosen}
except DeliftError as exc:
    st.error(layout.escape_md(exc))
    st.stop()
n = len(pool)

clusters = compare.cluster_labels(pool.records, registry.cached_embeddings(cache, pool))
covered_targets: dict[str, str] = {}
for name in chosen:
    meta = metas[name]
    if meta["stage"] == "task" and meta.get("stage_key"):
        try:
            utilities = registry.stage_utilities(cache, meta["stage_key"])
        except DeliftError:
            continue
        if utilities.query is not None:
            u_query = utilities.query.matrix(meta.get("metric", "rms"))
            got = compare.targets_covered(u_query, sets[name])
            covered_targets[name] = f"{got:,} / {u_query.shape[0]:,}"

summary = pd.DataFrame(
    {
        "selection": chosen,
        "method": [metas[c]["method"] for c in chosen],
        "stage": [metas[c]["stage"] for c in chosen],
        "kernel": [metas[c].get("kernel", "") for c in chosen],
        "size": [len(sets[c]) for c in chosen],
        "% of pool": [round(100 * len(sets[c]) / n, 1) for c in chosen],
    }
)
if clusters is not None:
    labels, source = clusters
    k = len(np.unique(labels))
    summary["clusters covered"] = [
        f"{compare.clusters_covered(labels, sets[c])} / {k}" for c in chosen
    ]
if covered_targets:
    summary["targets covered"] = [covered_targets.get(c, "") for c in chosen]

st.subheader("Summary")
st.dataframe(summary, hide_index=True, key="compare_summary")
if clusters is not None:
    st.caption(f"Clusters: {clusters[1]}.")
else:
    st.caption("Cluster coverage appears once the pool's embeddings are computed (see Select).")
if covered_targets:
    st.caption("A target is covered when its best selected sample has positive utility for it.")

st.subheader("Overlap (Jaccard)")
st.dataframe(compare.jaccard_table(sets), key="compare_jaccard")

st.subheader("Map")
coords = registry.cached_map(cache, pool)
if coords is None:
    st.info("The map of this pool is not computed yet: open Select to compute it.")
else:
    hover = plots.hover_lines([r.id for r in pool.records], [r.instruction for r in pool.records])
    methods = {name: metas[name]["method"] for name in chosen}
    st.plotly_chart(plots.compare_map(coords, hover, sets, methods), key="compare_map")
    st.caption(
        "Each method has one colour and marker wherever it appears; a second selection of the "
        "same method has a dot in its marker."
    )

st.subheader("Evaluation")
evaluations = compare.evaluation_table(
    [(k, m) for k, m, _ in cache.list_arrays("evaluation")], set(chosen)
)
if evaluations.empty:
    st.caption(
        "No evaluation results for these selections yet. Fine-tune on an exported subset and "
        "evaluate it (delift eval) to see them here."
    )
else:
    st.dataframe(evaluations, hide_index=True, key="compare_evaluations")
