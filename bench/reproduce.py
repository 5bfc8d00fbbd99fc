"""Reproduce the DELIFT comparison on real data: three stages, in-context evaluation.

    python bench/reproduce.py --stage all                       # the documented full run
    python bench/reproduce.py --stage instruction --pool 150    # smaller, faster

Per stage (sizes are the first N rows of each file; all three stages use a 30% budget):

  instruction  pool dolly_openqa.train, test dolly_openqa.test
  task         pool p3.train, targets gsm8k.train, test gsm8k.test
  continual    existing p3.train, new (pool) hotpotqa_cb.train, test hotpotqa_cb.test

Methods: Initial (no examples), Random (per-item mean over --seeds), DELIFT-SE, FL-only,
DELIFT, Full data; continual adds "Existing only". Each test item gets the --shots most
similar examples of the method's subset (continual: existing data + the subset). Scores:
teacher-forced mean log-prob of the gold answer on every test item, and ROUGE-1/L, embedding
cosine and exact match (where the task has one) on the first --generate items of the
--generate-stages (by default not GSM8K: its worked answers outgrow 64 new tokens). Intervals:
95% percentile bootstrap; differences between methods are paired over the same items.

Everything heavy (utility pairs, embeddings, item scores, generations) is cached in DuckDB
(--cache), so a rerun only formats the results. Results go to --out (JSON, with per-item
scores and subsets) and --plot (PNG); the markdown tables are printed to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from delift_core.cache import UtilityCache, default_cache_path  # noqa: E402
from delift_core.config import ScoringConfig  # noqa: E402
from delift_core.data import load_dataset  # noqa: E402
from delift_core.eval_compare import (  # noqa: E402
    DEFAULT_METHODS,
    StageData,
    compare_methods,
    summarize_results,
)
from delift_core.evaluate import EvalConfig  # noqa: E402
from delift_core.files import write_json_atomic  # noqa: E402
from delift_core.models import embedder_id, load_causal_lm, load_embedder  # noqa: E402
from delift_core.pipeline import Embedder, score_stage  # noqa: E402
from delift_core.selection import SelectionInputs, objective_value, select_subset  # noqa: E402

STAGE_FILES = {
    "instruction": {"pool": "dolly_openqa.train", "test": "dolly_openqa.test"},
    "task": {"pool": "p3.train", "targets": "gsm8k.train", "test": "gsm8k.test"},
    "continual": {"existing": "p3.train", "pool": "hotpotqa_cb.train", "test": "hotpotqa_cb.test"},
}
LABELS = {
    "initial": "Initial (no examples)",
    "existing": "Existing only",
    "random": "Random",
    "delift-se": "DELIFT-SE",
    "fl-only": "FL-only",
    "delift": "DELIFT",
    "delift-q": "DELIFT-Q",
    "full": "Full data",
}
GEN_METRICS = (("rouge1", "ROUGE-1"), ("rougeL", "ROUGE-L"), ("cosine", "cosine"), ("exact", "EM"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_data = os.environ.get("DELIFT_DATASETS", str(REPO.parent / "shared" / "datasets"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", choices=["all", *STAGE_FILES], default="all")
    p.add_argument("--datasets", default=default_data, help="folder of the *.jsonl files")
    p.add_argument("--pool", type=int, default=300, help="pool rows (instruction, task)")
    p.add_argument("--continual-pool", type=int, default=200, help="new rows (continual stage)")
    p.add_argument("--targets", type=int, default=50, help="target rows (task stage)")
    p.add_argument("--existing", type=int, default=200, help="existing rows (continual stage)")
    p.add_argument("--test", type=int, default=300, help="test rows per stage")
    p.add_argument("--generate", type=int, default=100, help="generate for the first N test rows")
    p.add_argument(
        "--generate-stages",
        default="instruction,continual",
        help="comma list of stages that generate (or all); GSM8K answers outgrow 64 new tokens",
    )
    p.add_argument("--budget", type=float, default=0.3)
    p.add_argument("--seeds", default="0,1,2", help="random-subset seeds")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--mode", choices=["exact", "sparse"], default="sparse")
    p.add_argument("--k", type=int, default=3, help="candidates per target (sparse mode)")
    p.add_argument("--max-response-tokens", type=int, default=512, help="scored in utility")
    p.add_argument("--kernel", choices=["minmax", "clip"], default="minmax")
    p.add_argument("--metric", choices=["rms", "logprob"], default="rms")
    p.add_argument("--shots", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-prompt-tokens", type=int, default=512)
    p.add_argument("--max-answer-tokens", type=int, default=128)
    p.add_argument("--model", default="default")
    p.add_argument("--embedder", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=str(default_cache_path().with_name("reproduce.duckdb")))
    p.add_argument("--out", default=str(REPO / "docs" / "results.json"))
    p.add_argument("--plot", default=str(REPO / "docs" / "results.png"))
    p.add_argument("--resamples", type=int, default=10_000)
    return p.parse_args(argv)


def read_rows(path: Path, limit: int) -> tuple[Any, ...]:
    """The first `limit` valid rows; invalid ones (a few P3 rows have an empty output) are
    skipped with a logged warning."""
    return load_dataset(path, limit=limit, skip_invalid=True).records


def load_stage(args: argparse.Namespace, stage: str) -> StageData:
    files = STAGE_FILES[stage]
    pool_rows = args.continual_pool if stage == "continual" else args.pool
    sizes = {"pool": pool_rows, "targets": args.targets, "existing": args.existing}
    sizes["test"] = args.test
    sets = {
        part: read_rows(Path(args.datasets) / f"{name}.jsonl", sizes[part])
        for part, name in files.items()
    }
    return StageData(stage, sets["pool"], sets["test"], sets.get("targets"), sets.get("existing"))


def fmt(entry: dict[str, Any] | None, digits: int = 3) -> str:
    if not entry:
        return "-"
    return f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def jaccard(a: Any, b: Any) -> float:
    a, b = set(map(int, a)), set(map(int, b))
    return round(len(a & b) / max(1, len(a | b)), 3)


def stored_dense(u: Any) -> np.ndarray:
    """A dense copy of a utility matrix with -inf where a sparse matrix stores nothing."""
    if not sp.issparse(u):
        return np.asarray(u, dtype=np.float64)
    coo = u.tocoo()
    dense = np.full(u.shape, -np.inf)
    dense[coo.row, coo.col] = coo.data
    return dense


def diagnose_stage(args, data: StageData, subsets, budget, lm, embedder, cache) -> dict[str, Any]:
    """Checks behind a DELIFT-vs-Random result, from the cached matrices (no new scoring):
    objective values of each subset under DELIFT's objective, subset overlaps, the other
    kernel scaling, the transposed orientation (instruction), and the shape of U."""
    scoring = ScoringConfig(mode=args.mode, k=args.k, max_response_tokens=args.max_response_tokens)
    stage = data.stage
    u = score_stage(
        lm, data.pool, scoring, targets=data.targets if stage == "task" else None,
        existing=data.existing if stage == "continual" else None, embedder=embedder, cache=cache,
    )  # fmt: skip
    inputs = SelectionInputs(
        n=len(data.pool),
        u_pool=u.pool.matrix(args.metric),
        u_query=u.query.matrix(args.metric) if u.query else None,
        u_private=u.private.matrix(args.metric) if u.private else None,
    )
    out: dict[str, Any] = {}
    out["objective"] = {
        label: round(
            objective_value(inputs, sub, method="delift", stage=stage, kernel=args.kernel), 3
        )
        for label, sub in subsets.items()
        if label != "full"
    }
    delift = subsets.get("delift")
    if delift is None:
        return out
    out["overlap_with_delift"] = {k: jaccard(v, delift) for k, v in subsets.items()}
    other = "clip" if args.kernel == "minmax" else "minmax"
    picked = select_subset(inputs, method="delift", stage=stage, kernel=other, max_budget=budget)
    out[f"overlap_{other}_kernel"] = jaccard(picked.take(budget), delift)
    if stage == "instruction":
        transposed = inputs.u_pool.T
        flipped = SelectionInputs(
            n=inputs.n,
            u_pool=transposed.tocsr()
            if sp.issparse(transposed)
            else np.ascontiguousarray(transposed),
        )
        picked = select_subset(flipped, method="delift", stage=stage, max_budget=budget)
        out["overlap_transposed"] = jaccard(picked.take(budget), delift)
    stored = stored_dense(u.pool.matrix(args.metric))
    values = stored[np.isfinite(stored)]
    out["u_pool_positive_share"] = round(float((values > 0).mean()), 3)
    best = np.argmax(stored, axis=1)
    out["rows_best_on_diagonal"] = round(float(np.mean(best == np.arange(len(best)))), 3)
    return out


def render_stage(stage: str, record: dict[str, Any]) -> str:
    summary, sizes = record["summary"], record["sizes"]
    lines = [f"### {stage}", ""]
    lines.append(
        "| method | examples | shots used | mean log-prob [95% CI] | vs Random [95% CI] |"
        " vs Initial [95% CI] |"
    )
    lines.append("|---|---|---|---|---|---|")
    for label, metrics in summary.items():
        if label.startswith("random-s"):
            continue
        tf = metrics.get("logprob", {})
        vs = tf.get("vs", {})
        lines.append(
            f"| {LABELS.get(label, label)} | {sizes.get(label, '-')} |"
            f" {record.get('mean_shots', {}).get(label, '-')} | {fmt(tf)} |"
            f" {fmt(vs.get('random'))} | {fmt(vs.get('initial'))} |"
        )
    generated = [m for m in summary.values() if "rouge1" in m]
    if generated:
        n = next(iter(generated))["rouge1"]["n"]
        present = [(k, name) for k, name in GEN_METRICS if any(k in m for m in generated)]
        lines += ["", f"Generation ({n} items):", ""]
        lines.append(
            "| method | " + " | ".join(name for _, name in present) + " | ROUGE-L vs Random |"
        )
        lines.append("|---|" + "---|" * (len(present) + 1))
        for label, metrics in summary.items():
            if label.startswith("random-s") or "rouge1" not in metrics:
                continue
            cells = [fmt(metrics.get(k)) for k, _ in present]
            vs = metrics["rougeL"].get("vs", {}).get("random")
            lines.append(f"| {LABELS.get(label, label)} | " + " | ".join(cells) + f" | {fmt(vs)} |")
    diag = record.get("diagnostics")
    if diag:
        lines += ["", "Checks (see 'What was checked'): `" + json.dumps(diag, sort_keys=True) + "`"]
    return "\n".join(lines) + "\n"


def plot_results(records: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(records)
    fig, axes = plt.subplots(2, len(stages), figsize=(4.6 * len(stages), 6.4), squeeze=False)
    for col, stage in enumerate(stages):
        summary = records[stage]["summary"]
        labels = [k for k in summary if not k.startswith("random-s") and "logprob" in summary[k]]
        for row, key in enumerate(("abs", "random")):
            ax = axes[row][col]
            shown = [k for k in labels if key == "abs" or (k != "random" and "random" in summary)]
            entries = [
                summary[k]["logprob"] if key == "abs" else summary[k]["logprob"]["vs"]["random"]
                for k in shown
            ]
            means = [e["mean"] for e in entries]
            errs = [
                [e["mean"] - e["low"] for e in entries],
                [e["high"] - e["mean"] for e in entries],
            ]
            colors = ["#c44e52" if k == "delift" else "#555555" for k in shown]
            x = np.arange(len(shown))
            if key == "abs":  # absolute values: points, a bar from 0 would mean nothing
                for xi, mean, lo, hi, color in zip(x, means, errs[0], errs[1], colors, strict=True):
                    ax.errorbar(xi, mean, yerr=[[lo], [hi]], fmt="o", color=color, capsize=3)
            else:
                ax.bar(x, means, yerr=errs, color=colors, capsize=3)
            ax.set_xticks(range(len(shown)), [LABELS.get(k, k).split(" (")[0] for k in shown])
            ax.tick_params(axis="x", rotation=45, labelsize=8)
            if key != "abs":
                ax.axhline(0, color="black", linewidth=0.6)
            if row == 0:
                ax.set_title(f"{stage} (n={records[stage]['test_items']})")
                ax.set_ylabel("mean log-prob / token" if col == 0 else "")
            elif col == 0:
                ax.set_ylabel("paired difference vs Random")
    fig.suptitle("Teacher-forced gold-answer log-prob, 95% bootstrap intervals", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_stage(args, stage, lm, embedder, cache) -> dict[str, Any]:
    data = load_stage(args, stage)
    gen_stages = STAGE_FILES if args.generate_stages == "all" else args.generate_stages.split(",")
    evaluation = EvalConfig(
        shots=args.shots,
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        max_answer_tokens=args.max_answer_tokens,
        generate_limit=args.generate if stage in gen_stages else 0,
    )
    scoring = ScoringConfig(mode=args.mode, k=args.k, max_response_tokens=args.max_response_tokens)
    methods = [m for m in args.methods.split(",") if m]
    if stage == "continual" and "existing" not in methods:
        methods.insert(1, "existing")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    last = [0.0]

    def progress(phase, p) -> None:
        if time.time() - last[0] > 30 or p.done == p.total:
            last[0] = time.time()
            print(f"  [{stage}] scoring {phase}: {p.done}/{p.total}", file=sys.stderr, flush=True)

    def step(label: str) -> None:
        print(f"  [{stage}] evaluating {label}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    comparison = compare_methods(
        lm, embedder, data, scoring, evaluation, budget=args.budget, methods=methods,
        seeds=seeds, kernel=args.kernel, metric=args.metric, cache=cache,
        on_progress=progress, on_step=step,
    )  # fmt: skip
    diagnostics = diagnose_stage(
        args, data, comparison.subsets, comparison.budget, lm, embedder, cache
    )
    existing = len(data.existing or []) if stage == "continual" else 0
    sizes = {label: len(s) + existing for label, s in comparison.subsets.items()}
    sizes |= {"initial": 0, "existing": existing, "random": comparison.budget + existing}
    return {
        "sizes": sizes,
        "pool": len(data.pool),
        "budget": comparison.budget,
        "test_items": len(data.test),
        "seconds": {k: round(v, 1) for k, v in comparison.seconds.items()}
        | {"total": round(time.perf_counter() - started, 1)},
        "diagnostics": diagnostics,
        "summary": summarize_results(comparison.results, resamples=args.resamples),
        "mean_shots": {
            label: round(float((r.shots >= 0).sum(axis=1).mean()), 2)
            for label, r in comparison.results.items()
        },
        "subsets": {k: v.tolist() for k, v in comparison.subsets.items()},
        "per_item": {
            label: {m: [round(float(x), 5) for x in v] for m, v in r.scores.items()}
            for label, r in comparison.results.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stages = list(STAGE_FILES) if args.stage == "all" else [args.stage]
    lm = load_causal_lm(args.model, args.device)
    embedder = Embedder(load_embedder(args.embedder, args.device), embedder_id(args.embedder))
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    records = dict(previous.get("stages", {}))
    with UtilityCache(args.cache) as cache:
        for stage in stages:
            print(f"stage {stage}", file=sys.stderr, flush=True)
            records[stage] = run_stage(args, stage, lm, embedder, cache)
            records[stage]["args"] = vars(args) | {"stage": stage}
            payload = {"model": lm.model_id, "embedder": embedder.key, "stages": records}
            write_json_atomic(out, payload)  # after every stage: partial results survive
    ordered = {s: records[s] for s in STAGE_FILES if s in records}
    for stage, record in ordered.items():
        print(render_stage(stage, record))
    if args.plot:
        plot_results(ordered, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
