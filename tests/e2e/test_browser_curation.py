"""End-to-end curation in a real browser: load 24 demo rows, score them in sparse mode with the
real embedded model, and on the Select page colour the map by `quality`, hide a category from
its legend, search a word (matches ringed on the map and listed), pin two rows and exclude one
from the linked table, see the selection rerun, save it and export it: the file holds the
pinned rows and not the excluded one, and the manifest lists both.

Screenshots go to tests/e2e/artifacts/; DELIFT_UPDATE_SCREENSHOTS=1 also copies the curation
views into docs/screenshots/.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from typing import Any

import pytest
from test_browser import (
    ARTIFACTS,
    SCORE_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    VIEWPORT,
    PlaywrightError,
    Watch,
    _choose,
    _copy_documented,
    _download,
    _go,
    _log,
    _metric,
    _score_demo,
    _settle,
    _shot,
    expect,
)

pytestmark = pytest.mark.e2e

POOL_ROWS, SPARSE_K = 24, 2
EXPECTED_COUNT = round(0.30 * POOL_ROWS)  # the default budget
HIDDEN_CATEGORY = "near-duplicate"  # 2 of the first 24 demo rows
SEARCH_WORD, SEARCH_HITS = "grammatical", 5  # in 5 of their instructions
PIN_WORD, PINNED = "Celsius", ["demo-0012", "demo-0014"]
EXCLUDE_WORD, EXCLUDED = "river", ["demo-0006"]
DOCUMENTED = ("select-curation", "select-why", "select-pinned", "export-curated")


def _map(page: Any) -> Any:
    return page.locator(".st-key-select_map .js-plotly-plot")


def _traces(page: Any) -> list[dict[str, Any]]:
    """The map's traces as Plotly holds them in the page: name, legend group, visibility and
    the pool indices of their points."""
    expect(_map(page)).to_have_count(1)  # a rerun briefly shows a stale copy beside the new one
    return _map(page).evaluate(
        """gd => {
            const types = {i1: Int8Array, u1: Uint8Array, i2: Int16Array, u2: Uint16Array,
                i4: Int32Array, u4: Uint32Array, i8: BigInt64Array, f4: Float32Array,
                f8: Float64Array};
            const values = v => {  // a plain array, or Plotly's typed base64 form
                if (!v) return [];
                if (v.bdata === undefined) return Array.from(v).map(Number);
                const bytes = Uint8Array.from(atob(v.bdata), c => c.charCodeAt(0));
                return Array.from(new types[v.dtype](bytes.buffer)).map(Number);
            };
            return gd.data.map(t => ({name: t.name, group: t.legendgroup || null,
                visible: t.visible === undefined ? true : t.visible,
                points: values(t.customdata)}));
        }"""
    )


def _search(page: Any, query: str) -> None:
    field = page.get_by_label("Search the texts", exact=True)
    field.fill(query)
    field.press("Enter")
    _settle(page)


def _wait_for_ring(page: Any, hits: int) -> list[dict[str, Any]]:
    ring = _map(page).locator(".legend .legendtext").filter(has_text=f"search matches ({hits})")
    expect(ring.first).to_be_visible()
    return _traces(page)


def colour_and_toggle(page: Any) -> None:
    """Colour by quality; a click on a legend entry hides that category's traces."""
    _go(page, "Select")
    expect(_map(page)).to_be_visible(timeout=SCORE_TIMEOUT_MS)  # the map job may still run
    _choose(page, "Colour the map by", "quality")
    legend = _map(page).locator(".legend .traces").filter(has_text=HIDDEN_CATEGORY)
    expect(legend).to_have_count(1)
    groups = {t["group"] for t in _traces(page) if t["group"]}
    assert groups == {"good", "poor", HIDDEN_CATEGORY}, groups
    # The legend sits at the top of the chart, where the chart's toolbar appears on hover: the
    # click goes to the entry's left end (its symbol), with the chart in the middle of the view.
    _map(page).evaluate("e => e.scrollIntoView({block: 'center'})")
    _painted(page)
    legend.locator(".legendtoggle").click(position={"x": 12, "y": 9})
    page.wait_for_function(  # Plotly has hidden the category's traces
        """([gd, group]) => gd.data.some(t => t.legendgroup === group)
            && gd.data.every(t => t.legendgroup !== group || t.visible === 'legendonly')""",
        arg=[_map(page).element_handle(), HIDDEN_CATEGORY],
    )
    for trace in _traces(page):
        if trace["group"] == HIDDEN_CATEGORY:
            assert trace["visible"] == "legendonly", trace
        elif trace["group"]:
            assert trace["visible"] is True, trace


