"""Property tests of delift_core.data.dataset: whatever the bytes, loading returns a valid Dataset or
raises DataError; nothing else escapes."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delift_core.data.dataset import Dataset, dataset_from_rows, load_bytes, load_dataset
from delift_core.errors import DataError

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # keep runs from writing .hypothesis/ into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEYS = ["instruction", "input", "output", "prompt", "completion", "conversations", "messages"]
KEYS += ["id", "from", "value", "role", "content", "text", "data"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "human", "gpt", "user", "assistant", "system", "=1+1", "-"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=12,
)
records = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), values, max_size=6)
turns = st.lists(
    st.fixed_dictionaries(
        {"from": st.sampled_from(["human", "gpt", "system", "user", "x"]), "value": scalars}
    ),
    max_size=4,
)
plausible = st.one_of(
    st.fixed_dictionaries({"instruction": scalars, "output": scalars}, optional={"input": scalars}),
    st.fixed_dictionaries({"conversations": turns}),
    st.fixed_dictionaries({"prompt": scalars, "completion": scalars, "id": scalars}),
)
row_lists = st.lists(plausible | records | values, max_size=6)


def check_dataset(ds: Dataset) -> None:
    """Invariants of every successful load."""
    assert len(ds) >= 1
    assert len({r.id for r in ds.records}) == len(ds)
    for record in ds.records:
        blob = json.dumps([record.instruction, record.input, record.output], ensure_ascii=False)
        assert record.hash == hashlib.sha256(blob.encode("utf-8")).hexdigest()
        assert record.instruction.strip() and record.output.strip()
        assert record.line >= 1
    digest = hashlib.sha256("".join(r.hash for r in ds.records).encode()).hexdigest()
    assert ds.hash == digest
    json.dumps([dict(r.fields) for r in ds.records], allow_nan=False)  # exportable as JSON


def load_or_refuse(path: Path) -> None:
    try:
        ds = load_dataset(path)
    except DataError:
        return
    check_dataset(ds)


def serialise(rows: list[Any], fmt: str) -> bytes:
    if fmt == "jsonl":
        return "\n".join(json.dumps(row) for row in rows).encode("utf-8", "surrogatepass")
    if fmt == "json":
        return json.dumps(rows).encode("utf-8")
    out = io.StringIO()
    writer = csv.writer(out)
    header = sorted({key for row in rows if isinstance(row, dict) for key in row})
    writer.writerow(header)
    for row in rows:
        cells = row if isinstance(row, dict) else {}
        writer.writerow([str(cells.get(key, "")) for key in header])
    return out.getvalue().encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_random_bytes_load_or_raise_data_error(work: Path, suffix: str) -> None:
    @FUZZ
    @given(blob=st.binary(max_size=300))
    def check(blob: bytes) -> None:
        path = work / f"bytes{suffix}"
        path.write_bytes(blob)
        load_or_refuse(path)

    check()


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_random_structures_load_or_raise_data_error(work: Path, fmt: str) -> None:
    @FUZZ
    @given(rows=row_lists, cut=st.integers(min_value=0, max_value=5))
    def check(rows: list[Any], cut: int) -> None:
        blob = serialise(rows, fmt)
        path = work / f"rows.{fmt}"
        path.write_bytes(blob[: len(blob) - cut])  # sometimes truncated
        load_or_refuse(path)

    check()


@FUZZ
@given(rows=row_lists)
def test_random_rows_in_memory_and_uploads_load_or_raise_data_error(rows: list[Any]) -> None:
    with contextlib.suppress(DataError):
        check_dataset(dataset_from_rows(rows))
    with contextlib.suppress(DataError):
        check_dataset(load_bytes(serialise(rows, "jsonl"), "up.jsonl"))


# NUL is left out: a CSV file holding a raw NUL byte is refused as binary, by design. Lone
# surrogates stay in: every format must refuse them (they cannot be written as UTF-8).
text = st.text(st.characters(blacklist_characters="\x00"), max_size=30)


@FUZZ
@given(texts=st.lists(st.tuples(text, text, text), min_size=1, max_size=5))
def test_same_content_hashes_the_same_in_jsonl_json_and_csv(texts: list[tuple[str, ...]]) -> None:
    rows = [{"instruction": a, "input": b, "output": c} for a, b, c in texts]
    results = []
    for fmt in ("jsonl", "json", "csv"):
        try:
            results.append(load_bytes(serialise(rows, fmt), f"x.{fmt}").hash)
        except DataError:
            results.append(None)
    try:
        results.append(dataset_from_rows(rows).hash)
    except DataError:
        results.append(None)
    has_surrogate = any("\ud800" <= ch <= "\udfff" for t in texts for ch in "".join(t))
    valid = all(a.strip() and c.strip() for a, _, c in texts) and not has_surrogate
    assert results[0] == results[1] == results[3]
    assert (results[0] is not None) == valid
    # CSV skips rows whose cells are all blank (spreadsheets leave them); the rest must agree.
    kept = [row for row in rows if any(value.strip() for value in row.values())]
    try:
        expected_csv = dataset_from_rows(kept).hash
    except DataError:
        expected_csv = None
    assert results[2] == expected_csv
