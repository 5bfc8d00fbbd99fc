"""Row search: case-insensitive text matching over the sample texts and cosine top-k."""

from __future__ import annotations

import numpy as np
import pytest

from delift_core.data.dataset import dataset_from_rows
from delift_core.embeddings import embed_records, record_text
from delift_core.errors import ConfigError
from delift_core.search import (
    embed_query,
    match_texts,
    query_terms,
    row_texts,
    search_rows,
    search_semantic,
)
from delift_core.testing import HashEmbedder


def test_every_word_must_match_in_any_field_ignoring_case(samples):
    # Rows 0 and 6 ask for a capital; only 6 names Italy (in its instruction and output).
    assert search_rows(samples, "capital").tolist() == [0, 6]
    assert search_rows(samples, "CAPITAL   italy").tolist() == [6]
    # Words may sit in different fields of one row: "grammar" (instruction), "goes" (output).
    assert search_rows(samples, "grammar goes").tolist() == [3]
    assert search_rows(samples, "capital python").tolist() == []
    # Substrings, not whole words.
    assert search_rows(samples, "capit").tolist() == [0, 6]


def test_empty_query_matches_nothing(samples):
    for query in ("", "   ", '""'):
        result = search_rows(samples, query)
        assert result.dtype == np.int64 and result.tolist() == []


def test_quoted_phrases_and_phrase_mode_keep_word_order(samples):
    assert search_rows(samples, '"capital of italy"').tolist() == [6]
    assert search_rows(samples, '"italy capital"').tolist() == []
    assert search_rows(samples, "italy capital").tolist() == [6]
    assert search_rows(samples, "the capital of", mode="phrase").tolist() == [0, 6]
    assert search_rows(samples, "capital the", mode="phrase").tolist() == []
    assert query_terms('a "b  C" a', "substring") == ["a", "b c"]
    with pytest.raises(ConfigError, match="search mode"):
        search_rows(samples, "x", mode="regex")


def test_fields_restrict_the_search_and_never_join_across_fields(samples):
    assert search_rows(samples, "paris").tolist() == [0]
    assert search_rows(samples, "paris", fields=("instruction",)).tolist() == []
    assert search_rows(samples, "paris", fields=("output",)).tolist() == [0]
    # "France?" ends the instruction and "Paris." is the output: no phrase spans the two.
    assert search_rows(samples, "france? paris", mode="phrase").tolist() == []
    # Runs of whitespace inside a field read as one space.
    rows = [{"instruction": "Fix  the\tgrammar", "input": "", "output": "ok"}]
    assert search_rows(rows, "fix the grammar", mode="phrase").tolist() == [0]


def test_source_fields_and_mappings_are_searchable():
    records = dataset_from_rows(
        [
            {"instruction": "a", "input": "", "output": "b", "family": "Math"},
            {"instruction": "c", "input": "", "output": "d", "family": "code"},
        ]
    ).records
    assert search_rows(records, "math", fields=("family",)).tolist() == [0]
    mappings = [{"instruction": "Hello"}, {"output": "hello there"}, {}]
    assert search_rows(mappings, "hello").tolist() == [0, 1]
    texts = row_texts(mappings)
    assert match_texts(texts, "there").tolist() == [1]
    with pytest.raises(ConfigError, match="at least one field"):
        row_texts(mappings, fields=())


def test_semantic_search_is_cosine_top_k_with_ties_to_lower_positions():
    embeddings = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [1.0, 1.0, 0.0],  # cosine 0.7071 with the query
            [2.0, 0.0, 0.0],  # not unit-norm: cosine 1, tied with row 0
            [0.0, 0.0, 0.0],  # no direction: cosine 0
        ],
        dtype=np.float32,
    )
    query = np.array([3.0, 0.0, 0.0])
    positions, scores = search_semantic(query, embeddings, 3)
    assert positions.tolist() == [0, 3, 2]
    np.testing.assert_allclose(scores, [1.0, 1.0, np.sqrt(0.5)], rtol=1e-6)
    positions, scores = search_semantic(query, embeddings, 10)
    assert positions.tolist() == [0, 3, 2, 1, 4] and scores[-1] == 0.0
    assert search_semantic(query, embeddings, 1)[0].tolist() == [0]
    assert search_semantic(query, embeddings, 0)[0].tolist() == []
    # Many equal rows: the cut at k keeps the lowest positions.
    same = np.ones((50, 4), dtype=np.float32)
    assert search_semantic(np.ones(4), same, 3)[0].tolist() == [0, 1, 2]


def test_semantic_search_rejects_mismatched_or_broken_queries():
    embeddings = np.eye(3, dtype=np.float32)
    with pytest.raises(ConfigError, match="dimensions"):
        search_semantic(np.ones(4), embeddings, 2)
    with pytest.raises(ConfigError, match="NaN"):
        search_semantic(np.array([np.nan, 0, 0]), embeddings, 2)
    broken = embeddings.copy()
    broken[1] = np.nan
    assert search_semantic(np.ones(3), broken, 5)[0].tolist() == [0, 2]


def test_a_query_embedded_like_the_pool_finds_its_own_row(samples):
    embedder = HashEmbedder()
    pool = embed_records(samples, embedder, embedder.key)
    vector = embed_query(embedder, record_text(samples[4]))
    assert vector.shape == (embedder.dim,) and np.isclose(np.linalg.norm(vector), 1.0)
    positions, scores = search_semantic(vector, pool, 3)
    assert positions[0] == 4 and np.isclose(scores[0], 1.0, atol=1e-5)
    assert scores[1] < scores[0]
    with pytest.raises(ConfigError, match="empty"):
        embed_query(embedder, "  ")
