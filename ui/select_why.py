"""Select page: "Why" for one row. Its rank and gain, the rows it covers best, the rows that
cover it best (and the selected one that does), its quality signals, in plain words (ui.why),
from the same kernel the selection used: DELIFT's utility kernel of the stage for the utility
methods, the sentence-embedding kernel for delift-se."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import scipy.sparse as sp
import streamlit as st

from delift_core.coverage import covers_best, row_coverage
from delift_core.errors import DeliftError
from delift_core.select.kernels import embedding_kernel, sparse_embedding_kernel, utility_kernels
from ui import layout, registry, why
from ui.select_marks import PoolView
from ui.select_settings import Scores, Settings
from ui.select_summary import Shown

WHY_KEY = "select_why"
_KERNELS: dict[tuple, tuple[Any, str]] = {}  # the last kernels built, by what built them


def coverage_kernel(scores: Scores, view: PoolView, settings: Settings) -> tuple[Any, str]:
    """(K, value name): the pool's coverage kernel of the selection, K[r, j] how well j covers
    r, and what its values mean to a reader. Raises DeliftError when it cannot be built."""
    stage, method, kernel, metric = (
        settings.stage,
        settings.method,
        settings.kernel,
        settings.metric,
    )
    semantic = method == "delift-se"
    memo = (
        str(scores.cache.path),
        scores.key,
        stage,
        kernel,
        metric,
        semantic,
        method == "fl-only",
    )
    if memo in _KERNELS:
        return _KERNELS[memo]
    utilities = registry.stage_utilities(scores.cache, scores.key)
    u_pool = utilities.pool.matrix(metric)
    if semantic:
        emb = registry.cached_embeddings(scores.cache, view.pool)
        if emb is None:
            raise DeliftError("the sentence embeddings are still being computed")
        data = sparse_embedding_kernel(emb, emb, u_pool) if sp.issparse(u_pool) else None
        built = (data if data is not None else embedding_kernel(emb), "similarity")
    else:
        blocks = [u_pool]
        if method != "fl-only":
            side = {"task": utilities.targets, "continual": utilities.existing}.get(stage)
            if side is not None:
                blocks.append(side.matrix(metric))
        built = (utility_kernels(blocks, kernel)[0], "help")  # type: ignore[arg-type]
    _KERNELS.clear()  # one pool's kernel at a time: they are (n, n)
    _KERNELS[memo] = built
    return built


def why_section(
    scores: Scores,
    view: PoolView,
    settings: Settings,
    shown: Shown,
    table: pd.DataFrame,
    linked: Sequence[int],
    picks: Sequence[str],
) -> None:
    """The Why expander for one row: the single point clicked on the map, else one chosen
    among the linked rows (or the whole pool when none are linked)."""
    st.subheader("Why")
    options = list(linked) or list(range(len(view)))
    if len(picks) == 1 and view.position[picks[0]] in options:
        clicked = view.position[picks[0]]
        if st.session_state.get("select_why_clicked") != clicked:
            st.session_state["select_why_clicked"] = clicked
            st.session_state[WHY_KEY] = clicked
    if st.session_state.get(WHY_KEY) not in options:
        # Set, not dropped: the browser would keep showing the old choice (the id is the key).
        st.session_state[WHY_KEY] = options[0]
    i = st.selectbox(
        "Why is this row selected or discarded?",
        options,
        format_func=lambda j: view.label(view.ids[j]),
        key=WHY_KEY,
        help="The row clicked on the map, or one of the linked rows.",
    )
    if i is None:
        return
    i = int(i)
    try:
        kernel, value_name = coverage_kernel(scores, view, settings)
    except DeliftError as exc:
        st.info(f"Cannot explain this selection yet: {layout.escape_md(exc)}")
        return
    coverage = row_coverage(kernel, i, shown.chosen)
    # Row i of the kernel says how well each row covers i: the columns of its transpose.
    covered = covers_best(kernel.T, i)
    signals = {}
    for name in ("quality score", *SIGNALS):
        if name in table.columns:
            signals[name] = float(table[name].iloc[i])
    status = str(table["status"].iloc[i])
    lines = why.why_lines(
        coverage,
        view.pool.records,
        shown.result.order,
        shown.result.gains,
        status,
        value_name=value_name,
        covered_best_by=covered,
        signals=signals,
    )
    with st.container(border=True, key="select_why_box"):
        for line in lines:
            st.text(line)


SIGNALS = ("help_logprob", "help_rms", "ifd_logprob", "ifd_rms", "self_utility", "max_similarity")
