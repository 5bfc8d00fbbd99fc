"""Score: estimate the cost, then compute the utility matrices in the background with progress,
cancel and resume. Other pages stay usable while a job runs."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from delift_core.config import ScoringConfig
from delift_core.errors import DeliftError, ResourceError
from delift_core.jobs import JobState
from delift_core.pipeline import list_stages
from delift_core.resources import check_fits, estimate_run
from ui import layout, registry, state, tasks

svc = layout.setup_page("Score", icon=":material/speed:")
manager, cache = svc.manager, svc.cache

st.title("Score")
st.caption(
    "For every pair of samples the model scores how much one, shown as an in-context example, "
    "helps it answer the other. Rows already in the cache are never computed twice, so a "
    "cancelled or interrupted run resumes where it stopped."
)
pool_handle = layout.require_pool()
handles = state.handles()
rows = {role: (h["rows"] if h else 0) for role, h in handles.items()}

KIND_LABELS = {tasks.SCORE: "Scoring", tasks.MAP: "Map", tasks.CALIBRATE: "Speed measurement"}

for role, handle in handles.items():
    if handle is not None:
        st.text(f"{role}: {handle['label']} · {handle['rows']:,} rows")

c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
model = (
    c1.text_input(
        "Model",
        "default",
        key="score_model",
        help="'default' is the embedded SmolLM2-135M-Instruct; or give a local Hugging Face model "
        "folder. Nothing is downloaded.",
    ).strip()
    or "default"
)
mode = c2.radio(
    "Mode",
    ["exact", "sparse"],
    horizontal=True,
    key="score_mode",
    help="exact: every pair. sparse: each row's k most similar candidates (by sentence "
    "embedding), far fewer passes for large pools.",
)
k = c3.number_input("Candidates per row (k)", 1, 1024, 8, key="score_k", disabled=mode == "exact")
batch = c4.number_input("Batch size", 1, 1024, 32, key="score_batch")

try:
    config = ScoringConfig(mode=mode, k=int(k), batch_size=int(batch))
except DeliftError as exc:
    st.error(layout.escape_md(exc))
    st.stop()

active_jobs = manager.list_jobs(active_only=True)
cost = estimate_run(rows["pool"], mode, int(k), rows["targets"], rows["existing"])
try:
    check_fits(cost, mode)
    too_big = None
except ResourceError as exc:
    too_big = str(exc)
rate = registry.get_rate(model)


def _calibrate() -> bool:
    try:
        pool_ds = registry.dataset_for(pool_handle, cache)
        tasks.submit_calibration(manager, model, pool_ds, int(batch))
    except DeliftError as exc:
        st.error(f"Cannot measure the speed: {layout.escape_md(exc)}")
        return False
    return True


if rate is None and not active_jobs and state.mark_calibrated(model):
    _calibrate()
    active_jobs = manager.list_jobs(active_only=True)

st.subheader("Cost estimate")
m1, m2, m3 = st.columns(3)
m1.metric(
    "Forward passes",
    f"{cost.passes:,}",
    help=f"{cost.passes - cost.pairs:,} without an example + {cost.pairs:,} pairs; pairs already "
    "in the cache are skipped",
)
if rate:
    m2.metric("Estimated time", layout.fmt_seconds(cost.passes / rate))
    m2.caption(f"at {rate:,.1f} passes/s, measured on this machine (rough)")
else:
    measuring = any(j.kind == tasks.CALIBRATE for j in active_jobs)
    m2.metric("Estimated time", "measuring..." if measuring else "not measured")
    if not measuring and st.button("Measure speed", key="score_measure") and _calibrate():
        st.rerun()
    tried = [j for j in manager.list_jobs(kind=tasks.CALIBRATE) if j.params["model"] == model]
    if not measuring and tried and tried[0].state == "failed":
        st.warning(f"Speed measurement failed: {layout.escape_md(tried[0].error)}")
m3.metric(
    "Peak memory",
    layout.fmt_bytes(cost.memory_bytes),
    help="the utility matrices while they are assembled, and the selection kernel",
)
if too_big:
    st.error(f"This run would not fit in memory: {layout.escape_md(too_big)}")
elif mode == "exact" and cost.pairs > 2_000_000:
    st.warning(
        f"{cost.pairs:,} pairs is a lot for exact mode. Sparse mode scores each row against its "
        "k most similar candidates only."
    )

params = tasks.score_params(handles, model, config)
duplicate = any(j.kind == tasks.SCORE and j.params == params for j in active_jobs)
if st.button(
    "Start scoring", type="primary", key="score_start", disabled=duplicate or bool(too_big)
):
    try:
        job_id = tasks.submit_score(manager, cache, params)
    except DeliftError as exc:
        st.error(f"Cannot start: {layout.escape_md(exc)}")
    else:
        st.success(f"Scoring queued (job {job_id}). You can keep using the other pages.")
        active_jobs = manager.list_jobs(active_only=True)
if duplicate:
    st.caption("The same run is already queued or running.")


def _progress_text(job: JobState) -> str:
    label = job.phase or job.state
    if job.total:
        text = f"{label}: {job.done:,} / {job.total:,} passes"
        if job.eta_s is not None:
            text += f" · about {layout.fmt_seconds(job.eta_s)} left"
        return text
    return f"{label}: {job.message}" if job.message else label


def _show_job(job: JobState) -> None:
    with st.container(border=True):
        head, button = st.columns([5, 1])
        head.text(f"{KIND_LABELS.get(job.kind, job.kind)} · job {job.id} · {job.state}")
        if job.state == "running":
            st.progress(job.fraction, text=_progress_text(job))
            if job.message and job.total:
                st.caption(layout.escape_md(job.message))
        else:
            st.caption("queued: it starts when the job before it finishes")
        button.button(
            "Cancel",
            key=f"score_cancel_{job.id}",
            on_click=manager.cancel,
            args=(job.id,),
            disabled=job.cancel_requested,
        )


def _finished_table(jobs: list[JobState]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "job": [j.id for j in jobs],
            "kind": [KIND_LABELS.get(j.kind, j.kind) for j in jobs],
            "state": [j.state for j in jobs],
            "finished": [
                time.strftime("%H:%M:%S", time.localtime(j.finished)) if j.finished else ""
                for j in jobs
            ],
            "took": [layout.fmt_seconds(j.elapsed_s) for j in jobs],
            "message": [j.error or j.message for j in jobs],
        }
    )


def _signature(jobs: list[JobState]) -> tuple[tuple[str, str], ...]:
    return tuple((j.id, j.state) for j in jobs)


@st.fragment(run_every=1.0 if active_jobs else None)
def jobs_panel(was_active: tuple[tuple[str, str], ...]) -> None:
    jobs = manager.list_jobs()
    active = [j for j in jobs if j.active]
    st.subheader("Jobs")
    if not jobs:
        st.caption("No jobs yet in this server process.")
    for job in reversed(active):
        _show_job(job)
    finished = [j for j in jobs if not j.active][:8]
    if finished:
        latest_score = next((j for j in finished if j.kind == tasks.SCORE), None)
        if latest_score is not None and latest_score.state == "done":
            st.session_state[state.STAGE_KEY] = latest_score.result["stage_key"]
            st.success("The latest scores are ready.")
            st.page_link("pages/3_Select.py", label="Go to Select", icon=":material/filter_alt:")
        elif latest_score is not None and latest_score.state == "failed":
            st.error(f"Scoring failed: {layout.escape_md(latest_score.error)}")
        elif latest_score is not None and latest_score.state == "cancelled":
            st.info(
                f"Scoring job {latest_score.id} was cancelled. Rows it finished are kept in the "
                "cache: start the same run again to resume."
            )
        st.dataframe(_finished_table(finished), hide_index=True, key="score_jobs_table")
    if _signature(active) != was_active:
        # A job started or ended: refresh the whole page (estimate, buttons, sidebar).
        st.rerun()


jobs_panel(_signature(active_jobs))


def _describe_run(run: dict[str, Any]) -> str:
    p = run["params"]
    parts = [f"{role}: {p[role]['label']}" for role in tasks.ROLES if p.get(role)]
    when = run["created"].strftime("%Y-%m-%d %H:%M") if run.get("created") else ""
    return f"{when} · model {p.get('model')} · {p.get('mode')} · " + " · ".join(parts)


leftovers = manager.unfinished_runs(tasks.SCORE)
if leftovers:
    st.subheader("Unfinished runs")
    st.caption(
        "These runs stopped when the server did. Resuming reuses every row already in the cache."
    )
    for run in leftovers:
        with st.container(border=True):
            st.text(_describe_run(run))
            b1, b2, _ = st.columns([1, 1, 4])
            if b1.button("Resume", key=f"score_resume_{run['id']}"):
                try:
                    new_id = tasks.submit_score(manager, cache, run["params"])
                except DeliftError as exc:
                    st.error(f"Cannot resume: {layout.escape_md(exc)}")
                else:
                    manager.mark_run(run["id"], "resumed", f"resumed as job {new_id}")
                    st.rerun()
            if b2.button("Dismiss", key=f"score_dismiss_{run['id']}"):
                manager.mark_run(run["id"], "dismissed")
                st.rerun()

stages = list_stages(cache)
if stages:
    st.subheader("Scores in the cache")
    table = pd.DataFrame(
        {
            "created": [m.get("created", "") for _, m in stages],
            "pool": [(m.get("pool") or {}).get("label", "?") for _, m in stages],
            "rows": [(m.get("pool") or {}).get("rows", 0) for _, m in stages],
            "targets": [(m.get("targets") or {}).get("label", "") for _, m in stages],
            "existing": [(m.get("existing") or {}).get("label", "") for _, m in stages],
            "model": [(m.get("model") or {}).get("name", "?") for _, m in stages],
            "mode": [(m.get("scoring") or {}).get("mode", "?") for _, m in stages],
        }
    )
    st.dataframe(table, hide_index=True, key="score_stages_table")
