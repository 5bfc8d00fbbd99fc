"""Select page: stages, methods and budget with instant re-selection, the map, inspection and
saving a named selection."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from apptools import (
    assert_clean,
    chart_keys,
    demo_handle,
    frame,
    messages,
    page,
    score,
    services,
    with_data,
)

from delift_core.config import ScoringConfig
from delift_core.pipeline import load_stage
from delift_core.selection import SelectionInputs, select_subset
from ui import explain, plots, registry


def test_empty_state_without_scores():
    at = with_data(page("3_Select.py"), pool=demo_handle(6)).run()
    assert not at.exception
    assert any("No scores yet" in m for m in messages(at.info))


def test_budget_method_map_inspect_and_save():
    pool = demo_handle(6)
    key = score(pool)
    at = with_data(page("3_Select.py"), pool=pool).run()
    assert_clean(at)
    assert at.radio(key="select_stage").options == ["Instruction tuning (FL on the pool)"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Selected"] == "2 of 6"  # round(0.3 * 6)
    assert set(chart_keys(at)) == {"select_map", "select_curve"}

    # The page's pick order is DELIFT's greedy order on the stored matrix.
    cache, _ = services()
    stage = load_stage(cache, key)
    expected = select_subset(
        SelectionInputs(6, u_pool=stage.pool.rms), method="delift", stage="instruction"
    )
    at.slider(key="select_budget").set_value(0.5).run()
    assert {m.label: m.value for m in at.metric}["Selected"] == "3 of 6"
    value = float({m.label: m.value for m in at.metric}["Objective"])
    assert abs(value - expected.objective[2]) < 1e-3

    ids = [f"demo-{i + 1:04d}" for i in range(6)]
    first, outside = ids[expected.order[0]], ids[expected.order[5]]
    at.text_input(key="select_inspect").set_value(f"{first}, {outside}, nope").run()
    assert_clean(at)
    texts = messages(at.text)
    assert any(t.startswith(f"{first} · selected · rank 1") for t in texts)
    assert any(t.startswith(f"{outside} · not selected at this budget · rank 6") for t in texts)
    assert any("nope" in w for w in messages(at.warning))
    helps = frame(at, "id", "utility", "instruction")  # whom the first pick helps most
    assert len(helps) == 5 and first not in list(helps["id"])

    at.text_input(key="select_name").set_value("half").run()
    at.button(key="select_save").click().run()
    assert_clean(at)
    assert any("Saved 3 samples as half" in m for m in messages(at.success))
    indices, meta = registry.load_selection(cache, "half")
    np.testing.assert_array_equal(indices, expected.order[:3])
    assert meta["method"] == "delift" and meta["count"] == 3 and meta["stage_key"] == key

    at.selectbox(key="select_method").set_value("random").run()
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Objective"] == "n/a"
    assert "select_curve" not in chart_keys(at)


def test_task_stage_with_targets():
    pool, targets = demo_handle(6), demo_handle(3, offset=100)
    score(pool, targets=targets)
    at = with_data(page("3_Select.py"), pool=pool, targets=targets).run()
    assert_clean(at)
    assert at.radio(key="select_stage").value == "task"
    at.text_input(key="select_inspect").set_value("demo-0001").run()
    assert_clean(at)
    assert "Targets it helps most" in messages(at.caption)
    helps = frame(at, "id", "utility")
    assert set(helps["id"]) <= {"demo-0101", "demo-0102", "demo-0103"}


def test_selected_points_map_back_to_pool_indices():
    traces = [np.array([0, 2, 5]), np.array([1, 3, 4])]
    event = {
        "selection": {
            "points": [
                {"curve_number": 1, "point_index": 2},
                {"curve_number": 0, "point_index": 1, "customdata": 2},
                {"curve_number": 0, "point_index": 0, "customdata": [0]},
                {"curve_number": 1, "point_index": 2},
            ]
        }
    }
    assert plots.selected_indices(event, traces) == [4, 2, 0]
    assert plots.selected_indices(None, traces) == []


def test_sparse_continual_stage_and_inspection():
    pool, existing = demo_handle(8), demo_handle(3, offset=200)
    score(pool, existing=existing, config=ScoringConfig(mode="sparse", k=2))
    at = with_data(page("3_Select.py"), pool=pool, existing=existing).run()
    assert_clean(at)
    assert at.radio(key="select_stage").value == "continual"
    assert {m.label: m.value for m in at.metric}["Selected"] == "2 of 8"
    at.selectbox(key="select_method").set_value("delift-se").run()
    assert_clean(at)
    at.text_input(key="select_inspect").set_value("demo-0003").run()
    assert_clean(at)
    # Sparse rows hold only the scored candidates: at most k others besides the sample itself.
    helped = frame(at, "id", "utility")
    assert 1 <= len(helped) <= 2 and "demo-0003" not in list(helped["id"])


def test_top_entries_dense_and_sparse():
    dense = np.array([[0.5, -1.0, 2.0], [0.1, 0.0, np.nan], [3.0, 0.2, 0.3]])
    assert explain.top_entries(dense, 0, "row", k=2) == [(2, 2.0), (0, 0.5)]
    assert explain.top_entries(dense, 0, "col", exclude=0) == [(2, 3.0), (1, 0.1)]
    assert explain.top_entries(dense, 2, "col") == [(0, 2.0), (2, 0.3)]  # NaN is skipped
    sparse = sp.csr_matrix(np.array([[0.0, -0.5, 0.0], [0.25, 0.0, 0.0], [0.0, 0.75, 0.0]]))
    # Unstored entries were never scored: they are not listed as a utility of 0.
    assert explain.top_entries(sparse, 1, "col") == [(2, 0.75), (0, -0.5)]
    assert explain.top_entries(sparse, 0, "col") == [(1, 0.25)]
    assert explain.top_entries(sparse, 0, "row") == [(1, -0.5)]
