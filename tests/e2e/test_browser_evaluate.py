"""End-to-end evaluation on the Compare page in a real browser, and its result after a restart.

In a named workspace: load 12 demo rows, score them in sparse mode with the real embedded model,
save two selections on Select (delift-q and delift), open Compare and start a quick in-context
evaluation on a held-out split carved from the pool. When the background job has finished, the
bar chart and the table show both selections and the Random sets of their sizes. The server is
then stopped and started again on the same cache: the Compare page of the workspace shows the
same stored result, without a job being started.

Screenshots go to tests/e2e/artifacts/; DELIFT_UPDATE_SCREENSHOTS=1 also copies the evaluation
view into docs/screenshots/.
"""

from __future__ import annotations

import contextlib
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
    _go,
    _log,
    _metric,
    _score_demo,
    _scroll_to,
    _settle,
    _shot,
    expect,
)

pytestmark = pytest.mark.e2e

POOL_ROWS, SPARSE_K = 12, 2
EXPECTED_COUNT = round(0.30 * POOL_ROWS)  # the default budget
WORKSPACE = "e2e-evaluate"
SELECTIONS = ("delift-q-instruction-33pct", "delift-instruction-33pct")  # the offered names
DOCUMENTED = ("compare-evaluate",)


def open_workspace(page: Any, name: str) -> None:
    """Open a named workspace from the sidebar: the URL and the sidebar carry it."""
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_label("Open a named workspace", exact=True).fill(name)
    sidebar.get_by_label("Open a named workspace", exact=True).press("Enter")
    _settle(page)
    sidebar.get_by_role("button", name="Open", exact=True).click()
    expect(
        sidebar.get_by_test_id("stText").filter(has_text=re.compile(f"^{name}$"))
    ).to_be_visible()
    expect(page).to_have_url(re.compile(f"[?&]workspace={name}(&|$)"))


def save_two_selections(page: Any) -> None:
    """Save the default method's selection and delift's, each under its offered name."""
    _go(page, "Select")
    selected = _metric(page, "Selected")
    expect(selected).to_have_text(f"{EXPECTED_COUNT} of {POOL_ROWS}", timeout=SCORE_TIMEOUT_MS)
    # The map's job reruns the page when it ends (an open menu would close): wait for it.
    the_map = page.locator(".st-key-select_map .js-plotly-plot")
    expect(the_map).to_be_visible(timeout=SCORE_TIMEOUT_MS)
    for method, name in zip(("delift-q", "delift"), SELECTIONS, strict=True):
        if method != "delift-q":
            _choose(page, "Method", method)
            expect(_metric(page, "Objective")).to_have_text(re.compile(r"^\d+\.\d{4}$"))
        _settle(page)
        page.get_by_role("button", name="Save selection").click()
        expect(page.get_by_text(f"Saved {EXPECTED_COUNT} samples as {name}")).to_be_visible()
        _settle(page)


def _results(page: Any) -> Any:
    """The picker of stored evaluations (its value describes the result shown)."""
    return page.get_by_role("combobox", name="Results", exact=True)


def _check_result(page: Any) -> str:
    """The chart and the table show both selections and a Random set; returns the result's
    one-line description (it names its creation time)."""
    chart = page.get_by_test_id("stPlotlyChart").filter(has_text="difference vs Random (paired)")
    expect(chart.locator(".js-plotly-plot")).to_be_visible()
    ticks = chart.locator(".xtick text")
    for name in SELECTIONS:  # each bar is labelled with its set (shortened to 30 characters)
        expect(ticks.filter(has_text=name[:27]).first).to_be_visible()
    expect(ticks.filter(has_text=re.compile(r"^Random \(\d+ rows\)")).first).to_be_visible()
    # The table is drawn on a canvas; the grid keeps its cells in the canvas's (unshown)
    # accessible table, which holds the rows and columns in view (the first column: the set).
    table = page.get_by_test_id("stDataFrame").filter(
        has=page.locator("th[role=columnheader]", has_text=re.compile("^set$"))
    )
    expect(table).to_have_count(1)
    sets = table.locator("td[role=gridcell]")
    for name in SELECTIONS:
        expect(sets.filter(has_text=re.compile(f"^{re.escape(name)}$"))).to_have_count(1)
    expect(sets.filter(has_text=re.compile(r"^Random \(\d+ rows\)$")).first).to_be_attached()
    expect(_results(page)).to_have_value(
        re.compile(r" · in-context · .* \(20% split of the pool\)$")
    )
    return _results(page).input_value()


