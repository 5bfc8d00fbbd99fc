"""Select page: the selection itself (the method's full pick order and the part of it the
budget keeps), and the numbers above the map (selected, objective, share) with the objective
curve."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from delift_core.cache import UtilityCache
from delift_core.config import SelectionSize
from delift_core.errors import DeliftError
from delift_core.select.selection_types import SelectionResult
from ui import compare, layout, plots, registry
from ui.select_settings import STAGE_OBJECTIVES, Scores, Settings


@dataclass(frozen=True)
class Shown:
    """The selection the page shows: the method's full pick order, the number of picks the
    budget keeps, and the pool indices pinned and excluded."""

    result: SelectionResult
    count: int
    pins: list[int]
    outs: list[int]

    @property
    def chosen(self) -> np.ndarray:
        """The selected pool indices, in pick order (int64, (count,))."""
        return self.result.take(self.count)


@dataclass(frozen=True)
class Objective:
    """The objective of the selection at the budget and of the method's full order (None when
    it cannot be evaluated). greedy: the method maximised it pick by pick (it has a curve)."""

    value: float | None
    total: float | None
    help: str | None
    greedy: bool

    @property
    def share(self) -> float | None:
        if self.value is None or self.total is None or not self.total > 0:
            return None
        return self.value / self.total


def full_order(
    scores: Scores, settings: Settings, pins: list[int], outs: list[int]
) -> SelectionResult:
    """The method's complete pick order on the stage; stops the page with the reason when the
    method cannot run (registry.EmbeddingsPending, raised, when it waits for embeddings)."""
    try:
        with st.spinner("Selecting..."):
            return registry.full_selection(
                scores.cache,
                scores.key,
                scores.meta,
                method=settings.method,
                stage=settings.stage,
                kernel=settings.kernel,
                metric=settings.metric,
                seed=settings.seed,
                quality_weight=settings.quality_weight,
                quality_gate=settings.quality_gate,
                quality_signal=settings.quality_signal,
                side_weight=settings.side_weight,
                duplicate_threshold=settings.duplicate_threshold,
                pinned=pins,
                excluded=outs,
            )
    except registry.EmbeddingsPending:
        raise  # the page waits for the map job, which computes them
    except DeliftError as exc:
        st.warning(layout.escape_md(exc))
        st.stop()


def size_notes(size: SelectionSize, pinned: int) -> None:
    """Why the selection is not the budget's size: a budget larger than the samples not
    excluded is capped; one smaller than the pins is raised to them, since pins are a
    must-keep (refusing to select would blank the page at every new pin)."""
    if size.capped:
        st.caption(f"The budget is capped at the {size.count:,} samples not excluded.")
    if size.raised_to_pins:
        st.warning(
            f"{pinned:,} samples are pinned but the budget is {size.budget:,}: the selection is "
            f"the {pinned:,} pinned samples. Raise the budget to add others, or pin fewer."
        )


@st.cache_data(max_entries=64, show_spinner=False)
def _delift_objective(
    _cache: UtilityCache,
    cache_path: str,
    stage_key: str,
    stage: str,
    kernel: str,
    metric: str,
    subset: tuple[int, ...],
) -> float:
    """DELIFT's objective of the stage evaluated on a subset (cache_path keys the memo)."""
    utilities = registry.stage_utilities(_cache, stage_key)
    indices = np.asarray(subset, dtype=np.int64)
    return compare.delift_objective(utilities, indices, stage=stage, kernel=kernel, metric=metric)


def objective(scores: Scores, settings: Settings, shown: Shown) -> Objective:
    """The objective at the budget and of the full order: the method's own for a greedy
    method; for random and full, which maximise nothing, DELIFT's objective of the stage
    evaluated on their subset, so that the number compares with delift's at the same budget."""
    method, stage, result, count = settings.method, settings.stage, shown.result, shown.count
    if np.isfinite(result.objective[count - 1]):
        note = (
            "For delift-q it includes the priors (quality weight × quality and side weight × "
            "side prior of each pick)."
            if method == "delift-q"
            else None
        )
        return Objective(
            float(result.objective[count - 1]), float(result.objective[-1]), note, True
        )

    def evaluate(subset: np.ndarray) -> float:
        picks = tuple(int(i) for i in subset)
        cache, path = scores.cache, str(scores.cache.path)
        kernel, metric = settings.kernel, settings.metric
        return _delift_objective(cache, path, scores.key, stage, kernel, metric, picks)

    note = (
        f"{method} maximises no objective: this is DELIFT's objective of the {stage} stage "
        f"({STAGE_OBJECTIVES[stage]}), evaluated once on the {method} "
        "subset. Compare it with delift's at the same budget."
    )
    try:
        return Objective(evaluate(shown.chosen), evaluate(result.order), note, False)
    except DeliftError as exc:
        st.warning(f"The objective cannot be evaluated: {layout.escape_md(exc)}")
        return Objective(None, None, note, False)


def metrics(value: Objective, shown: Shown, n: int) -> None:
    """Selected (with the pins and exclusions), objective, and its share of the full order's."""
    marks = ((shown.pins, "pinned"), (shown.outs, "excluded"))
    marks_note = " · ".join(f"{len(ids):,} {word}" for ids, word in marks if ids)
    m1, m2, m3 = st.columns(3)
    m1.metric(
        "Selected",
        f"{shown.count:,} of {n:,}",
        delta=marks_note or None,
        delta_color="off",
        delta_arrow="off",
    )
    m2.metric("Objective", "n/a" if value.value is None else f"{value.value:.4f}", help=value.help)
    share = value.share
    m3.metric(
        "Share of the objective of the full order", "n/a" if share is None else f"{share:.1%}"
    )


def objective_curve(value: Objective, method: str, shown: Shown, n: int) -> None:
    """The objective against the budget, for a method that has a pick order to plot."""
    st.caption("Objective against budget")
    if not value.greedy:
        st.info(
            f"{method} has no pick order to plot: it does not maximise the objective. Its value "
            "above is DELIFT's objective evaluated on its subset."
        )
    else:
        curve = plots.objective_curve(shown.result.objective, n, shown.count)
        st.plotly_chart(curve, key="select_curve")
