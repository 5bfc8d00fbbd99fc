"""Time to build the Select page's pool map at 100,000 points (no browser).

    python bench/map_render.py            # 100,000 points, 6 categories, best of 3
    python bench/map_render.py --n 20000 --repeats 5

Cases: coloured by a categorical column with 6 categories, the same with a
search highlight of 1% of the points and sizes from a numeric column, coloured by a continuous
column, and the plain selected / discarded map for reference. "build" is the Python figure
(`ui.map_colour.column_map`); "to JSON" adds serialising it as st.plotly_chart does
(`fig.to_json()`), which is what the browser then receives.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
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
    print("| case | traces | points drawn | build (s) | build + to JSON (s) |")
    print("|---|---|---|---|---|")
    for name, build in cases.items():
        best, median, (fig, _) = best_of(args.repeats, build)
        both, both_median, _ = best_of(args.repeats, lambda b=build: b()[0].to_json())
        drawn = sum(len(t.x) for t in fig.data)
        print(
            f"| {name} | {len(fig.data)} | {drawn:,} | {best:.3f} ({median:.3f}) "
            f"| {both:.3f} ({both_median:.3f}) |"
        )


if __name__ == "__main__":
    main()
