"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A reader (or a crash) never sees a half-written file: the old content stays until the new one is
complete.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

# mkstemp creates owner-only files; finished files get the usual permissions (umask applied).
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_chunks_atomic(path, [data])


def write_chunks_atomic(path: str | os.PathLike, chunks: Iterable[bytes]) -> Path:
    """Write chunks to `path` atomically; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_matrix_atomic(path: str | os.PathLike, matrix: np.ndarray | sp.spmatrix) -> Path:
    """Dense -> .npy, sparse -> .npz (scipy format, no pickle)."""
    buf = io.BytesIO()
    if sp.issparse(matrix):
        sp.save_npz(buf, sp.csr_matrix(matrix), compressed=True)
    else:
        np.save(buf, np.ascontiguousarray(matrix), allow_pickle=False)
    return write_bytes_atomic(path, buf.getvalue())


def load_matrix(path: str | os.PathLike) -> np.ndarray | sp.csr_matrix:
    """Read a matrix written by save_matrix_atomic (never unpickles)."""
    path = Path(path)
    if path.suffix == ".npz":
        return sp.load_npz(path).tocsr()
    return np.load(path, allow_pickle=False)
