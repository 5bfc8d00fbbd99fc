"""Write the demo dataset `assets/demo.jsonl` from templates and small fact tables.

Every record is an alpaca row `{"id", "instruction", "input", "output", "family", "quality"}`.
Six task families (arithmetic, conversion, geography, grammar, code, summary) get about the same
number of rows. Within a family about 10% of rows are near-duplicates of another row (reworded, or
one number changed and the answer recomputed) with quality "near-duplicate", about 8% are fresh
questions with a poor answer (wrong, "I don't know", truncated or off-topic) with quality "poor",
and the rest are "good". Numbers in answers are computed here, so good answers are right.

The output depends only on `--n` and `--seed`: running `python assets/make_demo.py` rewrites the
committed file byte for byte. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# assets/ is not a package: find demo_tables.py next to this file however it is run or imported.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_tables as tables  # noqa: E402

Params = dict[str, Any]
Rendered = tuple[str, str, str]  # (instruction, input, output)

DEFAULT_OUT = Path(__file__).resolve().parent / "demo.jsonl"
NEAR_SHARE = 0.10
POOR_SHARE = 0.08
POOR_KINDS: tuple[str, ...] = ("wrong", "unknown", "truncated", "off_topic")


@dataclass(frozen=True)
class Family:
    """How one task family draws, renders and spoils its questions.

    `draw(rng)` returns params (str/int values, plus "style": int selecting the wording);
    `render(params)` gives the correct (instruction, input, output); `nudge(params, rng)` changes
    one value a little; `wrong(params, rng)` is a plausible but wrong output.
    """

    name: str
    draw: Callable[[random.Random], Params]
    render: Callable[[Params], Rendered]
    nudge: Callable[[Params, random.Random], Params]
    wrong: Callable[[Params, random.Random], str]


def cap(text: str) -> str:
    """Return `text` with its first letter upper-cased ("the United States" -> "The ...")."""
    return text[:1].upper() + text[1:]


def format_number(value: float) -> str:
    """Format to at most two decimals without trailing zeros: 77.0 -> "77", 7.456 -> "7.46"."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def with_changes(params: Params, **changes: Any) -> Params:
    """Return a copy of `params` with `changes` applied."""
    return {**params, **changes}


# --- arithmetic ---------------------------------------------------------------------------
def draw_arithmetic(rng: random.Random) -> Params:
    """Draw an arithmetic word problem; operands keep every result a positive integer."""
    kind = rng.choice(tuple(tables.ARITH_TEXT))
    p: Params = {"kind": kind, "name": rng.choice(tables.NAMES), "item": rng.choice(tables.ITEMS)}
    if kind == "add":
        p.update(a=rng.randint(5, 60), b=rng.randint(3, 40))
    elif kind == "sub":
        a = rng.randint(20, 90)
        p.update(a=a, b=rng.randint(3, a - 5))
    elif kind == "mul":
        p.update(a=rng.randint(3, 15), b=rng.randint(2, 12))
    elif kind == "div":
        b = rng.randint(2, 9)
        p.update(a=b * rng.randint(2, 12), b=b)
    elif kind == "two":
        a, b = rng.randint(2, 9), rng.randint(4, 12)
        p.update(a=a, b=b, c=rng.randint(1, a * b - 1))
    else:
        p.update(a=rng.choice(range(40, 125, 5)), b=rng.randint(2, 6))
    p["style"] = rng.randrange(4)
    return p


def solve_arithmetic(p: Params) -> tuple[str, int]:
    """Return the worked equations and the answer of an arithmetic problem."""
    kind, a, b = p["kind"], int(p["a"]), int(p["b"])
    if kind == "add":
        return f"{a} + {b} = {a + b}.", a + b
    if kind == "sub":
        return f"{a} - {b} = {a - b}.", a - b
    if kind == "mul":
        return f"{a} × {b} = {a * b}.", a * b
    if kind == "div":
        return f"{a} ÷ {b} = {a // b}.", a // b
    if kind == "two":
        c = int(p["c"])
        return f"{a} × {b} = {a * b}, and {a * b} - {c} = {a * b - c}.", a * b - c
    return f"{a} × {b} = {a * b} km.", a * b


