"""Selection-quality benchmark: do the subsets beat random on noise, targeting and continual data?

    python bench/quality_scoring.py --split val && python bench/quality.py --split val
    python bench/quality_scoring.py --split test && python bench/quality.py --split test

Reads the bundles bench/quality_scoring.py wrote (no model needed). For every scenario of the
split it selects a 30% subset with Random (seeds), DELIFT (the paper's method), DELIFT-SE and
DELIFT-Q (DELIFT with the quality prior), and counts what the subset holds:

- S1 noise: corrupted rows kept: swapped, truncated and refused answers picked, plus duplicate
  rows picked together with the row they copy (a redundant pair);
- demo: `poor` rows and `near-duplicate` rows picked;
- S2 targeting: rows from the target's source; S3 continual: rows from the new sources.

--split val also searches DELIFT-Q's settings (signal, weight, gate, side weight, duplicate
threshold) and reports the best by a fixed rule (see `choose`); --split test / test2 run the
defaults of delift_core.config once. Round 1 chose signal, weight and gate and was judged on
`test`; round 2 added the side prior and the duplicate gate to the grid, the validation demo
(rows 150-299) to the rule, and is judged on `test2` (docs/quality.md). DELIFT-Q (round 1), the
earlier default, is reported beside the current one.
Results: JSON to --out; markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.quality_scoring import DEFAULT_BUNDLES  # noqa: E402
from bench.scenarios import SPLITS  # noqa: E402
from delift_core.config import (  # noqa: E402
    DEFAULT_DUPLICATE_THRESHOLD,
    DEFAULT_QUALITY_GATE,
    DEFAULT_QUALITY_WEIGHT,
    DEFAULT_SIDE_WEIGHT,
)
from delift_core.quality import (  # noqa: E402
    DEFAULT_SIGNAL,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    SIGNALS,
    AnswerScores,
    quality_score,
    quality_signals,
)
from delift_core.select.selection import SelectionInputs, select_subset  # noqa: E402

BUDGET = 0.3
CORRUPT = ("swapped", "truncated", "refusal")
WEIGHTS = (0.0, 1.0)
GATES = (0.3, 0.4, 0.5)
SIDE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
THRESHOLDS = (None, 0.95, 0.9, 0.85, 0.8)
ROUND_1 = {"signal": "help_logprob", "weight": 0.0, "gate": 0.5, "side": 0.0, "threshold": None}
SEED_BASE = {"val": 0, "test": 100, "test2": 200}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", choices=SPLITS, required=True)
    p.add_argument("--bundles", default=str(DEFAULT_BUNDLES))
    p.add_argument("--seeds", type=int, default=20, help="random seeds")
    p.add_argument("--out", default=None, help="JSON results (default docs/quality_<split>.json)")
    return p.parse_args(argv)


def _unpack(bundle: Any, prefix: str, *older: str) -> sp.csr_matrix | None:
    """The sparse matrix stored under `prefix` (or, in older bundles, under `older` names)."""
    if f"{prefix}_data" not in bundle:
        return _unpack(bundle, *older) if older else None
    shape = tuple(int(s) for s in bundle[f"{prefix}_shape"])
    return sp.csr_matrix(
        (bundle[f"{prefix}_data"], bundle[f"{prefix}_indices"], bundle[f"{prefix}_indptr"]),
        shape=shape,
    )


class Bundle:
    """One scored scenario: its selection inputs (without quality) and labels."""

    def __init__(self, path: Path) -> None:
        data = np.load(path)
        self.meta = json.loads(str(data["meta"]))
        self.name, self.stage, self.n = self.meta["name"], self.meta["stage"], self.meta["n"]
        self.labels = np.array(self.meta["labels"])
        self.duplicate_of = np.array(self.meta["duplicate_of"] or [-1] * self.n)
        self.inputs = SelectionInputs(
            self.n,
            u_pool=_unpack(data, "pool_rms"),
            # bundles written before the stage's names changed hold "query" and "private"
            u_targets=_unpack(data, "targets_rms", "query_rms"),
            u_existing=_unpack(data, "existing_rms", "private_rms"),
            emb_pool=data["emb_pool"],
            emb_targets=data.get("emb_targets", None),
            emb_existing=data.get("emb_existing", None),
        )
        self.signals = quality_signals(
            AnswerScores.from_array(data["answers"]), self.inputs.u_pool, data["emb_pool"]
        )
        self.count = max(1, round(BUDGET * self.n))

    def with_quality(self, signal: str) -> SelectionInputs:
        return SelectionInputs(
            **{**self.inputs.__dict__, "quality": quality_score(self.signals, signal)}
        )

    def measure(self, picked: np.ndarray) -> dict[str, float]:
        """What a subset holds (see the module docstring); 'bad' is the figure to lower,
        'good' the one to raise."""
        chosen = np.zeros(self.n, dtype=bool)
        chosen[picked] = True
        labels = self.labels[chosen]
        if self.name.startswith("S1"):
            out = {kind: float((labels == kind).sum()) for kind in CORRUPT}
            dup = np.flatnonzero(chosen & (self.duplicate_of >= 0))
            out["redundant"] = float(chosen[self.duplicate_of[dup]].sum())
            out["bad"] = sum(out[k] for k in (*CORRUPT, "redundant"))
            return out
        if self.name == "demo":
            poor, near = float((labels == "poor").sum()), float((labels == "near-duplicate").sum())
            return {"poor": poor, "near-duplicate": near, "bad": poor}
        if self.name.startswith("S2"):
            return {"good": float((labels == self.meta["on_target"]).sum())}
        return {"good": float(np.isin(labels, self.meta["new_sources"]).sum())}

    def auc(self) -> dict[str, float]:
        """AUC of each signal for clean vs bad rows (S1: swapped/truncated/refusal; demo: poor),
        oriented so that 1 = the signal ranks every clean row above every bad one."""
        if self.name.startswith("S1"):
            bad = np.isin(self.labels, CORRUPT)
            clean = self.labels == "clean"
        elif self.name == "demo":
            bad, clean = self.labels == "poor", self.labels == "good"
        else:
            return {}
        out = {}
        for name in SIGNALS:
            values = self.signals[name]
            if np.isnan(values).all():
                continue
            sign = (
                -1.0
                if name in LOWER_IS_BETTER or name in ("self_utility", "max_similarity")
                else 1.0
            )
            a, b = sign * values[clean], sign * values[bad]
            greater = (a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean()
            out[name] = round(float(greater), 3)
        return out


def select(bundle: Bundle, method: str, **kwargs: Any) -> np.ndarray:
    inputs = kwargs.pop("inputs", bundle.inputs)
    result = select_subset(
        inputs, method=method, stage=bundle.stage, max_budget=bundle.count, **kwargs
    )
    return result.take(bundle.count)


def random_stats(bundle: Bundle, seeds: list[int]) -> dict[str, Any]:
    runs = [bundle.measure(select(bundle, "random", seed=s)) for s in seeds]
    keys = runs[0].keys()
    return {
        k: {
            "mean": float(np.mean([r[k] for r in runs])),
            "low": float(np.percentile([r[k] for r in runs], 2.5)),
            "high": float(np.percentile([r[k] for r in runs], 97.5)),
            "per_seed": [r[k] for r in runs],
        }
        for k in keys
    }


def paired(value: float, per_seed: list[float], resamples: int = 10_000) -> dict[str, float]:
    """method - random: mean over seeds and a 95% bootstrap interval over seeds."""
    diffs = value - np.asarray(per_seed)
    rng = np.random.default_rng(0)
    means = diffs[rng.integers(0, len(diffs), (resamples, len(diffs)))].mean(axis=1)
    return {
        "mean": float(diffs.mean()),
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
    }


def headline(bundle: Bundle, measured: dict[str, float]) -> tuple[str, float]:
    key = "good" if "good" in measured else "bad"
    return key, measured[key]


def choose(bundles: list[Bundle], seeds: list[int]) -> list[dict[str, Any]]:
    """Grid over DELIFT-Q settings on validation. Rule, fixed before the test2 run: a setting
    qualifies when on every S1 pool it keeps at most half the bad rows of Random's mean, on every
    S2/S3 pool it picks more good rows than Random's mean, and on the demo it keeps at most half
    of Random's mean of `poor` rows and fewer `near-duplicate` rows than Random's mean;
    qualifying settings rank by the worst S1 ratio (bad kept / Random's), then by the mean S2/S3
    gain over Random (relative), then prefer fewer priors (smaller weight, side weight and gate;
    no duplicate gate before a strict one). Returns every setting, best first."""
    randoms = {b.name: random_stats(b, seeds) for b in bundles}
    rows = []
    for signal, weight, gate, side, threshold in itertools.product(
        HIGHER_IS_BETTER + LOWER_IS_BETTER, WEIGHTS, GATES, SIDE_WEIGHTS, THRESHOLDS
    ):
        settings = {"signal": signal, "weight": weight, "gate": gate, "side": side,
                    "threshold": threshold}  # fmt: skip
        ratios, gains, demo_ok = [], [], True
        for b in bundles:
            m = b.measure(select_q(b, settings))
            rand = randoms[b.name]
            if b.name == "demo":
                demo_ok = (
                    m["poor"] <= 0.5 * rand["poor"]["mean"]
                    and m["near-duplicate"] < rand["near-duplicate"]["mean"]
                )
                continue
            key, value = headline(b, m)
            base = rand[key]["mean"]
            if key == "bad":
                ratios.append(value / base if base else float("inf"))
            else:
                gains.append((value - base) / base if base else 0.0)
        qualifies = all(r <= 0.5 for r in ratios) and all(g > 0 for g in gains) and demo_ok
        rows.append({
            **settings, "qualifies": qualifies, "demo_ok": demo_ok,
            "worst_s1_ratio": max(ratios), "mean_s1_ratio": float(np.mean(ratios)),
            "mean_gain": float(np.mean(gains)), "min_gain": float(min(gains)),
        })  # fmt: skip
    rows.sort(
        key=lambda r: (
            not r["qualifies"], round(r["worst_s1_ratio"], 6), -round(r["mean_gain"], 6),
            r["weight"], r["side"], r["gate"], -(r["threshold"] or 2.0),
        )
    )  # fmt: skip
    return rows


def select_q(bundle: Bundle, settings: dict[str, Any]) -> np.ndarray:
    """DELIFT-Q's subset with the given settings (signal, weight, gate, side, threshold)."""
    return select(
        bundle, "delift-q", inputs=bundle.with_quality(settings["signal"]),
        quality_weight=settings["weight"], quality_gate=settings["gate"],
        side_weight=settings["side"], duplicate_threshold=settings["threshold"],
    )  # fmt: skip


def compare(bundle: Bundle, seeds: list[int], settings: dict[str, Any]) -> dict:
    rand = random_stats(bundle, seeds)
    out: dict[str, Any] = {"random": rand, "n": bundle.n, "count": bundle.count}
    timings = {}
    for method, run in (
        ("delift", lambda: select(bundle, "delift")),
        ("delift-se", lambda: select(bundle, "delift-se")),
        ("delift-q-r1", lambda: select_q(bundle, ROUND_1)),
        ("delift-q", lambda: select_q(bundle, settings)),
    ):
        started = time.perf_counter()
        measured = bundle.measure(run())
        timings[method] = time.perf_counter() - started
        out[method] = {
            k: {"value": v, "vs_random": paired(v, rand[k]["per_seed"])}
            for k, v in measured.items()
        }
    out["select_seconds"] = timings
    out["scoring_seconds"] = bundle.meta["seconds"]
    out["auc"] = bundle.auc()
    return out


def print_tables(results: dict[str, Any]) -> None:
    for name, res in results["scenarios"].items():
        keys = [k for k in res["random"] if k != "per_seed"]
        print(f"\n### {name} (n = {res['n']}, {res['count']} picked)\n")
        print("| method | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        r = res["random"]
        cells = [f"{r[k]['mean']:.1f} [{r[k]['low']:.0f}, {r[k]['high']:.0f}]" for k in keys]
        print(f"| Random ({len(r[keys[0]]['per_seed'])} seeds) | " + " | ".join(cells) + " |")
        for method in ("delift", "delift-se", "delift-q-r1", "delift-q"):
            m = res[method]
            cells = [
                f"{m[k]['value']:.0f} ({m[k]['vs_random']['mean']:+.1f}"
                f" [{m[k]['vs_random']['low']:+.1f}, {m[k]['vs_random']['high']:+.1f}])"
                for k in keys
            ]
            print(f"| {method} | " + " | ".join(cells) + " |")
        if res["auc"]:
            print("\nAUC clean vs bad: " + ", ".join(f"{k} {v}" for k, v in res["auc"].items()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(args.bundles) / args.split
    bundles = [Bundle(p) for p in sorted(folder.glob("*.npz"))]
    if not bundles:
        raise SystemExit(
            f"no bundles in {folder}; run bench/quality_scoring.py --split {args.split}"
        )
    # Each split has its own random seeds as well as its own rows.
    seeds = list(range(SEED_BASE[args.split], SEED_BASE[args.split] + args.seeds))
    results: dict[str, Any] = {"split": args.split, "budget": BUDGET, "seeds": seeds}
    if args.split == "val":
        grid = choose(bundles, seeds)
        results["grid"] = grid
        settings = {k: grid[0][k] for k in ROUND_1}
        print("best settings on validation:", json.dumps(grid[0]))
        for row in grid[:10]:
            print(json.dumps(row))
    else:
        settings = {
            "signal": DEFAULT_SIGNAL, "weight": DEFAULT_QUALITY_WEIGHT,
            "gate": DEFAULT_QUALITY_GATE, "side": DEFAULT_SIDE_WEIGHT,
            "threshold": DEFAULT_DUPLICATE_THRESHOLD,
        }  # fmt: skip
    results["settings"] = settings
    results["scenarios"] = {b.name: compare(b, seeds, settings) for b in bundles}
    print_tables(results)
    out = Path(args.out or REPO / "docs" / f"quality_{args.split}.json")
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
