"""2-D projection: shape, determinism, structure, tiny inputs and the cache."""

from __future__ import annotations

import numpy as np
import pytest

from delift_core.cache import UtilityCache
from delift_core.errors import ConfigError
from delift_core.projection import _exact_knn, load_projection, project_2d


def _clusters(n_per: int = 20, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs, unit-normalised like sentence embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 4
    labels = np.repeat(np.arange(3), n_per)
    x = centres[labels] + rng.normal(scale=0.3, size=(3 * n_per, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def test_shape_dtype_and_determinism():
    x, _ = _clusters()
    a = project_2d(x, seed=0)
    b = project_2d(x, seed=0)
    assert a.shape == (60, 2) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_umap_keeps_clusters_apart():
    x, labels = _clusters()
    coords = project_2d(x, seed=0)
    centres = np.stack([coords[labels == c].mean(axis=0) for c in range(3)])
    spread = max(np.linalg.norm(coords[labels == c] - centres[c], axis=1).mean() for c in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread


def test_cache_hit_returns_stored_coordinates(tmp_path, monkeypatch):
    x, _ = _clusters(n_per=5)
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        first = project_2d(x, cache=cache, key="pool-a", seed=3)
        stored = load_projection(cache, "pool-a", len(x), seed=3)
        np.testing.assert_array_equal(stored, first)
        assert load_projection(cache, "pool-a", len(x), seed=4) is None

        import delift_core.projection as projection

        def fail(*args, **kwargs):
            raise AssertionError("UMAP ran although the projection was cached")

        monkeypatch.setattr(projection, "_umap", fail)
        again = project_2d(x, cache=cache, key="pool-a", seed=3)
        np.testing.assert_array_equal(again, first)
        # Without a key the content hash is the key: equal embeddings hit the same entry.
        monkeypatch.undo()
        by_content = project_2d(x, cache=cache, seed=3)
        monkeypatch.setattr(projection, "_umap", fail)
        np.testing.assert_array_equal(project_2d(x.copy(), cache=cache, seed=3), by_content)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
def test_tiny_inputs_get_a_simple_layout(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    coords = project_2d(x)
    assert coords.shape == (n, 2) and np.isfinite(coords).all()
    if n >= 2:
        # Distinct points stay distinct on the first principal axis.
        assert len(np.unique(coords[:, 0].round(6))) == n


def test_five_points_use_umap():
    x, _ = _clusters(n_per=2)
    coords = project_2d(x[:5])
    assert coords.shape == (5, 2) and np.isfinite(coords).all()


def test_exact_knn_lists_self_first_and_sorted():
    x, _ = _clusters(n_per=4)
    indices, distances = _exact_knn(x, 4)
    assert (indices[:, 0] == np.arange(len(x))).all()
    assert np.allclose(distances[:, 0], 0, atol=1e-3)
    assert (np.diff(distances, axis=1) >= -1e-6).all()
    full = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.testing.assert_allclose(distances, np.sort(full, axis=1)[:, :4], atol=1e-4)


def test_rejects_bad_input():
    with pytest.raises(ConfigError):
        project_2d(np.zeros(5, dtype=np.float32))
    with pytest.raises(ConfigError):
        project_2d(np.full((6, 3), np.nan, dtype=np.float32))


def test_projection_stored_under_the_old_key_is_read_without_recomputing(tmp_path, monkeypatch):
    import delift_core.projection as projection

    x, _ = _clusters(n_per=3)
    stored = np.arange(2 * len(x), dtype=np.float32).reshape(len(x), 2)
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        # The key format written by earlier versions: "<key>|n<points>|s<seed>".
        cache.put_array("projection", f"pool-b|n{len(x)}|s7", stored, {"n": len(x)})

        def fail(*args, **kwargs):
            raise AssertionError("the projection was computed although it was cached")

        monkeypatch.setattr(projection, "_umap", fail)
        monkeypatch.setattr(projection, "_pca", fail)
        coords = project_2d(x, cache=cache, key="pool-b", seed=7)
        assert coords.dtype == np.float32
        np.testing.assert_array_equal(coords, stored)


def test_projection_is_stored_under_the_same_key_and_meta_as_before(tmp_path):
    x, _ = _clusters(n_per=1)  # three points: a PCA layout
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        # A stored array of the wrong shape is not used: it is computed again and replaced.
        cache.put_array("projection", f"pool-c|n{len(x)}|s1", np.zeros((2, 2), np.float32))
        coords = project_2d(x, cache=cache, key="pool-c", seed=1)
        assert coords.shape == (len(x), 2)
        np.testing.assert_array_equal(cache.get_array("projection", f"pool-c|n{len(x)}|s1"), coords)
        meta = cache.get_meta("projection", f"pool-c|n{len(x)}|s1")
        assert meta == {"n": len(x), "dim": x.shape[1], "seed": 1, "method": "pca"}
        assert [key for key, _, _ in cache.list_arrays("projection")] == [f"pool-c|n{len(x)}|s1"]
