"""Reproduce the DELIFT comparison on real data: three stages, in-context or fine-tuning evaluation.

    python bench/reproduce.py --stage all                       # the documented full run
    python bench/reproduce.py --stage instruction --pool 150    # smaller, faster
    python bench/reproduce.py --protocol finetune --stage task --pool 80 --test 50

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

--protocol finetune (eval_compare.compare_methods, finetune.py): each method's subset (continual:
existing data + the subset) trains a LoRA adapter with the defaults of `delift eval --protocol
finetune` (FinetuneConfig; --train-epochs, --train-max-tokens and --train-seeds change them),
and the test items are scored without examples. Methods default to Initial (no fine-tuning),
Random, DELIFT-SE, DELIFT, DELIFT-Q and Full data; nothing is generated unless --generate says
so. Results go to docs/results_finetune.json/.png; scores of a trained subset are cached under
its fine-tuned model id, so a rerun trains nothing.

Everything heavy (utility pairs, embeddings, item scores, generations) is cached in DuckDB
(--cache), so a rerun only formats the results. Results go to --out (JSON, with per-item
scores and subsets) and --plot (PNG); the markdown tables are printed to stdout. Sparse
candidates are searched within the pool read, so a smaller --pool reuses only part of the
utility pairs cached for the full one.
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

from bench.reproduce_report import plot_results, render_stage  # noqa: E402
from delift_core.cache import UtilityCache, default_cache_path  # noqa: E402
from delift_core.config import ScoringConfig  # noqa: E402
from delift_core.data.dataset import load_dataset  # noqa: E402
from delift_core.evaluation.eval_compare import (  # noqa: E402
    DEFAULT_METHODS,
    StageData,
    compare_methods,
    summarize_results,
)
from delift_core.evaluation.evaluate import EvalConfig  # noqa: E402
from delift_core.evaluation.finetune_types import FinetuneConfig, FinetuneResult  # noqa: E402
from delift_core.files import write_json_atomic  # noqa: E402
from delift_core.models import embedder_id, load_causal_lm, load_embedder  # noqa: E402
from delift_core.pipeline import Embedder, score_stage  # noqa: E402
from delift_core.select.selection import SelectionInputs, objective_value, select_subset  # noqa: E402

STAGE_FILES = {
    "instruction": {"pool": "dolly_openqa.train", "test": "dolly_openqa.test"},
    "task": {"pool": "p3.train", "targets": "gsm8k.train", "test": "gsm8k.test"},
    "continual": {"existing": "p3.train", "pool": "hotpotqa_cb.train", "test": "hotpotqa_cb.test"},
}
FINETUNE_METHODS = ("initial", "random", "delift-se", "delift", "delift-q", "full")
OUTPUTS = {"icl": ("results.json", "results.png"), "finetune": ("results_finetune.json",
           "results_finetune.png")}  # fmt: skip


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
    p.add_argument(
        "--generate", type=int, help="generate for the first N test rows (100; finetune: 0)"
    )
    p.add_argument(
        "--generate-stages",
        default="instruction,continual",
        help="comma list of stages that generate (or all); GSM8K answers outgrow 64 new tokens",
    )
    p.add_argument("--budget", type=float, default=0.3)
    p.add_argument("--seeds", default="0,1,2", help="random-subset seeds")
    p.add_argument("--methods", help="comma list (icl: DEFAULT_METHODS; finetune: 6 methods)")
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
    p.add_argument("--out", help="JSON results (docs/results.json; finetune: results_finetune)")
    p.add_argument("--plot", help="PNG (docs/results.png; finetune: results_finetune.png)")
    p.add_argument("--resamples", type=int, default=10_000)
    p.add_argument("--protocol", choices=["icl", "finetune"], default="icl")
    ft = p.add_argument_group("fine-tuning (--protocol finetune)")
    ft.add_argument("--train-epochs", type=int, default=FinetuneConfig.epochs)
    ft.add_argument(
        "--train-max-tokens", type=int, default=FinetuneConfig.max_tokens, help="per row"
    )
    ft.add_argument("--train-seeds", default="0", help="training seeds of non-random subsets")
    args = p.parse_args(argv)
    finetune = args.protocol == "finetune"
    out, plot = OUTPUTS[args.protocol]
    args.out = args.out or str(REPO / "docs" / out)
    args.plot = str(REPO / "docs" / plot) if args.plot is None else args.plot
    args.generate = args.generate if args.generate is not None else 0 if finetune else 100
    args.methods = args.methods or ",".join(FINETUNE_METHODS if finetune else DEFAULT_METHODS)
    return args


def finetune_config(args: argparse.Namespace) -> FinetuneConfig | None:
    """The training settings (FinetuneConfig defaults but for the --train-* options), or None."""
    if args.protocol != "finetune":
        return None
    return FinetuneConfig(epochs=args.train_epochs, max_tokens=args.train_max_tokens)


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
    inputs = SelectionInputs.from_stage(u, args.metric)
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


def kept_training(previous: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Training statistics of a previous run of the stage that are still true: the same training
    settings, subsets and existing data (a rerun finds those scores cached and trains nothing)."""
    same = ("finetune", "subsets", "sizes")
    if not previous or any(previous.get(k) != record.get(k) for k in same):
        return {}
    return dict(previous.get("training", {}))


