"""Why a sample was picked: its strongest entries in the utility matrices (no Streamlit).

Orientation (DESIGN.md §2): U[i, j] = how much example j helps target i. A sample's column says
whom it helps; its row says who helps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ui.plots import shorten

Matrix = np.ndarray | sp.csr_matrix


def top_entries(
    matrix: Matrix, index: int, axis: str, k: int = 5, exclude: int | None = None
) -> list[tuple[int, float]]:
    """The k largest entries of row `index` (axis="row") or column `index` (axis="col"), as
    (position, value), largest first. Sparse matrices use stored (scored) entries only."""
    if axis not in ("row", "col"):
        raise ValueError("axis must be 'row' or 'col'")
    if sp.issparse(matrix):
        line = matrix.getrow(index) if axis == "row" else matrix.getcol(index).T
        line = sp.csr_matrix(line)
        positions, values = line.indices.astype(np.int64), line.data.astype(np.float64)
    else:
        values = np.asarray(matrix[index] if axis == "row" else matrix[:, index], dtype=float)
        positions = np.arange(len(values))
    keep = np.isfinite(values)
    if exclude is not None:
        keep &= positions != exclude
    positions, values = positions[keep], values[keep]
    top = np.argsort(-values, kind="stable")[:k]
    return [(int(positions[t]), float(values[t])) for t in top]


def entries_table(entries: Sequence[tuple[int, float]], records: Sequence[Any]) -> pd.DataFrame:
    """A display table (id, utility, instruction) of top_entries over `records`."""
    return pd.DataFrame(
        {
            "id": [records[p].id for p, _ in entries],
            "utility": [round(v, 5) for _, v in entries],
            "instruction": [shorten(records[p].instruction, 100) for p, _ in entries],
        }
    )


def parse_ids(text: str, ids: Sequence[str]) -> tuple[list[int], list[str]]:
    """Pool positions of comma- or space-separated sample ids, and the ids not found."""
    where = {sid: i for i, sid in enumerate(ids)}
    found, missing = [], []
    for token in text.replace(",", " ").split():
        if token in where:
            found.append(where[token])
        else:
            missing.append(token)
    return list(dict.fromkeys(found)), missing
