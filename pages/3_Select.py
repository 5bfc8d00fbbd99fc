"""Select: pick stage, method, kernel and budget with instant feedback; explore the map of the
pool; inspect why samples were picked; save named selections for Compare and Export."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import streamlit as st

from delift_core.config import (
    DEFAULT_METHOD,
    DEFAULT_QUALITY_GATE,
    DEFAULT_QUALITY_SIGNAL,
    DEFAULT_QUALITY_WEIGHT,
    KERNELS,
    METRICS,
    QUALITY_SIGNALS,
    SelectionConfig,
)
from delift_core.errors import DeliftError
from delift_core.pipeline import list_stages
from delift_core.quality import quality_score
from delift_core.selection import METHODS
from ui import compare, explain, layout, plots, registry, state, tasks

svc = layout.setup_page("Select")
manager, cache = svc.manager, svc.cache

st.title("Select")
pool_handle = layout.require_pool()

# The objective DELIFT maximises at each stage.
STAGE_OBJECTIVES = {
    "instruction": "FL on the pool",
    "task": "FLMI with the targets",
    "continual": "FLCG w.r.t. the existing set",
}
STAGE_LABELS = {
    "instruction": f"Instruction tuning ({STAGE_OBJECTIVES['instruction']})",
    "task": f"Task-specific ({STAGE_OBJECTIVES['task']})",
    "continual": f"Continual ({STAGE_OBJECTIVES['continual']})",
}
METHOD_HELP = (
    "delift-q: DELIFT with a quality prior: prefers samples whose own prompt helps the model "
    "predict their answer; the lowest-quality fraction (gate) is picked last (settings under "
    "Advanced). delift: the paper's method, DELIFT's utility kernel with the stage's objective. "
    "delift-se: the same objectives on sentence-embedding similarity. fl-only: utility kernel, "
    "plain facility location. random: a seeded random subset. full: the whole pool."
)
SIGNAL_HELP = (
    "What the quality score ranks by. help_logprob / help_rms: how much the sample's prompt "
    "raises the model's probability of its answer (higher is better). ifd_logprob / ifd_rms: "
    "the answer's loss with the prompt over without it (lower is better)."
)
# Methods in the selectbox: the default first, so a new session starts on it.
METHOD_CHOICES = [DEFAULT_METHOD, *(m for m in METHODS if m != DEFAULT_METHOD)]
# The curator's pins and exclusions (sample ids), and the pool hash they belong to.
PIN_KEY, EXCLUDE_KEY, MARKS_POOL_KEY = "select_pinned", "select_excluded", "select_marks_pool"
# Identical by construction (delift_core/selection.py): both maximise FL on the pool's kernel.
SAME_IN_INSTRUCTION = (
    "In the instruction stage delift and fl-only are the same method: both maximise facility "
    "location on the pool's utility kernel, so they pick the same samples. They differ in the "
    "task and continual stages, where delift uses FLMI with the targets or FLCG with the "
    "existing set and fl-only stays plain facility location."
)
BUDGET_MODES = {"fraction": "fraction of the pool", "count": "number of samples"}
COUNT_KEY = "select_budget_count"
MARKS_HELP = (
    "Pinned samples are always selected: picked first, and the greedy continues from what they "
    "cover. Excluded samples are never selected. Both are saved with the selection."
)

# Stages scored by this app record their data sources; others cannot be shown here.
stages = [
    (k, m)
    for k, m in list_stages(cache)
    if isinstance(m.get("pool"), dict) and m["pool"].get("spec")
]
if not stages:
    st.info("No scores yet: score the pool first on the Score page.")
    st.page_link("pages/2_Score.py", label="Go to Score", icon=":material/speed:")
    st.stop()
mine = [(k, m) for k, m in stages if (m.get("pool") or {}).get("hash") == pool_handle["hash"]]
if not mine:
    st.info(
        "The loaded pool has not been scored yet: go to Score. Scores of other data in the "
        "cache are listed below."
    )
    st.page_link("pages/2_Score.py", label="Go to Score", icon=":material/speed:")
candidates = mine or stages


def _stage_label(meta: dict[str, Any]) -> str:
    parts = [f"{meta['pool']['label']} ({meta['pool']['rows']:,} rows)"]
    for role in ("targets", "existing"):
        if meta.get(role):
            parts.append(f"{role}: {meta[role]['label']}")
    scoring = meta.get("scoring", {})
    return " · ".join(
        [meta.get("created", ""), *parts, meta["model"]["name"], scoring.get("mode", "")]
    )


keys = [k for k, _ in candidates]
metas = dict(candidates)
wanted = st.session_state.get(state.STAGE_KEY)
key = st.selectbox(
    "Scores",
    keys,
    index=keys.index(wanted) if wanted in keys else 0,
    format_func=lambda k: _stage_label(metas[k]),
    key="select_stage_key",
)
st.session_state[state.STAGE_KEY] = key
meta = metas[key]

try:
    pool = registry.load_source(meta["pool"]["spec"], cache)
except DeliftError as exc:
    st.error(f"The scored data cannot be loaded: {layout.escape_md(exc)}")
    st.stop()
n = len(pool)

available = ["instruction"]
if meta.get("targets"):
    available.append("task")
if meta.get("existing"):
    available.append("continual")
c1, c2, c3 = st.columns([3, 2, 2])
stage = c1.radio(
    "Stage",
    available,
    index=len(available) - 1,
    format_func=STAGE_LABELS.get,
    key="select_stage",
)
missing_stages = [
    label
    for role, label in (
        ("targets", "task (load a target set"),
        ("existing", "continual (load an existing set"),
    )
    if not meta.get(role)
]
if missing_stages:
    c1.caption(
        "Other stages: "
        + "; ".join(f"{m} on Data, then score it with this pool)" for m in missing_stages)
        + "."
    )
method = c2.selectbox("Method", METHOD_CHOICES, key="select_method", help=METHOD_HELP)
kernel = c3.radio(
    "Kernel",
    list(KERNELS),
    horizontal=True,
    key="select_kernel",
    help="minmax: utility scaled to [0, 1] (the paper). clip: negative utility set to 0.",
)
with st.expander("Advanced"):
    a1, a2 = st.columns(2)
    metric = a1.radio("Utility", list(METRICS), horizontal=True, key="select_metric")
    seed = int(a2.number_input("Seed (random method)", 0, 2**31 - 1, 0, key="select_seed"))
    q1, q2, q3 = st.columns(3)
    not_q = method != "delift-q"
    quality_weight = float(
        q1.number_input(
            "Quality weight (delift-q)",
            min_value=0.0,
            value=float(DEFAULT_QUALITY_WEIGHT),
            step=0.1,
            key="select_quality_weight",
            disabled=not_q,
            help="How strongly delift-q prefers high-quality samples; 0 gives DELIFT's order "
            "within each gate tier.",
        )
    )
    quality_gate = float(
        q2.slider(
            "Quality gate (delift-q)",
            0.0,
            0.9,
            float(DEFAULT_QUALITY_GATE),
            0.05,
            key="select_quality_gate",
            disabled=not_q,
            help="This lowest-quality fraction of the pool is picked only after all the rest.",
        )
    )
    quality_signal = q3.selectbox(
        "Quality signal",
        list(QUALITY_SIGNALS),
        index=list(QUALITY_SIGNALS).index(DEFAULT_QUALITY_SIGNAL),
        key="select_quality_signal",
        help=SIGNAL_HELP + " Used by delift-q and by the quality score below.",
    )
if stage == "instruction" and method in ("delift", "fl-only"):
    st.caption(SAME_IN_INSTRUCTION)
b1, b2 = st.columns([1, 3])
budget_mode = b1.radio(
    "Budget as",
    list(BUDGET_MODES),
    format_func=BUDGET_MODES.get,
    key="select_budget_mode",
    help="A fraction gives round(fraction × pool size) samples; a number gives that many.",
)
budget: float | int
if budget_mode == "fraction":
    budget = b2.slider(
        "Budget (fraction of the pool)",
        0.01,
        1.0,
        SelectionConfig().budget,
        0.01,
        key="select_budget",
        format="%.2f",
        persist_state="page",
    )
else:
    if (st.session_state.get(COUNT_KEY) or 0) > n:  # a count kept from a larger pool
        st.session_state[COUNT_KEY] = n
    budget = int(
        b2.number_input(
            "Budget (number of samples)",
            min_value=1,
            max_value=n,
            value=SelectionConfig().budget_count(n),
            step=1,
            key=COUNT_KEY,
            persist_state="page",
        )
    )

ids = [r.id for r in pool.records]
position = {sample_id: i for i, sample_id in enumerate(ids)}


def _forget_marks_of_other_pools(pool_hash: str) -> None:
    """Pins and exclusions name samples of one pool: another scored pool starts without any."""
    if st.session_state.get(MARKS_POOL_KEY) != pool_hash:
        st.session_state[MARKS_POOL_KEY] = pool_hash
        st.session_state[PIN_KEY] = []
        st.session_state[EXCLUDE_KEY] = []
        st.session_state[state.MAP_PICKS] = []
        st.session_state[state.MAP_EVENT] = []


def _sample_label(sample_id: str) -> str:
    return f"{sample_id} · {plots.shorten(pool.records[position[sample_id]].instruction, 60)}"


def _mark_controls() -> tuple[list[str], list[str]]:
    """The pinned and excluded sample ids, as the curator left them (they may overlap)."""
    counts = [len(st.session_state.get(k) or []) for k in (PIN_KEY, EXCLUDE_KEY)]
    with st.expander(f"Pin and exclude ({counts[0]:,} pinned, {counts[1]:,} excluded)"):
        st.caption(MARKS_HELP + " Points selected on the map can be added below the map.")
        p1, p2 = st.columns(2)
        # persist_state="session": a curation survives a visit to another page.
        options = {"format_func": _sample_label, "persist_state": "session"}
        pinned_ids = p1.multiselect("Pinned (always selected)", ids, key=PIN_KEY, **options)
        excluded_ids = p2.multiselect("Excluded (never selected)", ids, key=EXCLUDE_KEY, **options)
    return pinned_ids, excluded_ids


def _resolve_marks(pinned_ids: list[str], excluded_ids: list[str]) -> tuple[list[int], list[int]]:
    """Pool indices to pin and to exclude. A sample in both lists is neither, with a warning,
    so that the page keeps working while the curator decides."""
    both = set(pinned_ids) & set(excluded_ids)
    if both:
        shown = ", ".join(sorted(both)[:10]) + (", ..." if len(both) > 10 else "")
        st.warning(
            f"{len(both):,} samples are both pinned and excluded ({layout.escape_md(shown)}): "
            "they are treated as neither until you remove them from one of the two lists."
        )
    pins = [position[s] for s in pinned_ids if s not in both]
    outs = [position[s] for s in excluded_ids if s not in both]
    return pins, outs


_forget_marks_of_other_pools(pool.hash)
pins, outs = _resolve_marks(*_mark_controls())

try:
    with st.spinner("Selecting..."):
        result = registry.full_selection(
            cache,
            key,
            meta,
            method=method,
            stage=stage,
            kernel=kernel,
            metric=metric,
            seed=seed,
            quality_weight=quality_weight,
            quality_gate=quality_gate,
            quality_signal=quality_signal,
            pinned=pins,
            excluded=outs,
        )
except DeliftError as exc:
    st.warning(layout.escape_md(exc))
    st.stop()


def _budget_count(size: int) -> int:
    """Samples to select: the budget, at most the `size` samples not excluded, at least the
    pinned ones. Too small a budget is raised to the pins (with a warning), since pins are a
    must-keep: the alternative, refusing to select, would blank the page at every new pin."""
    if method == "full":
        return size
    wanted = SelectionConfig(budget=budget).budget_count(n)
    if wanted > size:
        st.caption(f"The budget is capped at the {size:,} samples not excluded.")
    count = min(size, wanted)
    if len(pins) > count:
        st.warning(
            f"{len(pins):,} samples are pinned but the budget is {count:,}: the selection is the "
            f"{len(pins):,} pinned samples. Raise the budget to add others, or pin fewer."
        )
    return max(count, len(pins))


@st.cache_data(max_entries=64, show_spinner=False)
def _delift_objective(
    cache_path: str, stage_key: str, stage: str, kernel: str, metric: str, subset: tuple[int, ...]
) -> float:
    """DELIFT's objective of the stage evaluated on a subset (cache_path keys the memo)."""
    utilities = registry.stage_utilities(cache, stage_key)
    indices = np.asarray(subset, dtype=np.int64)
    return compare.delift_objective(utilities, indices, stage=stage, kernel=kernel, metric=metric)


