"""Evaluation of saved selections on held-out data (the Compare page's Evaluate), without
Streamlit.

Every chosen selection is evaluated on the same held-out items, and so is a Random subset of the
same size (the library's seeded "random" method, one subset per seed; "Random" is the per-item
mean over the seeds, as in delift_core.evaluation.eval_compare). Protocol "icl": the subset is the example
set of few-shot prompts (delift_core.evaluation.evaluate); "finetune": a LoRA adapter is trained on the
subset with the library's defaults and the model is asked without examples
(delift_core.evaluation.finetune). Means and intervals are delift_core.evaluation.eval_compare.summarize_results:
95% percentile-bootstrap intervals, and a paired bootstrap of each selection against the Random
subsets of its size.

Held-out items come from the loaded target set (rows that also occur in the pool are left out)
or from a seeded split of the pool. A split's rows were part of the pool the selections were
made from: they are removed from every selection and from Random's candidates before
evaluation, so no test answer is ever an example or a training row, but the selection methods
saw them when they chose (coverage methods try to represent every pool row). Results are stored
in the cache (kind "evaluation") and outlive the server; ui.eval_report reads them back.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache
from delift_core.config import SelectionConfig
from delift_core.data.dataset import Dataset
from delift_core.errors import CancelledError, ConfigError
from delift_core.evaluation.eval_compare import summarize_results
from delift_core.evaluation.evaluate import (
    EvalConfig,
    EvalResult,
    average_results,
    embed_prompts,
    evaluate_examples,
)
from delift_core.evaluation.finetune import evaluate_finetuned
from delift_core.evaluation.finetune_types import FinetuneConfig
from delift_core.models import LanguageModel
from delift_core.pipeline import Embedder
from delift_core.prompts import TextPair
from delift_core.select.run import run_selection
from delift_core.select.selection import SelectionInputs
from ui import registry, workspaces

RESULT_KIND = workspaces.EVALUATION_KIND  # pruned with their workspace
RESULT_VERSION = 1
PROTOCOL_LABELS = {
    "icl": "Quick: in-context (the subset as few-shot examples)",
    "finetune": "Fine-tune (LoRA on the subset, then asked without examples)",
}
DEFAULT_SEEDS = 3
MIN_ICL_SEEDS = 3
DEFAULT_FRACTION = 0.2
SPLIT_SEED = 0
SHOTS = 5
# One LoRA training (library defaults) of 36 Dolly rows x 3 epochs took about 3.5 minutes with
# the embedded 135M model on this project's 2-core CPU (docs/results.md).
CPU_SECONDS_PER_ROW_EPOCH = 3.5 * 60 / (36 * 3)

ReportFn = Callable[[str, int, int, float | None], None]


@dataclass(frozen=True)
class Arm:
    """One example (or training) set to evaluate.

    indices: pool indices (int64) used, held-out rows removed; removed: how many rows of the
    saved selection were held out. reference: label of the Random set it is compared with.
    existing: hash of the existing set put before the picks (continual stage), or None.
    kind: "selection", or "random-seed" for one seed of a Random set (the set's result, the
    mean over its seeds, is labelled `reference`).
    """

    label: str
    kind: str
    method: str
    indices: np.ndarray
    removed: int
    reference: str
    existing: str | None
    seed: int


@dataclass(frozen=True)
class EvalPlan:
    """What an evaluation will run: the pool, the held-out items and the sets."""

    pool: Dataset
    test: tuple[TextPair, ...]
    arms: tuple[Arm, ...]
    existing: dict[str, tuple[TextPair, ...]]
    held_out: dict[str, Any]
    selection_hashes: dict[str, str]
    notes: tuple[str, ...]
    held_rows: tuple[int, ...] = ()  # pool indices of a split's held-out items

    @property
    def selections(self) -> list[Arm]:
        return [a for a in self.arms if a.kind == "selection"]

    @property
    def random_labels(self) -> list[str]:
        return list(dict.fromkeys(a.reference for a in self.arms))

    def rows(self, arm: Arm) -> int:
        """Examples (or training rows) of an arm, the existing set included."""
        extra = len(self.existing[arm.existing]) if arm.existing else 0
        return len(arm.indices) + extra


def split_indices(n: int, fraction: float, seed: int = SPLIT_SEED) -> np.ndarray:
    """A seeded held-out split of a pool of n rows: round(fraction * n) sorted indices (int64).
    ConfigError when that leaves no held-out item or no pool row."""
    if not 0 < fraction < 1:
        raise ConfigError(f"the held-out fraction must be between 0 and 1; got {fraction}")
    count = int(round(fraction * n))
    if n < 2 or count < 1 or count >= n:
        raise ConfigError(
            f"a {fraction:.0%} split of {n} rows leaves no held-out items or no pool; "
            "change the fraction or use a larger pool"
        )
    return np.sort(np.random.default_rng(seed).permutation(n)[:count]).astype(np.int64)


def indices_hash(indices: np.ndarray) -> str:
    """Short content hash of a selection's indices (to notice a selection saved again)."""
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def _random_label(size: int, with_existing: bool, taken: Mapping[tuple, str]) -> str:
    label = f"Random ({size} rows{' + existing' if with_existing else ''})"
    while label in taken.values():
        label += "'"
    return label


