"""`delift eval`: select with several methods and compare them by in-context evaluation.

    delift eval pool.jsonl --test test.jsonl --budget 0.3 --methods initial,random,delift,full

The stage follows the inputs (--targets: task, --existing: continual, else instruction) unless
--stage says otherwise. To evaluate an exported subset as it is, pass it as the data with
`--methods full` (every row of the data becomes an example).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from delift_core.errors import ConfigError

_METRIC_HEADERS = (
    ("logprob", "log-prob"),
    ("rouge1", "ROUGE-1"),
    ("rougeL", "ROUGE-L"),
    ("cosine", "cosine"),
    ("exact", "exact"),
)


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers like 0,1,2; got {text!r}"
        ) from None


def _budget(text: str) -> float | int:
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction or a count; got {text!r}") from None


def add_eval_parser(subparsers: Any) -> None:
    """Add the `eval` subcommand to the `delift` parser's subparsers."""
    from delift_core.cli import add_input_arguments
    from delift_core.eval_compare import DEFAULT_METHODS

    p = subparsers.add_parser(
        "eval",
        help="compare selection methods by in-context evaluation on a test set",
        description=__doc__.split("\n\n")[0],
    )
    add_input_arguments(p)
    p.add_argument("--test", required=True, help="test set (disjoint from the data)")
    p.add_argument("--test-limit", type=int, help="use only the first N test rows")
    p.add_argument("--stage", choices=["auto", "instruction", "task", "continual"], default="auto")
    p.add_argument("--budget", type=_budget, default=0.3, help="fraction (0.3) or count (50)")
    p.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS),
        help="comma list of initial, random, delift-se, fl-only, delift, full (continual: existing)",
    )  # fmt: skip
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="random-subset seeds")
    p.add_argument("--kernel", choices=["minmax", "clip"], default="minmax")
    p.add_argument("--metric", choices=["rms", "logprob"], default="rms")
    p.add_argument("--shots", type=int, default=5, help="retrieved examples per test prompt")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--max-prompt-tokens", type=int, default=2048)
    p.add_argument("--max-answer-tokens", type=int, default=512)
    p.add_argument(
        "--generate", type=int, help="generate for the first N test rows only (default all; 0 none)"
    )
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--out", help="write the summary and per-item scores as JSON here")


def _stage_of(args: argparse.Namespace) -> str:
    if args.stage != "auto":
        return args.stage
    if args.targets and args.existing:
        raise ConfigError("give --targets (task stage) or --existing (continual), not both")
    return "task" if args.targets else "continual" if args.existing else "instruction"


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table: per method, each measured metric's mean [95% CI] and the paired
    difference of log-prob against Random."""
    measured = [
        (key, name) for key, name in _METRIC_HEADERS if any(key in m for m in summary.values())
    ]
    header = ["method", *[name for _, name in measured], "log-prob vs random"]
    rows = [header]
    for label, metrics in summary.items():
        vs = metrics.get("logprob", {}).get("vs", {}).get("random")
        rows.append([label, *[_cell(metrics.get(key)) for key, _ in measured], _cell(vs)])
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def cmd_eval(args: argparse.Namespace) -> int:
    """Run `delift eval`; returns the exit code."""
    from delift_core.cache import UtilityCache
    from delift_core.cli import _field_map
    from delift_core.cli_commands import ProgressBar, load_inputs, scoring_config
    from delift_core.data import load_dataset
    from delift_core.eval_compare import (
        StageData,
        check_methods,
        compare_methods,
        summarize_results,
    )
    from delift_core.evaluate import EvalConfig
    from delift_core.files import write_json_atomic
    from delift_core.models import embedder_id, load_causal_lm, load_embedder
    from delift_core.pipeline import Embedder

    stage = _stage_of(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ConfigError("--methods names no method")
    check_methods(methods, stage)
    if "random" in methods and not args.seeds:
        raise ConfigError("--seeds must name at least one seed for method 'random'")
    scoring = scoring_config(args)
    evaluation = EvalConfig(
        shots=args.shots, max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens, max_answer_tokens=args.max_answer_tokens,
        generate_limit=args.generate, batch_size=scoring.batch_size,
        max_batch_tokens=scoring.max_batch_tokens,
    )  # fmt: skip
    inputs = load_inputs(args)
    test = load_dataset(
        args.test, field_map=_field_map(args.field), limit=args.test_limit,
        skip_invalid=args.skip_invalid,
    )  # fmt: skip
    for warning in test.warnings:
        print(f"delift: warning: {warning}", file=sys.stderr)
    data = StageData(
        stage, inputs.pool.records, test.records,
        targets=inputs.targets.records if inputs.targets else None,
        existing=inputs.existing.records if inputs.existing else None,
    )  # fmt: skip
    lm = load_causal_lm(args.model, args.device)
    embedder = Embedder(load_embedder(args.embedder, args.device), embedder_id(args.embedder))
    bar = ProgressBar()
    started = time.perf_counter()

    def step(label: str) -> None:
        bar.close()
        print(f"delift: evaluating {label} on {len(test)} test items", file=sys.stderr)

    with UtilityCache(args.cache) as cache:
        try:
            comparison = compare_methods(
                lm, embedder, data, scoring, evaluation, budget=args.budget, methods=methods,
                seeds=args.seeds, kernel=args.kernel, metric=args.metric, cache=cache,
                on_progress=bar, on_step=step,
            )  # fmt: skip
        finally:
            bar.close()
    summary = summarize_results(comparison.results, resamples=args.resamples)
    print(f"stage {stage}, budget {comparison.budget} of {len(data.pool)}, {len(test)} test items")
    print(format_summary(summary))
    if args.out:
        payload = {
            "command": "eval",
            "stage": stage,
            "model": lm.model_id,
            "embedder": embedder.key,
            "budget": comparison.budget,
            "methods": methods,
            "seeds": args.seeds,
            "eval": {k: v for k, v in vars(evaluation).items() if not isinstance(v, str)},
            "scoring": scoring.as_dict() | {"template": scoring.template.hash},
            "summary": summary,
            "subsets": {k: np.asarray(v).tolist() for k, v in comparison.subsets.items()},
            "per_item": {
                label: {m: [float(x) for x in v] for m, v in r.scores.items()}
                for label, r in comparison.results.items()
            },
            "predictions": {label: list(r.predictions) for label, r in comparison.results.items()},
            "seconds": round(time.perf_counter() - started, 2),
        }
        path = write_json_atomic(Path(args.out), payload)
        print(f"delift: wrote {path}", file=sys.stderr)
    return 0
