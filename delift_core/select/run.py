"""The one entry point of selection: what a stage gives (SelectionInputs: its matrices,
embeddings and quality scores, built from a scored stage by pipeline.selection_inputs) and a
SelectionConfig in, a SelectionResult out. The CLI, the app and the evaluation all select
through `run_selection`; `select_subset` (selection.py) stays the method registry it runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from delift_core.config import SelectionConfig, selection_size
from delift_core.errors import CancelledError
from delift_core.select.selection import select_subset
from delift_core.select.selection_types import SelectionInputs, SelectionResult

if TYPE_CHECKING:
    from delift_core.utility import CancelFn, ProgressFn

__all__ = ["run_selection"]


def run_selection(
    inputs: SelectionInputs,
    selection: SelectionConfig,
    *,
    pinned: Sequence[int] = (),
    excluded: Sequence[int] = (),
    whole_order: bool = False,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> SelectionResult:
    """Select from `inputs` with the method, stage, kernel, seed and delift-q's priors (quality
    weight and gate, side weight, duplicate threshold) of `selection`. Its metric and quality signal are those the inputs were built with
    (pipeline.selection_inputs).

    The result holds the budget's picks: config.selection_size of `selection.budget` (at most
    the samples not excluded, at least the pinned ones; "full": every sample not excluded).
    whole_order: the complete pick order instead, every budget a prefix of it (for a view of
    many budgets). pinned / excluded: pool indices picked first / never picked (select_subset).

    progress (utility.ProgressFn) hears picks done of picks asked: none before the method runs,
    all after. cancel (utility.CancelFn, e.g. jobs.JobContext.cancelled) is asked before the
    method runs: CancelledError when it is true (a greedy under way is not interrupted).
    ConfigError, with the fix, when the budget, method, stage or inputs do not fit.
    """
    available = inputs.n - len(set(excluded))
    if whole_order or selection.method == "full":
        max_budget, total = None, available
    else:
        size = selection_size(
            selection.budget, inputs.n, available=available, pinned=len(set(pinned)),
            method=selection.method,
        )  # fmt: skip
        max_budget = total = size.count
    started = time.perf_counter()
    _report(progress, 0, total, started)
    if cancel is not None and cancel():
        raise CancelledError("selection was cancelled before it started")
    result = select_subset(
        inputs, method=selection.method, stage=selection.stage, kernel=selection.kernel,
        seed=selection.seed, max_budget=max_budget, quality_weight=selection.quality_weight,
        quality_gate=selection.quality_gate, pinned=pinned, excluded=excluded,
        side_weight=selection.side_weight, duplicate_threshold=selection.duplicate_threshold,
    )  # fmt: skip
    _report(progress, result.size, result.size, started)
    return result


def _report(progress: ProgressFn | None, done: int, total: int, started: float) -> None:
    if progress is None:
        return
    # Imported here: the utility engine loads torch, which selection without progress never needs.
    from delift_core.utility import Progress

    elapsed = time.perf_counter() - started
    progress(Progress(done, total, 0, elapsed, 0.0 if done == total else None))
