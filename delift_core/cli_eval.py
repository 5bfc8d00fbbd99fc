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
from typing import TYPE_CHECKING, Any

import numpy as np

from delift_core.errors import ConfigError

if TYPE_CHECKING:
    from delift_core.finetune_types import FinetuneConfig, FinetuneResult
    from delift_core.utility import Progress

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
    from delift_core.eval_compare import DEFAULT_METHODS, PROTOCOLS
    from delift_core.finetune_types import FINETUNE_METHODS

    p = subparsers.add_parser(
        "eval",
        help="compare selection methods by in-context or fine-tuning evaluation on a test set",
        description=__doc__.split("\n\n")[0],
    )
    add_input_arguments(p)
    p.add_argument("--test", required=True, help="test set (disjoint from the data)")
    p.add_argument("--test-limit", type=int, help="use only the first N test rows")
    p.add_argument("--stage", choices=["auto", "instruction", "task", "continual"], default="auto")
    p.add_argument("--budget", type=_budget, default=0.3, help="fraction (0.3) or count (50)")
    p.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS),
        help="comma list of initial, random, delift-se, fl-only, delift, delift-q, full"
        " (continual: existing)",
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
    p.add_argument(
        "--protocol", choices=list(PROTOCOLS), default="icl",
        help="icl: subsets as few-shot examples; finetune: fine-tune on each subset, ask zero-shot",
    )  # fmt: skip
    ft = p.add_argument_group("fine-tuning (--protocol finetune)")
    ft.add_argument("--ft-method", choices=list(FINETUNE_METHODS), help="default lora")
    ft.add_argument("--epochs", type=int, help="default 3")
    ft.add_argument("--learning-rate", type=float, help="default 2e-4 (lora), 5e-5 (full)")
    ft.add_argument("--lora-rank", type=int, help="default 16")
    ft.add_argument("--lora-alpha", type=float, help="default twice the rank")
    ft.add_argument("--train-batch-size", type=int, help="rows per training step (default 8)")
    ft.add_argument("--train-max-tokens", type=int, help="tokens per training row (default 512)")
    ft.add_argument("--train-seeds", type=_int_list, help="training seeds (default 0), averaged")
    ft.add_argument("--save-adapter", metavar="DIR", help="save the LoRA adapter or full weights")


def _stage_of(args: argparse.Namespace) -> str:
    if args.stage != "auto":
        return args.stage
    if args.targets and args.existing:
        raise ConfigError("give --targets (task stage) or --existing (continual), not both")
    return "task" if args.targets else "continual" if args.existing else "instruction"


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
    from delift_core.finetune_types import FinetuneConfig

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
    from delift_core.finetune import save_adapter
    from delift_core.models import embedder_id, load_causal_lm, load_embedder
    from delift_core.pipeline import Embedder

    stage = _stage_of(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ConfigError("--methods names no method")
    check_methods(methods, stage)
    if "random" in methods and not args.seeds:
        raise ConfigError("--seeds must name at least one seed for method 'random'")
    finetune, train_seeds = finetune_settings(args, methods)
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
    bar, train_bar = ProgressBar(), ProgressBar(verb="", unit="step")
    started = time.perf_counter()
    training: dict[str, dict[str, Any]] = {}

    def progress(phase: str, p: Progress) -> None:
        (train_bar if phase.startswith("fine-tune") else bar)(phase, p)

    def step(label: str) -> None:
        bar.close()
        train_bar.close()
        print(f"delift: evaluating {label} on {len(test)} test items", file=sys.stderr)

    def trained(label: str, result: FinetuneResult) -> None:
        train_bar.close()
        training[label] = {
            "losses": list(result.losses), "seconds": round(sum(result.step_seconds), 2),
            "tokens_per_second": round(result.tokens_per_second, 1), "rows": result.rows,
            "truncated": result.truncated,
        }  # fmt: skip
        print(
            f"delift: fine-tuned {label} on {result.rows} rows: loss {result.losses[0]:.3f} ->"
            f" {result.losses[-1]:.3f}, {result.tokens_per_second:.0f} tokens/s",
            file=sys.stderr,
        )
        if args.save_adapter is not None:
            path = save_adapter(result, args.save_adapter)
            print(f"delift: saved the fine-tuned weights to {path}", file=sys.stderr)

    with UtilityCache(args.cache) as cache:
        try:
            comparison = compare_methods(
                lm, embedder, data, scoring, evaluation, budget=args.budget, methods=methods,
                seeds=args.seeds, kernel=args.kernel, metric=args.metric, cache=cache,
                on_progress=progress, on_step=step, protocol=args.protocol, finetune=finetune,
                train_seeds=train_seeds, on_trained=trained,
                retrain=args.save_adapter is not None,
            )  # fmt: skip
        finally:
            bar.close()
            train_bar.close()
    summary = summarize_results(comparison.results, resamples=args.resamples)
    heading = (
        f"stage {stage}, budget {comparison.budget} of {len(data.pool)}, {len(test)} test items"
    )
    if finetune is not None:
        heading += f", fine-tuned ({finetune.method}, {finetune.epochs} epochs, no examples)"
    print(heading)
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
            "protocol": args.protocol,
            "finetune": finetune.as_dict() if finetune is not None else None,
            "train_seeds": train_seeds if finetune is not None else None,
            "training": training,
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
