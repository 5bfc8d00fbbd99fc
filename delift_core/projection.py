"""2-D maps of sentence embeddings with UMAP, cached in the DuckDB store.

UMAP's own neighbour search and layout are compiled by numba on first use in a process (about
10-20 s on a small CPU). For pools up to EXACT_KNN_MAX points the k nearest neighbours are found
here with numpy instead (exact, and it skips one of those compilations); above that UMAP's
approximate search (pynndescent) is used.
"""

from __future__ import annotations

import hashlib
import logging
import warnings

import numpy as np

from delift_core.cache import UtilityCache, array_key
from delift_core.errors import ConfigError

log = logging.getLogger(__name__)

PROJECTION_KIND = "projection"
# Below this many points UMAP is not meaningful (it needs a few neighbours): PCA is used.
MIN_UMAP_POINTS = 5
MAX_NEIGHBORS = 15
EXACT_KNN_MAX = 20_000
_BLOCK = 1024


def projection_key_parts(key: str, n: int, seed: int) -> tuple[str, str, str]:
    """The parts of a projection's cache key: the caller's key, the point count and the seed."""
    return (key, f"n{n}", f"s{seed}")


def projection_key(key: str, n: int, seed: int) -> str:
    """The cache key of a projection (`array_key` of `projection_key_parts`)."""
    return array_key(*projection_key_parts(key, n, seed))


def load_projection(cache: UtilityCache, key: str, n: int, seed: int = 0) -> np.ndarray | None:
    """A stored (n, 2) float32 projection, or None when it was never computed."""
    stored = cache.get_array(PROJECTION_KIND, projection_key(key, n, seed))
    if stored is None or stored.shape != (n, 2):
        return None
    return stored.astype(np.float32, copy=False)


def project_2d(
    embeddings: np.ndarray,
    *,
    cache: UtilityCache | None = None,
    key: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """2-D coordinates (n, 2) float32 of the rows of `embeddings` (n, d).

    UMAP with n_neighbors = min(15, n - 1) and random_state = seed (deterministic for a given
    input and seed); fewer than 5 points get a PCA layout. With a cache it is read through
    `UtilityCache.get_or_compute` under kind "projection" and `projection_key(key, n, seed)`
    (a stored array of another shape is computed again); without a key, the key is a hash of
    the embeddings.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ConfigError(f"embeddings must be a 2-D array (n, d); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError("embeddings contain NaN or infinite values")
    n = x.shape[0]

    def compute() -> np.ndarray:
        coords = _umap(x, seed) if n >= MIN_UMAP_POINTS else _pca(x)
        return np.ascontiguousarray(coords, dtype=np.float32)

    if cache is None:
        return compute()
    key = key or _content_key(x)
    coords = cache.get_or_compute(
        PROJECTION_KIND,
        projection_key_parts(key, n, seed),
        compute,
        meta={"n": n, "dim": int(x.shape[1]), "seed": seed, "method": _method(n)},
        valid=lambda stored: stored.shape == (n, 2),
    )
    return coords.astype(np.float32, copy=False)


def _method(n: int) -> str:
    return "umap" if n >= MIN_UMAP_POINTS else "pca"


def _content_key(x: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes())
    digest.update(str(x.shape).encode())
    return digest.hexdigest()[:24]


def _pca(x: np.ndarray) -> np.ndarray:
    """First two principal components; missing components (rank < 2) are zero."""
    out = np.zeros((x.shape[0], 2), dtype=np.float32)
    if x.shape[0] < 2:
        return out
    centred = x.astype(np.float64) - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    comps = min(2, len(s))
    # The sign of a singular vector is arbitrary: fix it so that the layout is reproducible.
    coords = u[:, :comps] * s[:comps]
    for c in range(comps):
        pivot = np.argmax(np.abs(coords[:, c]))
        if coords[pivot, c] < 0:
            coords[:, c] = -coords[:, c]
    out[:, :comps] = coords
    return out


def _exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of each row's k nearest rows, itself first: (n, k)."""
    sq = np.einsum("ij,ij->i", x, x)
    indices = np.empty((x.shape[0], k), dtype=np.int64)
    distances = np.empty((x.shape[0], k), dtype=np.float32)
    for start in range(0, x.shape[0], _BLOCK):
        block = x[start : start + _BLOCK]
        d2 = sq[start : start + _BLOCK, None] + sq[None, :] - 2.0 * (block @ x.T)
        rows = np.arange(block.shape[0])
        d2[rows, rows + start] = -1.0  # each point is its own first neighbour
        top = np.argpartition(d2, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d2, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        dist = np.sqrt(np.maximum(np.take_along_axis(d2, top, axis=1), 0.0))
        indices[start : start + _BLOCK] = top
        distances[start : start + _BLOCK] = dist
    return indices, distances


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import umap

    n = x.shape[0]
    k = min(MAX_NEIGHBORS, n - 1)
    kwargs = {}
    if n <= EXACT_KNN_MAX:
        indices, distances = _exact_knn(x, k)
        kwargs["precomputed_knn"] = (indices, distances, None)
    log.info("UMAP of %d points (%d neighbours)", n, k)
    reducer = umap.UMAP(n_components=2, n_neighbors=k, random_state=seed, **kwargs)
    with warnings.catch_warnings():
        # Expected and harmless here: seeding makes UMAP single-threaded, a precomputed
        # neighbour graph has no search index, and tiny sets may be disconnected.
        warnings.simplefilter("ignore", UserWarning)
        coords = reducer.fit_transform(x)
    return np.asarray(coords, dtype=np.float32)
