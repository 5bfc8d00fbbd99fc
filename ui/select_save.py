"""Select page, bottom: save the selection shown under a name, for Compare and Export."""

from __future__ import annotations

import streamlit as st

from delift_core.errors import DeliftError
from delift_core.selection_store import SavedSelection, default_name
from ui import layout, registry, state
from ui.select_marks import PoolView
from ui.select_settings import Scores, Settings
from ui.select_summary import Shown


def save_section(
    scores: Scores, view: PoolView, settings: Settings, shown: Shown, objective: float | None
) -> None:
    """The name field (a default from method, stage and size), Replace for a taken name, and
    Save, which stores the selection shown with everything that made it."""
    st.subheader("Save this selection")
    count, as_fraction = shown.count, settings.fraction is not None
    offered = default_name(
        settings.method, settings.stage, count, len(view), as_fraction=as_fraction
    )
    s1, s2 = st.columns([3, 1])
    name = s1.text_input("Selection name", key="select_name", placeholder=offered).strip()
    name = name or offered
    taken = name in {saved for saved, _ in registry.list_selections(scores.cache)}
    replace = taken and st.checkbox(
        f"Replace the saved selection '{name}'", key="select_replace_saved"
    )
    if taken and not replace:
        st.caption(
            f"A selection named '{layout.escape_md(name)}' exists: choose another name or "
            "tick Replace."
        )
    disabled = taken and not replace
    if not s2.button("Save selection", type="primary", key="select_save", disabled=disabled):
        return
    meta, gains = scores.meta, shown.result.gains[:count]
    try:
        selection = SavedSelection(
            name=name,
            stage_key=scores.key,
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
            fraction=settings.fraction,
            indices=shown.chosen,
            gains=gains,
            pinned_ids=[view.ids[i] for i in shown.pins],
            excluded_ids=[view.ids[i] for i in shown.outs],
            pool_size=len(view),
            objective=objective,
            pool=meta["pool"],
            targets=meta.get("targets"),
            existing=meta.get("existing"),
            model=meta.get("model"),
            scoring=meta.get("scoring"),
        )
        registry.save_selection(scores.cache, name, shown.chosen, gains, selection.to_dict())
    except DeliftError as exc:
        st.error(layout.escape_md(exc))
    else:
        st.session_state[state.LAST_SELECTION] = name
        st.success(f"Saved {count:,} samples as {layout.escape_md(name)}.")