def evaluate(page: Any) -> str:
    """On Compare: a quick in-context evaluation on a 20% split of the pool, run to its end."""
    _go(page, "Compare")
    expect(page.get_by_text("No evaluation of these selections yet")).to_be_visible()
    chosen = page.get_by_test_id("stMultiSelect").filter(has_text="Selections to compare")
    for name in SELECTIONS:
        expect(chosen.get_by_text(name, exact=True)).to_be_visible()
    held_out = page.get_by_test_id("stRadio").filter(has_text="Held-out items")
    expect(held_out.get_by_role("radio", name="A held-out split of the pool")).to_be_checked()
    protocol = page.get_by_test_id("stRadio").filter(has_text="Protocol")
    protocol.get_by_text(re.compile("^Quick: in-context")).click()
    expect(protocol.get_by_role("radio", name=re.compile("^Quick: in-context"))).to_be_checked()
    _settle(page)
    page.get_by_role("button", name="Evaluate", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Evaluation queued \(job \w+\)")).first).to_be_visible()
    job = page.get_by_test_id("stText").filter(has_text=re.compile(r"^Evaluation · job \w+ · "))
    progress = page.get_by_test_id("stProgress").filter(has_text="evaluating")
    # The job's progress, or its result when it ended before the progress was seen.
    expect(progress.or_(_results(page)).first).to_be_visible(timeout=SCORE_TIMEOUT_MS)
    if progress.count():
        _scroll_to(page.get_by_role("button", name="Evaluate", exact=True))  # progress below it
        _shot(page, "compare-evaluate-running")
    expect(_results(page)).to_be_visible(timeout=SCORE_TIMEOUT_MS)
    expect(job).to_have_count(0)
    expect(page.get_by_text("The evaluation failed")).to_have_count(0)
    described = _check_result(page)
    _scroll_to(page.get_by_test_id("stSelectbox").filter(has=_results(page)))
    _shot(page, "compare-evaluate")
    return described


def after_restart(page: Any, url: str, described: str) -> None:
    """The workspace's Compare page after a restart shows the stored result; nothing runs."""
    # A link to the app's root with the workspace (a page's own path, e.g. /Compare, makes the
    # frontend probe /Compare/_stcore/health first: a 404 logged in the console). The session
    # must have taken the workspace from the URL before the page is changed: a page change
    # drops the query string, and a session without a workspace starts a new one.
    page.goto(f"{url}/?workspace={WORKSPACE}")
    expect(page.get_by_role("heading", name="DELIFT Studio")).to_be_visible()
    sidebar = page.get_by_test_id("stSidebar")
    workspace = sidebar.get_by_test_id("stText").filter(has_text=re.compile(f"^{WORKSPACE}$"))
    expect(workspace).to_be_visible()
    _go(page, "Compare")
    expect(workspace).to_be_visible()
    expect(page).to_have_url(re.compile(f"/Compare[?](.*&)?workspace={WORKSPACE}(&|$)"))
    expect(_results(page)).to_be_visible()
    assert _check_result(page) == described, "a different (new) result is shown"
    expect(page.get_by_test_id("stText").filter(has_text="Evaluation · job")).to_have_count(0)
    expect(page.get_by_test_id("stProgress")).to_have_count(0)
    expect(sidebar.get_by_text("Background jobs")).to_have_count(0)
    _scroll_to(page.get_by_test_id("stSelectbox").filter(has=_results(page)))
    _shot(page, "compare-evaluate-restarted")


@contextlib.contextmanager
def _failure_shot(page: Any, name: str) -> Any:
    """A screenshot of the page when the block fails, taken while the server still runs."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(PlaywrightError):
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        raise


def test_evaluate_on_compare_and_keep_the_result_after_a_restart(browser, server, tmp_path):
    expect.set_options(timeout=UI_TIMEOUT_MS)
    started = time.monotonic()
    cache, log_path = tmp_path / "cache.duckdb", tmp_path / "streamlit-evaluate.log"
    context = browser.new_context(viewport=VIEWPORT)
    try:
        with server(cache, log_path) as url:
            watch = Watch(url)
            page = watch.attach(context.new_page())
            with _failure_shot(page, "failure-evaluate"):
                page.goto(url)
                expect(page.get_by_role("heading", name="DELIFT Studio")).to_be_visible()
                open_workspace(page, WORKSPACE)
                _score_demo(page, POOL_ROWS, SPARSE_K)
                _log(f"scored in {time.monotonic() - started:.0f} s")
                save_two_selections(page)
                described = evaluate(page)
                _log(f"evaluated after {time.monotonic() - started:.0f} s: {described}")
                watch.check()
        _log("server stopped; starting it again on the same cache")
        with server(cache, log_path) as url:
            watch = Watch(url)
            page = watch.attach(context.new_page())
            with _failure_shot(page, "failure-evaluate-restarted"):
                after_restart(page, url, described)
                watch.check()
        _copy_documented(DOCUMENTED)
        _log(f"evaluation test took {time.monotonic() - started:.0f} s")
    finally:
        context.close()
