"""Select page: stages, methods and budget (a fraction or a count) with instant re-selection,
the map, inspection (a table, one sample in full, kept across reruns), the quality table and
saving a named selection."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
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
    wait_for_jobs,
    with_data,
)

from delift_core.config import (
    DEFAULT_METHOD,
    DEFAULT_QUALITY_GATE,
    DEFAULT_QUALITY_SIGNAL,
    DEFAULT_QUALITY_WEIGHT,
    ScoringConfig,
    SelectionConfig,
)
from delift_core.data.dataset import dataset_from_rows
from delift_core.errors import ConfigError
from delift_core.pipeline import list_stages, load_stage, save_stage
from delift_core.quality import quality_score, quality_signals
from delift_core.select.selection import SelectionInputs, objective_value, select_subset
from ui import explain, plots, registry, state, tasks


def test_empty_state_without_scores():
    at = with_data(page("3_Select.py"), pool=demo_handle(6)).run()
    assert not at.exception
    assert any("No scores yet" in m for m in messages(at.info))


def test_budget_method_map_inspect_and_save():
    pool = demo_handle(6)
    key = score(pool, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool).run()
    assert_clean(at)
    assert at.radio(key="select_stage").options == ["Instruction tuning (FL on the pool)"]
    how = [c for c in messages(at.caption) if c.startswith("Other stages")]
    assert how and "load a target set on Data" in how[0] and "load an existing set" in how[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Selected"] == "2 of 6"  # round(0.3 * 6)
    assert set(chart_keys(at)) == {"select_map", "select_curve", "select_quality_chart"}

    # With method delift, the page's pick order is DELIFT's greedy order on the stored matrix.
    at.selectbox(key="select_method").set_value("delift").run()
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
    inspected = frame(at, "id", "status", "rank", "gain").set_index("id")
    assert list(inspected.index) == [first, outside]
    assert inspected.loc[first, "status"] == "selected" and inspected.loc[first, "rank"] == 1
    assert inspected.loc[outside, "status"] == "not selected at this budget"
    assert inspected.loc[outside, "rank"] == 6
    assert inspected.loc[first, "gain"] == pytest.approx(expected.gains[0], rel=1e-6)
    # The first sample is shown in full.
    assert any(t.startswith(f"{first} · selected · rank 1") for t in messages(at.text))
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
    # Saving under a taken name needs an explicit tick; nothing is replaced before it.
    at.slider(key="select_budget").set_value(0.3).run()
    assert at.button(key="select_save").disabled
    assert registry.load_selection(cache, "half")[1]["count"] == 3
    at.checkbox(key="select_replace_saved").check().run()
    at.button(key="select_save").click().run()
    assert registry.load_selection(cache, "half")[1]["count"] == 2
    at.slider(key="select_budget").set_value(0.5).run()

    # Random maximises nothing: its subset is scored once with DELIFT's objective of the stage.
    at.selectbox(key="select_method").set_value("random").run()
    assert_clean(at)
    inputs = SelectionInputs(6, u_pool=stage.pool.rms)
    subset = select_subset(inputs, method="random", stage="instruction").take(3)
    metrics = {m.label: m.value for m in at.metric}
    value = objective_value(inputs, subset, method="delift", stage="instruction")
    assert metrics["Objective"] == f"{value:.4f}"
    whole = objective_value(inputs, np.arange(6), method="delift", stage="instruction")
    assert metrics["Share of the objective of the full order"] == f"{value / whole:.1%}"
    assert "select_curve" not in chart_keys(at)


def test_task_stage_with_targets():
    pool, targets = demo_handle(6), demo_handle(3, offset=100)
    key = score(pool, targets=targets, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool, targets=targets).run()
    assert_clean(at)
    assert at.radio(key="select_stage").value == "task"
    how = [c for c in messages(at.caption) if c.startswith("Other stages")]
    assert how and "target set" not in how[0] and "existing set" in how[0]
    at.text_input(key="select_inspect").set_value("demo-0001").run()
    assert_clean(at)
    assert "Targets it helps most" in messages(at.caption)
    helps = frame(at, "id", "utility")
    assert set(helps["id"]) <= {"demo-0101", "demo-0102", "demo-0103"}

    # Random's objective is DELIFT's of this stage: FLMI with the targets.
    at.selectbox(key="select_method").set_value("random").run()
    assert_clean(at)
    stage = load_stage(services()[0], key)
    inputs = SelectionInputs(6, u_pool=stage.pool.rms, u_targets=stage.targets.rms)
    subset = select_subset(inputs, method="random", stage="task").take(2)
    value = objective_value(inputs, subset, method="delift", stage="task")
    assert {m.label: m.value for m in at.metric}["Objective"] == f"{value:.4f}"


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
    key = score(pool, existing=existing, config=ScoringConfig(mode="sparse", k=2), with_map=True)
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
    # Random's objective is evaluated on the sparse kernel too (FLCG with the existing set).
    at.selectbox(key="select_method").set_value("random").run()
    assert_clean(at)
    stage = load_stage(services()[0], key)
    inputs = SelectionInputs(8, u_pool=stage.pool.rms, u_existing=stage.existing.rms)
    assert sp.issparse(inputs.u_pool)
    subset = select_subset(inputs, method="random", stage="continual").take(2)
    value = objective_value(inputs, subset, method="delift", stage="continual")
    assert {m.label: m.value for m in at.metric}["Objective"] == f"{value:.4f}"


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


def _figure(at, key: str) -> dict:
    """The Plotly figure (as JSON) of the chart with this key."""
    for element in at.main:
        if getattr(element, "type", None) == "plotly_chart" and element.key == key:
            return json.loads(element.proto.spec)
    raise AssertionError(f"no chart {key!r}")


def _array(value: object) -> np.ndarray:
    """A figure's data array: a list, or the typed base64 form Plotly writes for numpy arrays."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(d) for d in shape.split(",")]) if shape else flat
    return np.asarray(value)


