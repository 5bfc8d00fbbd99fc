"""Measures for comparing selections of one pool (no Streamlit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from delift_core.pipeline import StageUtilities, selection_inputs
from delift_core.select.selection import objective_value

CLUSTER_FIELD = "family"
DEFAULT_CLUSTERS = 10


def jaccard_table(sets: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise Jaccard overlap |A ∩ B| / |A ∪ B| of index sets, as a square table."""
    names = list(sets)
    as_sets = {name: set(np.asarray(sets[name]).tolist()) for name in names}
    values = np.ones((len(names), len(names)))
    for a, first in enumerate(names):
        for b, second in enumerate(names):
            union = as_sets[first] | as_sets[second]
            values[a, b] = len(as_sets[first] & as_sets[second]) / len(union) if union else 1.0
    return pd.DataFrame(values.round(3), index=names, columns=names)


def cluster_labels(
    records: Sequence[Any], embeddings: np.ndarray | None, k: int = DEFAULT_CLUSTERS, seed: int = 0
) -> tuple[np.ndarray, str] | None:
    """A cluster label per pool record and a description of where they came from.

    The records' own `family` field when every record has one; else k-means (k clusters, or
    fewer for small pools) on the sentence embeddings; None when neither is available.
    """
    families = [r.fields.get(CLUSTER_FIELD) for r in records]
    if records and all(isinstance(f, str) and f for f in families):
        _, labels = np.unique(np.asarray(families, dtype=object).astype(str), return_inverse=True)
        return labels.astype(np.int64), f"the '{CLUSTER_FIELD}' field"
    if embeddings is None or len(records) == 0:
        return None
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(records)))
    model = KMeans(n_clusters=k, n_init=4, random_state=seed)
    labels = model.fit_predict(np.asarray(embeddings, dtype=np.float64))
    return labels.astype(np.int64), f"k-means with k = {k} on sentence embeddings"


def clusters_covered(labels: np.ndarray, indices: np.ndarray) -> int:
    """How many distinct clusters the selected indices touch."""
    return len(np.unique(labels[np.asarray(indices, dtype=np.int64)]))


def targets_covered(u_targets: np.ndarray | sp.csr_matrix, indices: np.ndarray) -> int:
    """Targets whose best selected utility is positive: u_targets (targets, n), rows = targets."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        return 0
    block = u_targets[:, idx]
    best = block.max(axis=1)
    best = best.toarray().ravel() if sp.issparse(best) else np.asarray(best).ravel()
    return int((best > 0).sum())


def delift_objective(
    utilities: StageUtilities, subset: np.ndarray, *, stage: str, kernel: str, metric: str
) -> float:
    """DELIFT's objective of `stage` (FL, FLMI or FLCG on the utility kernel, as the method
    "delift" maximises it) evaluated once on `subset` (pool indices): puts a selection of any
    method, e.g. random, on the scale of the greedy's objective. metric: "rms" or "logprob"."""
    inputs = selection_inputs(utilities, metric)
    return objective_value(inputs, subset, method="delift", stage=stage, kernel=kernel)
