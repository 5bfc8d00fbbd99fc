"""End-to-end test in a real browser: the app served by `streamlit run`, driven by Chromium.

One user (session A) loads 12 demo rows, scores them with the real embedded SmolLM2 in sparse
mode, selects 30% on the Select page (the UMAP map must render), saves the selection and
downloads it as JSONL from Export. Then A starts a long exact-mode job on other rows; while it
runs, a second user (session B) loads the scored rows and selects from the cached stage; A
cancels the job; and B selecting again must give exactly the subset A downloaded.

Screenshots of every page go to tests/e2e/artifacts/; DELIFT_UPDATE_SCREENSHOTS=1 also copies
the documented set into docs/screenshots/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips or fails the test with the reason
    PlaywrightError = Exception  # noqa: N816
    expect = None

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
DOCUMENTED = ("home", "data", "score-running", "select", "compare", "export")
VIEWPORT = {"width": 1280, "height": 900}
DEMO_FIELDS = ("id", "instruction", "input", "output", "family", "quality")
POOL_ROWS, SPARSE_K, BUDGET = 12, 2, 0.30
EXPECTED_COUNT = max(1, round(BUDGET * POOL_ROWS))
SECOND_POOL_ROWS = 48  # exact mode: 48 + 48² passes, far more than the test waits for
UI_TIMEOUT_MS = 90_000  # one page run; the CPU may be busy with a scoring job
SCORE_TIMEOUT_MS = 900_000  # model load, scoring, embedding, UMAP on a slow shared CPU
CANCEL_LIMIT_S = 45.0  # a job stops at its next batch boundary


# -- helpers ------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


QUIET_MS = 300  # how long the app must stay idle to count as settled
SETTLE_TIMEOUT_MS = 8_000
# True once the app (the stApp element Streamlit marks with its connection and script state) is
# connected and not running a script, and has stayed so for `quiet` ms and two painted frames.
# A click reaches the server a moment after it is made: the quiet time lets the rerun it asks
# for begin, so that an idle app seen just after a click is not taken for a settled one.
_IDLE_JS = """([token, quiet]) => {
    const app = document.querySelector('[data-testid="stApp"]');
    const idle = app !== null
        && app.getAttribute('data-test-connection-state') === 'CONNECTED'
        && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelector('[data-testid="stStatusWidget"]') === null;
    const since = window.__deliftIdleSince = window.__deliftIdleSince || {};
    if (!idle) { delete since[token]; return false; }
    if (since[token] === undefined) {
        since[token] = {t: performance.now(), frames: 0};
        const count = () => { if (since[token]) { since[token].frames += 1;
            if (since[token].frames < 2) requestAnimationFrame(count); } };
        requestAnimationFrame(count);
    }
    return performance.now() - since[token].t >= quiet && since[token].frames >= 2;
}"""
_settle_calls = iter(range(1, 1 << 62))


def _settle(page: Any) -> None:
    """Best effort: wait until the app is connected, runs no script and has stayed so for
    QUIET_MS (with charts given two painted frames)."""
    # A page with a live fragment may rerun every second: a timeout here is not an error.
    token = next(_settle_calls)
    with contextlib.suppress(PlaywrightError):
        page.wait_for_function(
            _IDLE_JS, arg=[token, QUIET_MS], polling=50, timeout=SETTLE_TIMEOUT_MS
        )


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(VIEWPORT["width"] - 2, VIEWPORT["height"] - 2)  # no hover toolbars
    _settle(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _scroll_to(locator: Any) -> None:
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")


def _go(page: Any, name: str) -> None:
    """Switch page through the sidebar (a full reload would start a new session)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()
    page.get_by_role("heading", name=name, exact=True).wait_for()


def _metric(page: Any, label: str) -> Any:
    title = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    return page.get_by_test_id("stMetric").filter(has=title).get_by_test_id("stMetricValue")