def _expected_default_order(key: str, n: int) -> np.ndarray:
    """The default method's pick order with the default quality prior, from the library."""
    cache, _ = services()
    stage = load_stage(cache, key)
    pool = registry.load_source(demo_handle(n)["spec"], cache)
    signals = quality_signals(
        stage.answers, stage.pool.rms, registry.cached_embeddings(cache, pool)
    )
    quality = quality_score(signals, DEFAULT_QUALITY_SIGNAL)
    inputs = SelectionInputs(n, u_pool=stage.pool.rms, quality=quality)
    return select_subset(inputs, method=DEFAULT_METHOD, stage="instruction").order


def test_default_method_quality_table_histogram_and_saved_prior():
    pool = demo_handle(8)
    key = score(pool, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool).run()
    assert_clean(at)
    method = at.selectbox(key="select_method")
    assert method.value == DEFAULT_METHOD and method.options[0] == DEFAULT_METHOD
    assert {m.label: m.value for m in at.metric}["Selected"] == "2 of 8"

    table = frame(at, "id", "status", "rank", "quality score", "instruction")
    assert len(table) == 8 and table["id"].is_unique
    assert table["quality score"].between(0, 1).all()
    # The demo's own label fields come along, so poor rows can be checked against the score.
    assert {"help_logprob", "ifd_rms", "max_similarity", "quality", "family"} <= set(table)
    assert set(table["quality"]) <= {"good", "poor", "near-duplicate"}
    order = _expected_default_order(key, 8)
    ids = np.array([f"demo-{i + 1:04d}" for i in range(8)])
    selected = table[table["status"] == "selected"]
    assert set(selected["id"]) == set(ids[order[:2]])
    assert sorted(selected["rank"].tolist()) == [1, 2]
    assert table.set_index("id").loc[ids[order[7]], "rank"] == 8

    at.selectbox(key="select_quality_hist").set_value("help_rms").run()
    assert_clean(at)
    bars = _figure(at, "select_quality_chart")["data"]
    assert [b["name"].split(" ")[0] for b in bars] == ["selected", "discarded"]
    assert sum(_array(b["y"]).sum() for b in bars) == 8

    at.button(key="select_save").click().run()
    assert_clean(at)
    cache, _ = services()
    name = f"{DEFAULT_METHOD}-instruction-25pct"
    indices, meta = registry.load_selection(cache, name)
    np.testing.assert_array_equal(indices, order[:2])
    assert meta["method"] == DEFAULT_METHOD
    assert meta["quality_weight"] == DEFAULT_QUALITY_WEIGHT
    assert meta["quality_gate"] == DEFAULT_QUALITY_GATE
    assert meta["quality_signal"] == DEFAULT_QUALITY_SIGNAL


