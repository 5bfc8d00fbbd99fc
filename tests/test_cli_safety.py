"""`delift` options that must not be taken silently: counts below their minimum, and a score
folder that already holds an earlier run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from delift_core.cli import build_parser, main
from delift_core.cli.common import scoring_config
from delift_core.config import ScoringConfig
from delift_core.errors import ConfigError
from delift_core.prompts import clip_records
from delift_core.testing import build_tiny_lm

ROWS = [
    {"instruction": f"Task {i}: add {i} and {i + 2}.", "input": "", "output": f"{2 * i + 2}"}
    for i in range(8)
]

COUNT_OPTIONS = [
    ("score", "--batch-size", "0"),
    ("score", "--batch-size", "-1"),
    ("select", "--batch-size", "0"),
    ("eval", "--batch-size", "0"),
    ("score", "--max-batch-tokens", "0"),
    ("score", "--max-batch-tokens", "10"),
    ("score", "--k", "0"),
    ("score", "--limit", "0"),
    ("select", "--targets-limit", "-3"),
    ("select", "--existing-limit", "0"),
    ("score", "--workers", "0"),
    ("select", "--seed", "-1"),
    ("eval", "--test-limit", "0"),
    ("eval", "--shots", "-1"),
    ("eval", "--max-new-tokens", "0"),
    ("eval", "--max-prompt-tokens", "0"),
    ("eval", "--max-answer-tokens", "0"),
    ("eval", "--generate", "-1"),
    ("eval", "--resamples", "0"),
    ("eval", "--epochs", "0"),
    ("eval", "--lora-rank", "0"),
    ("eval", "--train-batch-size", "0"),
    ("eval", "--train-max-tokens", "4"),
    ("eval", "--seeds", "0,-1"),
    ("eval", "--train-seeds", "-2"),
    ("score", "--batch-size", "two"),
]


def _command(command: str, option: str, value: str) -> list[str]:
    extra = {"score": ["--out", "o"], "select": ["--out", "o.jsonl"], "eval": ["--test", "t"]}
    return [command, "missing.jsonl", *extra[command], f"{option}={value}"]


@pytest.mark.parametrize(("command", "option", "value"), COUNT_OPTIONS)
def test_a_count_below_its_minimum_is_an_argparse_error(command, option, value, capsys):
    # Before: --batch-size 0 fell back to the default and the run went on to read the data.
    with pytest.raises(SystemExit) as caught:
        main(_command(command, option, value))
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert f"argument {option}" in err and value in err
    assert "missing.jsonl" not in err  # refused while parsing, before any file is read


def test_counts_at_their_minimum_are_taken_as_given():
    args = build_parser().parse_args(
        ["score", "d.jsonl", "--out", "o", "--batch-size", "1", "--max-batch-tokens", "64"]
        + ["--k", "1", "--limit", "1", "--workers", "1"]
    )
    config = scoring_config(args)
    assert (config.batch_size, config.max_batch_tokens, config.k) == (1, 64, 1)
    assert (args.limit, args.workers) == (1, 1)


def test_batch_limits_not_given_take_the_config_defaults():
    config = scoring_config(build_parser().parse_args(["score", "d.jsonl", "--out", "o"]))
    assert config.batch_size == ScoringConfig.batch_size
    assert config.max_batch_tokens == ScoringConfig.max_batch_tokens


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("batch_size", True),
        ("k", 0),
        ("k", 1.0),
        ("max_batch_tokens", 63),
        ("max_batch_tokens", "8192"),
        ("max_response_tokens", 0),
    ],
)
def test_scoring_config_refuses_counts_that_are_not_whole_numbers_in_range(field, value):
    with pytest.raises(ConfigError, match=f"^{field.replace('_size', ' size')} must be a whole"):
        ScoringConfig(**{field: value})


def test_scoring_config_takes_numpy_integers():
    config = ScoringConfig(batch_size=np.int64(4), k=np.int32(2))
    assert (config.batch_size, config.k) == (4, 2)


# --- delift score --out: an earlier run is not replaced unasked ---------------------------


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["utility.npy", "utility_existing.npz", "quality.jsonl"])
def test_score_refuses_a_folder_with_an_earlier_run_before_loading_the_model(
    tmp_path, monkeypatch, capsys, name
):
    from delift_core.cli import scoring

    loaded = []
    monkeypatch.setattr(scoring, "load_causal_lm", lambda *a, **k: loaded.append(a))
    pool = _write(tmp_path / "pool.jsonl", ROWS[:4])
    out = tmp_path / "scores"
    out.mkdir()
    (out / name).write_bytes(b"earlier run")
    code = main(["score", str(pool), "--out", str(out), "--cache", str(tmp_path / "c.duckdb")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and loaded == []
    assert len(err) == 1 and str(out / name) in err[0] and "--overwrite" in err[0]
    assert (out / name).read_bytes() == b"earlier run"
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_score_overwrite_replaces_an_earlier_run_and_leaves_none_of_it(tmp_path, tiny_model_dir):
    pool = _write(tmp_path / "pool.jsonl", ROWS[:4])
    targets = _write(tmp_path / "targets.jsonl", ROWS[4:6])
    out = tmp_path / "scores"
    common = ["--model", str(tiny_model_dir), "--cache", str(tmp_path / "c.duckdb")]
    first = ["score", str(pool), "--out", str(out), *common]
    assert main([*first, "--targets", str(targets)]) == 0
    assert (out / "utility_targets.npy").exists()
    manifest = (out / "manifest.json").read_bytes()
    assert main(first) == 2  # refused: the folder holds the first run
    assert (out / "manifest.json").read_bytes() == manifest
    assert main([*first, "--overwrite"]) == 0
    files = json.loads((out / "manifest.json").read_text())["files"]
    # The first run's target matrix would sit beside a manifest that does not list it.
    assert sorted(p.name for p in out.iterdir()) == sorted([*files.values(), "manifest.json"])
    assert "utility_targets.npy" not in files.values()


# --- prompts longer than ScoringConfig.max_prompt_tokens are scored cut ---------------------


@dataclass(frozen=True)
class Pair:
    prompt: str
    response: str
    hash: str


def test_clip_records_cuts_only_what_is_over_the_caps():
    lm = build_tiny_lm()
    short = Pair("What is 2 plus 3?", " 5", "s")
    long_prompt = Pair("word " * 20_000, " ok", "p")
    long_answer = Pair("Say it", " again" * 20_000, "a")
    out = clip_records(lm.tokenizer, [short, long_prompt, long_answer], 100, 20)
    assert out[0] is short  # within the caps: the record itself, its hash and cache entries
    prompt, answer = out[1], out[2]
    assert long_prompt.prompt.startswith(prompt.prompt) and prompt.response == " ok"
    assert 98 <= len(lm.encode(prompt.prompt)) <= 102
    assert answer.prompt == long_answer.prompt
    assert 118 <= len(lm.encode(answer.response)) <= 122
    # The scored part of the answer (its first max_response_tokens) is unchanged.
    assert lm.encode(answer.response)[:20] == lm.encode(long_answer.response)[:20]
    hashes = {r.hash for r in (*out, long_prompt, long_answer)}
    assert len(hashes) == 5  # a cut record never shares cache entries with the uncut one
    again = clip_records(lm.tokenizer, [long_prompt], 200, 20)[0]
    assert again.hash != prompt.hash  # nor with one cut to another length


def test_a_huge_instruction_is_scored_cut_and_leaves_the_other_rows_as_they_were(
    tmp_path, tiny_model_dir, monkeypatch
):
    from delift_core.cli import scoring

    # The longest pair row the caps allow: an example's prompt and answer, the target's prompt
    # and answer, and the template.
    config = ScoringConfig()
    limit = 3 * config.max_prompt_tokens + 2 * config.max_response_tokens + 256
    longest = []

    def bounded(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        past = kwargs.get("cache", kwargs.get("past_key_values"))
        width = ids.shape[1] + (past.get_seq_length() if past is not None else 0)
        longest.append(width)
        # Refused before the forward runs: an uncut 100k-character prompt would take the memory.
        assert width <= limit, f"a row of {width} tokens reached the model"

    real_load = scoring.load_causal_lm

    def load(*args, **kwargs):
        lm = real_load(*args, **kwargs)
        lm.model.get_decoder().register_forward_pre_hook(bounded, with_kwargs=True)
        return lm

    monkeypatch.setattr(scoring, "load_causal_lm", load)
    short = ROWS[:3]
    huge = {"instruction": "Explain this: " + "lorem ipsum " * 8_500, "input": "", "output": "ok"}
    assert len(huge["instruction"]) > 100_000
    model = ["--model", str(tiny_model_dir)]
    pool = _write(tmp_path / "pool.jsonl", [*short, huge])
    out = tmp_path / "with"
    assert (
        main(["score", str(pool), "--out", str(out), "--cache", str(tmp_path / "a.duckdb"), *model])
        == 0
    )
    assert max(longest) > config.max_prompt_tokens  # the cut row was scored, at its cap
    with_huge = np.load(out / "utility.npy")
    assert with_huge.shape == (4, 4) and np.isfinite(with_huge).all()
    only_short = _write(tmp_path / "short.jsonl", short)
    out = tmp_path / "without"
    assert (
        main(
            [
                "score",
                str(only_short),
                "--out",
                str(out),
                "--cache",
                str(tmp_path / "b.duckdb"),
                *model,
            ]
        )
        == 0
    )
    np.testing.assert_allclose(
        with_huge[:3, :3], np.load(out / "utility.npy"), rtol=1e-5, atol=1e-6
    )
