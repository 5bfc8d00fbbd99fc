"""Tests of delift_core.data.dataset: formats, schemas, field maps, ids, hashes, warnings, stats, and
the bad-input corpus in tests/data/bad (see EXPECTED.json there)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from delift_core.data import dataset as data
from delift_core.data.dataset import (
    MAX_FIELD_CHARS,
    Dataset,
    dataset_from_rows,
    dataset_stats,
    load_bytes,
    load_dataset,
)
from delift_core.errors import ConfigError, DataError, FieldMapNeeded

BAD_DIR = Path(__file__).parent / "data" / "bad"
EXPECTED: dict[str, dict[str, Any]] = json.loads((BAD_DIR / "EXPECTED.json").read_text("utf-8"))

ROWS = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue"},
    {"instruction": "Translate «chat».", "input": "français → English", "output": "cat 🐱"},
]


def sha(instruction: str, input_text: str, output: str) -> str:
    blob = json.dumps([instruction, input_text, output], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_hf(folder: Path, rows: list[dict[str, Any]], parts: int = 1) -> Path:
    """A folder laid out like `datasets.save_to_disk`: Arrow IPC streams plus state.json."""
    folder.mkdir()
    table = pa.Table.from_pylist(rows)
    size = -(-len(rows) // parts)
    names = []
    for index in range(parts):
        name = f"data-{index:05d}-of-{parts:05d}.arrow"
        chunk = table.slice(index * size, size)
        with (
            pa.OSFile(str(folder / name), "wb") as sink,
            pa.ipc.new_stream(sink, chunk.schema) as w,
        ):
            w.write_table(chunk)
        names.append(name)
    state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": "f", "_split": None}
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "dataset_info.json").write_text(json.dumps({"features": {}}))
    return folder


def write_any(fmt: str, tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    if fmt == "jsonl":
        return write_jsonl(tmp_path / "d.jsonl", rows)
    if fmt == "ndjson":
        return write_jsonl(tmp_path / "d.ndjson", rows)
    if fmt == "json":
        (tmp_path / "d.json").write_text(json.dumps(rows, indent=2), "utf-8")
        return tmp_path / "d.json"
    if fmt == "json_wrapped":
        (tmp_path / "w.json").write_text(json.dumps({"version": "1", "data": rows}), "utf-8")
        return tmp_path / "w.json"
    if fmt == "csv":
        return write_csv(tmp_path / "d.csv", rows)
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
        return tmp_path / "d.parquet"
    if fmt == "hf":
        return write_hf(tmp_path / "hf", rows, parts=2)
    raise AssertionError(fmt)


FORMATS = ["jsonl", "ndjson", "json", "json_wrapped", "csv", "parquet", "hf"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_the_same_records(tmp_path: Path, fmt: str) -> None:
    ds = load_dataset(write_any(fmt, tmp_path, ROWS))
    assert isinstance(ds, Dataset)
    assert ds.format == {"ndjson": "jsonl", "json_wrapped": "json"}.get(fmt, fmt)
    assert ds.schema == "alpaca"
    assert len(ds) == 3
    assert [(r.instruction, r.input, r.output) for r in ds.records] == [
        (row["instruction"], row["input"], row["output"]) for row in ROWS
    ]
    assert [r.hash for r in ds.records] == [sha(*row.values()) for row in ROWS]
    expected_total = hashlib.sha256("".join(r.hash for r in ds.records).encode()).hexdigest()
    assert ds.hash == expected_total
    assert [r.id for r in ds.records] == [r.hash[:12] for r in ds.records]
    assert [r.line for r in ds.records] == ([2, 3, 4] if fmt == "csv" else [1, 2, 3])
    assert dict(ds.records[0].fields) == ROWS[0]
    assert ds.warnings == ()


def test_hashes_and_ids_agree_across_formats_memory_and_uploads(tmp_path: Path) -> None:
    loaded = [load_dataset(write_any(fmt, tmp_path, ROWS)) for fmt in FORMATS]
    loaded.append(dataset_from_rows(ROWS))
    for fmt in ("jsonl", "csv", "parquet"):
        loaded.append(load_bytes(write_any(fmt, tmp_path, ROWS).read_bytes(), f"up.{fmt}"))
    assert len({ds.hash for ds in loaded}) == 1
    assert len({tuple(r.id for r in ds.records) for ds in loaded}) == 1


def test_upload_path_and_messages_name_the_upload() -> None:
    ds = load_bytes(b'{"instruction": "a", "output": "b"}\n', "train.jsonl")
    assert ds.path == "<upload:train.jsonl>" and ds.format == "jsonl"
    with pytest.raises(DataError, match=r"<upload:bad\.csv>, line 2, field 'output'") as info:
        load_bytes(b"instruction,output\nx,\n", "bad.csv")
    assert info.value.line == 2
    with pytest.raises(DataError, match="supported"):
        load_bytes(b"x", "notes.docx")
    with pytest.raises(DataError, match="Parquet"):
        load_bytes(b"not parquet", "x.parquet")


def test_record_prompt_and_response() -> None:
    record = dataset_from_rows(
        [{"instruction": "Do X", "input": "data", "output": "done"}]
    ).records[0]
    assert record.prompt == "Instruction: Do X\nInput: data\n"
    assert record.response == " done"


def test_record_fields_are_read_only_and_keep_extra_fields() -> None:
    row = {"instruction": "a", "output": "b", "meta": {"src": "x", "tags": [1, 2]}, "score": 0.5}
    record = dataset_from_rows([row]).records[0]
    assert dict(record.fields) == row
    with pytest.raises(TypeError):
        record.fields["meta"] = 1  # type: ignore[index]


def test_prompt_completion_schema(tmp_path: Path) -> None:
    rows = [{"prompt": "Q1", "completion": "A1"}, {"prompt": "Q2", "completion": "A2", "x": 1}]
    ds = load_dataset(write_jsonl(tmp_path / "pc.jsonl", rows))
    assert ds.schema == "prompt_completion"
    assert [(r.instruction, r.input, r.output) for r in ds.records] == [
        ("Q1", "", "A1"),
        ("Q2", "", "A2"),
    ]


def test_sharegpt_schema_skips_system_and_takes_first_exchange(tmp_path: Path) -> None:
    convo = [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi?"},
        {"from": "gpt", "value": "Hello."},
    ]
    rows = [{"conversations": convo}, {"conversations": [convo[1] | {"from": "user"}, convo[2]]}]
    ds = load_dataset(write_jsonl(tmp_path / "sg.jsonl", rows))
    assert ds.schema == "sharegpt"
    assert [(r.instruction, r.input, r.output) for r in ds.records] == [("Hi?", "", "Hello.")] * 2
    assert ds.records[0].fields["conversations"][0]["value"] == "Be brief."
    assert ds.records[0].hash == ds.records[1].hash
    assert [r.id for r in ds.records] == [ds.records[0].hash[:12], ds.records[0].hash[:12] + "-2"]


def test_messages_schema_and_openai_content_parts(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": "4"},
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Part one. "}, {"text": "Two."}],
                },
                {"role": "assistant", "content": "Ok."},
            ]
        },
    ]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(rows))
    ds = load_dataset(path)
    assert ds.schema == "messages"
    assert [(r.instruction, r.output) for r in ds.records] == [
        ("What is 2+2?", "4"),
        ("Part one. Two.", "Ok."),
    ]
    assert ds.records[0].fields["messages"][0]["role"] == "system"


def test_field_map_forces_mapped_schema(tmp_path: Path) -> None:
    rows = [{"question": "Why?", "context": "c", "answer": "Because.", "instruction": "ignored"}]
    path = write_csv(tmp_path / "qa.csv", rows)
    ds = load_dataset(
        path, field_map={"instruction": "question", "input": "context", "output": "answer"}
    )
    assert ds.schema == "mapped"
    assert (ds.records[0].instruction, ds.records[0].input, ds.records[0].output) == (
        "Why?",
        "c",
        "Because.",
    )
    # Canonical names not in the map keep their own names; input stays optional.
    partial = load_dataset(
        write_jsonl(tmp_path / "p.jsonl", [{"q": "Q", "output": "A"}]),
        field_map={"instruction": "q"},
    )
    assert (partial.records[0].instruction, partial.records[0].input) == ("Q", "")


def test_field_map_errors_name_the_source_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Why?", "answer": "Because."}])
    with pytest.raises(DataError, match="no known schema") as info:
        load_dataset(path)
    assert "'question', 'answer'" in str(info.value) and "field map" in str(info.value)
    assert isinstance(info.value, FieldMapNeeded)
    with pytest.raises(DataError, match="field 'reply'") as info:
        load_dataset(path, field_map={"instruction": "question", "output": "reply"})
    assert info.value.field == "reply" and info.value.line == 1
    with pytest.raises(ConfigError, match="field map keys"):
        load_dataset(path, field_map={"question": "instruction"})
    with pytest.raises(ConfigError):
        load_dataset(path, field_map={"instruction": ""})


def test_source_ids_used_when_complete_and_unique(tmp_path: Path) -> None:
    rows = [dict(row, id=i) for i, row in zip([10, "b", 30], ROWS, strict=True)]
    ds = load_dataset(write_jsonl(tmp_path / "ids.jsonl", rows))
    assert [r.id for r in ds.records] == ["10", "b", "30"]
    assert ds.warnings == ()


def test_duplicate_or_missing_ids_fall_back_to_hash_ids(tmp_path: Path) -> None:
    rows = [dict(ROWS[0], id=1), dict(ROWS[1], id=2), dict(ROWS[2], id=1)]
    ds = load_dataset(write_jsonl(tmp_path / "dup.jsonl", rows))
    assert [r.id for r in ds.records] == [r.hash[:12] for r in ds.records]
    assert any("duplicate id '1'" in w and "line 3" in w and "dup.jsonl" in w for w in ds.warnings)
    rows = [dict(ROWS[0], id=1), dict(ROWS[1], id=True), ROWS[2]]
    ds = dataset_from_rows(rows)
    assert [r.id for r in ds.records] == [r.hash[:12] for r in ds.records]
    assert any("no usable id" in w and "line 2" in w for w in ds.warnings)


def test_exact_duplicates_are_kept_and_counted(tmp_path: Path) -> None:
    rows = [ROWS[0], ROWS[1], ROWS[0], ROWS[0]]
    ds = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    assert len(ds) == 4
    assert [r.id for r in ds.records][2:] == [ds.records[0].id + "-2", ds.records[0].id + "-3"]
    (warning,) = ds.warnings
    assert "line 3" in warning and "duplicate of line 1" in warning and "2 times" in warning
    assert dataset_stats(ds)["duplicates"] == 2


def test_head_recomputes_hash_and_keeps_ids(tmp_path: Path) -> None:
    ds = load_dataset(write_jsonl(tmp_path / "d.jsonl", ROWS))
    head = ds.head(2)
    assert head.records == ds.records[:2]
    assert head.hash == dataset_from_rows(ROWS[:2]).hash != ds.hash
    assert ds.head(10).hash == ds.hash
    assert len(ds.head(0)) == 0
    with pytest.raises(ConfigError):
        ds.head(-1)


def test_limit_reads_only_the_first_records(tmp_path: Path) -> None:
    rows = [*ROWS, {"instruction": "invalid: empty output", "input": "", "output": ""}]
    for fmt in ("jsonl", "csv", "parquet", "hf"):
        folder = tmp_path / fmt
        folder.mkdir()
        ds = load_dataset(write_any(fmt, folder, rows), limit=2)
        assert len(ds) == 2 and ds.hash == dataset_from_rows(ROWS[:2]).hash, fmt
    with pytest.raises(ConfigError):
        load_dataset(tmp_path / "jsonl" / "d.jsonl", limit=0)


MORE_ROWS = [
    *ROWS,
    {"instruction": "Spell four.", "input": "", "output": "four"},
    {"instruction": "Say yes.", "input": "", "output": "yes"},
]


def test_offset_skips_records_before_limit_counts(tmp_path: Path) -> None:
    for fmt in ("jsonl", "csv", "parquet", "hf"):
        folder = tmp_path / fmt
        folder.mkdir()
        path = write_any(fmt, folder, MORE_ROWS)
        full = load_dataset(path)
        ds = load_dataset(path, offset=1, limit=2)
        assert ds.records == full.records[1:3], fmt  # ids, texts, hashes and lines kept
        assert ds.hash == dataset_from_rows(MORE_ROWS[1:3]).hash, fmt
        assert (ds.path, ds.format, ds.schema) == (full.path, full.format, full.schema), fmt
        rest = load_dataset(path, offset=3)
        assert rest.records == full.records[3:], fmt
        assert rest.hash == dataset_from_rows(MORE_ROWS[3:]).hash, fmt
    raw = write_any("jsonl", tmp_path, MORE_ROWS).read_bytes()
    upload = load_bytes(raw, "up.jsonl", offset=2, limit=1)
    assert upload.hash == dataset_from_rows(MORE_ROWS[2:3]).hash
    whole = load_dataset(tmp_path / "d.jsonl")
    assert load_dataset(tmp_path / "d.jsonl", offset=0).hash == whole.hash


def test_offset_beyond_the_end_is_refused_and_bad_offsets_too(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "short.jsonl", ROWS)
    for offset in (3, 10):
        with pytest.raises(DataError, match=f"only 3 rows: nothing left after skipping {offset}"):
            load_dataset(path, offset=offset)
    with pytest.raises(DataError, match="short.jsonl"):
        load_dataset(path, offset=5, limit=2)
    with pytest.raises(DataError, match="<upload:s.jsonl>: only 3 rows"):
        load_bytes(path.read_bytes(), "s.jsonl", offset=3)
    assert len(load_dataset(path, offset=2, limit=5)) == 1
    for bad in (-1, True, 1.5, "1"):
        with pytest.raises(ConfigError, match="offset"):
            load_dataset(path, offset=bad)  # type: ignore[arg-type]


def test_a_slice_keeps_the_ids_of_the_longer_read(tmp_path: Path) -> None:
    # Content-hash ids count repeats from the start of the file, not from the offset.
    path = write_jsonl(tmp_path / "dup.jsonl", [ROWS[0], ROWS[1], ROWS[0]])
    full = load_dataset(path)
    ds = load_dataset(path, offset=2)
    assert [r.id for r in ds.records] == [full.records[0].id + "-2"]
    assert any("duplicate of line 1" in w for w in ds.warnings)
    # Source ids are used only when every record read has one, the skipped ones included.
    rows = [ROWS[0], dict(ROWS[1], id="b"), dict(ROWS[2], id="c")]
    ds = load_dataset(write_jsonl(tmp_path / "ids.jsonl", rows), offset=1)
    assert [r.id for r in ds.records] == [r.hash[:12] for r in ds.records]
    assert any("no usable id" in w and "line 1" in w for w in ds.warnings)


def test_with_skip_invalid_the_offset_counts_records_kept(tmp_path: Path) -> None:
    bad = {"instruction": "no answer", "input": "", "output": ""}
    rows = [ROWS[0], bad, bad, ROWS[1], bad, ROWS[2], ROWS[0]]
    path = write_jsonl(tmp_path / "gaps.jsonl", rows)
    ds = load_dataset(path, skip_invalid=True, offset=1, limit=2)
    assert ds.hash == dataset_from_rows(ROWS[1:3]).hash
    assert [r.line for r in ds.records] == [4, 6]
    # Invalid records read on the way are reported, those before the offset among them.
    (skipped,) = [w for w in ds.warnings if "skipped" in w]
    assert "line 2" in skipped and "3 times in all" in skipped
    rest = load_dataset(path, skip_invalid=True, offset=3)
    assert [r.line for r in rest.records] == [7]
    with pytest.raises(DataError, match="only 4 rows: nothing left after skipping 4"):
        load_dataset(path, skip_invalid=True, offset=4)
    with pytest.raises(DataError, match="line 2"):
        load_dataset(path, offset=1)  # without skip_invalid the bad record is still an error


def test_numbers_in_text_fields_become_text_with_a_warning(tmp_path: Path) -> None:
    rows = [{"instruction": "2+2?", "input": 7, "output": 4}, {"instruction": 1.5, "output": "x"}]
    ds = dataset_from_rows(rows, source="nums")
    assert [(r.instruction, r.input, r.output) for r in ds.records] == [
        ("2+2?", "7", "4"),
        ("1.5", "", "x"),
    ]
    assert len(ds.warnings) == 3
    assert all(w.startswith("nums, line ") and "number converted to text" in w for w in ds.warnings)


def test_null_input_is_empty_but_null_output_is_an_error() -> None:
    ds = dataset_from_rows([{"instruction": "a", "input": None, "output": "b"}])
    assert ds.records[0].input == ""
    with pytest.raises(DataError, match="null") as info:
        dataset_from_rows([{"instruction": "a", "output": None}])
    assert (info.value.line, info.value.field) == (1, "output")


def test_rows_must_be_mappings_in_a_sequence() -> None:
    with pytest.raises(DataError, match="not an object") as info:
        dataset_from_rows([ROWS[0], ["instruction", "output"]])
    assert info.value.line == 2
    with pytest.raises(DataError, match="sequence"):
        dataset_from_rows({"instruction": "a", "output": "b"})  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no records"):
        dataset_from_rows([])
    with pytest.raises(DataError, match="field names must be text"):
        dataset_from_rows([{"instruction": "a", "output": "b", 3: "x"}])  # type: ignore[dict-item]


def test_csv_lines_match_an_editor_with_multiline_cells(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('instruction,output\n"first\nsecond",a\n\nthird,"b\n\nc"\nfourth,d\n')
    ds = load_dataset(path)
    assert [r.line for r in ds.records] == [2, 5, 8]
    assert ds.records[1].output == "b\n\nc"
    assert any("line 4" in w and "blank" in w for w in ds.warnings)


def test_csv_blank_lines_above_the_header_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("\n\ninstruction,output\nx,y\n")
    ds = load_dataset(path)
    assert [(r.line, r.instruction, r.output) for r in ds.records] == [(4, "x", "y")]


def test_csv_formula_cells_warn_but_plain_numbers_do_not(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "n.csv", [{"instruction": "neg", "output": "-3.5"}])
    assert load_dataset(path).warnings == ()
    path = write_csv(tmp_path / "f.csv", [{"instruction": "calc", "output": "=1+1"}])
    ds = load_dataset(path)
    assert ds.records[0].output == "=1+1"
    (warning,) = ds.warnings
    assert "f.csv, line 2, field 'output'" in warning and "JSONL" in warning


def test_html_and_script_text_is_kept_verbatim(tmp_path: Path) -> None:
    text = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    ds = load_dataset(write_jsonl(tmp_path / "h.jsonl", [{"instruction": text, "output": text}]))
    assert ds.records[0].instruction == text and ds.warnings == ()


def test_ten_megabyte_line_with_a_long_output_is_refused_by_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    row = {"instruction": "Summarise.", "output": "x" * 10_000_000}
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match="limit") as info:
        load_dataset(path)
    assert (info.value.line, info.value.field) == (2, "output")
    assert "big.jsonl" in str(info.value) and f"{MAX_FIELD_CHARS:,}" in str(info.value)


def test_ten_megabyte_line_loads_when_fields_are_within_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    texts = {name: name[0] * MAX_FIELD_CHARS for name in ("instruction", "input", "output")}
    row = dict(texts, context="c" * 7_000_000)
    path.write_text(json.dumps(row) + "\n")
    assert path.stat().st_size > 10_000_000
    ds = load_dataset(path)
    assert len(ds.records[0].output) == MAX_FIELD_CHARS
    assert len(ds.records[0].fields["context"]) == 7_000_000


def test_csv_cells_larger_than_the_csv_module_default_load(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "long.csv", [{"instruction": "i" * 500_000, "output": 'o,\n"o"'}])
    ds = load_dataset(path)
    assert len(ds.records[0].instruction) == 500_000 and ds.records[0].output == 'o,\n"o"'


def test_files_over_the_size_limit_are_refused(tmp_path: Path, monkeypatch) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    monkeypatch.setattr(data, "MAX_FILE_BYTES", 100)
    with pytest.raises(DataError, match="refused"):
        load_dataset(path)
    with pytest.raises(DataError, match="refused"):
        load_bytes(path.read_bytes(), "d.jsonl")
    with pytest.raises(DataError, match="refused"):
        load_dataset(write_hf(tmp_path / "hf", ROWS))


def test_missing_paths_and_plain_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found") as info:
        load_dataset(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(info.value)
    with pytest.raises(DataError, match="not a Hugging Face dataset"):
        load_dataset(tmp_path)


def test_hf_folder_follows_state_json_order_and_glob_without_it(tmp_path: Path) -> None:
    folder = write_hf(tmp_path / "hf", ROWS, parts=3)
    ds = load_dataset(folder)
    assert ds.format == "hf" and [r.line for r in ds.records] == [1, 2, 3]
    state = json.loads((folder / "state.json").read_text())
    state["_data_files"].reverse()
    (folder / "state.json").write_text(json.dumps(state))
    assert [r.output for r in load_dataset(folder).records] == ["cat 🐱", "Blue", "5"]
    (folder / "state.json").unlink()
    assert load_dataset(folder).hash == ds.hash


def test_hf_folder_with_arrow_file_format_also_loads(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    table = pa.Table.from_pylist(ROWS)
    arrow = str(folder / "data-00000-of-00001.arrow")
    with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    (folder / "dataset_info.json").write_text("{}")
    assert load_dataset(folder).hash == dataset_from_rows(ROWS).hash


def test_stats_summarise_lengths_fields_duplicates_and_empty_inputs() -> None:
    rows = [*ROWS, dict(ROWS[1], extra="e")]
    stats = dataset_stats(dataset_from_rows(rows))
    assert stats["rows"] == 4
    lengths = [len(row["output"]) for row in rows]
    assert stats["chars"]["output"] == {
        "mean": sum(lengths) / 4,
        "median": sorted(lengths)[1] / 2 + sorted(lengths)[2] / 2,
        "max": max(lengths),
    }
    assert stats["fields"] == {"instruction": 4, "input": 4, "output": 4, "extra": 1}
    assert stats["duplicates"] == 1
    assert stats["empty_input"] == 2
    empty = dataset_stats(dataset_from_rows(ROWS).head(0))
    assert empty["rows"] == 0 and empty["chars"]["input"]["max"] == 0


def test_loading_logs_and_never_prints(tmp_path: Path, capsys, caplog) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], ROWS[0]])
    with caplog.at_level(logging.INFO, logger="delift_core.data.dataset"):
        load_dataset(path)
    assert capsys.readouterr() == ("", "")
    assert any("duplicate" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_bad_corpus_lists_every_file() -> None:
    on_disk = {p.name for p in BAD_DIR.iterdir()} - {"EXPECTED.json"}
    assert on_disk == set(EXPECTED)
    assert len(EXPECTED) > 100  # the corpus holds more than a hundred distinct faults


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_corpus(name: str) -> None:
    expected = EXPECTED[name]
    path = BAD_DIR / name
    if "error" in expected:
        with pytest.raises(DataError) as info:
            load_dataset(path)
        message = str(info.value)
        assert expected["error"] in message
        assert name in message
        assert info.value.line == expected["line"]
        assert info.value.field == expected["field"]
        if expected["line"] is not None:
            assert f"line {expected['line']}" in message
        if expected["field"] is not None:
            assert f"field '{expected['field']}'" in message
    else:
        ds = load_dataset(path)
        assert len(ds) >= 1
        if "warning" in expected:
            assert any(expected["warning"] in w and name in w for w in ds.warnings), ds.warnings
        else:  # {"loads": text}: accepted silently, text kept verbatim
            assert ds.warnings == ()
            assert any(expected["loads"] in r.instruction for r in ds.records)


def test_bad_corpus_uploads_give_the_same_verdicts() -> None:
    for name, expected in sorted(EXPECTED.items()):
        path = BAD_DIR / name
        if path.is_dir():
            continue
        if "error" in expected:
            with pytest.raises(DataError) as info:
                load_bytes(path.read_bytes(), name)
            assert f"<upload:{name}>" in str(info.value), name
            assert info.value.line == expected["line"], name
        else:
            load_bytes(path.read_bytes(), name)


def test_parquet_schema_and_values_are_checked_like_json(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"prompt": ["p"], "completion": ["c"], "n": [2**62]}), buf)
    ds = load_bytes(buf.getvalue(), "x.parquet")
    assert ds.schema == "prompt_completion" and ds.records[0].fields["n"] == 2**62
    with pytest.raises(DataError, match="too large") as info:
        dataset_from_rows([{"instruction": "a", "output": "b", "n": [2**64]}])
    assert info.value.field == "n"


def test_skip_invalid_leaves_out_bad_records_with_one_warning_per_kind(tmp_path: Path) -> None:
    bad_rows = [
        {"instruction": "no answer", "input": "", "output": ""},
        {"instruction": "also no answer", "input": "", "output": "  "},
        {"instruction": "a list", "input": "", "output": ["x"]},
        "not an object",
    ]
    rows = [ROWS[0], *bad_rows, *ROWS[1:]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="line 2, field 'output'"):
        load_dataset(path)
    ds = load_dataset(path, skip_invalid=True)
    assert ds.hash == dataset_from_rows(ROWS).hash
    assert [r.line for r in ds.records] == [1, *range(6, 6 + len(ROWS) - 1)]
    empty = [w for w in ds.warnings if "is empty" in w]
    assert len(empty) == 1 and "line 2, field 'output'" in empty[0]
    assert "record skipped (2 times in all)" in empty[0]
    assert any("line 4, field 'output'" in w and "skipped" in w for w in ds.warnings)
    assert any("line 5" in w and "not an object" in w for w in ds.warnings)
    # limit counts the records kept, not the lines read
    assert load_dataset(path, skip_invalid=True, limit=2).hash == dataset_from_rows(ROWS[:2]).hash


def test_skip_invalid_skips_malformed_json_lines_but_refuses_unreadable_files(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n')
    with pytest.raises(DataError, match="line 2"):
        load_dataset(broken)
    kept = load_dataset(broken, skip_invalid=True)
    assert [r.instruction for r in kept.records] == ["a"]
    assert any("line 2" in w and "malformed JSON" in w and "skipped" in w for w in kept.warnings)
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes('{"instruction": "a", "output": "b"}\n'.encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        load_dataset(utf16, skip_invalid=True)
    empty = tmp_path / "empty_outputs.jsonl"
    empty.write_text('{"instruction": "a", "output": ""}\n' * 3)
    with pytest.raises(DataError, match=r"holds no records \(3 invalid records skipped\)"):
        load_dataset(empty, skip_invalid=True)
    upload = load_bytes(b'{"instruction": "a", "output": ""}\n{"instruction": "b", "output": "c"}\n',
                        "up.jsonl", skip_invalid=True)  # fmt: skip
    assert len(upload) == 1 and "<upload:up.jsonl>, line 1" in upload.warnings[0]


def test_a_repeated_key_is_refused_where_it_is() -> None:
    one = '{"instruction": "a", "output": "b"}'
    twice = '{"instruction": "a", "instruction": "c", "output": "d"}'
    with pytest.raises(DataError, match="appears twice") as info:
        load_bytes(f'{{"data": [{one}, {one}, {twice}]}}'.encode(), "w.json")
    assert (info.value.line, info.value.field) == (3, "instruction")
    with pytest.raises(DataError, match="appears twice") as info:
        load_bytes(f'{{"data": [{one}], "data": [{one}]}}'.encode(), "top.json")
    assert (info.value.line, info.value.field) == (None, "data")
    with pytest.raises(DataError, match="appears twice") as info:  # broken after the repeat
        load_bytes(f"[{twice}, {{".encode(), "broken.json")
    assert (info.value.line, info.value.field) == (None, "instruction")
    ds = load_bytes(f"{one}\n{twice}\n".encode(), "skip.jsonl", skip_invalid=True)
    assert len(ds) == 1
    assert any("line 2, field 'instruction'" in w and "appears twice" in w for w in ds.warnings)
