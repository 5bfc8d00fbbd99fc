"""Compare: saved selections of one pool side by side: size, overlap, coverage of clusters and
targets, one shared map, and an evaluation of the selections against Random on held-out data
(a background job; its results are stored in the cache)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from delift_core.errors import DeliftError
from delift_core.evaluation.finetune_types import FinetuneConfig
from delift_core.jobs import JobState
from ui import (
    compare,
    compare_plots,
    eval_report,
    evaluation,
    layout,
    plots,
    registry,
    state,
    tasks,
)

svc = layout.setup_page("Compare")
cache, manager = svc.cache, svc.manager

st.title("Compare")
saved = registry.list_selections(cache, svc.workspace)
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
    sets = {name: registry.load_selection(cache, name, svc.workspace)[0] for name in chosen}
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
        if utilities.targets is not None:
            u_targets = utilities.targets.matrix(meta.get("metric", "rms"))
            got = compare.targets_covered(u_targets, sets[name])
            covered_targets[name] = f"{got:,} / {u_targets.shape[0]:,}"

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
    st.plotly_chart(compare_plots.compare_map(coords, hover, sets, methods), key="compare_map")
    st.caption(
        "Each method has one colour and marker wherever it appears; a second selection of the "
        "same method has a dot in its marker."
    )

st.subheader("Evaluate")
st.caption(
    "Does a selection teach the model more than a random subset of the same size? Each chosen "
    "selection is evaluated on the same held-out items, and so is a Random subset of its size, "
    "drawn with several seeds from the same pool."
)
targets_handle = state.get_handle("targets")
sources = {"split": "A held-out split of the pool"}
if targets_handle is not None:
    sources["targets"] = f"The loaded target set ({layout.escape_md(targets_handle['label'])})"
source = st.radio(
    "Held-out items", list(sources), format_func=sources.get, key="eval_source", horizontal=True
)
if source == "split":
    fraction = st.slider(
        "Held-out share of the pool", 0.05, 0.5, evaluation.DEFAULT_FRACTION, 0.05,
        key="eval_fraction", format="%.2f",
    )  # fmt: skip
    held_out = {"source": "split", "fraction": fraction, "seed": evaluation.SPLIT_SEED}
else:
    limit = st.number_input("Target rows to use, at most", 1, 100_000, 100, key="eval_limit")
    held_out = {"source": "targets", "targets": targets_handle, "limit": int(limit)}
protocol = st.radio(
    "Protocol", list(evaluation.PROTOCOL_LABELS), format_func=evaluation.PROTOCOL_LABELS.get,
    key="eval_protocol",
)  # fmt: skip
c1, c2 = st.columns(2)
icl = protocol == "icl"
seeds = c1.number_input(
    "Random seeds", min_value=evaluation.MIN_ICL_SEEDS if icl else 1, max_value=10,
    value=evaluation.DEFAULT_SEEDS, key=f"eval_seeds_{protocol}",
    help="Random is the per-item mean over this many seeded random subsets. Under fine-tuning "
    "each seed is one more training.",
)  # fmt: skip
generate = c2.number_input(
    "Generate answers for the first N held-out items", 0, 10_000, 0, key="eval_generate",
    help="0: score the gold answers only (mean log-prob per answer token, fast). Generated "
    "answers add ROUGE, cosine similarity and exact match, at the cost of decoding.",
)  # fmt: skip
model = (metas[chosen[0]].get("model") or {}).get("name") or "default"
params = tasks.evaluate_params(chosen, held_out, protocol, int(seeds), int(generate), model)
params["workspace"] = svc.workspace  # the selections are this workspace's
try:
    plan = evaluation.prepare(cache, params)
except DeliftError as exc:
    plan = None
    st.warning(f"Cannot evaluate: {layout.escape_md(exc)}")
if plan is not None:
    st.caption(layout.escape_md(evaluation.plan_summary(plan, params["seeds"])))
    for note in plan.notes:
        st.caption(layout.escape_md(note[:1].upper() + note[1:] + "."))
    if source == "split":
        excluded = evaluation.excluded_held_out(plan, metas)
        st.info(
            f"The held-out rows ({len(plan.held_rows):,} rows, seed {evaluation.SPLIT_SEED}) "
            "were part of the pool these selections were made from"
            + (
                f" ({layout.escape_md(', '.join(excluded))} excluded them from picking on"
                " Select, but their objectives still counted them as rows to cover)"
                if excluded else ""
            )
            + ". They are taken out of every selection and Random never draws them, so no "
            "held-out answer is an example or a training row; but the selection methods saw "
            "them when they chose, which can favour them over Random. For a clean test, load a "
            "separate set as the target set on Data and choose it here."
        )  # fmt: skip
    elif any(metas[a.label].get("stage") == "task" for a in plan.selections):
        st.info(
            "Task-stage selections were chosen to serve these targets (the method saw them); "
            "Random did not."
        )
    if icl:
        passes = len(plan.arms) * (len(plan.test) + min(int(generate), len(plan.test)))
        st.caption(
            f"Model: {layout.escape_md(model)}. About {passes:,} forward passes with up to "
            f"{evaluation.SHOTS} retrieved examples per prompt (scores already in the cache "
            "are reused)."
        )
    else:
        ft = FinetuneConfig()
        st.warning(
            f"Fine-tuning trains {len(plan.arms)} models (LoRA r = {ft.lora_rank}, "
            f"{ft.epochs} epochs, batch {ft.batch_size}, learning rate {ft.lr:g}: the "
            "library's CPU defaults), one per selection and one per Random subset. On a CPU each "
            "takes minutes: roughly "
            f"{layout.fmt_seconds(evaluation.finetune_seconds(plan, ft))} in all, scaled from "
            "one measured run (3.5 min for 36 rows x 3 epochs, 135M model, 2-core CPU). A GPU "
            "is used when there is one."
        )

eval_jobs = manager.list_jobs(kind=tasks.EVALUATE)
running = [j for j in eval_jobs if j.active]
if st.button("Evaluate", type="primary", key="eval_start", disabled=plan is None or bool(running)):
    try:
        job_id = tasks.submit_evaluation(manager, cache, params)
    except DeliftError as exc:
        st.error(f"Cannot start: {layout.escape_md(exc)}")
    else:
        st.success(f"Evaluation queued (job {job_id}). You can keep using the other pages.")
        running = manager.list_jobs(kind=tasks.EVALUATE, active_only=True)
elif running:
    st.caption("An evaluation is running; start another when it has finished.")


def _show_eval_job(job: JobState) -> None:
    with st.container(border=True, key=f"eval_job_{job.id}"):
        head, button = st.columns([5, 1])
        head.text(f"Evaluation · job {job.id} · {job.state}")
        if job.state == "running":
            text = job.phase or job.message or "starting"
            if job.total and job.eta_s is not None:
                text += f" · about {layout.fmt_seconds(job.eta_s)} left"
            st.progress(job.fraction, text=text)
        else:
            st.caption("queued: it starts when the job before it finishes")
        button.button(
            "Cancel", key=f"eval_cancel_{job.id}", on_click=manager.cancel, args=(job.id,),
            disabled=job.cancel_requested,
        )  # fmt: skip


def _ours(job: JobState) -> bool:
    return evaluation.workspace_of(job.params) == svc.workspace


def _signature(jobs: list[JobState]) -> tuple[tuple[str, str], ...]:
    return tuple((j.id, j.state) for j in jobs)


@st.fragment(run_every=1.0 if running else None)
def eval_jobs_panel(was_active: tuple[tuple[str, str], ...]) -> None:
    # Other workspaces' evaluations take the worker too, but are not shown here.
    jobs = [j for j in manager.list_jobs(kind=tasks.EVALUATE) if _ours(j)]
    active = [j for j in jobs if j.active]
    for job in reversed(active):
        _show_eval_job(job)
    latest = jobs[0] if jobs and not jobs[0].active else None
    if latest is not None and latest.state == "failed":
        st.error(f"The evaluation failed: {layout.escape_md(latest.error)}")
    elif latest is not None and latest.state in ("cancelled", "interrupted"):
        st.info(f"Evaluation job {latest.id} was {latest.state}; nothing was stored.")
    if _signature(active) != was_active:
        st.rerun()  # a job started or ended: redraw the results and the button


eval_jobs_panel(_signature(running))

stored = [
    (key, meta)
    for key, meta in eval_report.stored_results(cache, set(chosen))
    if evaluation.workspace_of(meta) == svc.workspace
]
if not stored:
    st.caption("No evaluation of these selections yet: choose the held-out items and the protocol "
               "above, then press Evaluate.")  # fmt: skip
    st.stop()
results = dict(stored)
keys = list(results)
# Keyed by the newest result, so that a new evaluation is shown as soon as it is stored.
picked = st.selectbox(
    "Results", keys, format_func=lambda k: eval_report.describe(results[k]),
    key=f"eval_result_{keys[0]}",
)  # fmt: skip
result = results[picked]
metrics = eval_report.measured_metrics(result)
metric = (
    st.selectbox("Metric", metrics, format_func=eval_report.METRIC_LABELS.get, key="eval_metric")
    if len(metrics) > 1
    else "logprob"
)
stale = eval_report.stale_selections(cache, result)
if stale:
    st.warning(
        "Saved again or deleted since this evaluation: " + layout.escape_md(", ".join(stale))
    )
st.plotly_chart(eval_report.result_chart(result, metric), key="eval_chart")
st.dataframe(eval_report.result_table(result, metric), hide_index=True, key="eval_table")
seeds_used = ", ".join(map(str, result["seeds"]))
held = result["held_out"]
protocol_text = (
    f"in context, up to {evaluation.SHOTS} retrieved examples per prompt"
    if result["protocol"] == "icl"
    else "fine-tuned on each set (LoRA, library defaults), asked without examples"
)
st.caption(
    f"Model {layout.escape_md(result['model_id'])}, {protocol_text}; {held['items']:,} held-out "
    f"items. Random: per-item mean over seeds {seeds_used} of random subsets of the same size, "
    "never drawn from the held-out rows. Intervals: 95% bootstrap over the held-out items; "
    "'vs Random' is paired item by item, and an interval that excludes 0 is a difference "
    "beyond resampling noise. Few held-out items give wide intervals."
)
if metric == "logprob" and result.get("seed_means"):
    spread = "; ".join(
        f"{label}: {', '.join(f'{m:.3f}' for m in means)}"
        for label, means in result["seed_means"].items()
    )
    st.caption(f"Mean log-prob of each Random seed: {layout.escape_md(spread)}.")
if held["source"] == "split":
    st.caption(
        f"Held-out items: a {held['fraction']:.0%} split of the pool (seed {held['seed']}). "
        "These rows were part of the pool the selections were made from: they were taken out of "
        "every set, but the selection methods saw them when they chose, Random did not."
    )
else:
    st.caption(f"Held-out items: the target set {layout.escape_md(held.get('label', ''))}.")
