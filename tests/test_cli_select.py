"""`delift select`: every stage and method end to end on the tiny model, and bad parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from delift_core.cli import main
from delift_core.config import (
    DEFAULT_DUPLICATE_THRESHOLD,
    DEFAULT_QUALITY_GATE,
    DEFAULT_QUALITY_SIGNAL,
    DEFAULT_SIDE_WEIGHT,
    parse_budget,
)
from delift_core.errors import ConfigError
from delift_core.testing import build_tiny_lm

ROWS = [
    {
        "id": f"r{i}",
        "instruction": f"Task {i}: add {i} and {i + 2}.",
        "input": "",
        "output": f"{2 * i + 2}",
    }
    for i in range(16)
]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("select")
    model = root / "model"
    lm = build_tiny_lm()
    lm.model.save_pretrained(model)
    lm.tokenizer.save_pretrained(model)
    files = {}
    for name, rows in (("pool", ROWS[:10]), ("targets", ROWS[10:13]), ("existing", ROWS[13:])):
        files[name] = root / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"root": root, "model": model, "cache": root / "c.duckdb", **files}


def select(env, out: Path, *extra: str) -> int:
    return main([
        "select", str(env["pool"]), "--model", str(env["model"]), "--cache", str(env["cache"]),
        "--out", str(out), *extra,
    ])  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("stage", "extra"),
    [
        ("instruction", []),
        ("task", ["--targets", "targets"]),
        ("continual", ["--existing", "existing"]),
    ],
)
@pytest.mark.parametrize("method", ["delift", "delift-q", "fl-only", "random", "full"])
def test_each_stage_and_method(env, tmp_path, stage, extra, method):
    extra = [str(env[e]) if e in env else e for e in extra]
    out = tmp_path / "subset.jsonl"
    assert (
        select(
            env, out, "--stage", stage, "--method", method, "--budget", "0.3", "--annotate", *extra
        )
        == 0
    )
    rows = read_jsonl(out)
    assert len(rows) == (10 if method == "full" else 3)
    assert len({r["id"] for r in rows}) == len(rows)
    assert [r["_delift"]["rank"] for r in rows] == list(range(1, len(rows) + 1))
    manifest = json.loads((tmp_path / "subset.manifest.json").read_text())
    assert manifest["selection"]["stage"] == stage
    assert manifest["selected_ids"] == [r["id"] for r in rows]
    assert "torch" in manifest["versions"]
    if method in ("delift", "delift-q", "fl-only"):
        # Utility methods annotate each row with its quality signals and score.
        assert all(0.0 <= r["_delift"]["quality"] <= 1.0 for r in rows)
        assert all(isinstance(r["_delift"]["help_logprob"], float) for r in rows)


def test_default_method_is_delift_q_with_its_prior(env, tmp_path):
    out = tmp_path / "subset.jsonl"
    assert select(env, out, "--budget", "4") == 0
    manifest = json.loads((tmp_path / "subset.manifest.json").read_text())
    assert manifest["selection"]["method"] == "delift-q"
    assert manifest["selection"]["quality_gate"] == DEFAULT_QUALITY_GATE
    assert manifest["selection"]["quality_signal"] == DEFAULT_QUALITY_SIGNAL
    assert manifest["selection"]["side_weight"] == DEFAULT_SIDE_WEIGHT
    assert manifest["selection"]["duplicate_threshold"] == DEFAULT_DUPLICATE_THRESHOLD


def test_priors_of_delift_q_reach_the_selection_and_the_manifest(env, tmp_path):
    # Continual stage: the side prior needs every set's embeddings, computed here (exact mode).
    picks = {}
    for name, extra in (
        ("off", ["--side-weight", "0", "--duplicate-threshold", "off"]),
        ("on", ["--side-weight", "50", "--duplicate-threshold", "0.3"]),
    ):
        out = tmp_path / f"{name}.jsonl"
        args = ["--stage", "continual", "--existing", str(env["existing"]), "--budget", "5"]
        assert select(env, out, *args, "--quality-gate", "0", *extra) == 0
        manifest = json.loads((tmp_path / f"{name}.manifest.json").read_text())
        picks[name] = manifest["selected_ids"]
        selection = manifest["selection"]
        assert selection["side_weight"] == (0.0 if name == "off" else 50.0)
        assert selection["duplicate_threshold"] == (None if name == "off" else 0.3)
        # Exact mode: the embedder the priors used is named all the same (None when unused).
        assert (manifest.get("embedder") is not None) == (name == "on")
    # A prior that outweighs coverage changes the pick.
    assert picks["off"] != picks["on"]


def test_formats_and_reproducible_seed(env, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert (
        select(env, a, "--method", "random", "--seed", "7", "--budget", "4", "--format", "messages")
        == 0
    )
    assert (
        select(env, b, "--method", "random", "--seed", "7", "--budget", "4", "--format", "messages")
        == 0
    )
    assert a.read_bytes() == b.read_bytes()
    first = read_jsonl(a)[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    c = tmp_path / "c.jsonl"
    assert select(env, c, "--method", "delift", "--budget", "4", "--format", "alpaca") == 0
    assert set(read_jsonl(c)[0]) == {"instruction", "input", "output"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "0"], "at least 1"),
        (["--budget", "-0.2"], "fraction"),
        (["--budget", "11"], "larger than the pool"),
        (["--budget", "1.5"], "fraction"),
        (["--stage", "task"], "--targets"),
        (["--stage", "continual"], "--existing"),
        (["--method", "magic"], "unknown method"),
        (["--quality-gate", "1.5"], "quality gate"),
        (["--quality-weight", "-1"], "quality weight"),
        (["--side-weight", "-1"], "side weight"),
        (["--duplicate-threshold", "1.5"], "duplicate threshold"),
    ],
)
def test_bad_parameters_write_nothing(env, tmp_path, capsys, extra, message):
    out = tmp_path / "subset.jsonl"
    assert select(env, out, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_one_budget_parser_for_select_and_eval(capsys):
    assert parse_budget("120") == 120 and isinstance(parse_budget("120"), int)
    assert parse_budget(" 0.3 ") == 0.3 and parse_budget("1.0") == 1.0
    for bad in ("a third", "", "\u00b2"):
        with pytest.raises(ConfigError, match="fraction like 0.3 or a count like 120"):
            parse_budget(bad)
    for command in (["select", "p.jsonl", "--out", "o.jsonl"], ["eval", "p.jsonl", "--test", "t"]):
        with pytest.raises(SystemExit) as stopped:
            main([*command, "--budget", "a third"])
        assert stopped.value.code == 2
        assert "--budget: budget must be a fraction like 0.3" in capsys.readouterr().err


def test_skip_invalid_drops_bad_rows_and_says_so(env, tmp_path, capsys):
    pool = tmp_path / "pool_with_gap.jsonl"
    bad = {"instruction": "unanswered", "input": "", "output": ""}
    pool.write_text("".join(json.dumps(r) + "\n" for r in [ROWS[0], bad, *ROWS[1:6]]))
    out = tmp_path / "subset.jsonl"
    args = ["select", str(pool), "--model", str(env["model"]), "--cache", str(env["cache"])]
    assert main([*args, "--out", str(out), "--budget", "3"]) == 2
    assert "line 2, field 'output'" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--out", str(out), "--budget", "3", "--skip-invalid"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "line 2, field 'output'" in err and "record skipped" in err
    chosen = read_jsonl(out)
    assert len(chosen) == 3 and {r["id"] for r in chosen} <= {r["id"] for r in ROWS[:6]}


@pytest.mark.parametrize("method", ["delift-q", "random"])
def test_pinned_and_excluded_ids(env, tmp_path, method):
    pins = tmp_path / "pins.txt"
    pins.write_text("# must keep\nr3\n\nr5\n")
    drops = tmp_path / "drops.txt"
    drops.write_text("r0\n")
    out = tmp_path / "subset.jsonl"
    code = select(
        env, out, "--method", method, "--budget", "4", "--pin", str(pins), "--exclude", str(drops)
    )
    assert code == 0
    rows = read_jsonl(out)
    assert len(rows) == 4 and {r["id"] for r in rows[:2]} == {"r3", "r5"}
    assert "r0" not in {r["id"] for r in rows}
    manifest = json.loads((tmp_path / "subset.manifest.json").read_text())
    assert manifest["pinned_ids"] == ["r3", "r5"] and manifest["excluded_ids"] == ["r0"]


def test_unknown_pinned_id_names_file_and_line(env, tmp_path, capsys):
    pins = tmp_path / "pins.txt"
    pins.write_text("r1\nnope\n")
    out = tmp_path / "subset.jsonl"
    assert select(env, out, "--method", "random", "--pin", str(pins)) == 2
    err = capsys.readouterr().err
    assert "pins.txt" in err and "line 2" in err and "nope" in err
    assert not out.exists()
    too_many = tmp_path / "many.txt"
    too_many.write_text("\n".join(f"r{i}" for i in range(5)))
    assert select(env, out, "--method", "random", "--budget", "3", "--pin", str(too_many)) == 2
    assert "5 samples are pinned" in capsys.readouterr().err
