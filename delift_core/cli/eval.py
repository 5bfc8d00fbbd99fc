"""`delift eval`: select with several methods and compare them by in-context evaluation or by
fine-tuning.

    delift eval pool.jsonl --test test.jsonl --budget 0.3 --methods initial,random,delift,full
    delift eval pool.jsonl --test test.jsonl --protocol finetune --epochs 3 --methods random,delift

The stage follows the inputs (--targets: task, --existing: continual, else instruction) unless
--stage says otherwise. To evaluate an exported subset as it is, pass it as the data with
`--methods full` (every row of the data becomes an example, or the training set).
--save-adapter DIR keeps the weights of a fine-tuning run; it needs exactly one run (one
method other than initial, one train seed, random with one seed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from delift_core.cache import UtilityCache, check_cache
from delift_core.cli.common import (
    InputOptions,
    ModelOptions,
    ProgressBar,
    add_input_arguments,
    budget_arg,
    load_inputs,
    positive_int,
    print_warnings,
    scoring_config,
    whole_number,
)
from delift_core.cli.eval_report import EvalPlan, eval_payload, format_summary
from delift_core.cli.scoring import load_lm, load_sentence_embedder
from delift_core.config import ScoringConfig
from delift_core.errors import ConfigError
from delift_core.evaluation.eval_compare import (
    DEFAULT_METHODS,
    PROTOCOLS,
    Comparison,
    StageData,
    check_methods,
    compare_methods,
    summarize_results,
)
from delift_core.evaluation.evaluate import EvalConfig
from delift_core.evaluation.finetune import save_adapter
from delift_core.evaluation.finetune_types import FINETUNE_METHODS, FinetuneConfig, FinetuneResult
from delift_core.files import write_json_atomic
from delift_core.utility import Progress


def _int_list(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 0 like 0,1,2; got {text!r}")
    return [int(part) for part in parts]


def add_parser(subparsers: Any) -> None:
    """Add `eval` to the `delift` parser's subparsers."""
    p = subparsers.add_parser(
        "eval",
        help="compare selection methods by in-context or fine-tuning evaluation on a test set",
        description=__doc__.split("\n\n")[0],
    )
    add_input_arguments(p)
    p.add_argument("--test", required=True, help="test set (disjoint from the data)")
    p.add_argument("--test-limit", type=positive_int, help="use only the first N test rows")
    p.add_argument("--stage", choices=["auto", "instruction", "task", "continual"], default="auto")
    p.add_argument("--budget", type=budget_arg, default=0.3, help="fraction (0.3) or count (50)")
    p.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS),
        help="comma list of initial, random, delift-se, fl-only, delift, delift-q, full"
        " (continual: existing)",
    )  # fmt: skip
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="random-subset seeds")
    p.add_argument("--kernel", choices=["minmax", "clip"], default="minmax")
    p.add_argument("--metric", choices=["rms", "logprob"], default="rms")
    p.add_argument(
        "--shots", type=whole_number(0), default=5, help="retrieved examples per test prompt"
    )
    p.add_argument("--max-new-tokens", type=positive_int, default=128)
    p.add_argument("--max-prompt-tokens", type=positive_int, default=2048)
    p.add_argument("--max-answer-tokens", type=positive_int, default=512)
    p.add_argument(
        "--generate",
        type=whole_number(0),
        help="generate for the first N test rows only (default all; 0 none)",
    )
    p.add_argument("--resamples", type=positive_int, default=10_000, help="bootstrap resamples")
    p.add_argument("--out", help="write the summary and per-item scores as JSON here")
    p.add_argument(
        "--protocol", choices=list(PROTOCOLS), default="icl",
        help="icl: subsets as few-shot examples; finetune: fine-tune on each subset, ask zero-shot",
    )  # fmt: skip
    ft = p.add_argument_group("fine-tuning (--protocol finetune)")
    ft.add_argument("--ft-method", choices=list(FINETUNE_METHODS), help="default lora")
    ft.add_argument("--epochs", type=positive_int, help="default 3")
    ft.add_argument("--learning-rate", type=float, help="default 2e-4 (lora), 5e-5 (full)")
    ft.add_argument("--lora-rank", type=positive_int, help="default 16")
    ft.add_argument("--lora-alpha", type=float, help="default twice the rank")
    ft.add_argument(
        "--train-batch-size", type=positive_int, help="rows per training step (default 8)"
    )
    ft.add_argument(
        "--train-max-tokens", type=whole_number(8), help="tokens per training row (default 512)"
    )
    ft.add_argument("--train-seeds", type=_int_list, help="training seeds (default 0), averaged")
    ft.add_argument("--save-adapter", metavar="DIR", help="save the LoRA adapter or full weights")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `delift eval`: parse the options into typed values, then do the work; 0 on
    success (errors are raised as DeliftError)."""
    plan = eval_plan(args)
    scoring = scoring_config(args)
    evaluation = EvalConfig(
        shots=args.shots, max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens, max_answer_tokens=args.max_answer_tokens,
        generate_limit=args.generate, batch_size=scoring.batch_size,
        max_batch_tokens=scoring.max_batch_tokens,
    )  # fmt: skip
    return evaluate_methods(
        plan, InputOptions.from_args(args), ModelOptions.from_args(args), scoring, evaluation,
        test=args.test, test_limit=args.test_limit, out=args.out,
    )  # fmt: skip


def eval_plan(args: argparse.Namespace) -> EvalPlan:
    """The methods, budget and protocol the options ask for; ConfigError before any work
    when they do not fit together."""
    stage = stage_of(args.stage, args.targets, args.existing)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ConfigError("--methods names no method")
    check_methods(methods, stage)
    if "random" in methods and not args.seeds:
        raise ConfigError("--seeds must name at least one seed for method 'random'")
    finetune, train_seeds = finetune_settings(args, methods)
    return EvalPlan(
        stage, methods, budget=args.budget, seeds=args.seeds, kernel=args.kernel,
        metric=args.metric, protocol=args.protocol, finetune=finetune, train_seeds=train_seeds,
        save_adapter=args.save_adapter, resamples=args.resamples,
    )  # fmt: skip


def stage_of(stage: str, targets: str | None, existing: str | None) -> str:
    """The stage asked for, or under "auto" the one the given sets call for."""
    if stage != "auto":
        return stage
    if targets and existing:
        raise ConfigError("give --targets (task stage) or --existing (continual), not both")
    return "task" if targets else "continual" if existing else "instruction"


_FINETUNE_OPTIONS = (
    "ft_method", "epochs", "learning_rate", "lora_rank", "lora_alpha", "train_batch_size",
    "train_max_tokens", "train_seeds", "save_adapter",
)  # fmt: skip


def finetune_settings(
    args: argparse.Namespace, methods: list[str]
) -> tuple[FinetuneConfig | None, list[int]]:
    """The fine-tuning config and train seeds the options ask for (None, [0] under icl).

    Checks everything before any work starts, so that a bad option writes nothing.
    """
    given = [name for name in _FINETUNE_OPTIONS if getattr(args, name) is not None]
    if args.protocol != "finetune":
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ConfigError(f"{flag} applies only with --protocol finetune")
        return None, [0]
    rank = args.lora_rank if args.lora_rank is not None else 16
    alpha = args.lora_alpha if args.lora_alpha is not None else 2.0 * rank  # LoRA scale 2
    fields: dict[str, Any] = {
        "method": args.ft_method or "lora", "epochs": args.epochs, "lora_rank": rank,
        "lora_alpha": alpha, "learning_rate": args.learning_rate,
        "batch_size": args.train_batch_size, "max_tokens": args.train_max_tokens,
    }  # fmt: skip
    config = FinetuneConfig(**{k: v for k, v in fields.items() if v is not None})
    train_seeds = args.train_seeds if args.train_seeds is not None else [0]
    if not train_seeds:
        raise ConfigError("--train-seeds must name at least one seed")
    if args.save_adapter is not None:
        trained = [m for m in methods if m != "initial"]
        runs = len(args.seeds) if trained == ["random"] else len(train_seeds)
        if len(trained) != 1 or runs != 1:
            raise ConfigError(
                "--save-adapter needs exactly one fine-tuning run: one method besides initial,"
                " one train seed (random: one seed)"
            )
        folder = Path(args.save_adapter).expanduser()
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ConfigError(f"--save-adapter: {folder} already exists and is not empty")
    return config, train_seeds


class EvalProgress:
    """Progress of an evaluation on stderr: scoring and training bars, a line per evaluated
    method and per fine-tuning run (whose statistics are kept in `training`)."""

    def __init__(self, test_items: int, save_adapter: str | None = None) -> None:
        self.bar, self.train_bar = ProgressBar(), ProgressBar(verb="", unit="step")
        self.test_items, self.save_adapter = test_items, save_adapter
        self.training: dict[str, dict[str, Any]] = {}

    def progress(self, phase: str, p: Progress) -> None:
        (self.train_bar if phase.startswith("fine-tune") else self.bar)(phase, p)

    def step(self, label: str) -> None:
        self.close()
        print(f"delift: evaluating {label} on {self.test_items} test items", file=sys.stderr)

    def trained(self, label: str, result: FinetuneResult) -> None:
        self.train_bar.close()
        self.training[label] = {
            "losses": list(result.losses), "seconds": round(sum(result.step_seconds), 2),
            "tokens_per_second": round(result.tokens_per_second, 1), "rows": result.rows,
            "truncated": result.truncated,
        }  # fmt: skip
        print(
            f"delift: fine-tuned {label} on {result.rows} rows: loss {result.losses[0]:.3f} ->"
            f" {result.losses[-1]:.3f}, {result.tokens_per_second:.0f} tokens/s",
            file=sys.stderr,
        )
        if self.save_adapter is not None:
            path = save_adapter(result, self.save_adapter)
            print(f"delift: saved the fine-tuned weights to {path}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        self.train_bar.close()


def evaluate_methods(
    plan: EvalPlan,
    options: InputOptions,
    models: ModelOptions,
    scoring: ScoringConfig,
    evaluation: EvalConfig,
    *,
    test: str,
    test_limit: int | None = None,
    out: str | None = None,
) -> int:
    """Select with each method of the plan, evaluate every subset on the test set (read with
    the input options), print the summary table and write the report to `out` (None: not
    written)."""
    inputs = load_inputs(options)
    test_set = options.load(test, test_limit)
    print_warnings(test_set)
    data = StageData(
        plan.stage, inputs.pool.records, test_set.records,
        targets=inputs.targets.records if inputs.targets else None,
        existing=inputs.existing.records if inputs.existing else None,
    )  # fmt: skip
    # A damaged or busy cache is reported now, not after the models have loaded.
    check_cache(models.cache)
    lm = load_lm(models)
    embedder = load_sentence_embedder(models)
    reporter = EvalProgress(len(test_set), plan.save_adapter)
    started = time.perf_counter()
    with UtilityCache(models.cache) as cache:
        try:
            comparison = compare_methods(
                lm, embedder, data, scoring, evaluation, budget=plan.budget,
                methods=plan.methods, seeds=plan.seeds, kernel=plan.kernel, metric=plan.metric,
                cache=cache, on_progress=reporter.progress, on_step=reporter.step,
                protocol=plan.protocol, finetune=plan.finetune, train_seeds=plan.train_seeds,
                on_trained=reporter.trained, retrain=plan.save_adapter is not None,
            )  # fmt: skip
        finally:
            reporter.close()
    summary = summarize_results(comparison.results, resamples=plan.resamples)
    print(heading(plan, comparison, len(data.pool), len(test_set)))
    print(format_summary(summary))
    if out:
        payload = eval_payload(
            plan, comparison, summary, model=lm.model_id, embedder=embedder.key,
            training=reporter.training, evaluation=evaluation, scoring=scoring,
            seconds=time.perf_counter() - started,
        )  # fmt: skip
        path = write_json_atomic(Path(out), payload)
        print(f"delift: wrote {path}", file=sys.stderr)
    return 0


def heading(plan: EvalPlan, comparison: Comparison, pool_size: int, test_items: int) -> str:
    text = f"stage {plan.stage}, budget {comparison.budget} of {pool_size}, {test_items} test items"
    if plan.finetune is not None:
        text += f", fine-tuned ({plan.finetune.method}, {plan.finetune.epochs} epochs, no examples)"
    return text
