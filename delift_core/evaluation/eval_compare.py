"""Compare selection methods on one stage (score, select, evaluate), by in-context evaluation
or by fine-tuning.

The pipeline per stage: score the matrices the stage needs (pipeline.score_stage), select a
subset with each method (select.run.run_selection), then evaluate each subset on the same test
items. Protocol "icl" (the DELIFT paper's): the subset is the example set of few-shot prompts
(evaluate.py). Protocol "finetune": the model is fine-tuned on the subset and asked without
examples (finetune.py). Extra labels besides the methods of selection.METHODS:

- "initial": no examples at all (icl) or no fine-tuning (finetune): the model as it is;
- "random": the per-item mean over the seeds' random subsets (each seed is kept as
  "random-s{seed}"; under "finetune" each is also trained with its seed);
- "existing" (continual stage only): the existing data alone, before adding new samples.

In the continual stage every method's example (or training) set is the existing data plus its
pick of the new pool, since continual tuning adds to what is already there. Under "finetune",
each set other than random is trained once per train seed; with several, every run is kept as
"{label}-t{seed}" and "{label}" is their per-item mean, like random.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache
from delift_core.config import STAGES, ScoringConfig, SelectionConfig
from delift_core.embeddings import embed_records
from delift_core.errors import ConfigError
from delift_core.evaluation.evaluate import (
    METRIC_NAMES,
    EvalConfig,
    EvalResult,
    average_results,
    embed_prompts,
    evaluate_examples,
)
from delift_core.evaluation.finetune import evaluate_finetuned, finetuned_eval_config
from delift_core.evaluation.finetune_types import FinetuneConfig, FinetuneResult
from delift_core.evaluation.metrics import bootstrap_mean, paired_difference
from delift_core.models import LanguageModel
from delift_core.pipeline import Embedder, PhaseProgressFn, score_stage, selection_inputs
from delift_core.prompts import TextPair
from delift_core.select.run import run_selection
from delift_core.select.selection import METHODS, UTILITY_METHODS, SelectionInputs
from delift_core.utility import Progress

log = logging.getLogger(__name__)

DEFAULT_METHODS: tuple[str, ...] = (
    "initial", "random", "delift-se", "fl-only", "delift", "delift-q", "full",
)  # fmt: skip
EXTRA_LABELS: tuple[str, ...] = ("initial", "existing")
PROTOCOLS: tuple[str, ...] = ("icl", "finetune")

StepFn = Callable[[str], None]
TrainedFn = Callable[[str, FinetuneResult], None]


@dataclass(frozen=True)
class StageData:
    """The sets of one stage: pool to select from, test items, and the side set the stage uses
    (targets for "task", existing data for "continual")."""

    stage: str
    pool: Sequence[TextPair]
    test: Sequence[TextPair]
    targets: Sequence[TextPair] | None = None
    existing: Sequence[TextPair] | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        if not self.pool or not self.test:
            raise ConfigError("the pool and the test set must not be empty")
        if self.stage == "task" and not self.targets:
            raise ConfigError("stage 'task' needs a target set")
        if self.stage == "continual" and not self.existing:
            raise ConfigError("stage 'continual' needs an existing set")
        seen = {r.hash for part in (self.pool, self.targets, self.existing) for r in part or ()}
        leaked = sum(r.hash in seen for r in self.test)
        if leaked:
            raise ConfigError(
                f"{leaked} test items also appear in the pool, targets or existing data; remove"
                " them so that selection and evaluation never see the test answers"
            )


@dataclass(frozen=True)
class Comparison:
    """subsets: label -> pool indices (int64); results: label -> per-item scores, including
    "random" (seed mean) and "random-s{seed}"; seconds: wall time per phase."""

    stage: str
    budget: int
    subsets: dict[str, np.ndarray]
    results: dict[str, EvalResult]
    seconds: dict[str, float]


def check_methods(methods: Sequence[str], stage: str) -> None:
    """ConfigError for a label that is neither a selection method nor an extra label."""
    for method in methods:
        if method not in METHODS and method not in EXTRA_LABELS:
            known = ", ".join([*EXTRA_LABELS, *METHODS])
            raise ConfigError(f"unknown method {method!r}; choose from {known}")
        if method == "existing" and stage != "continual":
            raise ConfigError("method 'existing' is only meaningful in the continual stage")


def select_methods(
    lm: LanguageModel,
    embedder: Embedder,
    data: StageData,
    scoring: ScoringConfig,
    *,
    budget: float | int = 0.3,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: Sequence[int] = (0, 1, 2),
    kernel: str = "minmax",
    metric: str = "rms",
    cache: UtilityCache | None = None,
    on_progress: PhaseProgressFn | None = None,
) -> dict[str, np.ndarray]:
    """Score the stage's matrices if a method needs them, and select with every method.

    Returns label -> pool indices (int64), "random-s{seed}" per seed for "random"; extra
    labels ("initial", "existing") select nothing and are not in the result.
    """
    check_methods(methods, data.stage)
    n = len(data.pool)
    selection = SelectionConfig(stage=data.stage, budget=budget, kernel=kernel, metric=metric)
    selection.budget_count(n)  # a budget larger than the pool fails before any scoring

    def embed(records: Sequence[TextPair] | None) -> np.ndarray | None:
        return embed_records(records, embedder.model, embedder.key, cache) if records else None

    embeddings: dict[str, np.ndarray | None] = {}
    if "delift-se" in methods or "delift-q" in methods:
        embeddings["emb_pool"] = embed(data.pool)
    if "delift-se" in methods or "delift-q" in methods:  # delift-q: its side prior
        embeddings["emb_targets"] = embed(data.targets) if data.stage == "task" else None
        embeddings["emb_existing"] = embed(data.existing) if data.stage == "continual" else None
    inputs = SelectionInputs(n=n, **embeddings)
    if any(m in UTILITY_METHODS for m in methods):
        utilities = score_stage(
            lm, data.pool, scoring, targets=data.targets if data.stage == "task" else None,
            existing=data.existing if data.stage == "continual" else None,
            embedder=embedder, cache=cache, on_progress=on_progress,
        )  # fmt: skip
        inputs = selection_inputs(utilities, metric, **embeddings)
    subsets: dict[str, np.ndarray] = {}
    for method in methods:
        if method in EXTRA_LABELS:
            continue
        for seed in seeds if method == "random" else (0,):
            label = f"random-s{seed}" if method == "random" else method
            result = run_selection(inputs, replace(selection, method=method, seed=seed))
            subsets[label] = result.order
    return subsets


def compare_methods(
    lm: LanguageModel,
    embedder: Embedder,
    data: StageData,
    scoring: ScoringConfig,
    evaluation: EvalConfig,
    *,
    budget: float | int = 0.3,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: Sequence[int] = (0, 1, 2),
    kernel: str = "minmax",
    metric: str = "rms",
    cache: UtilityCache | None = None,
    on_progress: PhaseProgressFn | None = None,
    on_step: StepFn | None = None,
    protocol: str = "icl",
    finetune: FinetuneConfig | None = None,
    train_seeds: Sequence[int] = (0,),
    on_trained: TrainedFn | None = None,
    retrain: bool = False,
) -> Comparison:
    """Select with every method and evaluate each subset on the stage's test items.

    on_progress reports the scoring phases (as pipeline.score_stage) and, under "finetune", the
    training steps (phase "fine-tune {label}"); on_step is called with each label as its
    evaluation starts. Test items must not occur in the pool (StageData). protocol: "icl" or
    "finetune"; finetune (default FinetuneConfig()), train_seeds, on_trained (label and
    training result, after each training) and retrain (train even when every score of a run is
    cached) apply to "finetune" only.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    if protocol == "finetune":
        if not train_seeds:
            raise ConfigError("train_seeds must name at least one seed")
        return _compare_finetuned(
            lm, embedder, data, scoring, evaluation, budget=budget, methods=methods,
            seeds=seeds, kernel=kernel, metric=metric, cache=cache, on_progress=on_progress,
            on_step=on_step, finetune=finetune or FinetuneConfig(),
            train_seeds=train_seeds, on_trained=on_trained, retrain=retrain,
        )  # fmt: skip
    started = time.perf_counter()
    subsets = select_methods(
        lm, embedder, data, scoring, budget=budget, methods=methods, seeds=seeds,
        kernel=kernel, metric=metric, cache=cache, on_progress=on_progress,
    )  # fmt: skip
    seconds = {"score+select": time.perf_counter() - started}
    existing = list(data.existing or []) if data.stage == "continual" else []
    pool_emb = embed_prompts(data.pool, embedder, cache)
    existing_emb = embed_prompts(existing, embedder, cache) if existing else None
    test_emb = embed_prompts(data.test, embedder, cache)

    def run(label: str, indices: np.ndarray | None, with_existing: bool) -> EvalResult:
        if on_step is not None:
            on_step(label)
        t0 = time.perf_counter()
        examples: list[TextPair] = list(existing) if with_existing else []
        parts = [existing_emb] if with_existing and existing_emb is not None else []
        if indices is not None:
            examples += [data.pool[int(i)] for i in indices]
            parts.append(pool_emb[indices])
        emb = np.concatenate(parts) if parts else None
        result = evaluate_examples(
            lm, embedder, data.test, examples, evaluation, name=label,
            example_embeddings=emb, test_embeddings=test_emb, cache=cache,
        )  # fmt: skip
        seconds[label] = time.perf_counter() - t0
        return result

    results: dict[str, EvalResult] = {}
    continual = data.stage == "continual"
    for method in methods:
        if method == "initial":
            results["initial"] = run("initial", None, False)
        elif method == "existing":
            results["existing"] = run("existing", None, True)
        elif method == "random":
            runs = [run(f"random-s{s}", subsets[f"random-s{s}"], continual) for s in seeds]
            results.update({r.name: r for r in runs})
            results["random"] = average_results(runs, "random")
        else:
            results[method] = run(method, subsets[method], continual)
    budget_count = SelectionConfig(stage=data.stage, budget=budget).budget_count(len(data.pool))
    return Comparison(data.stage, budget_count, subsets, results, seconds)


