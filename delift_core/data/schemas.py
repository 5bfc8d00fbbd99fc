"""Record schemas: detect a dataset's schema, extract the canonical texts, validate values.

A raw record is a mapping as read from a file. `detect_schema` names its schema from the first
record; `check_values` refuses what JSON or the export cannot hold; `extract_texts` gives
(instruction, input, output) under that schema. Warnings met on the way are collected in `Notes`,
one per kind. The rules are listed in the docstring of `delift_core.data.dataset`, the public entry point.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from delift_core.errors import DataError, FieldMapNeeded

MAX_FIELD_CHARS = 1_000_000
CANONICAL_FIELDS = ("instruction", "input", "output")
SCHEMA_KEYS = (
    ("instruction", "alpaca"),
    ("prompt", "prompt_completion"),
    ("conversations", "sharegpt"),
    ("messages", "messages"),
)
_FLAT_NAMES: dict[str, dict[str, str | None]] = {
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output"},
    "prompt_completion": {"instruction": "prompt", "input": None, "output": "completion"},
}
# (list field, role key, text key, user roles, assistant roles, roles that are skipped)
_TURN_SCHEMAS = {
    "sharegpt": (
        "conversations",
        "from",
        "value",
        {"human", "user"},
        {"gpt", "assistant"},
        {"system"},
    ),
    "messages": (
        "messages",
        "role",
        "content",
        {"user"},
        {"assistant"},
        {"system", "developer", "tool", "function"},
    ),
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64 = (-(2**63), 2**63 - 1)
TOO_LARGE = object()  # stands in for a JSON integer literal too long to be an int64


class Notes:
    """Warnings met while loading: one per kind, with its first place and a count."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._items: dict[str, list[Any]] = {}

    def add(
        self, kind: str, message: str, *, line: int | None = None, name: str | None = None
    ) -> None:
        """Count one warning of `kind`; the first call's message and place are the ones shown."""
        item = self._items.setdefault(kind, [line, name, message, 0])
        item[3] += 1

    def render(self) -> tuple[str, ...]:
        """One DataError-style line per kind, in first-seen order, with "(N times in all)"."""
        out = []
        for line, name, message, count in self._items.values():
            text = str(DataError(message, path=self.path, line=line, field=name))
            out.append(text + (f" ({count} times in all)" if count > 1 else ""))
        return tuple(out)