count = _budget_count(result.size)
chosen = result.take(count)
greedy = bool(np.isfinite(result.objective[count - 1]))
if greedy:
    objective, total = float(result.objective[count - 1]), float(result.objective[-1])
    objective_help = (
        "For delift-q it includes the quality prior (weight × quality of each pick)."
        if method == "delift-q"
        else None
    )
else:
    # random and full maximise nothing: their subset is scored by the objective DELIFT
    # maximises at this stage, so the number compares with delift's at the same budget.
    def _evaluate(subset: np.ndarray) -> float:
        picks = tuple(int(i) for i in subset)
        return _delift_objective(str(cache.path), key, stage, kernel, metric, picks)

    try:
        objective, total = _evaluate(chosen), _evaluate(result.order)
    except DeliftError as exc:
        st.warning(f"The objective cannot be evaluated: {layout.escape_md(exc)}")
        objective = total = None
    objective_help = (
        f"{method} maximises no objective: this is DELIFT's objective of the {stage} stage "
        f"({STAGE_OBJECTIVES[stage]}), evaluated once on the {method} "
        "subset. Compare it with delift's at the same budget."
    )
marks_note = " · ".join(
    f"{len(marks):,} {word}" for marks, word in ((pins, "pinned"), (outs, "excluded")) if marks
)

