"""Select page, top: which scores to select from, and the settings of the selection (stage,
method, kernel, delift-q's priors, the budget)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from delift_core.cache import UtilityCache
from delift_core.config import (
    DEFAULT_DUPLICATE_THRESHOLD,
    DEFAULT_METHOD,
    DEFAULT_QUALITY_GATE,
    DEFAULT_QUALITY_SIGNAL,
    DEFAULT_QUALITY_WEIGHT,
    DEFAULT_SIDE_WEIGHT,
    KERNELS,
    METRICS,
    QUALITY_SIGNALS,
    SelectionConfig,
)
from delift_core.pipeline import list_stages
from delift_core.select.selection import METHODS
from ui import state, workspaces

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
    "predict their answer; the lowest-quality fraction (gate) is picked last; with targets it "
    "also prefers samples close to them, with existing data samples new to it (settings under "
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
# Identical by construction (delift_core/select/selection.py): both maximise FL on the pool's kernel.
SAME_IN_INSTRUCTION = (
    "In the instruction stage delift and fl-only are the same method: both maximise facility "
    "location on the pool's utility kernel, so they pick the same samples. They differ in the "
    "task and continual stages, where delift uses FLMI with the targets or FLCG with the "
    "existing set and fl-only stays plain facility location."
)
SIDE_HELP = (
    "How strongly delift-q prefers samples close to the targets (task stage) or new against "
    "the existing set (continual stage), by sentence embeddings; 0 = off. Only the task and "
    "continual stages use it: the instruction stage has no side set."
)
DUPLICATE_HELP = (
    "Ticked, delift-q also picks last every sample whose sentence embedding is closer than this "
    "cosine to a pool sample of higher quality: the better of two near-twins is kept."
)
# Where the cosine slider starts when the default is off (the gate then only applies once
# ticked); the library's default wins when it sets one.
DUPLICATE_SLIDER_START = 0.9
DUPLICATE_KEY = "select_duplicate_gate"
DUPLICATE_THRESHOLD_KEY = "select_duplicate_threshold"
BUDGET_MODES = {"fraction": "fraction of the pool", "count": "number of samples"}
COUNT_KEY = "select_budget_count"


@dataclass(frozen=True)
class Scores:
    """The scored stage the page selects from: its key and meta in the cache."""

    cache: UtilityCache
    key: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """The selection the curator asked for, as the widgets hold it. budget: a fraction of the
    pool (budget_mode "fraction") or a number of samples (budget_mode "count")."""

    stage: str
    method: str
    kernel: str
    metric: str
    seed: int
    quality_weight: float
    quality_gate: float
    quality_signal: str
    budget: float | int
    budget_mode: str
    side_weight: float = DEFAULT_SIDE_WEIGHT
    duplicate_threshold: float | None = DEFAULT_DUPLICATE_THRESHOLD

    @property
    def fraction(self) -> float | None:
        """The budget as a fraction of the pool; None when it is a number of samples."""
        return self.budget if self.budget_mode == "fraction" else None


def stage_label(meta: dict[str, Any]) -> str:
    """One line that tells a scored stage from the others in the Scores list."""
    parts = [f"{meta['pool']['label']} ({meta['pool']['rows']:,} rows)"]
    for role in ("targets", "existing"):
        if meta.get(role):
            parts.append(f"{role}: {meta[role]['label']}")
    scoring = meta.get("scoring", {})
    return " · ".join(
        [meta.get("created", ""), *parts, meta["model"]["name"], scoring.get("mode", "")]
    )


def choose_scores(cache: UtilityCache, pool_hash: str) -> Scores:
    """The scored stage to select from: one of the loaded pool's, else of every stage scored
    by this app. Stops the page when nothing is scored yet."""
    # Stages scored by this app record their data sources; others cannot be shown here.
    stages = [
        (k, m)
        for k, m in list_stages(cache)
        if isinstance(m.get("pool"), dict) and m["pool"].get("spec")
    ]
    mine = [(k, m) for k, m in stages if (m.get("pool") or {}).get("hash") == pool_hash]
    # Other data's scores are offered only when their sources are this workspace's (another
    # workspace's upload stays there); the pool loaded in this session is always its own.
    workspace = state.current_workspace() or workspaces.SHARED
    stages = mine or [
        (k, m)
        for k, m in stages
        if all(
            workspaces.spec_visible((m.get(role) or {}).get("spec") or {}, workspace)
            for role in ("pool", "targets", "existing")
        )
    ]
    if not stages:
        st.info("No scores yet: score the pool first on the Score page.")
        st.page_link("pages/2_Score.py", label="Go to Score", icon=":material/speed:")
        st.stop()
    if not mine:
        st.info(
            "The loaded pool has not been scored yet: go to Score. Scores of other data in the "
            "cache are listed below."
        )
        st.page_link("pages/2_Score.py", label="Go to Score", icon=":material/speed:")
    candidates = mine or stages
    keys = [k for k, _ in candidates]
    metas = dict(candidates)
    wanted = st.session_state.get(state.STAGE_KEY)
    key = st.selectbox(
        "Scores",
        keys,
        index=keys.index(wanted) if wanted in keys else 0,
        format_func=lambda k: stage_label(metas[k]),
        key="select_stage_key",
    )
    st.session_state[state.STAGE_KEY] = key
    return Scores(cache, key, metas[key])


def settings_controls(meta: dict[str, Any], n: int) -> Settings:
    """The stage, method and kernel row, the Advanced settings and the budget, for a stage
    `meta` scored on a pool of n samples."""
    stage, method, kernel = _stage_method_kernel(meta)
    with st.expander("Advanced"):
        metric, seed, weight, gate, signal = _advanced(method)
        side_weight, duplicate_threshold = _embedding_priors(method)
    if stage == "instruction" and method in ("delift", "fl-only"):
        st.caption(SAME_IN_INSTRUCTION)
    budget_mode, budget = _budget(n)
    return Settings(
        stage, method, kernel, metric, seed, weight, gate, signal, budget, budget_mode,
        side_weight, duplicate_threshold,
    )  # fmt: skip


def _stage_method_kernel(meta: dict[str, Any]) -> tuple[str, str, str]:
    available = ["instruction"]
    if meta.get("targets"):
        available.append("task")
    if meta.get("existing"):
        available.append("continual")
    c1, c2, c3 = st.columns([3, 2, 2])
    # A link (ui.view_state) may have set the widget already: then no default is passed.
    if "select_stage" in st.session_state and st.session_state["select_stage"] not in available:
        st.session_state["select_stage"] = available[-1]  # set, so that the browser shows it
    default = {} if "select_stage" in st.session_state else {"index": len(available) - 1}
    stage = c1.radio(
        "Stage",
        available,
        **default,
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
    return stage, method, kernel


def _advanced(method: str) -> tuple[str, int, float, float, str]:
    """Utility metric, seed and delift-q's quality prior (weight, gate, signal)."""
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
    return metric, seed, quality_weight, quality_gate, quality_signal


