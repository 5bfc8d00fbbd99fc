"""Select page: delift-q's priors from sentence embeddings (side weight, near-duplicate gate)
reach the selection and the saved record, and ask to wait while the embeddings are computed."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from apptools import assert_clean, demo_handle, frame, messages, page, score, services, with_data

from delift_core.config import (
    DEFAULT_DUPLICATE_THRESHOLD,
    DEFAULT_QUALITY_SIGNAL,
    DEFAULT_SIDE_WEIGHT,
)
from delift_core.errors import ConfigError
from delift_core.pipeline import load_stage, selection_inputs
from delift_core.select.selection import select_subset
from ui import registry, tasks

WAITING = "still being computed"


def _inputs(key: str, pool: dict, targets: dict):
    """The stage's selection inputs with the embeddings the map job stored."""
    cache, _ = services()
    emb = {
        name: registry.cached_embeddings(cache, registry.load_source(handle["spec"], cache))
        for name, handle in (("emb_pool", pool), ("emb_targets", targets))
    }
    assert all(e is not None for e in emb.values())
    stage = load_stage(cache, key)
    return selection_inputs(stage, "rms", quality_signal=DEFAULT_QUALITY_SIGNAL, **emb)


def _order(inputs, **priors) -> list[int]:
    """delift-q's order in the task stage with none of its priors but these (not the defaults)."""
    options = {"quality_weight": 0.0, "quality_gate": 0.0, "side_weight": 0.0,
               "duplicate_threshold": None, **priors}  # fmt: skip
    return select_subset(inputs, method="delift-q", stage="task", **options).order.tolist()


def _page_order(at, n: int) -> list[int]:
    """The pick order the page shows: the per-row table's ids by rank, as pool indices."""
    table = frame(at, "id", "status", "rank", "quality score")
    ranked = table.dropna(subset=["rank"]).sort_values("rank")
    ids = [f"demo-{i + 1:04d}" for i in range(n)]
    return [ids.index(i) for i in ranked["id"]]


def test_side_weight_and_duplicate_gate_reach_delift_q_and_are_saved():
    n = 8
    pool, targets = demo_handle(n), demo_handle(3, offset=100)
    key = score(pool, targets=targets, with_map=True)
    at = with_data(page("3_Select.py"), pool=pool, targets=targets).run()
    assert_clean(at)
    assert at.radio(key="select_stage").value == "task"
    # The widgets start on the library's defaults.
    assert at.number_input(key="select_side_weight").value == DEFAULT_SIDE_WEIGHT
    assert at.checkbox(key="select_duplicate_gate").value == (
        DEFAULT_DUPLICATE_THRESHOLD is not None
    )
    if DEFAULT_DUPLICATE_THRESHOLD is not None:
        assert at.slider(key="select_duplicate_threshold").value == DEFAULT_DUPLICATE_THRESHOLD
    # Off for the other methods.
    at.selectbox(key="select_method").set_value("delift").run()
    assert at.number_input(key="select_side_weight").disabled
    assert at.checkbox(key="select_duplicate_gate").disabled
    assert at.slider(key="select_duplicate_threshold").disabled

    at.selectbox(key="select_method").set_value("delift-q").run()
    at.number_input(key="select_quality_weight").set_value(0.0).run()
    at.slider(key="select_quality_gate").set_value(0.0).run()
    at.number_input(key="select_side_weight").set_value(0.0).run()
    at.checkbox(key="select_duplicate_gate").uncheck().run()
    assert_clean(at)
    assert at.slider(key="select_duplicate_threshold").disabled  # the gate is off
    inputs = _inputs(key, pool, targets)
    plain = _order(inputs)
    assert _page_order(at, n) == plain

    # A side weight: samples close to the targets move up, as the library orders them.
    weighted = _order(inputs, side_weight=3.0)
    assert weighted != plain  # otherwise the page could ignore the weight unnoticed
    at.number_input(key="select_side_weight").set_value(3.0).run()
    assert_clean(at)
    assert _page_order(at, n) == weighted

    # The near-duplicate gate at a cosine where it changes the order (the slider's steps).
    cosines = [round(float(c), 2) for c in np.arange(0.99, 0.0, -0.01)]
    tau = next(
        (c for c in cosines if _order(inputs, side_weight=3.0, duplicate_threshold=c) != weighted),
        None,
    )
    assert tau is not None, "no threshold gates a sample of this pool"
    at.checkbox(key="select_duplicate_gate").check().run()
    at.slider(key="select_duplicate_threshold").set_value(tau).run()
    assert_clean(at)
    assert _page_order(at, n) == _order(inputs, side_weight=3.0, duplicate_threshold=tau)

    at.text_input(key="select_name").set_value("priors").run()
    at.button(key="select_save").click().run()
    assert_clean(at)
    cache, _ = services()
    meta = registry.load_selection(cache, "priors")[1]
    assert meta["side_weight"] == 3.0
    assert meta["duplicate_threshold"] == pytest.approx(tau)

    # Unticked, the gate is off again (the slider keeps its value) and the record says so.
    at.checkbox(key="select_duplicate_gate").uncheck().run()
    assert at.slider(key="select_duplicate_threshold").value == pytest.approx(tau)
    assert _page_order(at, n) == weighted
    at.text_input(key="select_name").set_value("side only").run()
    at.button(key="select_save").click().run()
    meta = registry.load_selection(cache, "side only")[1]
    assert meta["side_weight"] == 3.0 and meta["duplicate_threshold"] is None