m1, m2, m3 = st.columns(3)
m1.metric(
    "Selected",
    f"{count:,} of {n:,}",
    delta=marks_note or None,
    delta_color="off",
    delta_arrow="off",
)
m2.metric("Objective", "n/a" if objective is None else f"{objective:.4f}", help=objective_help)
share = None if objective is None or total is None or not total > 0 else objective / total
m3.metric("Share of the objective of the full order", "n/a" if share is None else f"{share:.1%}")

left, right = st.columns([3, 2])
with right:
    st.caption("Objective against budget")
    if not greedy:
        st.info(
            f"{method} has no pick order to plot: it does not maximise the objective. Its value "
            "above is DELIFT's objective evaluated on its subset."
        )
    else:
        st.plotly_chart(plots.objective_curve(result.objective, n, count), key="select_curve")

chosen_mask = np.zeros(n, dtype=bool)
chosen_mask[chosen] = True
# The pool's own label fields (e.g. the demo's `quality` and `family`): table columns, and map
# colourings where they have few distinct values. Fields a field map read the texts from are
# the texts themselves.
field_map = meta["pool"]["spec"].get("field_map") or {}
extra = explain.extra_fields(pool.records, exclude=list(field_map.values()))
categorical = explain.categorical_fields(pool.records, extra)


