"""One JSON nesting limit for every caller: the same file is accepted or refused whatever the
depth of the caller's stack (the app runs readers deeper in the stack than the CLI)."""

from __future__ import annotations

import json

import pytest

from delift_core.data.readers import MAX_JSON_DEPTH, Unparsed, json_depth, read_text_rows
from delift_core.data.schemas import Notes
from delift_core.errors import DataError


def _nested(levels: int) -> str:
    """A record whose output field holds `levels` - 1 nested lists (the record is one level)."""
    return '{"instruction": "q", "output": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


def _read(text: str) -> list:
    """(line, raw) rows; a line that cannot be read is raised (as loading does by default)."""
    rows = list(read_text_rows(text.encode(), "jsonl", "f.jsonl", Notes("f.jsonl")))
    for _, raw in rows:
        if isinstance(raw, Unparsed):
            raise raw.error
    return rows


def _at_stack_depth(frames: int, fn):
    if frames == 0:
        return fn()
    return _at_stack_depth(frames - 1, fn)


def test_json_depth_counts_lists_and_dicts():
    assert json_depth(3) == 0 and json_depth("[[") == 0
    assert json_depth({"a": [1, {"b": "[[[["}]}) == 3
    assert json_depth(json.loads("[" * 70 + "]" * 70)) == 70


@pytest.mark.parametrize("frames", [0, 800])
def test_the_limit_is_the_same_at_any_stack_depth(frames):
    ok = _nested(MAX_JSON_DEPTH)
    assert _at_stack_depth(frames, lambda: _read(ok))[0][0] == 1
    for levels in (MAX_JSON_DEPTH + 1, 150, 5000):
        with pytest.raises(DataError, match="nested too deeply") as info:
            _at_stack_depth(frames, lambda levels=levels: _read("\n" + _nested(levels)))
        assert info.value.line == 2 and "f.jsonl" in str(info.value)


def test_null_and_scalars_are_not_taken_for_deep_nesting():
    rows = _read('null\n"text"\n5')
    assert [raw for _, raw in rows] == [None, "text", 5]
