"""The demo dataset: regenerates byte for byte, has the promised shape, and its answers are right.

The answer checks parse the records and recompute them independently of the generator (own
conversion factors, Python's own evaluation of the code answers), so a wrong template fails here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO = ASSETS / "demo.jsonl"
FAMILIES = {"arithmetic", "conversion", "geography", "grammar", "code", "summary"}
QUALITIES = {"good", "near-duplicate", "poor"}
FIELDS = {"id", "instruction", "input", "output", "family", "quality"}

EQUATION = re.compile(r"(\d+) ([+\-×÷]) (\d+) = (\d+)")
ANSWER = re.compile(r"Answer: (-?\d+)$")
CONVERSION = re.compile(r"(-?\d+) ([A-Za-z ]+?) is about (-?[\d.]+) ([A-Za-z ]+)\.$")
NUMBER = re.compile(r"\d[\d,]*\d|\d")  # 7, 42, 77,500
CODE = re.compile(r"^Use `([^`]+)`\. For the input above it returns (.+)\.$")

# Independent of the generator's table: exact definitions of each unit.
CONVERT: dict[tuple[str, str], Any] = {
    ("km", "miles"): lambda x: x * 1000 / 1609.344,
    ("miles", "km"): lambda x: x * 1.609344,
    ("kg", "pounds"): lambda x: x / 0.45359237,
    ("pounds", "kg"): lambda x: x * 0.45359237,
    ("degrees Celsius", "degrees Fahrenheit"): lambda x: x * 1.8 + 32,
    ("degrees Fahrenheit", "degrees Celsius"): lambda x: (x - 32) / 1.8,
    ("metres", "feet"): lambda x: x / 0.3048,
    ("centimetres", "inches"): lambda x: x / 2.54,
    ("litres", "US gallons"): lambda x: x / 3.785411784,
}
SAFE_BUILTINS = {"sum": sum, "max": max, "len": len, "sorted": sorted, "set": set, "range": range}


def load_generator() -> ModuleType:
    """Import assets/make_demo.py (assets is not a package)."""
    spec = importlib.util.spec_from_file_location("make_demo", ASSETS / "make_demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_demo"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="module")
def records() -> list[dict]:
    with DEMO.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def check_arithmetic(record: dict) -> bool:
    """True when every equation holds, the answer is the last result and uses the question."""
    output = record["output"]
    equations = EQUATION.findall(output)
    answer = ANSWER.search(output)
    if not equations or answer is None:
        return False
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "×": lambda a, b: a * b}
    ops["÷"] = lambda a, b: a / b
    for a, op, b, result in equations:
        if ops[op](int(a), int(b)) != int(result):
            return False
    question = record["instruction"] + " " + record["input"]
    operands = {int(a) for a, _, _, _ in equations} | {int(b) for _, _, b, _ in equations}
    given = {int(v) for v in re.findall(r"\d+", question)}
    return int(answer.group(1)) == int(equations[-1][3]) and given <= operands


def check_conversion(record: dict) -> bool:
    """True when the stated amount is the conversion of the asked amount, to 0.01."""
    match = CONVERSION.search(record["output"])
    if match is None:
        return False
    x, unit_from, y, unit_to = match.groups()
    asked = re.search(r"-?\d+", record["instruction"])
    if asked is None or int(asked.group()) != int(x) or (unit_from, unit_to) not in CONVERT:
        return False
    return abs(float(y) - CONVERT[(unit_from, unit_to)](int(x))) <= 0.0051


def check_code(record: dict) -> bool:
    """True when the expression, run on the input assignment, returns the stated value."""
    match = CODE.match(record["output"])
    if match is None:
        return False
    namespace: dict[str, Any] = {"__builtins__": SAFE_BUILTINS}
    exec(record["input"], namespace)  # a single literal assignment written by the generator
    return repr(eval(match.group(1), namespace)) == match.group(2)


def test_committed_file_matches_fresh_generation(generator: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    assert generator.main(["--out", str(out)]) == 0
    assert out.read_bytes() == DEMO.read_bytes(), "run `python assets/make_demo.py` to refresh"


def test_shape_of_the_committed_file(records: list[dict]) -> None:
    assert 280 <= len(records) <= 320
    assert all(set(r) == FIELDS for r in records)
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"demo-\d{4}", i) for i in ids)
    assert {r["family"] for r in records} == FAMILIES
    assert {r["quality"] for r in records} == QUALITIES
    assert all(r["instruction"].strip() and r["output"].strip() for r in records)
    assert all(isinstance(r["input"], str) for r in records)
    prompts = [(r["instruction"], r["input"]) for r in records]
    assert len(set(prompts)) == len(prompts), "no two records ask exactly the same thing"


def test_family_and_quality_shares(records: list[dict]) -> None:
    families = Counter(r["family"] for r in records)
    assert all(40 <= count <= 60 for count in families.values()), families
    qualities = Counter(r["quality"] for r in records)
    assert 0.07 <= qualities["near-duplicate"] / len(records) <= 0.13
    assert 0.05 <= qualities["poor"] / len(records) <= 0.11
    for family in FAMILIES:
        kinds = {r["quality"] for r in records if r["family"] == family}
        assert kinds == QUALITIES, family


def test_outputs_are_short(records: list[dict]) -> None:
    words = [len(r["output"].split()) for r in records]
    assert sum(w < 60 for w in words) >= 0.9 * len(records)


def test_file_is_utf8_json_lines(records: list[dict]) -> None:
    text = DEMO.read_bytes().decode("utf-8")
    assert text.endswith("\n") and "\r" not in text
    assert "\\u00" not in text, "non-ASCII characters are written as themselves"


def test_arithmetic_answers_are_right(records: list[dict]) -> None:
    rows = [r for r in records if r["family"] == "arithmetic"]
    sound = [r for r in rows if r["quality"] != "poor"]
    assert len(sound) >= 40
    assert [r["id"] for r in sound if not check_arithmetic(r)] == []
    # the check can fail: poor rows include wrong, truncated and evasive answers
    assert any(not check_arithmetic(r) for r in rows if r["quality"] == "poor")


def test_conversions_are_right(records: list[dict]) -> None:
    rows = [r for r in records if r["family"] == "conversion"]
    assert [r["id"] for r in rows if r["quality"] != "poor" and not check_conversion(r)] == []
    assert any(not check_conversion(r) for r in rows if r["quality"] == "poor")


def test_code_answers_evaluate_to_the_stated_result(records: list[dict]) -> None:
    rows = [r for r in records if r["family"] == "code"]
    assert [r["id"] for r in rows if r["quality"] != "poor" and not check_code(r)] == []
    assert any(not check_code(r) for r in rows if r["quality"] == "poor")


def test_geography_answers_agree_with_each_other(records: list[dict]) -> None:
    """Good answers about the same country never contradict each other."""
    capitals: dict[str, set[str]] = {}
    for r in records:
        match = re.fullmatch(r"The capital of (.+) is (.+)\.", r["output"])
        if r["family"] == "geography" and r["quality"] != "poor" and match:
            capitals.setdefault(match.group(1), set()).add(match.group(2))
            assert match.group(1) in r["instruction"]
    assert capitals and all(len(found) == 1 for found in capitals.values())


def test_grammar_outputs_change_the_input(records: list[dict]) -> None:
    rows = [r for r in records if r["family"] == "grammar" and r["quality"] != "poor"]
    assert rows and all(r["input"] and r["output"] != r["input"] for r in rows)


def check_summary(record: dict) -> bool:
    """True when the summary is one sentence and every number in it comes from the paragraph."""
    numbers = re.findall(NUMBER, record["output"])
    one_sentence = record["output"].endswith(".") and ". " not in record["output"]
    return (
        bool(numbers) and one_sentence and set(numbers) <= set(re.findall(NUMBER, record["input"]))
    )


def test_summaries_keep_the_facts(records: list[dict]) -> None:
    rows = [r for r in records if r["family"] == "summary"]
    assert [r["id"] for r in rows if r["quality"] != "poor" and not check_summary(r)] == []
    assert any(not check_summary(r) for r in rows if r["quality"] == "poor")


def test_options_change_size_and_seed(generator: ModuleType, tmp_path: Path) -> None:
    small = generator.generate_records(60)
    assert len(small) == 60
    assert {r["family"] for r in small} == FAMILIES
    assert small == generator.generate_records(60)
    assert small != generator.generate_records(60, seed=8)
    out = tmp_path / "small.jsonl"
    assert generator.main(["--out", str(out), "--n", "12"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 12
    with pytest.raises(SystemExit):
        generator.main(["--out", str(out), "--n", "0"])