def _add_marks(target: str, other: str, new: list[str]) -> None:
    """Button callback: it runs before the rerun, so the multiselects already hold the ids."""
    marks, others = explain.add_marks(
        st.session_state.get(target) or [], st.session_state.get(other) or [], new
    )
    st.session_state[target], st.session_state[other] = marks, others


def _remember_map_picks(event_ids: list[str]) -> list[str]:
    """The sample ids picked on the map, kept in session state: the chart forgets its selection
    whenever the figure changes (a new budget redraws it), the page does not. A new selection on
    the map replaces the picks; an empty one keeps them (Clear empties them)."""
    if event_ids and event_ids != st.session_state.get(state.MAP_EVENT):
        st.session_state[state.MAP_PICKS] = event_ids
    st.session_state[state.MAP_EVENT] = event_ids
    return [s for s in st.session_state.get(state.MAP_PICKS) or [] if s in position]


def _mark_buttons(picked_ids: list[str]) -> None:
    """Pin or exclude the points picked on the map (a sample is then only that)."""
    b1, b2 = st.columns(2)
    common = {
        "on_click": _add_marks,
        "disabled": not picked_ids,
        "help": None if picked_ids else "Click, box or lasso points on the map first.",
    }
    b1.button(
        "Pin the samples picked on the map",
        key="select_pin_picked",
        args=(PIN_KEY, EXCLUDE_KEY, picked_ids),
        **common,
    )
    b2.button(
        "Exclude the samples picked on the map",
        key="select_exclude_picked",
        args=(EXCLUDE_KEY, PIN_KEY, picked_ids),
        **common,
    )


