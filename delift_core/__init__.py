"""DELIFT Studio core library: data, utility engine, cache, selection, export.

The public API is importable from the package itself (`from delift_core import load_dataset,
score_stage, select_subset`); each name is loaded from its module on first use, so importing
the package, or a light module such as `delift_core.config`, does not import torch.

This package never imports streamlit and never prints; it logs through `logging`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public name -> the module that defines it (docs/design.md lists the layers).
_PUBLIC: dict[str, str] = {
    # data
    "Dataset": "data.dataset",
    "Record": "data.dataset",
    "load_dataset": "data.dataset",
    "dataset_stats": "data.dataset",
    # configuration and errors
    "ScoringConfig": "config",
    "SelectionConfig": "config",
    "parse_budget": "config",
    "DeliftError": "errors",
    "DataError": "errors",
    "ConfigError": "errors",
    "CacheError": "errors",
    "ModelError": "errors",
    "CancelledError": "errors",
    "ResourceError": "errors",
    # models, cache and scoring
    "load_causal_lm": "models",
    "load_embedder": "models",
    "UtilityCache": "cache",
    "StageUtilities": "pipeline",
    "plan_stage": "pipeline",
    "score_stage": "pipeline",
    "selection_inputs": "pipeline",
    "quality_signals": "quality",
    "quality_score": "quality",
    # selection, saved selections and export
    "METHODS": "select.selection",
    "SelectionInputs": "select.selection",
    "SelectionResult": "select.selection",
    "select_subset": "select.selection",
    "run_selection": "select.run",
    "SavedSelection": "selection_store",
    "export_subset": "export",
    # evaluation
    "EvalConfig": "evaluation.evaluate",
    "evaluate_examples": "evaluation.evaluate",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'delift_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
