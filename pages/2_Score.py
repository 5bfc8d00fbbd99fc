"""Score: estimate the cost, then compute the utility matrices in the background with progress,
cancel and resume. Other pages stay usable while a job runs."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from delift_core import paths
from delift_core.config import ScoringConfig
from delift_core.errors import ConfigError, DeliftError, PathError, ResourceError
from delift_core.jobs import JobState
from delift_core.pipeline import list_stages
from delift_core.resources import SPARSE_DEFAULT_K, check_fits, estimate_run, suggest_mode
from ui import estimates, layout, registry, state, tasks, workspaces

svc = layout.setup_page("Score")
manager, cache = svc.manager, svc.cache

st.title("Score")
st.caption(
    "For every pair of samples the model scores how much one, shown as an in-context example, "
    "helps it answer the other. Rows already in the cache are never computed twice, so a "
    "cancelled or interrupted run resumes where it stopped."
)
layout.require_pool()
handles = state.handles()
rows = {role: (h["rows"] if h else 0) for role, h in handles.items()}

KIND_LABELS = {tasks.SCORE: "Scoring", tasks.MAP: "Map", tasks.CALIBRATE: "Speed measurement"}

for role, handle in handles.items():
    if handle is not None:
        st.text(f"{role}: {handle['label']} · {handle['rows']:,} rows")

suggested = suggest_mode(rows["pool"], rows["targets"], rows["existing"])
for key, default in (
    ("score_model", "default"),
    ("score_mode", suggested),
    ("score_k", SPARSE_DEFAULT_K),
    ("score_batch", 32),
):
    state.kept(key, default)
c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
model = (
    c1.text_input(
        "Model",
        key="score_model",
        help="'default' is the embedded SmolLM2-135M-Instruct; or give a local Hugging Face model "
        "folder, under the folders data may be read from. Nothing is downloaded, and a folder "
        "loads only when you measure its speed or start scoring.",
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
k = c3.number_input("Candidates per row (k)", 1, 1024, key="score_k", disabled=mode == "exact")
batch = c4.number_input("Batch size", 1, 1024, key="score_batch")
for key in ("score_model", "score_mode", "score_k", "score_batch"):
    state.remember(key)
exact_passes = estimate_run(rows["pool"], "exact", 0, rows["targets"], rows["existing"]).passes
if suggested == "sparse":
    st.caption(
        f"Sparse mode is proposed: exact mode would run {exact_passes:,} forward passes (every "
        f"pair), sparse mode about {rows['pool'] * (int(k) + 1):,} for the pool, with nearly the "
        "same selections (docs/benchmarks.md, sparse fidelity)."
    )


def _confined_model(name: str) -> str:
    """'default', or the model folder resolved, when local paths are on and it lies under the
    data roots (the same check, and the same words, as a data path on the Data page)."""
    if name == "default":
        return name
    try:
        enabled = paths.local_paths_enabled()
    except ConfigError:  # a mistyped setting turns local paths off rather than on
        enabled = False
    if not enabled:
        raise PathError(
            "local model folders are turned off here ($DELIFT_LOCAL_PATHS=off); use 'default'",
            path=name,
        )
    return str(paths.check_data_path(name))


model_refused: str | None = None
try:
    model = _confined_model(model)
except PathError as exc:
    model_refused = str(exc)
    st.error(f"Model: {layout.escape_md(exc)}")

try:
    config = ScoringConfig(mode=mode, k=int(k), batch_size=int(batch))
    datasets = {role: registry.dataset_for(h, cache) if h else None for role, h in handles.items()}
except DeliftError as exc:
    st.error(layout.escape_md(exc))
    st.stop()


def _ours(jobs: list[JobState]) -> list[JobState]:
    """The jobs this workspace may see (workspaces.job_visible)."""
    return [j for j in jobs if workspaces.job_visible(j.params, svc.workspace)]


active_jobs = _ours(manager.list_jobs(active_only=True))
cost = estimate_run(rows["pool"], mode, int(k), rows["targets"], rows["existing"])
try:
    check_fits(cost, mode)
    too_big = None
except ResourceError as exc:
    too_big = str(exc)
speed = None if model_refused else estimates.get_speed(model, cache)
rate = speed.passes_per_second if speed else None
data_chars = estimates.mean_chars(*datasets.values())
lm_id: str | None = None
if not model_refused:
    try:
        lm_id = estimates.model_id(model)
    except DeliftError as exc:
        st.warning(f"Model: {layout.escape_md(exc)}")
plan = estimates.plan(cache, lm_id, config, datasets) if lm_id else None
to_run = cost.passes if plan is None else plan.remaining


def _calibrate() -> bool:
    try:
        tasks.submit_calibration(manager, cache, model, datasets["pool"], int(batch))
    except DeliftError as exc:
        st.error(f"Cannot measure the speed: {layout.escape_md(exc)}")
        return False
    return True


# Only the embedded model is measured by itself: another model loads only when asked for.
auto_measure = registry.canonical_model(model) == "default"
if (
    rate is None
    and to_run
    and auto_measure
    and lm_id
    and not active_jobs
    and state.mark_calibrated(model)
):
    _calibrate()
    active_jobs = _ours(manager.list_jobs(active_only=True))

st.subheader("Cost estimate")
m1, m2, m3 = st.columns(3)
if plan is None:
    m1.metric(
        "Forward passes",
        f"{cost.passes:,}",
        help=f"{cost.passes - cost.pairs:,} without an example + {cost.pairs:,} pairs",
    )
    if mode == "sparse":
        m1.caption("Passes in the cache are counted once this data's embeddings exist.")
else:
    m1.metric(
        "Forward passes to run",
        f"{plan.remaining:,}",
        help=f"of {plan.total:,} in all; {plan.cached:,} are already in the cache and are "
        "not computed again",
    )
    if plan.cached:
        m1.caption(f"{plan.cached:,} of {plan.total:,} passes are already in the cache.")
if not to_run:
    m2.metric("Estimated time", "0 s")
    m2.caption("everything is in the cache")
elif speed:
    m2.metric("Estimated time", layout.fmt_seconds(speed.seconds(to_run, data_chars)))
    note = f"at {rate:,.1f} passes/s, measured on this machine; a running job updates it"
    if abs(speed.scale(data_chars) - 1) >= 0.05:
        note += (
            f". Scaled x{speed.scale(data_chars):.2f} for text length: {data_chars:,.0f}"
            f" characters per record here, {speed.chars:,.0f} where measured"
        )
    m2.caption(note)
elif model_refused:
    m2.metric("Estimated time", "unknown")
else:
    # A score run of this model measures its speed too (the estimate follows its progress).
    scoring = any(
        j.kind == tasks.SCORE
        and registry.canonical_model(j.params["model"]) == registry.canonical_model(model)
        for j in active_jobs
    )
    measuring = scoring or any(j.kind == tasks.CALIBRATE for j in active_jobs)
    m2.metric("Estimated time", "measuring..." if measuring else "not measured")
    if scoring:
        m2.caption("the scoring job measures the speed as it runs")
    if not measuring and st.button("Measure speed", key="score_measure") and _calibrate():
        st.rerun()
    tried = [j for j in manager.list_jobs(kind=tasks.CALIBRATE) if j.params["model"] == model]
    if not measuring and tried and tried[0].state == "failed":
        st.warning(f"Speed measurement failed: {layout.escape_md(tried[0].error)}")
weights = None if model_refused else estimates.model_bytes(model)
m3.metric(
    "Peak memory",
    layout.fmt_bytes(cost.memory_bytes + (weights or 0)),
    help=(f"model weights {layout.fmt_bytes(weights)} + " if weights else "")
    + f"utility matrices and selection kernel {layout.fmt_bytes(cost.memory_bytes)}",
)
if too_big:
    st.error(f"This run would not fit in memory: {layout.escape_md(too_big)}")
elif mode == "exact" and cost.pairs > 2_000_000:
    st.warning(
        f"{cost.pairs:,} pairs is a lot for exact mode. Sparse mode scores each row against its "
        "k most similar candidates only."
    )

params = tasks.score_params(handles, model, config, svc.workspace)
duplicate = any(j.kind == tasks.SCORE and j.params == params for j in active_jobs)
if st.button(
    "Start scoring",
    type="primary",
    key="score_start",
    disabled=duplicate or bool(too_big) or bool(model_refused),
):
    try:
        job_id = tasks.submit_score(manager, cache, params)
    except DeliftError as exc:
        st.error(f"Cannot start: {layout.escape_md(exc)}")
    else:
        st.success(f"Scoring queued (job {job_id}). You can keep using the other pages.")
        active_jobs = _ours(manager.list_jobs(active_only=True))
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
    # Keyed by job id: a job that moves from queued to running replaces its card, never adds one.
    with st.container(border=True, key=f"score_job_{job.id}"):
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


def _covered(job_params: dict[str, Any]) -> dict[str, str | None]:
    return {role: (job_params.get(role) or {}).get("hash") for role in tasks.ROLES}


def _ready_note(job: JobState) -> None:
    """Say what the finished scores cover, and what the data loaded now still lacks."""
    scored = [role for role, h in _covered(job.params).items() if h]
    if _covered(job.params) == _covered(params):
        st.success(f"The scores of the data loaded now are ready ({', '.join(scored)}).")
        st.page_link("pages/3_Select.py", label="Go to Select", icon=":material/filter_alt:")
        maps = manager.list_jobs(kind=tasks.MAP, active_only=True)
        if any(_covered(j.params)["pool"] == _covered(params)["pool"] for j in maps):
            st.caption("The map of the pool is being computed: Select shows it when ready.")
    else:
        st.info(
            f"The latest scores (of the {', '.join(scored)} then loaded) are ready, but the data "
            "loaded now differs: start scoring to score it."
        )
    if not handles.get("targets") or not handles.get("existing"):
        st.caption(
            "Select offers the task stage once a target set, and the continual stage once an "
            "existing set, is loaded on Data and scored with the pool."
        )


def _signature(jobs: list[JobState]) -> tuple[tuple[str, str], ...]:
    return tuple((j.id, j.state) for j in jobs)


@st.fragment(run_every=2.0 if active_jobs else None)
def jobs_panel(was_active: tuple[tuple[str, str], ...]) -> None:
    jobs = _ours(manager.list_jobs())
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
            _ready_note(latest_score)
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
                    tasks.resume_run(manager, cache, run, svc.workspace)
                except DeliftError as exc:
                    st.error(f"Cannot resume: {layout.escape_md(exc)}")
                else:
                    st.rerun()
            if b2.button("Dismiss", key=f"score_dismiss_{run['id']}"):
                manager.mark_run(run["id"], "dismissed")
                st.rerun()

chosen = st.checkbox(
    "Resume unfinished runs by themselves when the server restarts",
    value=tasks.auto_resume(cache),
    key="score_auto_resume",
    help="Scores already computed are always kept; this only restarts the runs that were "
    "interrupted, without waiting for a click here.",
)
if chosen != tasks.auto_resume(cache):
    tasks.set_auto_resume(cache, chosen)

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