map_picks = [s for s in st.session_state.get(state.MAP_PICKS) or [] if s in position]
with left:
    colour_by = "selection"
    if categorical:
        colour_by = st.selectbox(
            "Colour the map by",
            ["selection", *categorical],
            key="select_map_colour",
            help="selection: selected vs discarded. A field of the pool: one colour per value, "
            "selected samples filled, discarded ones open.",
        )
    if colour_by == "selection":
        st.caption(
            "Map of the pool: selected and discarded samples (click, box or lasso to inspect)"
        )
    else:
        st.caption(
            f"Map of the pool by {layout.escape_md(colour_by)}: filled circles are selected, "
            "open circles discarded (click, box or lasso to inspect)"
        )
    coords = registry.cached_map(cache, pool)
    if coords is None:

        def _busy() -> list:
            jobs = manager.list_jobs(active_only=True)
            return [j for j in jobs if j.kind in (tasks.MAP, tasks.SCORE)]

        if not _busy():
            try:
                tasks.submit_map(manager, cache, {r: meta.get(r) for r in tasks.ROLES})
            except DeliftError as exc:
                st.error(f"The map cannot be computed: {layout.escape_md(exc)}")

        @st.fragment(run_every=2.0 if _busy() else None)
        def wait_for_map() -> None:
            busy = _busy()
            if registry.cached_map(cache, pool) is not None or not busy:
                # Ready, or the job that was running belonged to other data: start over.
                st.rerun()
            detail = f" ({busy[0].phase})" if busy[0].phase else ""
            st.info(f"Computing the map{detail}: it appears here when ready.")

        if _busy():
            wait_for_map()
        else:
            failed = [j for j in manager.list_jobs(kind=tasks.MAP) if j.state == "failed"]
            if failed:
                st.error(f"The map failed: {layout.escape_md(failed[0].error)}")
    else:
        hover = plots.hover_lines(ids, [r.instruction for r in pool.records])
        if colour_by == "selection":
            figure, traces = plots.selection_map(
                coords, hover, result.order, result.gains, count, pins, outs
            )
        else:
            labels = explain.field_values(pool.records, colour_by)
            figure, traces = plots.category_map(
                coords, hover, result.order, result.gains, count, labels, pins, outs
            )
        event = st.plotly_chart(
            figure,
            key="select_map",
            on_select="rerun",
            selection_mode=("points", "box", "lasso"),
        )
        picked = plots.selected_indices(event, traces)
        map_picks = _remember_map_picks([ids[i] for i in picked])
        _mark_buttons(map_picks)

st.subheader("Sample quality")
signals = registry.pool_quality(cache, key, meta)
quality = None if signals is None else quality_score(signals, quality_signal)
if signals is None:
    st.info(f"No quality signals: {registry.RESCORE_HINT}.")
else:
    st.caption(
        f"Quality score: each sample's rank by {quality_signal} within the pool, from 0 (worst) "
        "to 1 (best). Status and rank are at the current budget; click a column header to sort."
    )
    t1, t2 = st.columns([3, 2])
    table = explain.quality_table(pool.records, signals, quality, result.order, count, extra)
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
    shown = ["quality score", *(k for k, v in signals.items() if np.isfinite(v).any())]
    column = t2.selectbox("Histogram of", shown, key="select_quality_hist")
    values = quality if column == "quality score" else signals[column]
    t2.plotly_chart(
        plots.selection_histogram(values, chosen_mask, column), key="select_quality_chart"
    )

st.subheader("Inspect samples")


def _clear_inspection() -> None:
    """Button callback: forget the typed ids and the map's picks (runs before the rerun)."""
    st.session_state["select_inspect"] = ""
    st.session_state[state.MAP_PICKS] = []


