"""Why a sample was picked: its strongest entries in the utility matrices, the table of the
samples being inspected (status, rank, gain), and the per-sample quality table with the pool's
own label fields (no Streamlit).

Orientation (docs/design.md §2): U[i, j] = how much example j helps target i. A sample's column says
whom it helps; its row says who helps it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ui.plots import shorten

Matrix = np.ndarray | sp.csr_matrix

# The canonical texts and the schema fields they are read from: never repeated as extra columns.
TEXT_FIELDS = frozenset({"id", "instruction", "input", "output", "prompt", "completion"})
MAX_EXTRA_FIELDS = 8
MAX_CATEGORIES = 20
MISSING = "(missing)"

RANK_HELP = (
    "Pick order: 1 is the sample the greedy picked first, 2 the next, and so on. The selection at "
    "a budget of k samples is ranks 1 to k. For random it is the position in the seeded random "
    "order."
)
GAIN_HELP = (
    "Marginal gain: how much the method's objective rose when the greedy added this sample. The "
    "first pick covers the pool from nothing, so its gain is far larger than the others; each "
    "later pick adds only what the samples before it left uncovered, so gains shrink along the "
    "order. Empty for random and full, which have no objective to maximise."
)
RANK_GAIN_NOTE = (
    "rank = the order in which the greedy picked the sample (1 = first). gain = how much the "
    "objective rose when it was added. The first pick's gain is large because it covers the pool "
    "from nothing; later picks only add what the earlier ones left uncovered."
)


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


def add_marks(
    marks: Sequence[str], others: Sequence[str], new: Sequence[str]
) -> tuple[list[str], list[str]]:
    """`marks` with `new` appended (no repeats, first order kept) and `others` without `new`.

    For pins and exclusions: a sample is one or the other, and the curator's latest choice wins.
    """
    added = set(new)
    return list(dict.fromkeys([*marks, *new])), [s for s in others if s not in added]


def sample_status(
    index: int, rank: int, count: int, pinned: Collection[int], excluded: Collection[int]
) -> str:
    """How a pool sample stands at this budget: "selected (pinned)", "excluded", "selected" or
    "not selected at this budget". rank: its 0-based position in the pick order, -1 if absent."""
    if index in pinned:
        return "selected (pinned)"
    if index in excluded:
        return "excluded"
    return "selected" if 0 <= rank < count else "not selected at this budget"


def inspection_table(
    records: Sequence[Any],
    indices: Sequence[int],
    order: np.ndarray,
    gains: np.ndarray,
    count: int,
    pinned: Collection[int] = (),
    excluded: Collection[int] = (),
    quality: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per inspected pool index, in the order given: id, status at this budget, rank
    (1-based position in `order`, None when never picked), gain (the pick's marginal gain, NaN
    when it has none), quality score (when `quality` (n,) is given) and the shortened
    instruction. order / gains: the full pick order and its gains; count: the budget."""
    rank_of = np.full(len(records), -1, dtype=np.int64)
    rank_of[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    ranks = np.asarray([rank_of[i] for i in indices], dtype=np.int64)
    pinned, excluded = set(pinned), set(excluded)
    gains = np.asarray(gains, dtype=np.float64)
    table = pd.DataFrame(
        {
            "id": [records[i].id for i in indices],
            "status": [
                sample_status(i, int(r), count, pinned, excluded)
                for i, r in zip(indices, ranks, strict=True)
            ],
            "rank": pd.arrays.IntegerArray(ranks + 1, mask=ranks < 0),
            "gain": [float(gains[r]) if r >= 0 else np.nan for r in ranks],
        }
    )
    if quality is not None:
        table["quality score"] = [float(quality[i]) for i in indices]
    table["instruction"] = [shorten(records[i].instruction, 100) for i in indices]
    return table


def extra_fields(records: Sequence[Any], exclude: Sequence[str] = ()) -> list[str]:
    """Source fields that hold text wherever present (e.g. a `quality` or `family` label), in
    first-seen order, at most MAX_EXTRA_FIELDS; the canonical texts and `exclude` (fields a
    field map read the texts from) are left out."""
    skip = TEXT_FIELDS | set(exclude)
    seen: dict[str, bool] = {}  # field -> every value so far is text
    for record in records:
        for name, value in record.fields.items():
            if name in skip:
                continue
            text = isinstance(value, str) or value is None
            seen[name] = seen.get(name, True) and text
    textual = [name for name, ok in seen.items() if ok and any(r.fields.get(name) for r in records)]
    return textual[:MAX_EXTRA_FIELDS]


def field_values(records: Sequence[Any], name: str) -> list[str]:
    """One label per record: the field's text, or MISSING where it is absent or empty."""
    return [str(r.fields.get(name) or MISSING) for r in records]


def categorical_fields(
    records: Sequence[Any], fields: Sequence[str], max_values: int = MAX_CATEGORIES
) -> list[str]:
    """Those of `fields` with at most `max_values` distinct values: the ones a map can be
    coloured by (free text would give one colour per sample)."""
    out = []
    for name in fields:
        distinct = set()
        for value in field_values(records, name):
            distinct.add(value)
            if len(distinct) > max_values:
                break
        if len(distinct) <= max_values:
            out.append(name)
    return out


def quality_table(
    records: Sequence[Any],
    signals: Mapping[str, np.ndarray],
    score: np.ndarray,
    order: np.ndarray,
    count: int,
    extra: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per pool sample: id, status at this budget, rank in the pick order (None when
    never picked), quality score, each signal, the shortened instruction and the `extra` source
    fields (renamed "<name> (field)" where a name is already a column)."""
    n = len(records)
    rank = np.full(n, -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    chosen = np.zeros(n, dtype=bool)
    chosen[order[:count]] = True
    table = pd.DataFrame(
        {
            "id": [r.id for r in records],
            "status": np.where(chosen, "selected", "discarded"),
            "rank": pd.arrays.IntegerArray(rank + 1, mask=rank < 0),
            "quality score": np.asarray(score, dtype=np.float64),
        }
    )
    for name, values in signals.items():
        table[name] = np.asarray(values, dtype=np.float64)
    table["instruction"] = [shorten(r.instruction, 100) for r in records]
    for name in extra:
        column = f"{name} (field)" if name in table.columns else name
        table[column] = [shorten(v, 60) for v in field_values(records, name)]
    return table
