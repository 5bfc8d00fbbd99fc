"""Time to build the Select page's pool map at 100,000 points, and (--browser) to draw it.

    python bench/map_render.py            # 100,000 points, 6 categories, best of 3
    python bench/map_render.py --n 20000 --repeats 5
    python bench/map_render.py --browser  # also Plotly's draw time in headless Chromium

Cases: coloured by a categorical column with 6 categories, the same with a
search highlight of 1% of the points and sizes from a numeric column, coloured by a continuous
column, and the plain selected / discarded map for reference. "build" is the Python figure
(`ui.map_colour.column_map`); "to JSON" adds serialising it as st.plotly_chart does
(`fig.to_json()`), which is what the browser then receives. "draw" (--browser) loads the
plotly.js bundled with the plotly package (the same major version Streamlit's frontend uses)
into a blank page of headless Chromium (Playwright) and times `Plotly.newPlot` on that JSON
until the browser has painted the frame after it: the browser's share of showing the map,
without Streamlit's own frontend around it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ui import map_colour, plots  # noqa: E402


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, float, object]:
    """(best, median) seconds over `repeats` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), out


def draw_seconds(figures: dict[str, str], repeats: int) -> dict[str, tuple[float, float]]:
    """(best, median) seconds for plotly.js to draw each figure JSON in headless Chromium."""
    import plotly
    from playwright.sync_api import sync_playwright

    script = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    out = {}
    with sync_playwright() as pw:
        # The system Chromium the browser tests use (DELIFT_CHROMIUM overrides it).
        path = os.environ.get("DELIFT_CHROMIUM", "/usr/bin/chromium")
        browser = pw.chromium.launch(executable_path=path, args=["--enable-unsafe-swiftshader"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.set_content("<div id='map' style='width:1100px;height:700px'></div>")
        page.add_script_tag(path=str(script))
        for name, payload in figures.items():
            times = []
            for _ in range(repeats):
                seconds = page.evaluate(
                    """async (payload) => {
                        const fig = JSON.parse(payload);
                        Plotly.purge('map');
                        const start = performance.now();
                        await Plotly.newPlot('map', fig.data, fig.layout);
                        await new Promise(r => requestAnimationFrame(() =>
                            requestAnimationFrame(r)));
                        return (performance.now() - start) / 1000;
                    }""",
                    payload,
                )
                times.append(seconds)
            out[name] = (min(times), statistics.median(times))
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--browser", action="store_true", help="also time the draw in Chromium")
    args = parser.parse_args()
    n = args.n
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(n, 2)).astype(np.float32)
    hover = plots.hover_lines([f"s{i}" for i in range(n)], ["an instruction"] * n)
    order = rng.permutation(n)
    gains = np.sort(rng.random(n))[::-1]
    count = int(0.3 * n)
    families = np.array(["qa", "math", "code", "summary", "chat", "rewrite"])
    labels = families[rng.integers(0, len(families), n)]
    lengths = rng.lognormal(5, 1, n)
    hits = np.sort(rng.choice(n, n // 100, replace=False))
    base = (coords, hover, order, gains, count)
    cases = {
        "categorical, 6 categories": lambda: map_colour.column_map(*base, labels, name="family"),
        "categorical + highlight 1% + sizes": lambda: map_colour.column_map(
            *base, labels, name="family", highlight=hits, sizes=lengths
        ),
        "continuous (colour bar)": lambda: map_colour.column_map(*base, lengths, name="length"),
        "selected / discarded": lambda: map_colour.column_map(*base),
    }
    print(f"n = {n:,} points, best (median) of {args.repeats}")
    print("| case | traces | points drawn | build (s) | build + to JSON (s) | JSON |")
    print("|---|---|---|---|---|---|")
    payloads = {}
    for name, build in cases.items():
        best, median, (fig, _) = best_of(args.repeats, build)
        both, both_median, payload = best_of(args.repeats, lambda b=build: b()[0].to_json())
        payloads[name] = payload
        drawn = sum(len(t.x) for t in fig.data)
        print(
            f"| {name} | {len(fig.data)} | {drawn:,} | {best:.3f} ({median:.3f}) "
            f"| {both:.3f} ({both_median:.3f}) | {len(payload) / 1e6:.1f} MB |"
        )
    if args.browser:
        print("\n| case | draw in Chromium (s) |\n|---|---|")
        for name, (best, median) in draw_seconds(payloads, args.repeats).items():
            print(f"| {name} | {best:.3f} ({median:.3f}) |")


if __name__ == "__main__":
    main()
