"""run_selection, the one entry point of selection: the same picks as select_subset called with
the config's settings and the budget's count, for every method and stage, with pins, exclusions
and budgets; progress reported and cancellation honoured."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from delift_core import run_selection as public_run_selection
from delift_core.config import SelectionConfig
from delift_core.errors import CancelledError, ConfigError
from delift_core.select.run import run_selection
from delift_core.select.selection import SelectionInputs, select_subset
from delift_core.utility import Progress

N = 20


def random_inputs(seed: int, n: int = N) -> SelectionInputs:
    """Every part a method may use, drawn at random: utilities, embeddings and quality."""
    rng = np.random.default_rng(seed)

    def emb(rows: int) -> np.ndarray:
        e = rng.normal(size=(rows, 6)).astype(np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    return SelectionInputs(
        n,
        u_pool=rng.normal(size=(n, n)).astype(np.float32),
        u_targets=rng.normal(loc=1.0, size=(4, n)).astype(np.float32),
        u_existing=rng.normal(size=(n, 5)).astype(np.float32) - 0.5,
        emb_pool=emb(n),
        emb_targets=emb(4),
        emb_existing=emb(5),
        quality=rng.uniform(size=n),
    )


def direct(inputs: SelectionInputs, sel: SelectionConfig, count: int | None, **indices):
    """select_subset called by hand with the config's settings and a budget's count."""
    return select_subset(
        inputs, method=sel.method, stage=sel.stage, kernel=sel.kernel, seed=sel.seed,
        max_budget=count, quality_weight=sel.quality_weight, quality_gate=sel.quality_gate,
        **indices,
    )  # fmt: skip


def assert_same(got, want) -> None:
    assert (got.method, got.stage) == (want.method, want.stage)
    np.testing.assert_array_equal(got.order, want.order)
    np.testing.assert_array_equal(got.gains, want.gains)
    np.testing.assert_array_equal(got.objective, want.objective)


METHODS = ["delift", "delift-q", "delift-se", "fl-only", "random"]
STAGES = ["instruction", "task", "continual"]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("method", METHODS)
def test_same_picks_as_select_subset_for_a_fraction_budget(method, stage):
    inputs = random_inputs(1)
    sel = SelectionConfig(stage=stage, method=method, budget=0.3, kernel="clip", seed=3)
    got = run_selection(inputs, sel)
    assert got.size == 6  # round(0.3 * 20)
    assert_same(got, direct(inputs, sel, 6))


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("method", ["delift", "delift-q", "random"])
def test_same_picks_with_pins_exclusions_and_a_count(method, stage):
    inputs = random_inputs(2)
    sel = SelectionConfig(
        stage=stage, method=method, budget=7, seed=1, quality_weight=0.4, quality_gate=0.25
    )
    indices = {"pinned": [13, 4], "excluded": [0, 9, 17]}
    got = run_selection(inputs, sel, **indices)
    assert got.size == 7
    assert set(got.order[:2]) == {4, 13}
    assert not set(got.order) & {0, 9, 17}
    assert_same(got, direct(inputs, sel, 7, **indices))


def test_whole_order_is_the_full_greedy_of_every_budget():
    inputs = random_inputs(3)
    sel = SelectionConfig(stage="task", method="delift", budget=3)
    got = run_selection(inputs, sel, excluded=[5], whole_order=True)
    assert got.size == N - 1
    assert_same(got, direct(inputs, sel, None, excluded=[5]))
    # Any budget is a prefix of it.
    np.testing.assert_array_equal(run_selection(inputs, sel, excluded=[5]).order, got.order[:3])


def test_full_keeps_every_sample_not_excluded_whatever_the_budget():
    inputs = random_inputs(4)
    got = run_selection(inputs, SelectionConfig(method="full", budget=2), excluded=[1, 3])
    np.testing.assert_array_equal(got.order, np.setdiff1d(np.arange(N), [1, 3]))


def test_budget_is_raised_to_the_pins_and_capped_at_the_samples_not_excluded():
    inputs = random_inputs(5)
    pins = [2, 8, 11, 15]
    raised = run_selection(inputs, SelectionConfig(method="delift", budget=2), pinned=pins)
    assert raised.size == 4 and set(raised.order) == set(pins)
    excluded = list(range(15))
    capped = run_selection(inputs, SelectionConfig(method="delift", budget=18), excluded=excluded)
    np.testing.assert_array_equal(np.sort(capped.order), np.arange(15, N))


def test_errors_are_those_of_select_subset():
    inputs = random_inputs(6)
    with pytest.raises(ConfigError, match="unknown method 'best'"):
        run_selection(inputs, SelectionConfig(method="best"))
    with pytest.raises(ConfigError, match="both pinned and excluded"):
        run_selection(inputs, SelectionConfig(method="delift"), pinned=[1], excluded=[1])
    with pytest.raises(ConfigError, match="every sample is excluded"):
        run_selection(inputs, SelectionConfig(method="delift"), excluded=range(N))
    with pytest.raises(ConfigError, match="larger than the pool"):
        run_selection(inputs, SelectionConfig(method="delift", budget=N + 1))
    no_targets = SelectionInputs(N, u_pool=inputs.u_pool)
    with pytest.raises(ConfigError, match="u_targets"):
        run_selection(no_targets, SelectionConfig(stage="task", method="delift"))


def test_progress_reports_picks_done_of_picks_asked():
    seen: list[Progress] = []
    sel = SelectionConfig(stage="continual", method="delift", budget=0.5)
    result = run_selection(random_inputs(7), sel, progress=seen.append)
    assert [(p.done, p.total) for p in seen] == [(0, 10), (10, 10)]
    assert result.size == 10
    assert seen[0].eta_s is None and seen[-1].eta_s == 0.0
    assert all(p.elapsed_s >= 0 for p in seen)


def test_cancel_stops_before_the_method_runs():
    asked: list[bool] = []

    def cancel() -> bool:
        asked.append(True)
        return True

    seen: list[Progress] = []
    with pytest.raises(CancelledError, match="cancelled"):
        run_selection(
            random_inputs(8), SelectionConfig(method="delift"), progress=seen.append, cancel=cancel
        )
    assert asked == [True]
    assert [p.done for p in seen] == [0]  # nothing was selected
    result = run_selection(random_inputs(8), SelectionConfig(method="delift"), cancel=lambda: False)
    assert result.size == 6


def test_public_name_and_no_torch_for_selection_alone():
    assert public_run_selection is run_selection
    code = "import sys, delift_core.select.run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
