"""The words of the Select page's "Why" panel for one clicked sample: its place in the pick
order and the coverage facts of `delift_core.coverage.row_coverage`, as sentences a curator
reads without knowing the objective's formula (no Streamlit).

Sentences are plain text (sample texts are quoted as they are): show them with st.text or
escape them before Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from delift_core.coverage import RowCoverage
from ui.curation import EXCLUDED, PINNED, SELECTED
from ui.plots import shorten

SNIPPET = 60


def sample_name(position: int, records: Sequence[Any], snippet: int = SNIPPET) -> str:
    """'<id> ("<instruction, shortened>")' of a pool position."""
    record = records[position]
    return f'{record.id} ("{shorten(record.instruction, snippet)}")'


def _listed(entries: Sequence[tuple[int, float]], records: Sequence[Any], ranks: np.ndarray) -> str:
    parts = []
    for position, value in entries:
        rank = int(ranks[position])
        at = f", rank {rank + 1}" if rank >= 0 else ""
        parts.append(f"{sample_name(position, records)} ({value:.2f}{at})")
    return "; ".join(parts)


def why_lines(
    coverage: RowCoverage,
    records: Sequence[Any],
    order: np.ndarray,
    gains: np.ndarray,
    status: str,
    *,
    value_name: str = "similarity",
    covered_best_by: Sequence[tuple[int, float]] = (),
    signals: Mapping[str, float] | None = None,
) -> list[str]:
    """Sentences explaining why sample `coverage.index` is where it is.

    order / gains: the full pick order and its gains; status: the sample's status at this
    budget (ui.curation.STATUSES); value_name: what a kernel value means to the reader
    ("similarity" for embedding kernels, "help" for DELIFT's utility kernel); covered_best_by:
    the rows, selected or not, that cover it best, (position, value) largest first (e.g.
    `delift_core.coverage.covers_best` of the transposed kernel); signals: its quality signals
    by name, if known. The first sentence says the status and the main reason.
    """
    n = len(records)
    i = coverage.index
    ranks = np.full(n, -1, dtype=np.int64)
    ranks[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    rank = int(ranks[i])
    gain = float(gains[rank]) if rank >= 0 else float("nan")
    picked = f"rank {rank + 1} of the pick order" if rank >= 0 else "not in the pick order"
    with_gain = f", gain {gain:.4g}" if np.isfinite(gain) else ""
    cover = coverage.covered_by
    by = (
        f"{sample_name(cover[0], records)} (selected, rank {int(ranks[cover[0]]) + 1})"
        if cover
        else ""
    )

    lines = []
    if status in (SELECTED, PINNED):
        how = (
            "Pinned by you: always selected, picked before the greedy starts"
            if status == PINNED
            else "Selected"
        )
        lines.append(f"{how} ({picked}{with_gain}).")
        if coverage.represents_count:
            lines.append(
                f"It is the best selected cover of {coverage.represents_count:,} other "
                f"sample{'s' if coverage.represents_count != 1 else ''}, most of all: "
                f"{_listed(coverage.represents, records, ranks)}."
            )
        else:
            lines.append(
                "No other sample has it as its best selected cover: it is in the subset for "
                "what it adds on its own (or because you pinned it, or for its quality)."
            )
    elif status == EXCLUDED:
        lines.append(f"Excluded by you: never selected ({picked}).")
        if cover:
            lines.append(f"{by} covers it with {value_name} {cover[1]:.2f}.")
    else:
        if cover:
            lines.append(f"Discarded: {by} already covers it with {value_name} {cover[1]:.2f}.")
        else:
            lines.append(
                f"Discarded: no selected sample covers it ({value_name} 0 with every one), but "
                "the budget ran out before its turn."
            )
        lines.append(
            f"It comes at {picked}{with_gain}." if rank >= 0 else "It is not in the pick order."
        )
        lines.append(
            f"Adding it now would add {coverage.gain:.4g} to the pool's coverage "
            "(facility location)."
        )
    if coverage.covers:
        lines.append(f"It covers best: {_listed(coverage.covers, records, ranks)}.")
    if covered_best_by:
        lines.append(
            "The rows that cover it best, selected or not: "
            f"{_listed(covered_best_by, records, ranks)}."
        )
    if signals:
        known = [f"{k} {v:.3g}" for k, v in signals.items() if np.isfinite(v)]
        if known:
            lines.append(f"Quality signals: {', '.join(known)}.")
    return lines
