"""Sentence embeddings of records (cached) and nearest-candidate search for sparse mode."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache, read_through
from delift_core.errors import ConfigError
from delift_core.models import embed_texts
from delift_core.prompts import TextPair

log = logging.getLogger(__name__)

# Above this many candidates an approximate index (pynndescent) replaces the exact blocked search.
APPROXIMATE_ABOVE = 20_000
_BLOCK = 2048


def record_text(record: TextPair) -> str:
    """The text that is embedded: prompt and response together."""
    return record.prompt + record.response


def embed_records(
    records: Sequence[TextPair],
    embedder: Any,
    embedder_key: str,
    cache: UtilityCache | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Unit-norm embeddings (n, dim) float32, cached under the embedder and the records' hashes."""
    digest = hashlib.sha256("".join(r.hash for r in records).encode()).hexdigest()[:24]
    return read_through(
        cache,
        "embedding",
        (embedder_key, digest),
        lambda: embed_texts(embedder, [record_text(r) for r in records], batch_size),
        meta={"n": len(records), "embedder": embedder_key},
        valid=lambda stored: stored.shape[0] == len(records),
    )


def find_candidates(
    targets: np.ndarray, examples: np.ndarray, k: int, same_set: bool
) -> list[np.ndarray]:
    """For each target row, the indices of its k most similar example rows (cosine).

    targets (m, d) and examples (n, d) are unit-norm. With same_set (targets are the examples)
    a target's own index is excluded from its k neighbours and then added, so each target is
    scored against itself too (the diagonal of U). Memory is O((m + n) * k) plus one block.
    """
    if same_set and targets.shape[0] != examples.shape[0]:
        raise ConfigError("same_set needs targets and examples of the same length")
    n = examples.shape[0]
    k_eff = min(k, n - 1 if same_set else n)
    if k_eff <= 0:
        neighbours = np.zeros((targets.shape[0], 0), dtype=np.int64)
    elif n > APPROXIMATE_ABOVE:
        neighbours = _approximate_top_k(targets, examples, k_eff + int(same_set), same_set)
    else:
        neighbours = _exact_top_k(targets, examples, k_eff + int(same_set), same_set)
    out = []
    for i, row in enumerate(neighbours):
        if same_set:
            row = np.concatenate([[i], row[row != i][:k_eff]])
        out.append(row[: k_eff + int(same_set)].astype(np.int64))
    return out


def _exact_top_k(targets: np.ndarray, examples: np.ndarray, k: int, same_set: bool) -> np.ndarray:
    result = np.empty((targets.shape[0], k), dtype=np.int64)
    for start in range(0, targets.shape[0], _BLOCK):
        sims = targets[start : start + _BLOCK] @ examples.T
        if same_set:
            rows = np.arange(sims.shape[0])
            sims[rows, rows + start] = np.inf  # self first, then removed by the caller
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        result[start : start + _BLOCK] = np.take_along_axis(top, order, axis=1)
    return result


def _approximate_top_k(
    targets: np.ndarray, examples: np.ndarray, k: int, same_set: bool
) -> np.ndarray:
    from pynndescent import NNDescent

    log.info("building an approximate neighbour index over %d examples", examples.shape[0])
    index = NNDescent(examples, metric="cosine", n_neighbors=max(k, 15), random_state=0)
    if same_set:
        found, _ = index.neighbor_graph
        return found[:, :k].astype(np.int64)
    found, _ = index.query(targets, k=k)
    return found.astype(np.int64)