def test_quality_settings_reach_delift_q():
    pool = demo_handle(8)
    key = score(pool, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool).run()
    at.selectbox(key="select_method").set_value("delift-q").run()
    at.number_input(key="select_quality_weight").set_value(0.0).run()
    at.slider(key="select_quality_gate").set_value(0.0).run()
    at.selectbox(key="select_quality_signal").set_value("ifd_rms").run()
    assert_clean(at)
    # No weight and no gate: the prior is off and delift-q picks exactly as delift.
    cache, _ = services()
    delift = select_subset(
        SelectionInputs(8, u_pool=load_stage(cache, key).pool.rms),
        method="delift",
        stage="instruction",
    )
    table = frame(at, "id", "status", "rank", "quality score")
    ids = np.array([f"demo-{i + 1:04d}" for i in range(8)])
    ranked = table.dropna(subset=["rank"]).sort_values("rank")
    assert list(ranked["id"]) == list(ids[delift.order])
    at.button(key="select_save").click().run()
    meta = registry.load_selection(cache, "delift-q-instruction-25pct")[1]
    assert (meta["quality_weight"], meta["quality_gate"]) == (0.0, 0.0)
    assert meta["quality_signal"] == "ifd_rms"


def test_map_coloured_by_a_categorical_field():
    pool = demo_handle(12)
    score(pool, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool).run()
    assert_clean(at)
    colour = at.selectbox(key="select_map_colour")
    assert colour.value == "selection"
    # Any column of the per-row table: the pool's fields, length, the selection's rank and gain,
    # the quality score and signals (self-utility among them).
    expected = {"selection", "quality", "family", "length", "rank", "gain", "quality score"}
    assert expected | {"self_utility", "help_rms"} <= set(colour.options)
    assert len(_figure(at, "select_map")["data"]) == 2  # selected and discarded

    colour.set_value("quality").run()
    assert_clean(at)
    table = frame(at, "id", "status", "quality score", "quality")
    pairs = set(zip(table["quality"], table["status"], strict=True))
    traces = _figure(at, "select_map")["data"]
    # One trace per (category, status) present; one legend entry per category.
    assert len(traces) == len(pairs)
    assert {t["legendgroup"] for t in traces} == set(table["quality"])
    assert sum(t.get("showlegend", True) for t in traces) == table["quality"].nunique()
    shown = sorted(int(i) for t in traces for i in _array(t["customdata"]))
    assert shown == list(range(12))
    filled = [t for t in traces if t["marker"]["symbol"] == "circle"]
    assert sum(len(_array(t["x"])) for t in filled) == int((table["status"] == "selected").sum())


def test_stage_scored_without_answer_scores_asks_to_score_again():
    pool = demo_handle(6)
    key = score(pool, with_map=True)
    cache, _ = services()
    # A stage as older versions stored it: the matrices but no answer scores.
    old_key = "old" + key[3:]
    # Its own creation time, so that the Scores list tells the two stages apart.
    meta = {**dict(list_stages(cache))[key], "created": "2020-01-01 00:00:00"}
    save_stage(cache, old_key, replace(load_stage(cache, key), answers=None), meta)
    assert registry.pool_quality(cache, old_key, meta) is None
    try:
        registry.full_selection(
            cache,
            old_key,
            meta,
            method="delift-q",
            stage="instruction",
            kernel="minmax",
            metric="rms",
            seed=0,
        )
    except ConfigError as exc:
        assert "score the pool again" in str(exc)
    else:
        raise AssertionError("delift-q ran without quality signals")

    at = with_data(page("3_Select.py"), pool=pool)
    at.session_state[state.STAGE_KEY] = old_key
    at.run()
    assert not at.exception
    assert any("score the pool again" in w for w in messages(at.warning))
    at.selectbox(key="select_method").set_value("delift").run()
    assert_clean(at)
    assert any("No quality signals" in m for m in messages(at.info))