def describe_value(value: Any) -> str:
    """A short phrase naming the kind of a value for messages: "null", "a number", "a list"..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a value of type {type(value).__name__}"


def check_values(raw: Mapping[Any, Any], label: str, line: int) -> None:
    """Refuse what JSON or the export cannot hold, naming the top-level field that holds it."""
    for key, value in raw.items():
        if not isinstance(key, str):
            raise DataError(f"field names must be text; got {key!r}", path=label, line=line)
        problem = _find_bad_value(value)
        if problem:
            raise DataError(problem, path=label, line=line, field=key)


def _find_bad_value(value: Any) -> str | None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "holds invalid Unicode (a lone surrogate such as \\ud800)"
        elif item is TOO_LARGE or (
            isinstance(item, int)
            and not isinstance(item, bool)
            and not _INT64[0] <= item <= _INT64[1]
        ):
            return "holds an integer too large for 64 bits; store it as text"
        elif isinstance(item, float) and not math.isfinite(item):
            kind = "NaN" if math.isnan(item) else "Infinity (or a number too large for a float)"
            return f"holds {kind}, which JSON does not allow"
        elif isinstance(item, Decimal) and not item.is_finite():
            return "holds NaN or Infinity, which JSON does not allow"
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def _list_fields(raw: Mapping[str, Any]) -> str:
    keys = [repr(key) for key in raw]
    return (", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")) or "none"


def detect_schema(raw: Mapping[str, Any], label: str, line: int) -> str:
    """The schema name of a record from the first key of SCHEMA_KEYS it holds."""
    for key, schema in SCHEMA_KEYS:
        if key in raw:
            return schema
    raise FieldMapNeeded(
        "no known schema (alpaca instruction/input/output, prompt/completion, ShareGPT"
        f" conversations or OpenAI messages); fields found: {_list_fields(raw)}. Name the fields"
        " with a field map, e.g. instruction=question, output=answer",
        path=label,
        line=line,
    )


def extract_texts(
    raw: Mapping[str, Any],
    schema: str,
    names: dict | None,
    label: str,
    line: int,
    notes: Notes,
) -> tuple[str, str, str]:
    """(instruction, input, output) of one record under the detected schema."""
    if schema in _TURN_SCHEMAS:
        return _extract_turns(raw, schema, label, line, notes)
    names = names if names is not None else _FLAT_NAMES[schema]
    texts = []
    for canonical in CANONICAL_FIELDS:
        source = names[canonical]
        required = canonical != "input"
        if source is None or (source not in raw and not required):
            texts.append("")
            continue
        if source not in raw:
            raise FieldMapNeeded(
                f"required field is missing (schema {schema}, from the first record); fields"
                f" found: {_list_fields(raw)}. If it has another name, name it with a field map:"
                f" {canonical}=<name>",
                path=label,
                line=line,
                field=source,
            )
        texts.append(_coerce_text(raw[source], required, label, line, source, notes))
    return texts[0], texts[1], texts[2]


def _extract_turns(
    raw: Mapping[str, Any], schema: str, label: str, line: int, notes: Notes
) -> tuple[str, str, str]:
    key, role_key, text_key, users, assistants, skipped = _TURN_SCHEMAS[schema]
    turns = raw.get(key)
    if not isinstance(turns, list):
        found = "it is missing" if key not in raw else f"got {describe_value(turns)}"
        raise DataError(f"must be a list of turns; {found}", path=label, line=line, field=key)
    user = reply = None
    user_turns = 0
    known = sorted(users | assistants | skipped)
    for index, turn in enumerate(turns):
        where = f"{key}[{index}]"
        if not isinstance(turn, Mapping):
            raise DataError(
                f"a turn must be an object with '{role_key}' and '{text_key}'; got {describe_value(turn)}",
                path=label,
                line=line,
                field=where,
            )
        role = turn.get(role_key)
        if not isinstance(role, str) or role.lower() not in known:
            raise DataError(
                f"unknown role {role!r}; expected one of {', '.join(known)}",
                path=label,
                line=line,
                field=f"{where}.{role_key}",
            )
        if role.lower() in users:
            user_turns += 1
            user = index if user is None else user
        elif role.lower() in assistants and user is not None and reply is None:
            reply = index
    if user is None or reply is None:
        missing = "/".join(sorted(users if user is None else assistants))
        after = "" if user is None else " after the first user turn"
        raise DataError(f"has no {missing} turn{after}", path=label, line=line, field=key)
    if user_turns > 1:
        notes.add(
            f"multi:{key}",
            "holds more than one exchange; only the first user turn and the reply after it are used",
            line=line,
            name=key,
        )
    texts = []
    for index in (user, reply):
        value = turns[index].get(text_key)
        name = f"{key}[{index}].{text_key}"
        if (
            isinstance(value, list)
            and value
            and all(
                isinstance(part, Mapping) and isinstance(part.get("text"), str) for part in value
            )
        ):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
            value = "".join(part["text"] for part in value)
        texts.append(_coerce_text(value, True, label, line, name, notes))
    return texts[0], "", texts[1]


def _coerce_text(value: Any, required: bool, label: str, line: int, name: str, notes: Notes) -> str:
    """Text of one field. Numbers become str with a warning; other non-text values are errors."""
    if value is None and not required:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        text = str(value)
        notes.add(f"number:{name}", "number converted to text", line=line, name=name)
    else:
        raise DataError(
            f"must be text; got {describe_value(value)}", path=label, line=line, field=name
        )
    if len(text) > MAX_FIELD_CHARS:
        raise DataError(
            f"holds {len(text):,} characters; the limit is {MAX_FIELD_CHARS:,} per field",
            path=label,
            line=line,
            field=name,
        )
    if required and not text.strip():
        raise DataError("is empty; it must hold text", path=label, line=line, field=name)
    return text
