"""Kernels: global min-max across blocks, clipping, sparse structure, embedding kernels."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from delift_core.errors import ConfigError
from delift_core.select.kernels import embedding_kernel, sparse_embedding_kernel, utility_kernels


def test_minmax_uses_one_scale_for_all_blocks():
    a = np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32)
    b = np.array([[-1.0, 3.0, 1.0]], dtype=np.float32)
    ka, kb = utility_kernels([a, b], "minmax")
    # lo = -1 and hi = 3 come from b; a is scaled with them, not with its own 0..1.
    np.testing.assert_allclose(ka, (a + 1.0) / 4.0, rtol=1e-6)
    np.testing.assert_allclose(kb, [[0.0, 1.0, 0.5]], rtol=1e-6)
    assert ka.dtype == np.float32 and kb.dtype == np.float32
    assert ka.shape == a.shape and kb.shape == b.shape


def test_minmax_differs_from_scaling_each_block_alone():
    a = np.array([[0.0, 1.0]], dtype=np.float32)
    b = np.array([[0.0, 2.0]], dtype=np.float32)
    ka, _ = utility_kernels([a, b])
    (alone,) = utility_kernels([a])
    assert ka.max() == pytest.approx(0.5)
    assert alone.max() == pytest.approx(1.0)


def test_inputs_are_not_modified():
    a = np.array([[-2.0, 4.0]], dtype=np.float32)
    before = a.copy()
    utility_kernels([a], "minmax")
    utility_kernels([a], "clip")
    np.testing.assert_array_equal(a, before)


def test_clip_keeps_positive_values_and_zeroes_negatives():
    a = np.array([[-0.5, 0.0, 0.7], [2.0, -3.0, 0.1]])
    (k,) = utility_kernels([a], "clip")
    np.testing.assert_allclose(k, [[0.0, 0.0, 0.7], [2.0, 0.0, 0.1]], rtol=1e-6)
    assert k.dtype == np.float32


def test_constant_input_gives_all_ones():
    (k,) = utility_kernels([np.full((3, 2), 0.37)], "minmax")
    np.testing.assert_array_equal(k, np.ones((3, 2), dtype=np.float32))


def test_sparse_minmax_transforms_stored_values_only_and_keeps_structure():
    # Stored values include an explicit zero and a negative; (0, 1) and (1, 0) are absent.
    rows, cols = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 2])
    values = np.array([-1.0, 0.0, 3.0, 1.0], dtype=np.float32)
    s = sp.csr_matrix((values, (rows, cols)), shape=(2, 3))
    dense = np.array([[2.0, 5.0]], dtype=np.float32)  # a dense block in the same call
    ks, kd = utility_kernels([s, dense], "minmax")
    assert sp.issparse(ks) and ks.dtype == np.float32
    assert ks.nnz == 4
    np.testing.assert_array_equal(ks.indptr, s.indptr)
    np.testing.assert_array_equal(ks.indices, s.indices)
    # global lo = -1 (sparse), hi = 5 (dense)
    np.testing.assert_allclose(ks.data, (values + 1.0) / 6.0, rtol=1e-6)
    np.testing.assert_allclose(kd, [[0.5, 1.0]], rtol=1e-6)
    assert ks[0, 1] == 0.0 and ks[1, 0] == 0.0  # absent stays absent


def test_sparse_clip_keeps_explicit_entries():
    s = sp.csr_matrix((np.array([-1.0, 2.0]), (np.array([0, 1]), np.array([1, 0]))), shape=(2, 2))
    (k,) = utility_kernels([s], "clip")
    assert k.nnz == 2
    np.testing.assert_allclose(k.data, [0.0, 2.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad):
    a = np.zeros((2, 2))
    a[1, 0] = bad
    with pytest.raises(ConfigError, match="NaN or infinite"):
        utility_kernels([a])
    s = sp.csr_matrix((np.array([1.0, bad]), (np.array([0, 1]), np.array([0, 1]))), shape=(2, 2))
    with pytest.raises(ConfigError, match="NaN or infinite"):
        utility_kernels([s], "clip")


def test_bad_kind_and_shapes_are_rejected():
    with pytest.raises(ConfigError, match="kernel must be"):
        utility_kernels([np.zeros((2, 2))], "softmax")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="2-D"):
        utility_kernels([np.zeros(3)])
    with pytest.raises(ConfigError, match="numpy array"):
        utility_kernels([[[1.0]]])  # type: ignore[list-item]


def test_embedding_kernel_values():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    k = embedding_kernel(a)
    assert k.shape == (3, 3) and k.dtype == np.float32
    expected = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]])
    np.testing.assert_allclose(k, expected, atol=1e-6)


def test_embedding_kernel_between_two_sets_is_rows_by_rows():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(6, 5))
    k = embedding_kernel(a, b)
    assert k.shape == (4, 6)
    cos = (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(k, (cos + 1) / 2, atol=1e-6)
    np.testing.assert_allclose(embedding_kernel(b, a), k.T, atol=1e-6)


def test_embedding_kernel_zero_row_and_errors():
    k = embedding_kernel(np.array([[0.0, 0.0], [1.0, 1.0]]))
    assert k[0, 1] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="sizes differ"):
        embedding_kernel(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ConfigError, match="NaN"):
        embedding_kernel(np.array([[np.nan, 1.0]]))


def test_sparse_embedding_kernel_matches_dense_on_the_pattern():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(7, 3))
    pattern = sp.random(5, 7, density=0.4, random_state=5, format="csr")
    k = sparse_embedding_kernel(a, b, pattern)
    dense = embedding_kernel(a, b)
    assert k.shape == (5, 7) and k.nnz == pattern.nnz
    rows, cols = pattern.nonzero()
    np.testing.assert_allclose(np.asarray(k[rows, cols]).ravel(), dense[rows, cols], atol=1e-6)
    with pytest.raises(ConfigError, match="pattern shape"):
        sparse_embedding_kernel(a, b, sp.csr_matrix((7, 5)))
