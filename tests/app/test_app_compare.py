"""Compare page: sizes, Jaccard overlap, cluster and target coverage, shared map (one look per
method). Evaluate has its own file, test_app_evaluate.py."""

from __future__ import annotations

import json

import numpy as np
from apptools import (
    assert_clean,
    chart_keys,
    demo_handle,
    frame,
    messages,
    score,
    services,
    with_data,
)
from apptools import (
    page as _page,
)

from delift_core.pipeline import list_stages
from ui import plots, registry

WS = "team-test"  # the workspace the selections are saved in


def page(name: str):
    """The page, opened in the workspace the selections are saved in."""
    at = _page(name)
    at.query_params["workspace"] = WS
    return at


def _save(name: str, indices: list[int], key: str, meta: dict, method: str, stage: str) -> None:
    cache, _ = services()
    registry.save_selection(
        cache,
        name,
        np.asarray(indices),
        np.full(len(indices), np.nan),
        {"method": method, "stage": stage, "kernel": "minmax", "metric": "rms", "stage_key": key,
         "pool": meta["pool"], "targets": meta.get("targets"), "existing": meta.get("existing")},
        WS,
    )  # fmt: skip


def test_needs_two_selections():
    at = with_data(page("4_Compare.py"), pool=demo_handle(6)).run()
    assert not at.exception
    assert any("at least two selections" in m for m in messages(at.info))


def test_overlap_clusters_targets_and_map():
    pool, targets = demo_handle(6), demo_handle(3, offset=100)
    key = score(pool, targets=targets, with_map=True)
    cache, _ = services()
    meta = dict(list_stages(cache))[key]
    _save("a", [0, 1, 2], key, meta, "delift", "task")
    _save("b", [2, 3], key, meta, "random", "instruction")
    at = with_data(page("4_Compare.py"), pool=pool).run()
    assert_clean(at)
    assert set(at.multiselect(key="compare_names").value) == {"a", "b"}
    summary = frame(at, "selection", "size").set_index("selection")
    assert summary.loc["a", "size"] == 3 and summary.loc["b", "size"] == 2
    # Clusters come from the demo's family field.
    ds = registry.load_source(pool["spec"], None)
    families = [r.fields["family"] for r in ds.records]
    k = len(set(families))
    assert summary.loc["a", "clusters covered"] == f"{len({families[i] for i in (0, 1, 2)})} / {k}"
    assert summary.loc["b", "clusters covered"] == f"{len({families[i] for i in (2, 3)})} / {k}"
    # Target coverage: targets whose best selected utility is positive (task stage only).
    u_targets = registry.stage_utilities(cache, key).targets.rms
    covered = int((u_targets[:, [0, 1, 2]].max(axis=1) > 0).sum())
    assert summary.loc["a", "targets covered"] == f"{covered} / 3"
    assert summary.loc["b", "targets covered"] == ""
    jaccard = frame(at, "a", "b")
    assert jaccard.loc["a", "b"] == round(1 / 4, 3) and jaccard.loc["a", "a"] == 1.0
    assert "compare_map" in chart_keys(at)
    assert any("No evaluation of these selections yet" in c for c in messages(at.caption))
    assert at.button(key="eval_start").label == "Evaluate"


def test_evaluation_entries_not_written_by_evaluate_are_ignored():
    pool = demo_handle(6)
    key = score(pool)
    cache, _ = services()
    meta = dict(list_stages(cache))[key]
    _save("a", [0, 1], key, meta, "delift", "instruction")
    _save("b", [4, 5], key, meta, "random", "instruction")
    cache.put_array(
        "evaluation", "eval-1", np.zeros(0), {"selection": "a", "metrics": {"rougeL": 0.41}}
    )
    at = with_data(page("4_Compare.py"), pool=pool).run()
    assert_clean(at)
    assert not any("rougeL" in e.value.columns for e in at.dataframe)
    assert any("No evaluation of these selections yet" in c for c in messages(at.caption))


def _looks(at, methods: dict[str, str]) -> dict[str, tuple[str, str]]:
    """method -> (colour, marker symbol) of each selection drawn on the Compare map; `methods`:
    selection name -> method."""
    chart = next(e for e in at.main if getattr(e, "type", None) == "plotly_chart")
    traces = json.loads(chart.proto.spec)["data"][1:]  # the first trace is the pool
    # Legend names start with the selection's name.
    return {
        methods[t["name"].split(" ")[0]]: (t["marker"]["color"], t["marker"]["symbol"])
        for t in traces
    }


def test_each_method_keeps_one_colour_and_marker_and_none_is_red():
    pool = demo_handle(6)
    key = score(pool, with_map=True)
    cache, _ = services()
    meta = dict(list_stages(cache))[key]
    methods = {"d": "delift", "r": "random", "f": "fl-only"}
    for (name, method), rows in zip(methods.items(), ([0, 1], [2, 3], [4, 5]), strict=True):
        _save(name, rows, key, meta, method, "instruction")
    at = with_data(page("4_Compare.py"), pool=pool).run()
    assert_clean(at)
    names = at.multiselect(key="compare_names").value
    assert len(names) == 3
    three = _looks(at, methods)
    assert set(three) == {"delift", "random", "fl-only"} and len(set(three.values())) == 3

    # The last two alone: each keeps the colour and marker it had among three.
    at.multiselect(key="compare_names").set_value(names[1:]).run()
    assert_clean(at)
    two = _looks(at, methods)
    assert len(two) == 2 and two == {m: three[m] for m in two}
    # Red is "selected" on the Select page: no method is drawn in it.
    assert plots.SELECTED_COLOR not in {color for color, _ in three.values()}