i1, i2 = st.columns([5, 1], vertical_alignment="bottom")
typed = i1.text_input(
    "Sample ids (comma-separated), in addition to points picked on the map",
    key="select_inspect",
    placeholder=", ".join(ids[int(i)] for i in chosen[:3]),
)
found, missing = explain.parse_ids(typed, ids)
if missing:
    st.warning(f"Not in the pool: {layout.escape_md(', '.join(missing[:10]))}")
inspect = list(dict.fromkeys(found + [position[s] for s in map_picks]))
i2.button("Clear", key="select_inspect_clear", on_click=_clear_inspection, disabled=not inspect)
if not inspect:
    st.caption("Nothing to inspect yet: click, box or lasso points on the map or type sample ids.")
else:
    st.caption(
        f"{len(inspect):,} samples, one row each; status and rank are at the current budget. "
        + explain.RANK_GAIN_NOTE
    )
    st.dataframe(
        explain.inspection_table(
            pool.records, inspect, result.order, result.gains, count, pins, outs, quality
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
            format_func=lambda j: _sample_label(ids[j]),
            key="select_inspect_one",
        )
    )
    utilities = registry.stage_utilities(cache, key)
    u_pool = utilities.pool.matrix(metric)
    rank_of = np.full(n, -1, dtype=np.int64)
    rank_of[result.order] = np.arange(result.size)
    record, rank = pool.records[i], int(rank_of[i])
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
        h1, h2 = st.columns(2)
        if stage == "task" and meta.get("targets") and utilities.query is not None:
            targets_ds = registry.load_source(meta["targets"]["spec"], cache)
            helps = explain.top_entries(utilities.query.matrix(metric), i, "col")
            h1.caption("Targets it helps most")
            h1.dataframe(
                explain.entries_table(helps, targets_ds.records),
                hide_index=True,
                key="select_helps",
            )
        else:
            helps = explain.top_entries(u_pool, i, "col", exclude=i)
            h1.caption("Pool samples it helps most (as an example)")
            h1.dataframe(
                explain.entries_table(helps, pool.records), hide_index=True, key="select_helps"
            )
        helped = explain.top_entries(u_pool, i, "row", exclude=i)
        h2.caption("Its most helpful examples")
        h2.dataframe(
            explain.entries_table(helped, pool.records), hide_index=True, key="select_helped"
        )

st.subheader("Save this selection")
size_name = f"{round(100 * count / n)}pct" if budget_mode == "fraction" else f"{count}"
default_name = f"{method}-{stage}-{size_name}"
s1, s2 = st.columns([3, 1])
name = s1.text_input("Selection name", key="select_name", placeholder=default_name).strip()
name = name or default_name
taken = name in {saved for saved, _ in registry.list_selections(cache)}
replace = taken and st.checkbox(f"Replace the saved selection '{name}'", key="select_replace_saved")
if taken and not replace:
    st.caption(f"A selection named '{layout.escape_md(name)}' exists: choose another name or "
               "tick Replace.")  # fmt: skip
if s2.button("Save selection", type="primary", key="select_save", disabled=taken and not replace):
    sel_meta = {
        "name": name,
        "stage_key": key,
        "method": method,
        "stage": stage,
        "kernel": kernel,
        "metric": metric,
        "seed": seed,
        "quality_weight": quality_weight,
        "quality_gate": quality_gate,
        "quality_signal": quality_signal,
        # A budget given as a number of samples has no fraction.
        "fraction": budget if budget_mode == "fraction" else None,
        "count": count,
        "pinned_ids": [ids[i] for i in pins],
        "excluded_ids": [ids[i] for i in outs],
        "n": n,
        "objective": objective,
        "pool": meta["pool"],
        "targets": meta.get("targets"),
        "existing": meta.get("existing"),
        "model": meta.get("model"),
        "scoring": meta.get("scoring"),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        registry.save_selection(cache, name, chosen, result.gains[:count], sel_meta)
    except DeliftError as exc:
        st.error(layout.escape_md(exc))
    else:
        st.session_state[state.LAST_SELECTION] = name
        st.success(f"Saved {count:,} samples as {layout.escape_md(name)}.")
