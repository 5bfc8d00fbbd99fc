"""Scenario pools for the selection-quality benchmark (bench/quality.py), built from the shared
datasets by code, seeded; no data is edited by hand.

Every scenario has a validation split and two test splits (`SPLITS`): different rows of the source
files and different corruption seeds, so that defaults chosen on validation are judged on unseen
rows. The demo's validation pool is rows 150-299 of `assets/demo.jsonl`; both test splits use
its first 150 rows, the README's demo command.

- S1 noise (stage instruction): `size` rows of one source; 20% of them corrupted four ways,
  in equal parts: answer swapped with another corrupted row's, truncated to its first one or
  two words, replaced by a refusal, or a lightly reworded duplicate of a clean row of the pool.
- S2 targeting (stage task): a mixed pool, `size / 4` rows from each of four sources; targets
  are other rows of one source.
- S3 continual (stage continual): existing rows from two sources; a pool with `size / 4` rows
  from each of those two and of two new sources.
- demo: the first 150 rows of the project's demo data (labels `quality`: good, poor,
  near-duplicate), instruction stage.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

REFUSALS = ("I don't know.", "I'm not sure.", "Sorry, I can't help with that.", "No idea.")
REWORDINGS = ("Please answer this: ", "Quick question. ", "Could you help? ", "Tell me: ")
KINDS = ("swapped", "truncated", "refusal", "duplicate")
S2_SOURCES = ("gsm8k", "dolly_openqa", "hotpotqa_cb", "mmlu_redux")


@dataclass
class Scenario:
    """One pool with its stage, side set and per-row labels.

    pool/targets/existing: rows {instruction, input, output, ...}; labels[i]: the row's kind
    ("clean", a corruption kind, a source name...); duplicate_of[i]: index of the row a
    duplicate copies (-1 otherwise).
    """

    name: str
    split: str
    stage: str
    pool: list[dict[str, Any]]
    labels: list[str]
    targets: list[dict[str, Any]] | None = None
    existing: list[dict[str, Any]] | None = None
    duplicate_of: list[int] = field(default_factory=list)
    on_target: str | None = None
    new_sources: tuple[str, ...] = ()


def read_jsonl(path: Path, start: int, count: int) -> list[dict[str, Any]]:
    """Rows start..start+count of a JSONL file, skipping rows with an empty output."""
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        valid = 0
        for line in handle:
            row = json.loads(line)
            if not str(row.get("output", "")).strip():
                continue
            if valid >= start:
                rows.append({k: row.get(k, "") for k in ("instruction", "input", "output")})
            valid += 1
            if len(rows) == count:
                break
    if len(rows) < count:
        raise ValueError(f"{path} has fewer than {start + count} usable rows")
    return rows


SPLITS = ("val", "test", "test2")
"""`test2` is a second test split, drawn after `test` had been used once: rows further down each
file and other seeds, so a second round of settings chosen on `val` meets rows nobody has seen."""


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return SPLITS.index(split)


def _offset(split: str, size: int) -> int:
    return 2 * size * _split_index(split)


def noise_scenario(datasets: Path, source: str, split: str, size: int = 120) -> Scenario:
    """S1: `size` rows of `source`.train, 20% corrupted (see the module docstring)."""
    rng = random.Random(f"S1-{source}-{split}")
    pool = read_jsonl(datasets / f"{source}.train.jsonl", _offset(split, size), size)
    n_bad = round(0.2 * size)
    chosen = rng.sample(range(size), n_bad)
    per_kind = [chosen[k::4] for k in range(4)]
    labels = ["clean"] * size
    duplicate_of = [-1] * size
    swapped = per_kind[0]
    outputs = [pool[i]["output"] for i in swapped]
    for pos, i in enumerate(swapped):
        pool[i] = {**pool[i], "output": outputs[(pos + 1) % len(swapped)]}
        labels[i] = "swapped"
    for i in per_kind[1]:
        words = pool[i]["output"].split()
        pool[i] = {**pool[i], "output": " ".join(words[: rng.choice((1, 2))])}
        labels[i] = "truncated"
    for i in per_kind[2]:
        pool[i] = {**pool[i], "output": rng.choice(REFUSALS)}
        labels[i] = "refusal"
    clean = [i for i in range(size) if labels[i] == "clean"]
    for i in per_kind[3]:
        original = rng.choice(clean)
        row = pool[original]
        pool[i] = {
            **row,
            "instruction": rng.choice(REWORDINGS) + row["instruction"],
            "output": row["output"].rstrip(".") + ("." if not row["output"].endswith(".") else ""),
        }
        labels[i] = "duplicate"
        duplicate_of[i] = original
    return Scenario(f"S1-{source}", split, "instruction", pool, labels, duplicate_of=duplicate_of)


def _mixed(
    datasets: Path, sources: tuple[str, ...], split: str, per_source: int
) -> tuple[list[dict[str, Any]], list[str]]:
    pool, labels = [], []
    for source in sources:
        rows = read_jsonl(
            datasets / f"{source}.train.jsonl", _offset(split, per_source), per_source
        )
        pool.extend(rows)
        labels.extend([source] * len(rows))
    order = list(range(len(pool)))
    random.Random(f"mix-{split}-{'-'.join(sources)}").shuffle(order)
    return [pool[i] for i in order], [labels[i] for i in order]


def targeting_scenario(
    datasets: Path, target: str, split: str, size: int = 120, n_targets: int = 30
) -> Scenario:
    """S2: a pool of the four S2 sources in equal parts; targets: other rows of `target`."""
    per_source = size // len(S2_SOURCES)
    pool, labels = _mixed(datasets, S2_SOURCES, split, per_source)
    # Targets come from far down the file, disjoint from both splits' pool rows.
    start = 1000 + n_targets * _split_index(split)
    targets = read_jsonl(datasets / f"{target}.train.jsonl", start, n_targets)
    return Scenario(f"S2-{target}", split, "task", pool, labels, targets=targets, on_target=target)


def continual_scenario(
    datasets: Path,
    old: tuple[str, str],
    new: tuple[str, str],
    split: str,
    size: int = 120,
    n_existing: int = 40,
) -> Scenario:
    """S3: existing rows from the `old` sources; a pool from the old and the `new` sources."""
    pool, labels = _mixed(datasets, old + new, split, size // 4)
    existing: list[dict[str, Any]] = []
    start = 1000 + n_existing * _split_index(split)
    for source in old:
        existing.extend(read_jsonl(datasets / f"{source}.train.jsonl", start, n_existing // 2))
    name = f"S3-{'+'.join(old)}->{'+'.join(new)}"
    return Scenario(name, split, "continual", pool, labels, existing=existing, new_sources=new)


def demo_scenario(split: str = "test", limit: int = 150) -> Scenario:
    """The project's demo data labelled by its `quality` field: the first `limit` rows (the README's
    demo command) on the test splits, the next `limit` rows on validation."""
    start = limit if split == "val" else 0
    with (REPO / "assets" / "demo.jsonl").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle][start : start + limit]
    pool = [{k: r[k] for k in ("instruction", "input", "output")} for r in rows]
    return Scenario("demo", split, "instruction", pool, [r["quality"] for r in rows])


def build_scenarios(datasets: Path, split: str, names: list[str]) -> list[Scenario]:
    """The scenarios of one split; names pick among S1, S2, S3 and demo."""
    out: list[Scenario] = []
    if "S1" in names:
        out += [noise_scenario(datasets, s, split) for s in ("dolly_openqa", "gsm8k")]
    if "S2" in names:
        out += [targeting_scenario(datasets, t, split) for t in ("gsm8k", "hotpotqa_cb")]
    if "S3" in names:
        out += [
            continual_scenario(
                datasets, ("dolly_openqa", "hotpotqa_cb"), ("gsm8k", "mmlu_redux"), split
            ),
            continual_scenario(
                datasets, ("gsm8k", "mmlu_redux"), ("dolly_openqa", "hotpotqa_cb"), split
            ),
        ]
    if "demo" in names:
        out.append(demo_scenario(split))
    return out


def main(argv: list[str] | None = None) -> int:
    """Write one scenario's pool as JSONL (with its `kind` labels), e.g. for `delift eval`:

    python bench/scenarios.py S1-dolly_openqa --split test --out /tmp/s1_dolly_test.jsonl
    """
    import argparse
    import os

    default_data = os.environ.get("DELIFT_DATASETS", str(REPO.parent / "shared" / "datasets"))
    p = argparse.ArgumentParser(description=main.__doc__.split("\n\n")[0])
    p.add_argument("name", help="scenario name, e.g. S1-dolly_openqa, S2-gsm8k, demo")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--datasets", default=default_data)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    found = [
        s
        for s in build_scenarios(Path(args.datasets), args.split, ["S1", "S2", "S3", "demo"])
        if s.name == args.name
    ]
    if not found:
        raise SystemExit(f"no scenario named {args.name!r} in the {args.split} split")
    with open(args.out, "w", encoding="utf-8") as handle:
        for row, label in zip(found[0].pool, found[0].labels, strict=True):
            handle.write(json.dumps({**row, "kind": label}, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
