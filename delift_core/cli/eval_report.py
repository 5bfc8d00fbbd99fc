"""What `delift eval` compares (its plan) and reports: the summary table it prints and the JSON
report it writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from delift_core.config import ScoringConfig
from delift_core.evaluation.eval_compare import Comparison
from delift_core.evaluation.evaluate import EvalConfig
from delift_core.evaluation.finetune_types import FinetuneConfig


@dataclass(frozen=True)
class EvalPlan:
    """What `delift eval` compares, checked before any work.

    finetune: None under the icl protocol. train_seeds: [0] under icl. save_adapter: the folder
    the one fine-tuning run's weights go to (None: not kept).
    """

    stage: str
    methods: list[str]
    budget: float | int = 0.3
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    kernel: str = "minmax"
    metric: str = "rms"
    protocol: str = "icl"
    finetune: FinetuneConfig | None = None
    train_seeds: list[int] = field(default_factory=lambda: [0])
    save_adapter: str | None = None
    resamples: int = 10_000


_METRIC_HEADERS = (
    ("logprob", "log-prob"),
    ("rouge1", "ROUGE-1"),
    ("rougeL", "ROUGE-L"),
    ("cosine", "cosine"),
    ("exact", "exact"),
)


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


def eval_payload(
    plan: EvalPlan,
    comparison: Comparison,
    summary: dict[str, Any],
    *,
    model: str,
    embedder: str,
    training: dict[str, dict[str, Any]],
    evaluation: EvalConfig,
    scoring: ScoringConfig,
    seconds: float,
) -> dict[str, Any]:
    """The JSON report: settings, summary, subsets, per-item scores and predictions."""
    finetune = plan.finetune
    return {
        "command": "eval",
        "stage": plan.stage,
        "model": model,
        "embedder": embedder,
        "budget": comparison.budget,
        "methods": plan.methods,
        "seeds": plan.seeds,
        "protocol": plan.protocol,
        "finetune": finetune.as_dict() if finetune is not None else None,
        "train_seeds": plan.train_seeds if finetune is not None else None,
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
        "seconds": round(seconds, 2),
    }
