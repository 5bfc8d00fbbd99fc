"""Search a pool's rows: case-insensitive text matching over the sample texts, and semantic
search by cosine similarity against the pool's sentence embeddings.

Text search ("substring" mode): the query splits into terms at whitespace, a "quoted phrase"
stays one term, and a row matches when every term occurs in one of its searched fields (case
and runs of whitespace ignored). "phrase" mode takes the whole query as one term. An empty query
matches nothing: a search box left empty highlights no points.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from delift_core.errors import ConfigError

SEARCH_FIELDS: tuple[str, ...] = ("instruction", "input", "output")
SEARCH_MODES: tuple[str, ...] = ("substring", "phrase")

_TERM = re.compile(r'"([^"]*)"|(\S+)')
# Fields are joined with a character no collapsed term contains, so a term never matches
# across the end of one field and the start of the next.
_FIELD_SEP = "\n"


def _flat(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def _field_text(record: Any, name: str) -> str:
    """A record's field as text: an attribute (Record.instruction), else its source fields
    (Record.fields), else a mapping key; "" where absent."""
    if isinstance(record, Mapping):
        value = record.get(name)
    elif hasattr(record, name):
        value = getattr(record, name)
    else:
        value = (getattr(record, "fields", None) or {}).get(name)
    return "" if value is None else str(value)


def query_terms(query: str, mode: str = "substring") -> list[str]:
    """The normalised terms a row must all contain; [] for an empty query.

    substring: whitespace-separated words, "quoted phrases" kept whole; phrase: the whole query.
    """
    if mode not in SEARCH_MODES:
        raise ConfigError(f"search mode must be one of {', '.join(SEARCH_MODES)}; got {mode!r}")
    if mode == "phrase":
        term = _flat(query)
        return [term] if term else []
    terms = (_flat(quoted or word) for quoted, word in _TERM.findall(query or ""))
    return list(dict.fromkeys(t for t in terms if t))


def row_texts(records: Sequence[Any], fields: Sequence[str] = SEARCH_FIELDS) -> list[str]:
    """One normalised haystack per record (its `fields`, case-folded, whitespace collapsed).

    Worth keeping between searches of one pool: building it is most of a search's time.
    """
    if not fields:
        raise ConfigError("search needs at least one field")
    return [_FIELD_SEP.join(_flat(_field_text(r, name)) for name in fields) for r in records]


def match_texts(texts: Sequence[str], query: str, mode: str = "substring") -> np.ndarray:
    """Positions (int64, ascending) of the `texts` (from `row_texts`) that hold every term of
    `query`; empty for an empty query."""
    terms = query_terms(query, mode)
    if not terms:
        return np.zeros(0, dtype=np.int64)
    hits = [i for i, text in enumerate(texts) if all(term in text for term in terms)]
    return np.asarray(hits, dtype=np.int64)


def search_rows(
    records: Sequence[Any],
    query: str,
    fields: Sequence[str] = SEARCH_FIELDS,
    mode: str = "substring",
) -> np.ndarray:
    """Positions (int64, ascending) of the records whose `fields` match `query` (module doc).

    records: Record objects (attributes, then `.fields`) or mappings.
    """
    if not query_terms(query, mode):
        return np.zeros(0, dtype=np.int64)
    return match_texts(row_texts(records, fields), query, mode)


def search_semantic(
    query_vector: np.ndarray, embeddings: np.ndarray, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The `top_k` rows of `embeddings` most similar to `query_vector` by cosine.

    query_vector (d,); embeddings (n, d), normalised here (a zero row scores 0). Returns
    (positions int64 (k,), cosines float64 (k,)), most similar first, ties by lower position;
    k = min(top_k, n).
    """
    query = np.asarray(query_vector, dtype=np.float64).reshape(-1)
    matrix = np.asarray(embeddings)
    if matrix.ndim != 2 or matrix.shape[1] != query.shape[0]:
        raise ConfigError(
            f"the query vector has {query.shape[0]} dimensions but the embeddings have shape "
            f"{matrix.shape}; embed the query with the pool's embedder"
        )
    if top_k < 0:
        raise ConfigError(f"top_k must be at least 0; got {top_k}")
    if not np.all(np.isfinite(query)):
        raise ConfigError("the query vector holds NaN or infinite values")
    norm = np.linalg.norm(query)
    if top_k == 0 or norm == 0 or matrix.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    dots = (matrix @ (query / norm).astype(matrix.dtype, copy=False)).astype(np.float64)
    row_norms = np.linalg.norm(matrix, axis=1).astype(np.float64)
    scores = np.divide(dots, row_norms, out=np.zeros_like(dots), where=row_norms > 0)
    # A row holding NaN or inf is never a result (its norm is not finite).
    valid = np.flatnonzero(np.isfinite(scores) & np.isfinite(row_norms))
    k = min(int(top_k), len(valid))
    if k < len(valid):
        part = valid[np.argpartition(-scores[valid], k - 1)[:k]]
        # argpartition cuts ties at the k-th value arbitrarily: take every tied row, then sort.
        cut = scores[part].min()
        part = valid[scores[valid] >= cut]
    else:
        part = valid
    top = part[np.lexsort((part, -scores[part]))][:k]
    return top.astype(np.int64), scores[top]


def embed_query(embedder: Any, text: str) -> np.ndarray:
    """The query's unit-norm sentence embedding (d,) float32, by the embedder that embedded the
    pool (a sentence-transformers model, as `delift_core.models.load_embedder` returns)."""
    if not str(text).strip():
        raise ConfigError("the semantic search query is empty")
    from delift_core.models import embed_texts  # the model stack only when a query is embedded

    return embed_texts(embedder, [str(text)])[0]