def run_stage(args, stage, lm, embedder, cache, previous=None) -> dict[str, Any]:
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
    finetune = finetune_config(args)
    training: dict[str, dict[str, Any]] = {}
    last = [0.0]

    def progress(phase, p) -> None:
        if time.time() - last[0] > 30 or p.done == p.total:
            last[0] = time.time()
            verb = "" if phase.startswith("fine-tune") else "scoring "
            print(f"  [{stage}] {verb}{phase}: {p.done}/{p.total}", file=sys.stderr, flush=True)

    def step(label: str) -> None:
        print(f"  [{stage}] evaluating {label}", file=sys.stderr, flush=True)

    def trained(label: str, result: FinetuneResult) -> None:
        training[label] = {
            "rows": result.rows, "truncated": result.truncated, "steps": len(result.losses),
            "epoch_losses": [round(x, 4) for x in result.epoch_losses],
            "tokens": result.tokens, "seconds": round(sum(result.step_seconds), 1),
            "tokens_per_second": round(result.tokens_per_second, 1),
        }  # fmt: skip
        print(f"  [{stage}] trained {label}: {training[label]}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    comparison = compare_methods(
        lm, embedder, data, scoring, evaluation, budget=args.budget, methods=methods,
        seeds=seeds, kernel=args.kernel, metric=args.metric, cache=cache,
        on_progress=progress, on_step=step, protocol=args.protocol, finetune=finetune,
        train_seeds=[int(s) for s in args.train_seeds.split(",") if s], on_trained=trained,
    )  # fmt: skip
    diagnostics = diagnose_stage(
        args, data, comparison.subsets, comparison.budget, lm, embedder, cache
    )
    existing = len(data.existing or []) if stage == "continual" else 0
    sizes = {label: len(s) + existing for label, s in comparison.subsets.items()}
    sizes |= {"initial": 0, "existing": existing, "random": comparison.budget + existing}
    record = {
        "sizes": sizes,
        "pool": len(data.pool),
        "budget": comparison.budget,
        "test_items": len(data.test),
        "seconds": {k: round(v, 1) for k, v in comparison.seconds.items()}
        | {"total": round(time.perf_counter() - started, 1)},
        "diagnostics": diagnostics,
        "summary": summarize_results(comparison.results, resamples=args.resamples),
        "subsets": {k: v.tolist() for k, v in comparison.subsets.items()},
        "per_item": {
            label: {m: [round(float(x), 5) for x in v] for m, v in r.scores.items()}
            for label, r in comparison.results.items()
        },
    }
    if finetune is None:
        record["mean_shots"] = {
            label: round(float((r.shots >= 0).sum(axis=1).mean()), 2)
            for label, r in comparison.results.items()
        }
        return record
    record |= {"protocol": "finetune", "finetune": finetune.as_dict()}
    record["training"] = kept_training(previous or {}, record) | training
    return record


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
            records[stage] = run_stage(args, stage, lm, embedder, cache, records.get(stage))
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