def search_and_list(page: Any) -> None:
    _search(page, SEARCH_WORD)
    expect(page.get_by_text(f"{SEARCH_HITS} rows match the search.").first).to_be_visible()
    ring = [t for t in _wait_for_ring(page, SEARCH_HITS) if t["name"].startswith("search")]
    assert len(ring) == 1 and len(ring[0]["points"]) == SEARCH_HITS, ring
    listed = page.get_by_text(f"{SEARCH_HITS} rows ({SEARCH_HITS} matching the search)")
    expect(listed.first).to_be_visible()
    _scroll(page, page.locator(".st-key-select_map_colour"))  # the controls above the map
    _shot(page, "select-curation")


def _painted(page: Any) -> None:
    """Wait until the browser has painted two more frames (a scroll has been drawn)."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _scroll(page: Any, locator: Any) -> None:
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")
    _painted(page)


def pin_and_exclude(page: Any) -> None:
    """Pin the rows one search finds and exclude the row another finds, from the linked
    table; the selection reruns with them."""
    _search(page, PIN_WORD)
    _wait_for_ring(page, len(PINNED))
    page.get_by_role("button", name=f"Pin these {len(PINNED)} rows").click()
    _settle(page)
    _search(page, EXCLUDE_WORD)
    _wait_for_ring(page, len(EXCLUDED))
    page.get_by_role("button", name="Exclude this row").click()
    _settle(page)
    delta = f"{len(PINNED)} pinned · {len(EXCLUDED)} excluded"
    selected = page.get_by_test_id("stMetric").filter(has_text="Selected")
    expect(selected).to_contain_text(delta)
    expect(_metric(page, "Selected")).to_have_text(f"{EXPECTED_COUNT} of {POOL_ROWS}")
    _scroll(page, selected)
    _shot(page, "select-pinned")
    # The map marks them; the Why panel says the excluded row (the one linked) is excluded.
    marks = {t["name"].split(" ")[0]: t["points"] for t in _traces(page)}
    assert sorted(marks["pinned"]) == [int(s[-4:]) - 1 for s in PINNED], marks
    assert marks["excluded"] == [int(s[-4:]) - 1 for s in EXCLUDED], marks
    chosen = page.get_by_role("combobox", name="Why is this row selected or discarded?")
    expect(chosen).to_have_value(re.compile(f"^{EXCLUDED[0]} "))
    why = page.locator(".st-key-select_why_box")
    expect(why).to_contain_text("Excluded by you: never selected")
    _scroll(page, page.get_by_role("heading", name="Linked rows"))
    _shot(page, "select-why")


def save_and_export(page: Any, folder: Any) -> None:
    name = page.get_by_label("Selection name")
    name.fill("curated")
    name.press("Enter")
    _settle(page)
    page.get_by_role("button", name="Save selection").click()
    expect(page.get_by_text(f"Saved {EXPECTED_COUNT} samples as curated")).to_be_visible()
    _go(page, "Export")
    expect(page.get_by_label("File name")).to_have_value("curated.jsonl")
    _shot(page, "export-curated")
    rows = _download(page, folder / "curated.jsonl")
    ids = [r["id"] for r in rows]
    assert len(ids) == EXPECTED_COUNT
    assert set(ids[: len(PINNED)]) == set(PINNED), "pinned rows are picked first"
    assert not set(EXCLUDED) & set(ids)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download manifest").click()
    target = folder / "curated.manifest.json"
    info.value.save_as(str(target))
    manifest = json.loads(target.read_text(encoding="utf-8"))
    assert sorted(manifest["pinned_ids"]) == PINNED
    assert manifest["excluded_ids"] == EXCLUDED


def test_colour_search_pin_exclude_and_export(browser, app_url, tmp_path):
    expect.set_options(timeout=UI_TIMEOUT_MS)
    started = time.monotonic()
    watch = Watch(app_url)
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = watch.attach(context.new_page())
    # Watch logs a missing resource without its address: these name it.
    missing: list[str] = []
    page.on("response", lambda r: r.status >= 400 and missing.append(f"{r.status} {r.url}"))
    try:
        page.goto(app_url)
        _score_demo(page, POOL_ROWS, SPARSE_K)
        _log(f"scored in {time.monotonic() - started:.0f} s")
        colour_and_toggle(page)
        search_and_list(page)
        pin_and_exclude(page)
        save_and_export(page, tmp_path)
        assert missing == [], f"failed requests: {missing}"
        watch.check()
        _copy_documented(DOCUMENTED)
        _log(f"curation test took {time.monotonic() - started:.0f} s")
    except BaseException:
        with contextlib.suppress(PlaywrightError):
            page.screenshot(path=str(ARTIFACTS / "failure-curation.png"))
        raise
    finally:
        context.close()
