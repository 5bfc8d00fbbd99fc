"""Select page: the pool's samples by id, the curator's pins and exclusions, and the points
picked on the map (all kept in session state as sample ids)."""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from delift_core.data.dataset import Dataset
from ui import explain, layout, plots, state

# The curator's pins and exclusions (sample ids), and the pool hash they belong to.
PIN_KEY, EXCLUDE_KEY, MARKS_POOL_KEY = "select_pinned", "select_excluded", "select_marks_pool"
MARKS_HELP = (
    "Pinned samples are always selected: picked first, and the greedy continues from what they "
    "cover. Excluded samples are never selected. Both are saved with the selection."
)


@dataclass(frozen=True)
class PoolView:
    """The scored pool as the page shows it: its records, their ids in pool order, and each
    id's pool index."""

    pool: Dataset
    ids: list[str] = field(init=False)
    position: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        ids = [r.id for r in self.pool.records]
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "position", {sample_id: i for i, sample_id in enumerate(ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def label(self, sample_id: str) -> str:
        """The sample's id and the start of its instruction."""
        record = self.pool.records[self.position[sample_id]]
        return f"{sample_id} · {plots.shorten(record.instruction, 60)}"


def curation(view: PoolView) -> tuple[list[int], list[int]]:
    """The Pin and exclude expander; returns the pool indices to pin and to exclude."""
    _forget_marks_of_other_pools(view.pool.hash)
    return _resolve_marks(view, *_mark_controls(view))


def _forget_marks_of_other_pools(pool_hash: str) -> None:
    """Pins and exclusions name samples of one pool: another scored pool starts without any."""
    if st.session_state.get(MARKS_POOL_KEY) != pool_hash:
        st.session_state[MARKS_POOL_KEY] = pool_hash
        st.session_state[PIN_KEY] = []
        st.session_state[EXCLUDE_KEY] = []
        st.session_state[state.MAP_PICKS] = []
        st.session_state[state.MAP_EVENT] = []


def _mark_controls(view: PoolView) -> tuple[list[str], list[str]]:
    """The pinned and excluded sample ids, as the curator left them (they may overlap)."""
    counts = [len(st.session_state.get(k) or []) for k in (PIN_KEY, EXCLUDE_KEY)]
    with st.expander(f"Pin and exclude ({counts[0]:,} pinned, {counts[1]:,} excluded)"):
        st.caption(MARKS_HELP + " Points selected on the map can be added below the map.")
        p1, p2 = st.columns(2)
        # persist_state="session": a curation survives a visit to another page.
        options = {"format_func": view.label, "persist_state": "session"}
        ids = view.ids
        pinned_ids = p1.multiselect("Pinned (always selected)", ids, key=PIN_KEY, **options)
        excluded_ids = p2.multiselect("Excluded (never selected)", ids, key=EXCLUDE_KEY, **options)
    return pinned_ids, excluded_ids


def _resolve_marks(
    view: PoolView, pinned_ids: list[str], excluded_ids: list[str]
) -> tuple[list[int], list[int]]:
    """Pool indices to pin and to exclude. A sample in both lists is neither, with a warning,
    so that the page keeps working while the curator decides."""
    both = set(pinned_ids) & set(excluded_ids)
    if both:
        shown = ", ".join(sorted(both)[:10]) + (", ..." if len(both) > 10 else "")
        st.warning(
            f"{len(both):,} samples are both pinned and excluded ({layout.escape_md(shown)}): "
            "they are treated as neither until you remove them from one of the two lists."
        )
    pins = [view.position[s] for s in pinned_ids if s not in both]
    outs = [view.position[s] for s in excluded_ids if s not in both]
    return pins, outs


def map_picks(view: PoolView) -> list[str]:
    """The sample ids picked on the map so far (kept across reruns), of this pool."""
    return [s for s in st.session_state.get(state.MAP_PICKS) or [] if s in view.position]


def remember_map_picks(view: PoolView, event_ids: list[str]) -> list[str]:
    """The sample ids picked on the map, kept in session state: the chart forgets its selection
    whenever the figure changes (a new budget redraws it), the page does not. A new selection on
    the map replaces the picks; an empty one keeps them (Clear empties them)."""
    if event_ids and event_ids != st.session_state.get(state.MAP_EVENT):
        st.session_state[state.MAP_PICKS] = event_ids
    st.session_state[state.MAP_EVENT] = event_ids
    return map_picks(view)


def forget_map_picks() -> None:
    """Forget the map's picks (for a button callback: it runs before the rerun)."""
    st.session_state[state.MAP_PICKS] = []


def add_marks(target: str, other: str, new: list[str]) -> None:
    """Button callback: it runs before the rerun, so the multiselects already hold the ids."""
    marks, others = explain.add_marks(
        st.session_state.get(target) or [], st.session_state.get(other) or [], new
    )
    st.session_state[target], st.session_state[other] = marks, others


def mark_buttons(picked_ids: list[str]) -> None:
    """Pin or exclude the points picked on the map (a sample is then only that)."""
    b1, b2 = st.columns(2)
    common = {
        "on_click": add_marks,
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
