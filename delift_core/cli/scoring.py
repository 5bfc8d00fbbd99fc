"""Models, cache and utility scoring for the `delift` subcommands that need them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache, check_cache
from delift_core.cli.common import Inputs, ModelOptions, ProgressBar
from delift_core.config import ScoringConfig
from delift_core.data.dataset import Dataset
from delift_core.embeddings import embed_records
from delift_core.models import LanguageModel, embedder_id, load_causal_lm, load_embedder
from delift_core.pipeline import Embedder, StageUtilities, score_stage
from delift_core.quality import quality_score, quality_signals
from delift_core.resources import check_fits, estimate_run, suggest_batch_limits


@dataclass(frozen=True)
class RayOptions:
    """Score on Ray workers: how many, and the cluster (None: start a local one)."""

    workers: int = 2
    address: str | None = None


@dataclass(frozen=True)
class StageRun:
    """A stage's utilities, the pool's embeddings (n, dim) in sparse mode (None in exact mode)
    and what the manifest records about the run: model, embedder, batching, cache."""

    utilities: StageUtilities
    emb_pool: np.ndarray | None
    info: dict[str, Any]


@dataclass(frozen=True)
class PoolQuality:
    """The pool's quality signals (quality.py) and the score delift-q ranks by."""

    signals: dict[str, np.ndarray]
    score: np.ndarray


def pool_quality(
    utilities: StageUtilities, emb_pool: np.ndarray | None, signal: str
) -> PoolQuality:
    signals = quality_signals(utilities.answers, utilities.pool.rms, emb_pool)
    return PoolQuality(signals, quality_score(signals, signal))


def load_lm(models: ModelOptions) -> LanguageModel:
    return load_causal_lm(models.model, models.device)


def load_sentence_embedder(models: ModelOptions) -> Embedder:
    return Embedder(load_embedder(models.embedder, models.device), embedder_id(models.embedder))


def fit_batches_to_device(
    config: ScoringConfig,
    lm: LanguageModel,
    *,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
) -> ScoringConfig:
    """On CUDA, the batch limits not given (None) are sized from free GPU memory; given ones,
    and every limit on other devices, stay as in `config`."""
    if not lm.device.startswith("cuda") or (batch_size and max_batch_tokens):
        return config
    import torch

    free, _ = torch.cuda.mem_get_info()
    batch, tokens = suggest_batch_limits(lm.model.config, free)
    return dataclasses.replace(
        config, batch_size=batch_size or batch, max_batch_tokens=max_batch_tokens or tokens
    )


def compute_stage(
    inputs: Inputs, config: ScoringConfig, models: ModelOptions, ray: RayOptions | None = None
) -> StageRun:
    """Check the run fits and the cache opens, load the models and score every matrix the
    inputs call for, in this process or on Ray workers (`ray`)."""
    estimate = estimate_run(
        len(inputs.pool), config.mode, config.k,
        n_targets=len(inputs.targets) if inputs.targets else 0,
        n_existing=len(inputs.existing) if inputs.existing else 0,
    )  # fmt: skip
    check_fits(estimate, config.mode)
    # A damaged or busy cache is reported now, not after the model has loaded.
    check_cache(models.cache)
    lm = load_lm(models)
    config = fit_batches_to_device(
        config, lm, batch_size=models.batch_size, max_batch_tokens=models.max_batch_tokens
    )
    embedder = load_sentence_embedder(models) if config.mode == "sparse" else None
    bar = ProgressBar()
    with UtilityCache(models.cache) as cache:
        scorer = None
        if ray is not None:
            # Ray is imported only when asked for: it takes seconds to load.
            from delift_core.distributed import ModelSpec, RayScorer

            scorer = RayScorer(ModelSpec(models.model, lm.device), ray.workers, address=ray.address)
        try:
            utilities = score_stage(
                lm, inputs.pool.records, config,
                targets=inputs.targets.records if inputs.targets else None,
                existing=inputs.existing.records if inputs.existing else None,
                embedder=embedder, cache=cache, on_progress=bar,
                compute=scorer.compute if scorer else None,
            )  # fmt: skip
        finally:
            bar.close()
            if scorer is not None:
                scorer.close()
        emb_pool = None
        if embedder is not None:
            emb_pool = embed_records(inputs.pool.records, embedder.model, embedder.key, cache)
    info = {
        "model": {"name": models.model, "id": lm.model_id, "device": lm.device, "dtype": lm.dtype},
        "embedder": embedder.key if embedder else None,
        "batching": {"batch_size": config.batch_size, "max_batch_tokens": config.max_batch_tokens},
        "cache": str(cache.path),
    }
    return StageRun(utilities, emb_pool, info)


def embed_inputs(inputs: Inputs, models: ModelOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sentence embeddings of the pool and the stage's other set (DELIFT-SE): the arrays as
    SelectionInputs fields (emb_pool, emb_targets, emb_existing) and the manifest's info."""
    check_cache(models.cache)
    model = load_embedder(models.embedder, models.device)
    key = embedder_id(models.embedder)
    with UtilityCache(models.cache) as cache:

        def embed(ds: Dataset | None) -> np.ndarray | None:
            return None if ds is None else embed_records(ds.records, model, key, cache)

        arrays = {
            "emb_pool": embed(inputs.pool),
            "emb_targets": embed(inputs.targets),
            "emb_existing": embed(inputs.existing),
        }
    return arrays, {"embedder": key, "cache": str(cache.path)}