def _set_number(page: Any, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    _settle(page)


def _choose(page: Any, label: str, option: str) -> None:
    """Pick `option` in the select box labelled `label`. A menu opened by a click that first
    scrolled the page far (e.g. from a button at the bottom) can close again at once: the box is
    clicked again until the option shows."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label)
    wanted = page.get_by_role("option", name=option, exact=True)
    for _ in range(3):
        box.scroll_into_view_if_needed()
        _settle(page)
        box.click()
        with contextlib.suppress(PlaywrightError):
            wanted.click(timeout=5_000)
            break
        page.keyboard.press("Escape")  # a menu that opened late is closed before the next try
    else:
        raise AssertionError(f"the option {option!r} of {label!r} did not show")
    _settle(page)


def _load_demo(page: Any, offset: int, rows: int) -> None:
    _go(page, "Data")
    _set_number(page, "Skip the first rows", offset)
    _set_number(page, "Rows to load (0 = all)", rows)
    replace = page.get_by_text(re.compile("^Replace the loaded pool"))
    if replace.count():  # a pool is loaded (the demo slice at start): replacing it is explicit
        replace.click()
        _settle(page)
    page.get_by_role("button", name="Load data").click()
    expect(page.get_by_text(f"Loaded {rows} rows as the pool.")).to_be_visible()
    label = f"pool: demo set (rows {offset + 1}-{offset + rows}) · {rows} rows"
    expect(page.get_by_test_id("stSidebar").get_by_text(label)).to_be_visible()


def _choose_mode(page: Any, mode: str) -> None:
    """Pick a scoring mode and wait until the page has it: a rerun started by a job finishing
    (the speed measurement) can swallow a click, so it is repeated until it holds."""
    field = page.get_by_label("Candidates per row (k)", exact=True)
    for _ in range(5):
        page.get_by_test_id("stRadio").filter(has_text="Mode").get_by_text(mode).click()
        _settle(page)
        with contextlib.suppress(AssertionError):
            check = (
                expect(field).to_be_enabled if mode == "sparse" else expect(field).to_be_disabled
            )
            check(timeout=10_000)
            return
    raise AssertionError(f"the Score page did not switch to {mode} mode")


def _set_budget(page: Any, fraction: float) -> None:
    """Move the budget slider to `fraction`: End/Home for the ends, else a click on the track
    and single arrow steps, each given time to reach the server (quick repeats get lost)."""
    slider = page.get_by_role("slider", name="Budget (fraction of the pool)")
    low, high = float(slider.get_attribute("min")), float(slider.get_attribute("max"))
    if fraction in (low, high):
        slider.focus()
        slider.press("Home" if fraction == low else "End")
    else:
        line = page.locator(".st-key-select_budget [data-orientation=horizontal] > div").first
        box = line.bounding_box()
        x = box["x"] + box["width"] * (fraction - low) / (high - low)
        page.mouse.click(x, box["y"] + box["height"] / 2)
    want = f"{fraction:.2f}"
    for _ in range(100):
        _settle(page)
        now = float(slider.get_attribute("aria-valuetext"))
        if f"{now:.2f}" == want:
            break
        slider.focus()
        slider.press("ArrowRight" if now < fraction else "ArrowLeft")
    expect(slider).to_have_attribute("aria-valuetext", want)


def _selection_state(page: Any) -> tuple[str, str, str]:
    """(selected, objective, first picked ids) as the Select page shows them."""
    ids = page.get_by_label(re.compile("^Sample ids")).get_attribute("placeholder") or ""
    return _metric(page, "Selected").inner_text(), _metric(page, "Objective").inner_text(), ids


def _expect_map(page: Any, count: int) -> None:
    """The UMAP map is a Plotly chart whose legend counts the selected points."""
    chart = page.get_by_test_id("stPlotlyChart").filter(has_text=f"selected ({count})")
    expect(chart.locator(".js-plotly-plot")).to_be_visible()
    expect(chart.locator(".scatterlayer .point")).to_have_count(POOL_ROWS)


def _download(page: Any, target: Path) -> list[dict[str, Any]]:
    with page.expect_download() as info:
        page.get_by_role("button", name="Download JSONL").click()
    download = info.value
    assert download.suggested_filename.endswith(".jsonl")
    download.save_as(str(target))
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines and all(line.strip() for line in lines), "empty file or blank line"
    return [json.loads(line) for line in lines]


def _new_job_id(page: Any) -> str:
    """The id of the scoring job just submitted (the only active one), from the Jobs panel."""
    line = page.get_by_test_id("stText").filter(
        has_text=re.compile(r"^Scoring · job \w+ · (queued|running)$")
    )
    expect(line).to_have_count(1)
    return re.search(r"job (\w+)", line.inner_text()).group(1)


def _job_line(page: Any, job_id: str, state: str) -> Any:
    return page.get_by_test_id("stText").filter(has_text=f"Scoring · job {job_id} · {state}")


def _demo_records(offset: int, rows: int) -> list[dict[str, Any]]:
    lines = (ROOT / "assets" / "demo.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[offset : offset + rows]]


# -- phases -------------------------------------------------------------------------------


def score_sparse(a: Any, app_url: str) -> None:
    """Session A: home, load 12 demo rows, score them in sparse mode with the real model."""
    a.goto(app_url)
    expect(a.get_by_role("heading", name="DELIFT Studio")).to_be_visible()
    _shot(a, "home")
    _load_demo(a, 0, POOL_ROWS)
    _scroll_to(a.get_by_role("heading", name="Loaded data"))
    _shot(a, "data")

    _go(a, "Score")
    _choose_mode(a, "sparse")
    _set_number(a, "Candidates per row (k)", SPARSE_K)
    # baselines + each answer without its prompt (quality) + k candidates and itself
    passes = 2 * POOL_ROWS + POOL_ROWS * (SPARSE_K + 1)
    expect(_metric(a, "Forward passes")).to_have_text(str(passes))
    a.get_by_role("button", name="Start scoring").click()
    job = _new_job_id(a)  # queued behind the page's own speed measurement
    progress = a.get_by_test_id("stProgress").filter(has_text="scoring the pool")
    expect(progress).to_be_visible(timeout=SCORE_TIMEOUT_MS)
    expect(_job_line(a, job, "running")).to_be_visible()
    expect(progress.get_by_role("progressbar")).to_be_visible()
    with contextlib.suppress(AssertionError):  # a better picture once an ETA is known
        expect(progress.filter(has_text="left")).to_be_visible(timeout=60_000)
    _shot(a, "score-running")
    # .first: during a rerun Streamlit briefly shows the stale copy of a message beside the new one.
    ready = a.get_by_text("The scores of the data loaded now are ready (pool).").first
    expect(ready).to_be_visible(timeout=SCORE_TIMEOUT_MS)
    _shot(a, "score-done")


def select_and_export(a: Any, folder: Path) -> tuple[tuple[str, str, str], list[dict]]:
    """Session A: select 30% with the map shown, save it, download it from Export and check
    the file. Returns the Select page's state and the downloaded rows."""
    _go(a, "Select")
    _expect_map(a, EXPECTED_COUNT)
    _set_budget(a, 1.0)
    expect(_metric(a, "Selected")).to_have_text(f"{POOL_ROWS} of {POOL_ROWS}")
    _set_budget(a, BUDGET)
    expect(_metric(a, "Selected")).to_have_text(f"{EXPECTED_COUNT} of {POOL_ROWS}")
    _expect_map(a, EXPECTED_COUNT)
    selected = _selection_state(a)
    _scroll_to(a.locator(".st-key-select_budget"))  # the budget slider (Advanced has more)
    _shot(a, "select")
    a.get_by_role("button", name="Save selection").click()
    expect(a.get_by_text(f"Saved {EXPECTED_COUNT} samples as delift")).to_be_visible()

    _go(a, "Export")
    expect(a.get_by_text(re.compile(rf"^{EXPECTED_COUNT} rows · "))).to_be_visible()
    _shot(a, "export")
    rows = _download(a, folder / "first.jsonl")
    demo = {r["id"]: r for r in _demo_records(0, POOL_ROWS)}
    assert len(rows) == EXPECTED_COUNT
    assert len({r.get("id") for r in rows}) == EXPECTED_COUNT
    for row in rows:
        assert set(DEMO_FIELDS) <= set(row), row
        assert row == demo[row["id"]], "the original format keeps every field unchanged"
    assert ", ".join(r["id"] for r in rows[:3]) == selected[2], "rows are in pick order"
    return selected, rows


def compare_two(a: Any) -> None:
    """Session A: save a random selection of the same size and compare the two."""
    _go(a, "Select")
    _choose(a, "Method", "random")
    expect(_metric(a, "Objective")).to_have_text(re.compile(r"^\d+\.\d{4}$"))
    a.get_by_role("button", name="Save selection").click()
    expect(a.get_by_text(f"Saved {EXPECTED_COUNT} samples as random")).to_be_visible()
    _go(a, "Compare")
    expect(a.get_by_role("heading", name="Overlap (Jaccard)")).to_be_visible()
    expect(a.get_by_test_id("stPlotlyChart").locator(".js-plotly-plot")).to_be_visible()
    _shot(a, "compare")


def start_long_job(a: Any) -> str:
    """Session A: score other rows in exact mode (far too long to finish); returns its id."""
    _load_demo(a, POOL_ROWS, SECOND_POOL_ROWS)
    _go(a, "Score")
    _choose_mode(a, "exact")
    _set_number(a, "Batch size", 8)  # small batches stop sooner
    a.get_by_role("button", name="Start scoring").click()
    job = _new_job_id(a)
    expect(_job_line(a, job, "running")).to_be_visible(timeout=SCORE_TIMEOUT_MS)
    expect(a.get_by_test_id("stProgress").filter(has_text="passes")).to_be_visible()
    _shot(a, "score-exact-running")
    return job


def select_in_second_session(b: Any, app_url: str, selected: tuple[str, str, str]) -> None:
    """Session B, while A's job runs: load the scored rows and select from the cached stage."""
    b.goto(app_url)
    # A's run is in A's workspace: B sees the worker busy, not whose data it scores.
    busy = b.get_by_test_id("stSidebar").get_by_text("score: running (another workspace)")
    expect(busy).to_be_visible()
    _load_demo(b, 0, POOL_ROWS)
    _go(b, "Select")
    expect(_metric(b, "Selected")).to_have_text(f"{EXPECTED_COUNT} of {POOL_ROWS}")
    _expect_map(b, EXPECTED_COUNT)
    assert _selection_state(b) == selected
    _shot(b, "select-second-session")


def cancel_job(a: Any, job: str) -> float:
    """Session A: cancel the running job; returns seconds until the page shows it cancelled."""
    assert _job_line(a, job, "running").count() == 1, "the job ended before it was cancelled"
    clicked = time.monotonic()
    a.locator(f".st-key-score_cancel_{job}").get_by_role("button", name="Cancel").click()
    cancelled = a.get_by_text(f"Scoring job {job} was cancelled").first
    expect(cancelled).to_be_visible(timeout=int(CANCEL_LIMIT_S * 1000))
    seconds = time.monotonic() - clicked
    expect(a.get_by_test_id("stProgress")).to_have_count(0)
    _shot(a, "score-cancelled")
    return seconds


def select_again(b: Any, selected: tuple[str, str, str], folder: Path) -> list[dict]:
    """Session B, after the cancel: the same selection, saved and downloaded once more."""
    _go(b, "Data")
    _go(b, "Select")
    expect(_metric(b, "Selected")).to_have_text(f"{EXPECTED_COUNT} of {POOL_ROWS}")
    assert _selection_state(b) == selected
    name = b.get_by_label("Selection name")
    name.fill("after-cancel")
    name.press("Enter")
    _settle(b)
    b.get_by_role("button", name="Save selection").click()
    expect(b.get_by_text(f"Saved {EXPECTED_COUNT} samples as after")).to_be_visible()
    _go(b, "Export")
    expect(b.get_by_label("File name")).to_have_value("after-cancel.jsonl")
    return _download(b, folder / "again.jsonl")


def _copy_documented(names: tuple[str, ...] = DOCUMENTED) -> None:
    """With DELIFT_UPDATE_SCREENSHOTS=1, copy the named screenshots into docs/screenshots."""
    if os.environ.get("DELIFT_UPDATE_SCREENSHOTS") != "1":
        return
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(ARTIFACTS / f"{name}.png", DOCS_SHOTS / f"{name}.png")


def _score_demo(page: Any, rows: int, k: int) -> None:
    """Load the first `rows` demo rows, score them in sparse mode with k candidates, and wait
    until the scores are ready."""
    _load_demo(page, 0, rows)
    _go(page, "Score")
    _choose_mode(page, "sparse")
    _set_number(page, "Candidates per row (k)", k)
    page.get_by_role("button", name="Start scoring").click()
    ready = page.get_by_text("The scores of the data loaded now are ready (pool).").first
    expect(ready).to_be_visible(timeout=SCORE_TIMEOUT_MS)


# -- the test -----------------------------------------------------------------------------


class Watch:
    """What pages ask of other hosts, and the JavaScript errors they log: an offline tool makes
    no outside requests, and a clean page logs no errors."""

    def __init__(self, app_url: str) -> None:
        self.app_url, self.outside, self.errors = app_url, [], []

    def attach(self, page: Any) -> Any:
        page.on("request", self._request)
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.set_default_timeout(UI_TIMEOUT_MS)
        return page

    def _request(self, request: Any) -> None:
        url = request.url
        if not url.startswith((self.app_url, "data:", "blob:", "about:")):
            self.outside.append(url)

    def check(self) -> None:
        assert self.outside == [], f"requests to other hosts: {sorted(set(self.outside))}"
        assert self.errors == [], f"console errors: {self.errors}"


def test_score_select_export_and_cancel_in_two_sessions(browser, app_url, tmp_path):
    expect.set_options(timeout=UI_TIMEOUT_MS)
    started = time.monotonic()
    watch = Watch(app_url)
    context_a = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context_b = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    a, b = watch.attach(context_a.new_page()), watch.attach(context_b.new_page())
    try:
        score_sparse(a, app_url)
        _log(f"scored in {time.monotonic() - started:.0f} s")
        selected, rows = select_and_export(a, tmp_path)
        compare_two(a)
        job = start_long_job(a)
        select_in_second_session(b, app_url, selected)
        _log(f"cancel took {cancel_job(a, job):.1f} s")
        assert select_again(b, selected, tmp_path) == rows
        watch.check()
        _copy_documented()
        _log(f"browser test took {time.monotonic() - started:.0f} s")
    except BaseException:
        for name, page in (("failure-a", a), ("failure-b", b)):
            with contextlib.suppress(PlaywrightError):
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        raise
    finally:
        context_a.close()
        context_b.close()


RESTART_POOL_ROWS = 12


def test_a_run_interrupted_by_a_server_restart_resumes(browser, server, tmp_path):
    """Start scoring, stop the server mid-run, start it again on the same cache: the run is
    offered for resumption, resumes with one click, and finishes."""
    expect.set_options(timeout=UI_TIMEOUT_MS)
    cache, log_path = tmp_path / "cache.duckdb", tmp_path / "streamlit-restart.log"
    context = browser.new_context(viewport=VIEWPORT)
    try:
        with server(cache, log_path) as url:
            watch = Watch(url)
            page = watch.attach(context.new_page())
            page.goto(url)
            _load_demo(page, 0, RESTART_POOL_ROWS)
            _go(page, "Score")
            _choose_mode(page, "exact")
            _set_number(page, "Batch size", 8)
            page.get_by_role("button", name="Start scoring").click()
            progress = page.get_by_test_id("stProgress").filter(has_text="scoring the pool")
            expect(progress).to_be_visible(timeout=SCORE_TIMEOUT_MS)
            watch.check()
        _log("server stopped mid-run")
        with server(cache, log_path) as url:
            page = Watch(url).attach(context.new_page())
            page.goto(url)
            _go(page, "Score")
            expect(page.get_by_role("heading", name="Unfinished runs")).to_be_visible()
            expect(page.get_by_text(f"rows 1-{RESTART_POOL_ROWS}")).to_be_visible()
            _shot(page, "score-unfinished")
            page.get_by_role("button", name="Resume", exact=True).click()
            ready = page.get_by_text("The latest scores").or_(
                page.get_by_text("The scores of the data loaded now are ready")
            )
            expect(ready.first).to_be_visible(timeout=SCORE_TIMEOUT_MS)
            expect(page.get_by_role("heading", name="Unfinished runs")).to_have_count(0)
    except BaseException:
        with contextlib.suppress(PlaywrightError, NameError):
            page.screenshot(path=str(ARTIFACTS / "failure-restart.png"))
        raise
    finally:
        context.close()