def test_extra_fields_categories_and_quality_table():
    rows = [
        {"instruction": f"q{i}", "output": "a", "quality": q, "note": f"free text {i}", "n": i}
        for i, q in enumerate(["good", "poor", "good"])
    ]
    rows[1]["tags"] = ["x"]  # not text: never a column
    rows[2]["family"] = "maths"  # present in one record only: "(missing)" elsewhere
    records = dataset_from_rows(rows).records
    extra = explain.extra_fields(records, exclude=["note"])
    assert extra == ["quality", "family"]
    assert explain.field_values(records, "family") == ["(missing)", "(missing)", "maths"]
    assert explain.categorical_fields(records, ["quality", "note"], max_values=2) == ["quality"]

    signals = {"help_logprob": np.array([0.5, -0.2, 0.1]), "max_similarity": np.full(3, np.nan)}
    table = explain.quality_table(
        records, signals, np.array([1.0, 0.0, 0.5]), np.array([2, 0]), 1, extra
    )
    assert list(table["status"]) == ["discarded", "discarded", "selected"]
    assert table["rank"].tolist()[0] == 2 and table["rank"].isna().tolist() == [False, True, False]
    assert list(table["quality"]) == ["good", "poor", "good"]
    assert table["max_similarity"].isna().all()


def _delift_order(key: str, n: int, **marks: list[int]) -> np.ndarray:
    """DELIFT's pick order on the stored matrix, with the given pins and exclusions."""
    cache, _ = services()
    inputs = SelectionInputs(n, u_pool=load_stage(cache, key).pool.rms)
    return select_subset(inputs, method="delift", stage="instruction", **marks).order


def test_pinned_first_excluded_never_and_saved_with_the_selection():
    pool = demo_handle(8)
    key = score(pool, with_map=True)
    ids = [f"demo-{i + 1:04d}" for i in range(8)]
    plain = _delift_order(key, 8)
    # Pin the two samples DELIFT would pick last; exclude the one it would pick first.
    pins, out = [int(plain[7]), int(plain[6])], int(plain[0])
    at = with_data(page("3_Select.py"), pool=pool).run()
    at.selectbox(key="select_method").set_value("delift")
    at.slider(key="select_budget").set_value(0.5)
    at.multiselect(key="select_pinned").set_value([ids[i] for i in pins])
    at.multiselect(key="select_excluded").set_value([ids[out]]).run()
    assert_clean(at)
    selected = next(m for m in at.metric if m.label == "Selected")
    assert selected.value == "4 of 8" and selected.delta == "2 pinned · 1 excluded"
    assert at.button(key="select_pin_picked").disabled  # nothing selected on the map yet
    expected = _delift_order(key, 8, pinned=sorted(pins), excluded=[out])
    assert set(expected[:2].tolist()) == set(pins) and out not in expected

    # The map marks them: a pinned and an excluded overlay, on top of the two base traces.
    traces = _figure(at, "select_map")["data"]
    marks = {t["name"].split(" ")[0]: set(_array(t["customdata"]).tolist()) for t in traces[2:]}
    assert marks == {"pinned": set(pins), "excluded": {out}}
    at.text_input(key="select_inspect").set_value(f"{ids[out]}, {ids[pins[0]]}").run()
    inspected = frame(at, "id", "status", "rank", "gain").set_index("id")
    assert inspected.loc[ids[out], "status"] == "excluded"
    assert inspected["rank"].isna().tolist() == [True, False]
    assert inspected.loc[ids[pins[0]], "status"] == "selected (pinned)"
    assert any(t.startswith(f"{ids[out]} · excluded · rank -") for t in messages(at.text))

    at.text_input(key="select_name").set_value("curated").run()
    at.button(key="select_save").click().run()
    assert_clean(at)
    cache, _ = services()
    indices, meta = registry.load_selection(cache, "curated")
    np.testing.assert_array_equal(indices, expected[:4])
    assert set(indices[:2].tolist()) == set(pins) and out not in indices
    assert meta["pinned_ids"] == [ids[i] for i in pins] and meta["excluded_ids"] == [ids[out]]
    # ... and the Export page's manifest carries them (written under the test's cwd).
    export = with_data(page("5_Export.py"), pool=pool)
    export.query_params["workspace"] = at.session_state["workspace"]  # where it was saved
    export.run()
    export.button(key="export_write").click().run()
    assert_clean(export)
    manifest = json.loads((Path.cwd() / "out" / "curated.manifest.json").read_text())
    assert manifest["pinned_ids"] == meta["pinned_ids"]
    assert manifest["excluded_ids"] == [ids[out]]

    # The choices persist across reruns, and are dropped when another pool is scored.
    at.run()
    assert at.multiselect(key="select_pinned").value == [ids[i] for i in pins]
    at.session_state["select_marks_pool"] = "another pool"
    at.run()
    assert_clean(at)
    assert at.multiselect(key="select_pinned").value == []
    assert at.multiselect(key="select_excluded").value == []


