"""Curation helpers of the Select page: the per-row table, filters, the filter as a hard
constraint, the linked table and the Why panel's sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from delift_core.coverage import covers_best, row_coverage
from delift_core.data.dataset import dataset_from_rows
from delift_core.search import row_texts
from ui import curation, why
from ui.curation import RowFilter

ROWS = [
    ("What is the capital of France?", "", "Paris.", "qa", 3, "good"),
    ("Add 12 and 30.", "", "The sum is 42.", "math", 5, "good"),
    ("Convert 5 km to miles.", "", "About 3.1 miles.", "math", None, "poor"),
    ("Fix the grammar.", "she go to school", "She goes to school.", "edit", 1, "good"),
    ("Reverse a string in Python.", "s = 'abc'", "s[::-1]", "code", 4, ""),
    ("What is the capital of Italy?", "", "Rome is the capital of Italy.", "qa", 2, "poor"),
]
RECORDS = dataset_from_rows(
    [
        {"instruction": i, "input": x, "output": o, "family": f, "score": s, "quality": q}
        for i, x, o, f, s, q in ROWS
    ]
).records
ORDER = np.array([3, 0, 1, 5, 2])  # 4 is excluded: never picked
GAINS = np.array([0.5, 0.3, 0.2, 0.1, 0.05])


def table(**kwargs) -> pd.DataFrame:
    options = {"pinned": [5], "excluded": [4], "fields": ["family", "score", "quality"]}
    return curation.row_table(RECORDS, ORDER, GAINS, 2, **{**options, **kwargs})


def test_row_table_has_one_row_per_sample_by_pool_position():
    t = table(quality=np.linspace(0, 1, 6), signals={"self_utility": np.arange(6.0)})
    assert t.index.tolist() == list(range(6))
    assert t["status"].tolist() == [
        "selected",
        "discarded",
        "discarded",
        "selected",
        "excluded",
        "selected (pinned)",
    ]
    assert t["rank"].tolist() == [2, 3, 5, 1, pd.NA, 4]
    np.testing.assert_allclose(t["gain"], [0.3, 0.2, 0.05, 0.5, np.nan, 0.1])
    assert t["length"].tolist() == [sum(len(p) for p in row[:3]) for row in ROWS]
    assert t["self_utility"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # A numeric source field is numeric (missing -> NaN), a text one is text (missing named).
    assert pd.api.types.is_float_dtype(t["score"]) and np.isnan(t["score"][2])
    assert t["family"].tolist() == ["qa", "math", "math", "edit", "code", "qa"]
    # The pool's own "quality" label does not clash with the quality score.
    assert t["quality"].tolist()[4] == "(missing)" and "quality score" in t.columns
    assert t["input"][3] == "she go to school"


def test_a_field_named_like_a_column_is_renamed():
    records = dataset_from_rows(
        [{"instruction": "a", "input": "", "output": "b", "status": "draft"}]
    ).records
    t = curation.row_table(records, np.array([0]), np.array([1.0]), 1, fields=["status"])
    assert t["status"].tolist() == ["selected"] and t["status (field)"].tolist() == ["draft"]


def test_filters_combine_ranges_categories_and_search():
    t = table()
    assert RowFilter().apply(t).all() and not RowFilter().active
    assert RowFilter(ranges={"score": (2, 4)}).apply(t).tolist() == [
        True,
        False,
        False,  # no score: a range never holds
        False,
        True,
        True,
    ]
    assert np.flatnonzero(RowFilter(ranges={"score": (None, 2)}).apply(t)).tolist() == [3, 5]
    assert np.flatnonzero(RowFilter(ranges={"rank": (4, None)}).apply(t)).tolist() == [2, 5]
    only_math = RowFilter(categories={"family": {"math", "code"}})
    assert np.flatnonzero(only_math.apply(t)).tolist() == [1, 2, 4]
    assert np.flatnonzero(RowFilter(categories={"quality": ["(missing)"]}).apply(t)).tolist() == [4]
    assert np.flatnonzero(RowFilter(categories={"status": ["discarded"]}).apply(t)).tolist() == [
        1,
        2,
    ]
    # An empty category set is no condition.
    assert RowFilter(categories={"family": set()}).apply(t).all()
    assert np.flatnonzero(RowFilter(search="capital").apply(t)).tolist() == [0, 5]
    both = RowFilter(
        ranges={"length": (0, 40)}, categories={"family": ["qa", "edit"]}, search="capital"
    )
    assert np.flatnonzero(both.apply(t)).tolist() == [0]
    # Reused search texts give the same mask.
    texts = row_texts(RECORDS)
    assert both.apply(t, texts).tolist() == both.apply(t).tolist()


def test_filters_refuse_what_they_cannot_mean():
    t = table()
    with pytest.raises(ValueError, match="empty"):
        RowFilter(ranges={"score": (3, 1)})
    with pytest.raises(ValueError, match="finite"):
        RowFilter(ranges={"score": (float("nan"), 1)})
    with pytest.raises(ValueError, match="no column 'nope'"):
        RowFilter(ranges={"nope": (0, 1)}).apply(t)
    with pytest.raises(ValueError, match="not numeric"):
        RowFilter(ranges={"family": (0, 1)}).apply(t)
    with pytest.raises(ValueError, match="search mode"):
        RowFilter(search="x", search_mode="regex")
    with pytest.raises(ValueError, match="search texts"):
        RowFilter(search="x").apply(t, ["only one"])


def test_filters_round_trip_restrict_and_describe():
    f = RowFilter({"score": (1, None)}, {"family": ["qa", "math"]}, " rain ", "phrase")
    assert f.search == "rain" and RowFilter.from_dict(f.to_dict()) == f
    assert f.to_dict() == {
        "ranges": {"score": [1.0, None]},
        "categories": {"family": ["math", "qa"]},
        "search": "rain",
        "search_mode": "phrase",
    }
    assert f.restrict({"family"}) == RowFilter({}, {"family": ["qa", "math"]}, "rain", "phrase")
    assert f.describe() == 'family in {math, qa}; score ≥ 1; text "rain"'
    assert RowFilter().describe() == "" and RowFilter().to_dict() == {}
    with pytest.raises(ValueError):
        RowFilter.from_dict({"ranges": {}, "colour": "x"})


def test_a_filter_as_a_hard_constraint_excludes_the_rest_but_never_a_pin():
    t = table()
    ids = t["id"].tolist()
    mask = RowFilter(categories={"family": ["qa"]}).apply(t)
    assert curation.excluded_by_filter(mask, ids) == [ids[i] for i in (1, 2, 3, 4)]
    assert curation.excluded_by_filter(mask, ids, keep=[3, 9]) == [ids[i] for i in (1, 2, 4)]
    with pytest.raises(ValueError, match="mask"):
        curation.excluded_by_filter(mask[:3], ids)


def test_filters_on_several_columns_and_the_search_combine_into_one():
    t = table()
    by_family = RowFilter(categories={"family": ["qa", "math"]})
    by_score = RowFilter(ranges={"score": (3, None)})
    by_text = RowFilter(search="capital")
    both = RowFilter.all_of([by_family, by_score, by_text])
    assert both == RowFilter({"score": (3, None)}, {"family": ["qa", "math"]}, "capital")
    expected = by_family.apply(t) & by_score.apply(t) & by_text.apply(t)
    np.testing.assert_array_equal(both.apply(t), expected)
    assert both.apply(t).tolist() == [True, False, False, False, False, False]
    assert RowFilter.all_of([]) == RowFilter() and not RowFilter.all_of([RowFilter()]).active
    assert RowFilter.all_of([by_text, RowFilter(search="capital")]).search == "capital"
    with pytest.raises(ValueError, match="two filters on 'family'"):
        RowFilter.all_of([by_family, RowFilter(categories={"family": ["code"]})])
    with pytest.raises(ValueError, match="different texts"):
        RowFilter.all_of([by_text, RowFilter(search="rome")])


def test_row_scopes_list_the_selected_the_discarded_or_every_row():
    t = table()  # selected 3, 0; pinned 5; excluded 4; discarded 1, 2
    assert curation.scope_positions(t, "selected").tolist() == [0, 3, 5]
    assert curation.scope_positions(t, "discarded").tolist() == [1, 2, 4]
    assert curation.scope_positions(t, "all").tolist() == list(range(6))
    assert set(curation.ROW_SCOPES) == {curation.PICKED, *curation.SCOPE_STATUSES}
    # Positions of a slice of the table are pool positions.
    assert curation.scope_positions(t.iloc[2:], "selected").tolist() == [3, 5]
    with pytest.raises(ValueError, match="scope must be one of"):
        curation.scope_positions(t, curation.PICKED)


def test_linked_rows_put_the_curators_columns_first():
    t = table(quality=np.linspace(0, 1, 6), signals={"self_utility": np.arange(6.0)})
    rows = curation.linked_rows(t, [5, 0, 5, 99, -1], snippet=12)
    assert rows.index.tolist() == [5, 0]  # order kept, repeats and strays dropped
    assert rows.columns.tolist()[:7] == [
        "id",
        "status",
        "rank",
        "gain",
        "quality score",
        "quality",
        "instruction",
    ]
    assert rows.columns.tolist()[7] == "output"  # no input among the shown rows
    assert set(rows.columns) == set(t.columns) - {"input"}
    assert rows.loc[5, "instruction"] == "What is the…" and len(rows.loc[5, "output"]) == 12
    with_input = curation.linked_rows(t, [3])
    assert with_input.columns.tolist()[6:9] == ["instruction", "input", "output"]
    assert curation.linked_rows(t, []).empty


def _lines(index: int, status: str, kernel=None) -> list[str]:
    kernel = K if kernel is None else kernel
    coverage = row_coverage(kernel, index, ORDER[:2], m=2)
    return why.why_lines(coverage, RECORDS, ORDER, GAINS, status, value_name="help")


# Selected at this budget: 3 (rank 1) and 0 (rank 2). K[r, j]: how well j covers r.
K = np.array(
    [
        [1.0, 0.0, 0.0, 0.6, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.2, 0.0, 0.9],
        [0.7, 0.0, 1.0, 0.82, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    ]
)


def test_why_a_discarded_sample_names_the_selected_one_that_covers_it():
    lines = _lines(2, curation.DISCARDED)
    third = RECORDS[3].id
    assert lines[0] == (
        f'Discarded: {third} ("Fix the grammar.") (selected, rank 1) already covers it with '
        "help 0.82."
    )
    assert lines[1] == "It comes at rank 5 of the pick order, gain 0.05."
    # Adding 2: row 2 gains 1.0 - 0.82 = 0.18; no other row is covered by 2.
    assert lines[2] == "Adding it now would add 0.18 to the pool's coverage (facility location)."
    lines = _lines(4, curation.DISCARDED)  # nothing selected covers 4, nor does it cover any
    assert lines[0].startswith("Discarded: no selected sample covers it (help 0 with every one)")
    assert lines[1] == "It is not in the pick order." and not lines[-1].startswith("It covers")


def test_why_a_selected_sample_lists_whom_it_covers():
    lines = _lines(3, curation.SELECTED)
    assert lines[0] == "Selected (rank 1 of the pick order, gain 0.5)."
    # 3 is the best selected cover of rows 2 (0.82) and 1 (0.2); row 0 prefers itself.
    first, second = RECORDS[2].id, RECORDS[1].id
    assert lines[1] == (
        f'It is the best selected cover of 2 other samples, most of all: {first} ("Convert 5 '
        f'km to miles.") (0.82, rank 5); {second} ("Add 12 and 30.") (0.20, rank 3).'
    )
    assert lines[2].startswith(f"It covers best: {first} ")
    lines = _lines(0, curation.SELECTED)
    assert lines[1].startswith("No other sample has it as its best selected cover")


def test_why_lists_the_rows_that_cover_it_best_selected_or_not():
    # Row 2 is covered by 3 (0.82, selected) and 0 (0.70, selected); read from K's row 2.
    covered = covers_best(K.T, 2, m=2)
    assert covered == [(3, 0.82), (0, 0.7)]
    lines = why.why_lines(
        row_coverage(K, 2, ORDER[:2]),
        RECORDS,
        ORDER,
        GAINS,
        curation.DISCARDED,
        value_name="help",
        covered_best_by=covered,
    )
    third, first = RECORDS[3].id, RECORDS[0].id
    assert lines[-1] == (
        f'The rows that cover it best, selected or not: {third} ("Fix the grammar.") (0.82, '
        f'rank 1); {first} ("What is the capital of France?") (0.70, rank 2).'
    )
    # Row 1 is covered best by 5, which is not selected at this budget, then by 3.
    covered = covers_best(K.T, 1)
    assert [j for j, _ in covered] == [5, 3]
    lines = why.why_lines(
        row_coverage(K, 1, ORDER[:2]), RECORDS, ORDER, GAINS, curation.DISCARDED,
        covered_best_by=covered,
    )  # fmt: skip
    assert lines[0].startswith(f"Discarded: {third} ")  # the best *selected* cover
    assert lines[-1].startswith(f"The rows that cover it best, selected or not: {RECORDS[5].id} ")
    assert not any(line.startswith("The rows that cover") for line in _lines(1, "discarded"))


def test_why_pinned_and_excluded_samples_say_the_curator_decided():
    assert _lines(5, curation.PINNED)[0].startswith("Pinned by you: always selected")
    lines = why.why_lines(
        row_coverage(K, 4, ORDER[:2]),
        RECORDS,
        ORDER,
        GAINS,
        curation.EXCLUDED,
        signals={"help_logprob": 0.25, "max_similarity": float("nan")},
    )
    assert lines[0] == "Excluded by you: never selected (not in the pick order)."
    assert lines[-1] == "Quality signals: help_logprob 0.25."
