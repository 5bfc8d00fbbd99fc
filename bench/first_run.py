"""A new user's first score: the app started on an empty cache, the demo slice it opens with,
the Score page's default run, timed from the click to "ready" in headless Chromium, then the
map on Select.

    python bench/first_run.py [--cache DIR]

Prints the mode and forward passes the page proposed; the seconds from starting the server to
the app answering, from opening the app to the click on "Start scoring", from the click to the
page saying the scores are ready, and from then (a click on Select in the sidebar) to the map on
Select (its own job, queued behind the scores); and the machine's load average before and
after. The model's safetensors copy (`delift_core/model_copies.py`) is used as it is on this
machine: the first start on a new machine adds its one-off conversion (docs/benchmarks.md,
"Model start-up").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402

READY = "The scores of the data loaded now are ready (pool)."
TIMEOUT_MS = 1_800_000


def _metric(page, label: str) -> str:
    title = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    return page.get_by_test_id("stMetric").filter(has=title).get_by_test_id("stMetricValue")


def first_run(cache: Path) -> dict[str, object]:
    from playwright.sync_api import expect, sync_playwright

    log = cache / "server.log"
    load_before = os.getloadavg()  # other work on the machine inflates every figure
    launched = time.monotonic()
    with serve(cache / "cache.duckdb", log) as url, sync_playwright() as p:
        serving = time.monotonic()
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)
        opened = time.monotonic()
        page.goto(url)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Score", exact=True).click()
        page.get_by_role("heading", name="Score", exact=True).wait_for()
        mode = page.get_by_test_id("stRadio").filter(has_text="Mode")
        chosen = mode.locator("label").filter(has=page.locator("input:checked")).inner_text()
        passes = _metric(page, "Forward passes").inner_text()
        clicked = time.monotonic()
        page.get_by_role("button", name="Start scoring").click()
        expect(page.get_by_text(READY).first).to_be_visible(timeout=TIMEOUT_MS)
        done = time.monotonic()
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Select", exact=True).click()
        page.get_by_role("heading", name="Select", exact=True).wait_for()
        chart = page.locator(".st-key-select_map .js-plotly-plot")
        expect(chart.first).to_be_visible(timeout=TIMEOUT_MS)
        mapped = time.monotonic()
        browser.close()
    return {
        "mode": chosen.strip(),
        "forward_passes": passes,
        "seconds_server_start": round(serving - launched, 1),
        "seconds_open_to_click": round(clicked - opened, 1),
        "seconds_click_to_ready": round(done - clicked, 1),
        "seconds_ready_to_map": round(mapped - done, 1),
        "seconds_server_start_to_ready": round(done - launched, 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", help="cache folder (default: a new temporary one)")
    args = p.parse_args(argv)
    if args.cache:
        cache = Path(args.cache)
        cache.mkdir(parents=True, exist_ok=True)
        result = first_run(cache)
    else:
        with tempfile.TemporaryDirectory() as folder:
            result = first_run(Path(folder))
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