def test_more_pins_than_the_budget_raise_the_count_with_a_warning():
    pool = demo_handle(8)
    score(pool, with_map=True)
    ids = [f"demo-{i + 1:04d}" for i in range(8)]
    at = with_data(page("3_Select.py"), pool=pool).run()
    at.multiselect(key="select_pinned").set_value(ids[:3]).run()  # budget: round(0.3 * 8) = 2
    assert not at.exception and not at.error
    assert any("3 samples are pinned but the budget is 2" in w for w in messages(at.warning))
    assert {m.label: m.value for m in at.metric}["Selected"] == "3 of 8"
    at.button(key="select_save").click().run()
    cache, _ = services()
    indices, meta = registry.load_selection(cache, f"{DEFAULT_METHOD}-instruction-38pct")
    assert sorted(indices.tolist()) == [0, 1, 2] and meta["count"] == 3

    # Excluding leaves fewer samples than the budget asks for: the count is capped.
    at.slider(key="select_budget").set_value(1.0)
    at.multiselect(key="select_excluded").set_value(ids[5:]).run()
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Selected"] == "5 of 8"
    assert any("capped at the 5 samples not excluded" in c for c in messages(at.caption))


def test_a_sample_both_pinned_and_excluded_is_neither_with_a_warning():
    pool = demo_handle(6)
    key = score(pool, with_map=True)
    ids = [f"demo-{i + 1:04d}" for i in range(6)]
    at = with_data(page("3_Select.py"), pool=pool).run()
    at.selectbox(key="select_method").set_value("delift")
    at.multiselect(key="select_pinned").set_value([ids[0], ids[1]])
    at.multiselect(key="select_excluded").set_value([ids[1]]).run()
    assert not at.exception and not at.error
    warnings = [w for w in messages(at.warning) if "both pinned and excluded" in w]
    assert len(warnings) == 1 and "0002" in warnings[0] and "0001" not in warnings[0]
    selected = next(m for m in at.metric if m.label == "Selected")
    assert selected.value == "2 of 6" and selected.delta == "1 pinned"
    at.text_input(key="select_name").set_value("torn").run()
    at.button(key="select_save").click().run()
    cache, _ = services()
    indices, meta = registry.load_selection(cache, "torn")
    np.testing.assert_array_equal(indices, _delift_order(key, 6, pinned=[0])[:2])
    assert meta["pinned_ids"] == [ids[0]] and meta["excluded_ids"] == []


def test_add_marks_moves_ids_between_pins_and_exclusions():
    pins, outs = explain.add_marks(["a", "b"], ["c", "d"], ["d", "a", "e"])
    assert pins == ["a", "b", "d", "e"] and outs == ["c"]
    assert explain.add_marks([], ["x"], []) == ([], ["x"])


def _pick_on_map(at, indices: list[int]):
    """Run the page as the browser does after points are clicked or box-selected on the map: the
    chart's selection comes back as its widget state (AppTest has no Plotly widget to set)."""
    charts = [e for e in at.main if getattr(e, "type", None) == "plotly_chart"]
    chart = next(e for e in charts if e.key == "select_map")
    states = at._tree.get_widget_states()
    points = [{"customdata": int(i)} for i in indices]
    selection = {"points": points, "point_indices": [], "box": [], "lasso": []}
    states.widgets.add(id=chart.proto.id, string_value=json.dumps({"selection": selection}))
    return at._run(widget_state=states)