def test_priors_wait_for_embeddings_with_a_message(monkeypatch):
    real_maps, gate = tasks.compute_maps, threading.Event()

    def held_maps(ctx, cache, datasets):
        gate.wait(60)  # the embeddings are still being computed while the page is looked at
        real_maps(ctx, cache, datasets)

    monkeypatch.setattr(tasks, "compute_maps", held_maps)
    pool, targets = demo_handle(6), demo_handle(3, offset=100)
    key = score(pool, targets=targets)  # no map job: no embeddings yet
    cache, manager = services()
    meta = {"pool": pool, "targets": targets}
    common = {"method": "delift-q", "kernel": "minmax", "metric": "rms", "seed": 0}
    for stage, priors in (
        ("task", {"side_weight": 1.0}),
        ("instruction", {"duplicate_threshold": 0.9}),
    ):
        with pytest.raises(ConfigError, match=WAITING):
            registry.full_selection(cache, key, meta, stage=stage, **common, **priors)
    # Without those priors (or with the side weight where no side set is used) it runs.
    no_priors = {"side_weight": 0.0, "duplicate_threshold": None}
    assert registry.full_selection(cache, key, meta, stage="task", **common, **no_priors).size == 6
    ran = registry.full_selection(cache, key, meta, stage="instruction", side_weight=1.0, **common)
    assert ran.size == 6

    try:
        at = with_data(page("3_Select.py"), pool=pool, targets=targets).run()
        assert_clean(at)
        at.selectbox(key="select_method").set_value("delift-q").run()
        at.number_input(key="select_side_weight").set_value(1.0).run()
        assert not at.exception and not at.error
        warnings = [w for w in messages(at.warning) if WAITING in w]
        assert len(warnings) == 1 and "side weight" in warnings[0]
    finally:
        gate.set()
    for job in manager.list_jobs(kind=tasks.MAP):
        assert manager.wait(job.id, timeout=120).state == "done"
    # Once the map job has stored them, the same settings select.
    at.run()
    assert_clean(at)
    assert not any(WAITING in w for w in messages(at.warning))
    assert {m.label: m.value for m in at.metric}["Selected"] == "2 of 6"


def test_a_failed_map_job_is_not_started_again_by_itself(monkeypatch):
    def failing_maps(ctx, cache, datasets):
        raise RuntimeError("no sentence embedder here")

    monkeypatch.setattr(tasks, "compute_maps", failing_maps)
    pool, targets = demo_handle(6), demo_handle(3, offset=100)
    score(pool, targets=targets)  # no map job: the side prior waits for the embeddings
    _, manager = services()

    def map_jobs():
        for job in manager.list_jobs(kind=tasks.MAP):
            manager.wait(job.id, timeout=60)
        return manager.list_jobs(kind=tasks.MAP)

    at = with_data(page("3_Select.py"), pool=pool, targets=targets).run()
    assert len(map_jobs()) == 1  # the page started the job that computes the embeddings
    for _ in range(2):  # it failed: later runs say so and start nothing
        at.run()
        assert not at.exception
        assert any("no sentence embedder here" in e for e in messages(at.error))
        assert len(map_jobs()) == 1
    at.button(key="select_map_retry").click().run()
    assert len(map_jobs()) == 2  # the curator asked for it