def workspace_of(params: Mapping[str, Any]) -> str:
    """The workspace an evaluation's selections belong to (its params or stored meta name it;
    those from before workspaces: "shared")."""
    return str(params.get("workspace") or workspaces.SHARED)


def prepare(cache: UtilityCache, params: Mapping[str, Any]) -> EvalPlan:
    """Resolve an evaluation's data and plan its sets (fast; no model). Raises DeliftError
    with a message for the user.

    params: {"selections": [names], "workspace": theirs, "held_out": {"source": "split",
    "fraction", "seed"} or {"source": "targets", "targets": handle, "limit"}, "seeds": [int],
    ...}.
    """
    names, workspace = list(params["selections"]), workspace_of(params)
    if not names:
        raise ConfigError("choose at least one selection to evaluate")
    saved = {name: registry.load_selection(cache, name, workspace) for name in names}
    pool_hashes = {meta["pool"]["hash"] for _, meta in saved.values()}
    if len(pool_hashes) != 1:
        raise ConfigError("the selections come from different pools; evaluate one pool at once")
    first_meta = saved[names[0]][1]
    pool = registry.load_source(first_meta["pool"]["spec"], cache)
    if pool.hash != first_meta["pool"]["hash"]:
        raise ConfigError("the pool has changed since these selections were saved")
    existing: dict[str, tuple[TextPair, ...]] = {}
    for _, meta in saved.values():
        if meta.get("stage") == "continual" and meta.get("existing"):
            ds = registry.load_source(meta["existing"]["spec"], cache)
            existing[ds.hash] = tuple(ds.records)
    held = params["held_out"]
    notes: list[str] = []
    if held["source"] == "split":
        rows = split_indices(len(pool), float(held["fraction"]), int(held.get("seed", SPLIT_SEED)))
        test = [pool.records[int(i)] for i in rows]
        described = {
            "source": "split", "fraction": float(held["fraction"]),
            "seed": int(held.get("seed", SPLIT_SEED)), "label": pool_label(first_meta),
        }  # fmt: skip
    elif held["source"] == "targets":
        targets = registry.dataset_for(held["targets"], cache)
        in_pool = {r.hash for r in pool.records}
        test = [r for r in targets.records if r.hash not in in_pool]
        if len(test) < len(targets):
            notes.append(f"{len(targets) - len(test):,} target rows also in the pool are left out")
        limit = held.get("limit")
        if limit is not None and len(test) > int(limit):
            test = test[: int(limit)]
            notes.append(f"the first {int(limit):,} target rows are used")
        described = {"source": "targets", "label": held["targets"].get("label", "target set")}
    else:
        raise ConfigError(f"unknown held-out source {held['source']!r}")
    in_existing = {r.hash for records in existing.values() for r in records}
    kept = [r for r in test if r.hash not in in_existing]
    if len(kept) < len(test):
        notes.append(
            f"{len(test) - len(kept):,} held-out rows also in the existing set are left out"
        )
    test = kept
    if not test:
        raise ConfigError("no held-out items are left; choose another held-out set")
    in_test = {r.hash for r in test}
    # Held-out rows, and any copy of them in the pool, are never examples or training rows.
    blocked = np.array([i for i, r in enumerate(pool.records) if r.hash in in_test], np.int64)
    arms: list[Arm] = []
    groups: dict[tuple, str] = {}
    for name in names:
        indices, meta = saved[name]
        used = indices[~np.isin(indices, blocked)]
        if len(used) == 0:
            notes.append(f"{name}: every row it picked is held out; it is left out")
            continue
        ex_hash = meta["existing"]["hash"] if meta.get("stage") == "continual" else None
        group = (len(used), ex_hash)
        if group not in groups:
            groups[group] = _random_label(len(used), ex_hash is not None, groups)
        arms.append(
            Arm(name, "selection", str(meta.get("method", "")), used.astype(np.int64),
                len(indices) - len(used), groups[group], ex_hash, 0)
        )  # fmt: skip
    if not arms:
        raise ConfigError("every chosen selection lies inside the held-out rows")
    candidates = SelectionInputs(n=len(pool))
    for (size, ex_hash), label in groups.items():
        for seed in params["seeds"]:
            config = SelectionConfig(method="random", budget=size, seed=int(seed))
            order = run_selection(candidates, config, excluded=blocked.tolist()).order
            arms.append(Arm(f"{label} s{seed}", "random-seed", "random", order, 0, label,
                            ex_hash, int(seed)))  # fmt: skip
    described["items"] = len(test)
    described["blocked"] = len(blocked)
    return EvalPlan(
        pool, tuple(test), tuple(arms), existing, described,
        {name: indices_hash(saved[name][0]) for name in names}, tuple(notes),
        tuple(int(i) for i in rows) if held["source"] == "split" else (),
    )  # fmt: skip