def test_map_picks_are_one_table_and_one_card_and_outlive_a_new_budget():
    pool = demo_handle(12)
    key = score(pool, with_map=True)
    ids = [f"demo-{i + 1:04d}" for i in range(12)]
    at = with_data(page("3_Select.py"), pool=pool).run()
    at.selectbox(key="select_method").set_value("delift").run()
    assert at.button(key="select_pin_picked").disabled
    _pick_on_map(at, list(range(8)))
    assert_clean(at)
    # One row per picked sample, and one sample in full (not eight stacked cards).
    table = frame(at, "id", "status", "rank", "gain")
    assert list(table["id"]) == ids[:8]
    assert sum(t.startswith("Instruction: ") for t in messages(at.text)) == 1
    assert sum("utility" in d.value.columns for d in at.dataframe) == 2  # its two helper tables
    assert len(at.selectbox(key="select_inspect_one").options) == 8
    assert not at.button(key="select_pin_picked").disabled

    # A new budget redraws the map, which then sends no selection: the picks stay.
    at.slider(key="select_budget").set_value(0.5).run()
    assert_clean(at)
    table = frame(at, "id", "status", "rank", "gain")
    assert list(table["id"]) == ids[:8]
    order = _delift_order(key, 12)
    within = {ids[i] for i in order[:6]}
    assert {i for i, s in zip(table["id"], table["status"], strict=True) if s == "selected"} == (
        within & set(ids[:8])
    )
    assert not at.button(key="select_pin_picked").disabled
    at.selectbox(key="select_inspect_one").set_value(3).run()
    assert any(t.startswith(f"{ids[3]} · ") for t in messages(at.text))
    at.text_input(key="select_inspect").set_value(ids[10]).run()
    assert list(frame(at, "id", "status", "rank", "gain")["id"]) == [ids[10], *ids[:8]]

    # Clear forgets both; the next selection on the map replaces earlier picks.
    at.button(key="select_inspect_clear").click().run()
    assert_clean(at)
    assert not any("gain" in d.value.columns for d in at.dataframe)
    assert any("Nothing to inspect yet" in c for c in messages(at.caption))
    _pick_on_map(at, [11])
    assert list(frame(at, "id", "status", "rank", "gain")["id"]) == [ids[11]]


def test_rank_and_gain_are_explained():
    pool = demo_handle(8)
    key = score(pool, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool).run()
    at.selectbox(key="select_method").set_value("delift")
    at.text_input(key="select_inspect").set_value("demo-0001").run()
    assert_clean(at)
    note = next(c for c in messages(at.caption) if "rank = " in c)
    assert "order in which the greedy picked" in note and "first pick" in note
    assert "from nothing" in note
    table = next(d for d in at.dataframe if "gain" in d.value.columns)
    config = json.loads(table.proto.columns)
    assert config["gain"]["help"] == explain.GAIN_HELP
    assert config["rank"]["help"] == explain.RANK_HELP
    quality = next(d for d in at.dataframe if "quality score" in d.value.columns)
    assert json.loads(quality.proto.columns)["rank"]["help"] == explain.RANK_HELP
    assert "first pick covers the pool from nothing" in explain.GAIN_HELP
    # The explanation matches the numbers: the first gain is the largest.
    gains = select_subset(
        SelectionInputs(8, u_pool=load_stage(services()[0], key).pool.rms),
        method="delift",
        stage="instruction",
    ).gains
    assert gains[0] == gains.max()


def test_fl_only_is_noted_as_delift_in_the_instruction_stage():
    pool, targets = demo_handle(6), demo_handle(3, offset=100)
    score(pool, targets=targets, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool, targets=targets).run()
    at.selectbox(key="select_method").set_value("fl-only").run()
    assert_clean(at)
    assert at.radio(key="select_stage").value == "task"
    how = [c for c in messages(at.caption) if c.startswith("Other stages")]
    assert how and "target set" not in how[0] and "existing set" in how[0]

    def noted() -> bool:
        return any("delift and fl-only are the same method" in c for c in messages(at.caption))

    def ranked() -> list[str]:
        table = frame(at, "id", "status", "rank", "quality score")
        return list(table.dropna(subset=["rank"]).sort_values("rank")["id"])

    assert not noted()  # FLMI with the targets against plain FL: they differ here
    at.radio(key="select_stage").set_value("instruction").run()
    assert_clean(at)
    assert noted()
    fl_only = ranked()
    at.selectbox(key="select_method").set_value("delift").run()
    assert noted() and ranked() == fl_only  # the same by construction
    at.selectbox(key="select_method").set_value("delift-se").run()
    assert not noted()