def render_arithmetic(p: Params) -> Rendered:
    """Style 0/1: question in the instruction; 2/3: generic instruction, question in input."""
    style = int(p["style"]) % 4
    question = tables.ARITH_TEXT[str(p["kind"])][style % 2].format(**p)
    work, answer = solve_arithmetic(p)
    output = f"{work} Answer: {answer}"
    if style < 2:
        return question, "", output
    return "Solve the word problem. Show the working and end with the answer.", question, output


def nudge_arithmetic(p: Params, rng: random.Random) -> Params:
    """Change the first operand by a little, keeping the problem well-formed."""
    a, b = int(p["a"]), int(p["b"])
    step = rng.choice((-2, -1, 1, 2))
    if p["kind"] == "div":
        return with_changes(p, a=a + b * (1 if a // b < 3 else rng.choice((-1, 1))))
    if p["kind"] == "sub":
        return with_changes(p, a=max(a + step, b + 1))
    if p["kind"] == "speed":
        return with_changes(p, a=a + 5 * step)
    if p["kind"] == "two":
        return with_changes(p, c=max(1, min(a * b - 1, int(p["c"]) + step)))
    return with_changes(p, a=max(2, a + step))


def wrong_arithmetic(p: Params, rng: random.Random) -> str:
    """An off-by-some answer whose last equation is false."""
    work, answer = solve_arithmetic(p)
    bad = answer + rng.choice((-10, -3, -1, 1, 2, 10))
    head, _, _ = work.rpartition("= ")
    unit = " km" if p["kind"] == "speed" else ""
    return f"{head}= {bad}{unit}. Answer: {bad}"


# --- unit conversion -----------------------------------------------------------------------
def draw_conversion(rng: random.Random) -> Params:
    """Draw a conversion and an integer amount in its range (never 1, to keep plurals right)."""
    key = rng.choice(tuple(tables.CONVERSIONS))
    low, high = tables.CONVERSIONS[key][3:]
    x = rng.choice([v for v in range(low, high + 1) if v not in (1, -1, -40)])
    return {"conv": key, "x": x, "style": rng.randrange(len(tables.CONVERT_TEXT))}


def render_conversion(p: Params) -> Rendered:
    """Instruction names amount and units; output gives the rule and the converted amount."""
    key, x = str(p["conv"]), int(p["x"])
    u1, u2, how = tables.CONVERSIONS[key][:3]
    text = tables.CONVERT_TEXT[int(p["style"]) % len(tables.CONVERT_TEXT)]
    y = format_number(tables.CONVERT_FN[key](x))
    return text.format(x=x, u1=u1, u2=u2), "", f"{how} {x} {u1} is about {y} {u2}."


def nudge_conversion(p: Params, rng: random.Random) -> Params:
    """Change the amount by one to three units."""
    x = int(p["x"]) + rng.choice((-3, -2, -1, 1, 2, 3))
    return with_changes(p, x=x if x not in (1, -1, -40, 0) else x + 5)


def wrong_conversion(p: Params, rng: random.Random) -> str:
    """Apply the inverse formula: a typical mix-up."""
    key, x = str(p["conv"]), int(p["x"])
    u1, u2, how = tables.CONVERSIONS[key][:3]
    y = format_number(tables.CONVERT_FN[tables.INVERSE[key]](x))
    return f"{how} {x} {u1} is about {y} {u2}."


# --- geography ----------------------------------------------------------------------------
def geo_answer(kind: str, country: tuple[str, str, str, str]) -> str:
    """The one-sentence answer about `country` for question `kind`."""
    name, capital, continent, river = country
    if kind == "capital":
        return f"The capital of {name} is {capital}."
    if kind == "continent":
        return f"{cap(name)} is in {continent}."
    return f"The {river} flows through {name}."


def draw_geography(rng: random.Random) -> Params:
    """Draw a country (index into tables.COUNTRIES) and a question kind."""
    kind = rng.choice(tuple(tables.GEO_TEXT))
    country = rng.randrange(len(tables.COUNTRIES))
    return {"kind": kind, "country": country, "style": rng.randrange(3)}


def render_geography(p: Params) -> Rendered:
    """Question in the instruction, no input, one-sentence answer."""
    country = tables.COUNTRIES[int(p["country"])]
    kind = str(p["kind"])
    text = tables.GEO_TEXT[kind][int(p["style"]) % 3]
    return text.format(c=country[0]), "", geo_answer(kind, country)


def nudge_geography(p: Params, rng: random.Random) -> Params:
    """Facts cannot be nudged without becoming false: reword instead."""
    return with_changes(p, style=int(p["style"]) + rng.choice((1, 2)))


def wrong_geography(p: Params, rng: random.Random) -> str:
    """Answer with another country's capital or river, or another continent."""
    name, capital, continent, river = tables.COUNTRIES[int(p["country"])]
    if p["kind"] == "capital":
        other = rng.choice([c[1] for c in tables.COUNTRIES if c[1] != capital])
        return f"The capital of {name} is {other}."
    if p["kind"] == "continent":
        return f"{cap(name)} is in {rng.choice([c for c in tables.CONTINENTS if c != continent])}."
    other = rng.choice([c[3] for c in tables.COUNTRIES if c[3] != river])
    return f"The {other} flows through {name}."


# --- grammar ------------------------------------------------------------------------------
def draw_grammar(rng: random.Random) -> Params:
    """Draw an error kind and one value per slot."""
    kind = rng.choice(tuple(tables.GRAMMAR))
    slots = tables.GRAMMAR[kind][2]
    p: Params = {"kind": kind, "style": rng.randrange(len(tables.GRAMMAR_TEXT))}
    p.update({name: rng.choice(values) for name, values in slots.items()})
    return p


def fill_grammar(p: Params, which: int) -> str:
    """Sentence of `p` with the error (which=0) or corrected (which=1), capitalised."""
    return cap(tables.GRAMMAR[str(p["kind"])][which].format(**p))


def render_grammar(p: Params) -> Rendered:
    """Generic instruction, faulty sentence as input, corrected sentence as output."""
    text = tables.GRAMMAR_TEXT[int(p["style"]) % len(tables.GRAMMAR_TEXT)]
    return text, fill_grammar(p, 0), fill_grammar(p, 1)


def nudge_grammar(p: Params, rng: random.Random) -> Params:
    """Replace the last slot with another value: same error, slightly different sentence."""
    name, values = list(tables.GRAMMAR[str(p["kind"])][2].items())[-1]
    return with_changes(p, **{name: rng.choice([v for v in values if v != p[name]])})


def wrong_grammar(p: Params, rng: random.Random) -> str:
    """Return the faulty sentence unchanged, as if it were already correct."""
    return fill_grammar(p, 0)


# --- code ---------------------------------------------------------------------------------
def draw_code_value(kind: str, rng: random.Random) -> Any:
    """A fresh input value of `kind` (tuples stand for lists, so params stay hashable)."""
    if kind == "word":
        return rng.choice(tables.WORDS)
    if kind == "nums":
        values = [rng.randint(1, 30) for _ in range(rng.randint(4, 6))]
        return tuple(values + [rng.choice(values)])  # one repeat, so "unique" has work to do
    if kind == "n":
        return rng.randint(3, 8)
    if kind == "sentence":
        return rng.choice(tables.SENTENCES)
    return tuple(rng.sample(tables.VOCAB, rng.randint(2, 5)))


def draw_code(rng: random.Random) -> Params:
    """Draw a code task and its input value."""
    task = rng.choice(tuple(tables.CODE_TASKS))
    value = draw_code_value(tables.CODE_TASKS[task][1], rng)
    return {"task": task, "value": value, "style": rng.randrange(len(tables.CODE_TEXT))}


def code_result(p: Params) -> Any:
    """What the task's expression returns for the record's input."""
    value = p["value"]
    return tables.CODE_RESULT[str(p["task"])](list(value) if isinstance(value, tuple) else value)


def code_input(p: Params) -> str:
    """The input field: a Python assignment of the task's variable."""
    value = p["value"]
    shown = list(value) if isinstance(value, tuple) else value
    return f"{tables.CODE_TASKS[str(p['task'])][0]} = {shown!r}"


def render_code(p: Params) -> Rendered:
    """Instruction asks for an expression, input assigns the variable, output gives the result."""
    _, _, expr, does = tables.CODE_TASKS[str(p["task"])]
    output = f"Use `{expr}`. For the input above it returns {code_result(p)!r}."
    text = tables.CODE_TEXT[int(p["style"]) % len(tables.CODE_TEXT)].format(does=does)
    return text, code_input(p), output


def nudge_code(p: Params, rng: random.Random) -> Params:
    """Change the input a little: one number, or another word or sentence."""
    value = p["value"]
    if isinstance(value, int):
        return with_changes(p, value=value + rng.choice((-1, 1)))
    if p["task"] in ("sum", "max", "evens", "unique"):
        i = rng.randrange(len(value))
        changed = value[:i] + (value[i] + rng.choice((1, 2, 3)),) + value[i + 1 :]
        return with_changes(p, value=changed)
    return with_changes(p, value=draw_code_value(tables.CODE_TASKS[str(p["task"])][1], rng))


def spoil_value(value: Any, rng: random.Random) -> Any:
    """A value of the same type that differs from `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice((1, 2, 3))
    if isinstance(value, list):
        return value[:-1] if value else [0]
    if value != value.lower():
        return value.lower()
    return value[::-1] if value[::-1] != value else value + value


def wrong_code(p: Params, rng: random.Random) -> str:
    """The right expression with a wrong claimed result."""
    expr = tables.CODE_TASKS[str(p["task"])][2]
    return f"Use `{expr}`. For the input above it returns {spoil_value(code_result(p), rng)!r}."


# --- summaries ----------------------------------------------------------------------------
def draw_summary(rng: random.Random) -> Params:
    """Draw a scenario and one value per slot."""
    kind = rng.choice(tuple(tables.SUMMARIES))
    p: Params = {"kind": kind, "style": rng.randrange(len(tables.SUMMARY_TEXT))}
    p.update({name: rng.choice(values) for name, values in tables.SUMMARIES[kind][2].items()})
    return p


def render_summary(p: Params) -> Rendered:
    """Generic instruction, four-sentence paragraph as input, one-sentence summary as output."""
    paragraph, summary, _ = tables.SUMMARIES[str(p["kind"])]
    text = tables.SUMMARY_TEXT[int(p["style"]) % len(tables.SUMMARY_TEXT)]
    return text, paragraph.format(**p), summary.format(**p)


def nudge_summary(p: Params, rng: random.Random) -> Params:
    """Move the headline number to a neighbouring value."""
    values = tables.SUMMARIES[str(p["kind"])][2]["n"]
    i = values.index(p["n"]) + rng.choice((-2, -1, 1, 2))
    return with_changes(p, n=values[min(max(i, 0), len(values) - 1)])


def wrong_summary(p: Params, rng: random.Random) -> str:
    """A summary that gets the headline number badly wrong."""
    _, summary, _ = tables.SUMMARIES[str(p["kind"])]
    return summary.format(**with_changes(p, n=int(p["n"]) * rng.choice((3, 10))))


# --- assembly -----------------------------------------------------------------------------

FAMILIES: tuple[Family, ...] = (
    Family("arithmetic", draw_arithmetic, render_arithmetic, nudge_arithmetic, wrong_arithmetic),
    Family("conversion", draw_conversion, render_conversion, nudge_conversion, wrong_conversion),
    Family("geography", draw_geography, render_geography, nudge_geography, wrong_geography),
    Family("grammar", draw_grammar, render_grammar, nudge_grammar, wrong_grammar),
    Family("code", draw_code, render_code, nudge_code, wrong_code),
    Family("summary", draw_summary, render_summary, nudge_summary, wrong_summary),
)
MAX_TRIES = 500


def topic_of(params: Params) -> tuple[tuple[str, Any], ...]:
    """What a question is about, ignoring its wording: two good rows never share a topic."""
    return tuple(sorted((k, v) for k, v in params.items() if k != "style"))


def poor_output(family: Family, params: Params, kind: str, rng: random.Random) -> str:
    """The output of a poor row of `kind` (one of POOR_KINDS)."""
    if kind == "wrong":
        return family.wrong(params, rng)
    if kind == "unknown":
        return rng.choice(tables.UNKNOWN_ANSWERS)
    if kind == "off_topic":
        return rng.choice(tables.OFF_TOPIC_ANSWERS)
    words = family.render(params)[2].split()
    return " ".join(words[: max(2, len(words) // 2)])


def build_family(family: Family, count: int, offset: int, rng: random.Random) -> list[dict]:
    """`count` rows of one family: good ones, near-duplicates of good ones, then poor ones.

    Good and poor rows all have distinct topics (see `topic_of`); a near-duplicate shares its
    base row's topic when reworded, or differs from it in one value. No two rows share the same
    (instruction, input). `offset` rotates the poor kinds so that small families get a mix.
    """
    n_near = int(count * NEAR_SHARE + 0.5)
    n_poor = int(count * POOR_SHARE + 0.5)
    n_good = count - n_near - n_poor
    topics: set[tuple[tuple[str, Any], ...]] = set()
    texts: set[tuple[str, str]] = set()
    rows: list[dict] = []
    goods: list[Params] = []

    def is_new(params: Params, same_topic_ok: bool) -> bool:
        instruction, input_text, _ = family.render(params)
        return (instruction, input_text) not in texts and (
            same_topic_ok or topic_of(params) not in topics
        )

    def add(params: Params, quality: str, output: str | None = None) -> None:
        instruction, input_text, good_output = family.render(params)
        topics.add(topic_of(params))
        texts.add((instruction, input_text))
        rows.append(
            {
                "instruction": instruction,
                "input": input_text,
                "output": good_output if output is None else output,
                "family": family.name,
                "quality": quality,
            }
        )

    def draw_new(make: Callable[[], Params], same_topic_ok: bool = False) -> Params:
        for _ in range(MAX_TRIES):
            params = make()
            if is_new(params, same_topic_ok):
                return params
        raise RuntimeError(f"cannot draw another distinct {family.name} question; lower --n")

    for _ in range(n_good):
        params = draw_new(lambda: family.draw(rng))
        goods.append(params)
        add(params, "good")
    for base in rng.sample(goods, min(n_near, len(goods))):
        # Half the near-duplicates are reworded, half change one value (answer recomputed).
        if rng.random() < 0.5:
            params = draw_new(lambda b=base: with_changes(b, style=b["style"] + 1), True)
        else:
            params = draw_new(lambda b=base: family.nudge(b, rng), True)
        add(params, "near-duplicate")
    for i in range(n_poor):
        params = draw_new(lambda: family.draw(rng))
        add(params, "poor", poor_output(family, params, POOR_KINDS[(i + offset) % 4], rng))
    return rows


def generate_records(n: int = 300, seed: int = 7) -> list[dict]:
    """Return `n` demo records, shuffled, with ids "demo-0001"... in list order.

    Families share `n` as evenly as possible (earlier families get the remainder).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1; got {n}")
    rng = random.Random(seed)
    rows: list[dict] = []
    for index, family in enumerate(FAMILIES):
        count = n // len(FAMILIES) + (1 if index < n % len(FAMILIES) else 0)
        rows.extend(build_family(family, count, index, rng))
    rng.shuffle(rows)
    width = max(4, len(str(n)))
    return [{"id": f"demo-{i:0{width}d}", **row} for i, row in enumerate(rows, start=1)]


def write_records(records: list[dict], path: Path) -> None:
    """Write `records` as UTF-8 JSON lines with "\\n" endings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Command line: `python assets/make_demo.py [--out PATH] [--n N] [--seed S]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSONL path")
    parser.add_argument("--n", type=int, default=300, help="number of records (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    try:
        records = generate_records(args.n, args.seed)
    except RuntimeError as error:  # the fact tables hold about 100 geography questions
        parser.error(str(error))
    write_records(records, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