def excluded_held_out(plan: EvalPlan, metas: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Selections that excluded every held-out row of a split on Select (never picked them)."""
    ids = {plan.pool.records[i].id for i in plan.held_rows}
    return [
        a.label for a in plan.selections
        if ids and ids <= set(metas[a.label].get("excluded_ids") or ())
    ]  # fmt: skip


def pool_label(meta: Mapping[str, Any]) -> str:
    return str((meta.get("pool") or {}).get("label") or "the pool")


def finetune_seconds(plan: EvalPlan, config: FinetuneConfig) -> float:
    """A rough CPU time for the trainings of a plan, scaled from one measured run."""
    rows = sum(plan.rows(arm) for arm in plan.arms)
    return rows * config.epochs * CPU_SECONDS_PER_ROW_EPOCH


def eval_config(generate: int, batch_size: int = 8) -> EvalConfig:
    """The evaluation settings of the app: the library's defaults, SHOTS examples, answers
    generated for the first `generate` held-out items only."""
    return EvalConfig(shots=SHOTS, generate_limit=int(generate), batch_size=batch_size)


def evaluate_plan(
    lm: LanguageModel,
    embedder: Embedder,
    plan: EvalPlan,
    *,
    protocol: str,
    config: EvalConfig,
    finetune: FinetuneConfig | None = None,
    cache: UtilityCache | None = None,
    report: ReportFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> dict[str, EvalResult]:
    """Evaluate every arm of a plan; returns label -> per-item scores, selections by name,
    Random seeds as "<Random label> s<seed>" and each Random set's seed mean under its label.

    report(phase, done, total, eta_s) follows the work; should_cancel is checked between
    batches and training steps (CancelledError when true).
    """
    test = list(plan.test)
    arms = plan.arms
    n_gen = len(test) if config.generate_limit is None else min(len(test), config.generate_limit)
    per_arm = len(test) + n_gen
    started = time.perf_counter()

    def check() -> None:
        if should_cancel is not None and should_cancel():
            raise CancelledError("the evaluation was cancelled")

    def tell(phase: str, done: int, total: int, eta: float | None = None) -> None:
        if report is not None:
            report(phase, done, total, eta)

    results: dict[str, EvalResult] = {}
    if protocol == "icl":
        pool_emb = embed_prompts(plan.pool.records, embedder, cache)
        ex_emb = {h: embed_prompts(list(r), embedder, cache) for h, r in plan.existing.items()}
        test_emb = embed_prompts(test, embedder, cache)
        total = per_arm * len(arms)
        for a, arm in enumerate(arms):
            check()
            offset = a * per_arm
            phase = f"evaluating {arm.label} ({a + 1} of {len(arms)})"

            def progress(step: str, done: int, _: int, offset: int = offset, phase: str = phase):
                check()
                so_far = offset + (done if step == "teacher-forced" else len(test) + done)
                elapsed = time.perf_counter() - started
                tell(phase, so_far, total, elapsed / max(so_far, 1) * (total - so_far))

            tell(phase, offset, total)
            examples = list(plan.existing[arm.existing]) if arm.existing else []
            parts = [ex_emb[arm.existing]] if arm.existing else []
            examples += [plan.pool.records[int(i)] for i in arm.indices]
            parts.append(pool_emb[arm.indices])
            results[arm.label] = evaluate_examples(
                lm, embedder, test, examples, config, name=arm.label,
                example_embeddings=np.concatenate(parts), test_embeddings=test_emb,
                cache=cache, on_progress=progress,
            )  # fmt: skip
    elif protocol == "finetune":
        base = finetune or FinetuneConfig()
        for a, arm in enumerate(arms):
            check()
            phase = f"fine-tuning {arm.label} ({a + 1} of {len(arms)})"
            tell(phase, 0, 0)
            records = list(plan.existing[arm.existing]) if arm.existing else []
            records += [plan.pool.records[int(i)] for i in arm.indices]
            results[arm.label] = evaluate_finetuned(
                lm, records, test, replace(base, seed=arm.seed), config, embedder=embedder,
                name=arm.label, cache=cache,
                on_progress=lambda p, phase=phase: tell(phase, p.done, p.total, p.eta_s),
                should_cancel=should_cancel,
                on_trained=lambda _, label=arm.label: tell(f"scoring the held-out items after"
                                                           f" fine-tuning on {label}", 0, 0),
            )  # fmt: skip
            tell(f"evaluated {a + 1} of {len(arms)} sets", a + 1, len(arms))
    else:
        raise ConfigError(f"protocol must be 'icl' or 'finetune'; got {protocol!r}")
    for label in plan.random_labels:
        runs = [results[a.label] for a in arms if a.kind == "random-seed" and a.reference == label]
        results[label] = average_results(runs, label)
    return results


def result_key(params: Mapping[str, Any], plan: EvalPlan) -> str:
    """Cache key of a finished evaluation: the same request on the same data shares one."""
    blob = json.dumps(
        [dict(params), plan.selection_hashes, plan.pool.hash, [r.hash for r in plan.test]],
        sort_keys=True, default=str,
    )  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def store_result(
    cache: UtilityCache,
    params: Mapping[str, Any],
    plan: EvalPlan,
    results: Mapping[str, EvalResult],
    *,
    model_id: str,
    finetune: FinetuneConfig | None,
    seconds: float,
) -> str:
    """Summarise (bootstrap means, paired differences vs Random) and store in the cache under
    kind "evaluation": meta holds the summary, the array the per-item log-probs
    (sets, held-out items) float64 in the order of meta["sets"]. Returns the key."""
    labels = [a.label for a in plan.selections] + plan.random_labels
    summary = summarize_results({k: results[k] for k in labels}, references=plan.random_labels)
    sets = [
        {"label": a.label, "kind": "selection", "method": a.method, "rows": plan.rows(a),
         "removed": a.removed, "reference": a.reference}
        for a in plan.selections
    ]  # fmt: skip
    seed_means: dict[str, list[float]] = {}
    for label in plan.random_labels:
        seeds = [a for a in plan.arms if a.kind == "random-seed" and a.reference == label]
        sets.append({"label": label, "kind": "random", "method": "random",
                     "rows": plan.rows(seeds[0]), "removed": 0, "reference": None})  # fmt: skip
        seed_means[label] = [float(np.nanmean(results[a.label].scores["logprob"])) for a in seeds]
    meta = {
        "version": RESULT_VERSION,
        "workspace": workspace_of(params),
        "selections": [a.label for a in plan.selections],
        "selection_hashes": plan.selection_hashes,
        "pool": {"hash": plan.pool.hash, "rows": len(plan.pool)},
        "protocol": params["protocol"],
        "model": params.get("model", "default"),
        "model_id": model_id,
        "held_out": plan.held_out,
        "seeds": list(params["seeds"]),
        "generate": int(params.get("generate") or 0),
        "finetune": finetune.as_dict() if finetune is not None else None,
        "sets": sets,
        "seed_means": seed_means,
        "summary": summary,
        "notes": list(plan.notes),
        "seconds": round(seconds, 2),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    per_item = np.stack([results[s["label"]].scores["logprob"] for s in sets])
    key = result_key(params, plan)
    cache.put_array(RESULT_KIND, key, per_item.astype(np.float64), meta)
    return key


def plan_summary(plan: EvalPlan, seeds: Sequence[int]) -> str:
    """A sentence saying what will be evaluated."""
    parts = [
        f"{a.label} ({plan.rows(a):,} rows"
        + (f", {a.removed:,} held out" if a.removed else "")
        + ")"
        for a in plan.selections
    ]
    randoms = ", ".join(plan.random_labels)
    return (
        f"{len(plan.test):,} held-out items. Sets: {'; '.join(parts)}; {randoms}, each the mean"
        f" of {len(seeds)} seeded random subsets (seeds {', '.join(map(str, seeds))})."
    )