def test_budget_as_a_count():
    pool = demo_handle(8)
    score(pool, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool).run()
    assert_clean(at)
    assert at.radio(key="select_budget_mode").value == "fraction"
    assert {m.label: m.value for m in at.metric}["Selected"] == "2 of 8"
    at.radio(key="select_budget_mode").set_value("count").run()
    assert_clean(at)
    count = at.number_input(key="select_budget_count")
    assert count.value == SelectionConfig().budget_count(8) == 2
    assert count.max == 8
    count.set_value(5).run()
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Selected"] == "5 of 8"
    at.button(key="select_save").click().run()
    assert_clean(at)
    indices, meta = registry.load_selection(services()[0], f"{DEFAULT_METHOD}-instruction-5")
    assert len(indices) == 5 and meta["count"] == 5 and meta["fraction"] is None

    # Back to a fraction: the slider kept its value while hidden.
    at.radio(key="select_budget_mode").set_value("fraction").run()
    assert at.slider(key="select_budget").value == 0.3
    assert {m.label: m.value for m in at.metric}["Selected"] == "2 of 8"


def test_inspection_table_rows_follow_the_order_given():
    records = dataset_from_rows([{"instruction": f"q{i}", "output": "a"} for i in range(5)]).records
    order, gains = np.array([2, 0, 1, 3]), np.array([4.0, 0.5, 0.25, 0.0])  # 4 is excluded
    table = explain.inspection_table(
        records, [4, 1, 2], order, gains, 2, pinned=[2], excluded=[4], quality=np.arange(5) / 4
    )
    assert list(table["id"]) == [records[i].id for i in (4, 1, 2)]
    assert list(table["status"]) == ["excluded", "not selected at this budget", "selected (pinned)"]
    assert table["rank"].isna().tolist() == [True, False, False]
    assert table["rank"].tolist()[1:] == [3, 1]
    assert np.isnan(table["gain"][0]) and table["gain"].tolist()[1:] == [0.25, 4.0]
    assert table["quality score"].tolist() == [1.0, 0.25, 0.5]
    assert "quality score" not in explain.inspection_table(records, [0], order, gains, 2)


def test_select_says_the_map_is_on_its_way_then_shows_it(monkeypatch):
    """A run on the Score page saves its scores first; the map follows as a job of its own,
    and Select says so (no error, no second map job) until the map is ready."""
    real_maps, gate = tasks.compute_maps, threading.Event()

    def held_maps(ctx, cache, datasets):
        gate.wait(60)  # the map is still being computed while the pages are looked at
        real_maps(ctx, cache, datasets)

    monkeypatch.setattr(tasks, "compute_maps", held_maps)
    pool = demo_handle(6)
    _, manager = services()
    at = with_data(page("2_Score.py"), pool=pool).run()
    wait_for_jobs()  # the page's own speed measurement
    at.button(key="score_start").click().run()
    (scored,) = manager.list_jobs(kind=tasks.SCORE)
    assert manager.wait(scored.id, timeout=120).state == "done"
    (mapped,) = manager.list_jobs(kind=tasks.MAP)
    assert mapped.params["after"] == scored.id
    deadline = time.monotonic() + 30
    while manager.snapshot(mapped.id).state == "queued" and time.monotonic() < deadline:
        time.sleep(0.02)
    at.run()
    assert_clean(at)
    assert "The scores of the data loaded now are ready (pool)." in messages(at.success)
    assert any("map of the pool is being computed" in c for c in messages(at.caption))

    at.switch_page("pages/3_Select.py").run()
    assert_clean(at)
    assert any("The map is being computed" in m for m in messages(at.info))
    assert "select_map" not in chart_keys(at)
    assert len(manager.list_jobs(kind=tasks.MAP)) == 1  # Select waits for it, starts no other
    gate.set()
    assert manager.wait(mapped.id, timeout=120).state == "done"
    at.run()
    assert_clean(at)
    assert "select_map" in chart_keys(at)
    assert not any("The map is being computed" in m for m in messages(at.info))