def _embedding_priors(method: str) -> tuple[float, float | None]:
    """delift-q's priors from sentence embeddings: the side weight and the near-duplicate
    threshold (None when the gate is off). The slider stays on the page (disabled) while the
    gate is off, so that it keeps its value."""
    e1, e2, e3 = st.columns(3)
    not_q = method != "delift-q"
    side_weight = float(
        e1.number_input(
            "Side weight (delift-q)",
            min_value=0.0,
            value=float(DEFAULT_SIDE_WEIGHT),
            step=0.1,
            key="select_side_weight",
            disabled=not_q,
            help=SIDE_HELP,
        )
    )
    gate_on = e2.checkbox(
        "Gate near-duplicates",
        value=DEFAULT_DUPLICATE_THRESHOLD is not None,
        key=DUPLICATE_KEY,
        disabled=not_q,
        help=DUPLICATE_HELP,
    )
    start = (
        DUPLICATE_SLIDER_START
        if DEFAULT_DUPLICATE_THRESHOLD is None
        else DEFAULT_DUPLICATE_THRESHOLD
    )
    threshold = float(
        e3.slider(
            "Near-duplicate cosine (delift-q)",
            0.01,
            1.0,
            float(start),
            0.01,
            key=DUPLICATE_THRESHOLD_KEY,
            disabled=not_q or not gate_on,
            format="%.2f",
            help="Cosine similarity above which a sample counts as a near-duplicate.",
        )
    )
    return side_weight, threshold if gate_on else None


def _budget(n: int) -> tuple[str, float | int]:
    """How the budget is given ("fraction" or "count") and its value, for a pool of n."""
    b1, b2 = st.columns([1, 3])
    budget_mode = b1.radio(
        "Budget as",
        list(BUDGET_MODES),
        format_func=BUDGET_MODES.get,
        key="select_budget_mode",
        help="A fraction gives round(fraction × pool size) samples; a number gives that many.",
    )
    if budget_mode == "fraction":
        fraction = b2.slider(
            "Budget (fraction of the pool)",
            0.01,
            1.0,
            SelectionConfig().budget,
            0.01,
            key="select_budget",
            format="%.2f",
            persist_state="page",
        )
        return budget_mode, fraction
    if (st.session_state.get(COUNT_KEY) or 0) > n:  # a count kept from a larger pool
        st.session_state[COUNT_KEY] = n
    default = {} if COUNT_KEY in st.session_state else {"value": SelectionConfig().budget_count(n)}
    count = b2.number_input(
        "Budget (number of samples)",
        min_value=1,
        max_value=n,
        step=1,
        **default,
        key=COUNT_KEY,
        persist_state="page",
    )
    return budget_mode, int(count)