def _compare_finetuned(
    lm: LanguageModel,
    embedder: Embedder,
    data: StageData,
    scoring: ScoringConfig,
    evaluation: EvalConfig,
    *,
    budget: float | int,
    methods: Sequence[str],
    seeds: Sequence[int],
    kernel: str,
    metric: str,
    cache: UtilityCache | None,
    on_progress: PhaseProgressFn | None,
    on_step: StepFn | None,
    finetune: FinetuneConfig,
    train_seeds: Sequence[int],
    on_trained: TrainedFn | None,
    retrain: bool,
) -> Comparison:
    """compare_methods under the fine-tuning protocol (see the module docstring)."""
    started = time.perf_counter()
    subsets = select_methods(
        lm, embedder, data, scoring, budget=budget, methods=methods, seeds=seeds,
        kernel=kernel, metric=metric, cache=cache, on_progress=on_progress,
    )  # fmt: skip
    seconds = {"score+select": time.perf_counter() - started}
    existing = list(data.existing or []) if data.stage == "continual" else []

    def run(label: str, indices: np.ndarray | None, with_existing: bool, seed: int) -> EvalResult:
        if on_step is not None:
            on_step(label)
        t0 = time.perf_counter()
        records: list[TextPair] = list(existing) if with_existing else []
        records += [data.pool[int(i)] for i in indices] if indices is not None else []

        def progress(p: Progress) -> None:
            if on_progress is not None:
                on_progress(f"fine-tune {label}", p)

        def trained(result: FinetuneResult) -> None:
            if on_trained is not None:
                on_trained(label, result)

        result = evaluate_finetuned(
            lm, records, data.test, replace(finetune, seed=seed), evaluation, embedder=embedder,
            name=label, cache=cache, on_progress=progress, on_trained=trained, retrain=retrain,
        )  # fmt: skip
        seconds[label] = time.perf_counter() - t0
        return result

    def run_seeds(label: str, indices: np.ndarray | None, with_existing: bool) -> None:
        if len(train_seeds) == 1:
            results[label] = run(label, indices, with_existing, train_seeds[0])
            return
        runs = [run(f"{label}-t{t}", indices, with_existing, t) for t in train_seeds]
        results.update({r.name: r for r in runs})
        results[label] = average_results(runs, label)

    results: dict[str, EvalResult] = {}
    continual = data.stage == "continual"
    for method in methods:
        if method == "initial":
            if on_step is not None:
                on_step("initial")
            t0 = time.perf_counter()
            results["initial"] = evaluate_examples(
                lm, embedder, data.test, [], finetuned_eval_config(evaluation, finetune),
                name="initial", cache=cache,
            )  # fmt: skip
            seconds["initial"] = time.perf_counter() - t0
        elif method == "existing":
            run_seeds("existing", None, True)
        elif method == "random":
            runs = [run(f"random-s{s}", subsets[f"random-s{s}"], continual, s) for s in seeds]
            results.update({r.name: r for r in runs})
            results["random"] = average_results(runs, "random")
        else:
            run_seeds(method, subsets[method], continual)
    budget_count = SelectionConfig(stage=data.stage, budget=budget).budget_count(len(data.pool))
    return Comparison(data.stage, budget_count, subsets, results, seconds)


def summarize_results(
    results: Mapping[str, EvalResult],
    *,
    references: Sequence[str] = ("random", "initial"),
    resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Means with 95% bootstrap intervals, and paired differences against references.

    Returns {label: {metric: {"mean", "low", "high", "n", "vs": {reference: {"mean", "low",
    "high", "n"}}}}} for every metric measured on at least one item; JSON-ready.
    """
    summary: dict[str, Any] = {}
    for label, result in results.items():
        per_metric: dict[str, Any] = {}
        for metric in METRIC_NAMES:
            values = result.scores[metric]
            if not np.isfinite(values).any():
                continue
            entry: dict[str, Any] = bootstrap_mean(values, resamples=resamples, seed=seed).as_dict()
            entry["vs"] = {
                ref: paired_difference(
                    values, results[ref].scores[metric], resamples=resamples, seed=seed
                ).as_dict()
                for ref in references
                if ref in results and ref != label
            }
            per_metric[metric] = entry
        summary[label] = per_metric
    return summary
