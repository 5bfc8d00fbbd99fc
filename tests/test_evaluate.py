"""In-context evaluation: metrics on known strings, bootstrap intervals, retrieval, prompts,
teacher-forced scores against the plain reference, generation, caching, and that a fixed seed
reproduces a whole comparison. Runs on the tiny random model and the hashing embedder."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from delift_core.cache import UtilityCache
from delift_core.config import ScoringConfig, TemplateConfig
from delift_core.data.dataset import Record, hash_record
from delift_core.errors import ConfigError
from delift_core.evaluation.eval_compare import StageData, compare_methods, summarize_results
from delift_core.evaluation.evaluate import (
    EvalConfig,
    average_results,
    build_prompt,
    clean_generation,
    evaluate_examples,
    fit_prompt,
    generate_answers,
    retrieve_examples,
    score_answers,
)
from delift_core.evaluation.metrics import (
    answer_kind_of,
    bootstrap_mean,
    cosine_rows,
    extract_letter,
    extract_number,
    match_exact,
    paired_difference,
    score_rouge,
)
from delift_core.pipeline import Embedder
from delift_core.prompts import no_example_text
from delift_core.reference import reference_distance
from delift_core.testing import HashEmbedder


def Item(  # noqa: N802 - reads like the record type it builds
    instruction: str, input_text: str, output: str, fields: dict[str, Any] | None = None
) -> Record:
    """A data.Record built from its texts, as the loaders build one."""
    digest = hash_record(instruction, input_text, output)
    return Record(digest[:12], instruction, input_text, output, digest, 0, fields or {})


@pytest.fixture()
def embedder() -> Embedder:
    return Embedder(HashEmbedder(dim=64), HashEmbedder.key)


# ------------------------------------------------------------------------------------ metrics


def test_rouge_on_known_strings():
    assert score_rouge("the cat sat", "the cat sat") == pytest.approx((1.0, 1.0))
    # precision 3/3, recall 3/6: F = 2/3 for both; the common subsequence is the whole prediction
    assert score_rouge("the cat sat", "the cat sat on the mat") == pytest.approx((2 / 3, 2 / 3))
    # same words, other order: unigram overlap is perfect, the longest common subsequence is 2
    r1, rl = score_rouge("sat the cat", "the cat sat")
    assert r1 == pytest.approx(1.0) and rl == pytest.approx(2 / 3)
    assert score_rouge("dogs bark", "the cat sat") == (0.0, 0.0)
    assert score_rouge("", "the cat sat") == (0.0, 0.0)
    # stemming: "running" and "runs" share the stem "run"
    assert score_rouge("running", "runs")[0] == pytest.approx(1.0)


def test_number_extraction_and_exact_match():
    assert extract_number("so she makes $1,250.") == 1250.0
    assert extract_number("16 - 3 - 4 = 9\n#### 18\nthen 5 more") == 18.0
    assert extract_number("-3.5 degrees") == -3.5
    assert extract_number("no digits here") is None
    assert match_exact("She makes 9 * 2 = 18 dollars.", "18", "number") == 1.0
    assert match_exact("The answer is 17", "18", "number") == 0.0
    assert match_exact("nothing", "18", "number") == 0.0
    assert math.isnan(match_exact("anything", "x", "none"))
    with pytest.raises(ConfigError):
        match_exact("a", "b", "nonsense")


def test_letter_extraction_and_exact_match():
    assert extract_letter("C") == "C"
    assert extract_letter("(B) because of X") == "B"
    assert extract_letter("D. 12") == "D"
    assert extract_letter("I think the answer is d") == "D"
    assert extract_letter("I don't know") is None
    assert extract_letter("A cat sat") is None
    assert match_exact("C. 12", "C", "letter") == 1.0
    assert match_exact("B", "C", "letter") == 0.0


def test_answer_kind_follows_the_record():
    assert answer_kind_of(Item("q", "", "work... #### 18", {"final_answer": "18"})) == "number"
    assert answer_kind_of(Item("q", "A. x\nB. y", "B")) == "letter"
    assert answer_kind_of(Item("q", "", "Paris is the capital.")) == "none"


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [1.0, 0.0]])
    np.testing.assert_allclose(cosine_rows(a, b), [0.0, 1.0, 0.0])


def test_bootstrap_mean_and_paired_difference():
    constant = bootstrap_mean([2.0] * 20)
    assert (constant.mean, constant.low, constant.high, constant.n) == (2.0, 2.0, 2.0, 20)
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, 200)
    interval = bootstrap_mean(x, seed=3)
    assert interval.low < x.mean() < interval.high
    # the interval of a mean of 200 unit-variance values is about +/- 1.96 / sqrt(200)
    assert 0.2 < interval.high - interval.low < 0.35
    assert bootstrap_mean(x, seed=3) == interval  # seeded
    noisy = x + rng.normal(0.0, 1.0, 200)  # noisier than the shift, but the same items
    diff = paired_difference(x + 0.5, x)
    assert diff.mean == pytest.approx(0.5) and diff.low == pytest.approx(0.5)
    unpaired = paired_difference(noisy + 0.5, x)
    assert unpaired.low < 0.5 < unpaired.high
    with_nan = bootstrap_mean([1.0, np.nan, 3.0])
    assert with_nan.mean == 2.0 and with_nan.n == 2
    assert bootstrap_mean([np.nan]).n == 0
    with pytest.raises(ConfigError):
        paired_difference([1.0, 2.0], [1.0])


# ---------------------------------------------------------------------- retrieval and prompts


def test_retrieval_orders_by_cosine_and_breaks_ties_by_index():
    examples = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    got = retrieve_examples(queries, examples, 3)
    np.testing.assert_array_equal(got, [[0, 3, 2], [1, 2, 0]])
    assert retrieve_examples(queries, examples, 10).shape == (2, 4)
    assert retrieve_examples(queries, examples[:0], 3).shape == (2, 0)


def test_retrieval_with_an_embedder_finds_the_matching_prompt(samples, embedder):
    from delift_core.evaluation.evaluate import embed_prompts

    query = [Item("What is the capital of Italy, please?", "", "Rome.")]
    found = retrieve_examples(embed_prompts(query, embedder), embed_prompts(samples, embedder), 2)
    assert 6 in found[0]  # "What is the capital of Italy?"


def test_prompt_layout(samples, tiny_lm):
    config = EvalConfig(shots=2)
    assert build_prompt(samples[0], [], config) == no_example_text(TemplateConfig(), samples[0])
    text = build_prompt(samples[0], [samples[1], samples[2]], config)
    # the most similar example (first) stands next to the query
    assert text.index(samples[2].prompt) < text.index(samples[1].prompt) < text.index("Query:")
    assert text.endswith("Query:\n" + samples[0].prompt + "\n")
    full, used = fit_prompt(tiny_lm, samples[0], samples, [1, 2], config)
    assert used == [1, 2] and full == tiny_lm.encode(text)
    one_shot = len(tiny_lm.encode(build_prompt(samples[0], [samples[1]], config)))
    tight = EvalConfig(shots=2, max_prompt_tokens=one_shot)
    assert fit_prompt(tiny_lm, samples[0], samples, [1, 2], tight)[1] == [1]
    assert (
        fit_prompt(tiny_lm, samples[0], samples, [1, 2], EvalConfig(max_prompt_tokens=1))[1] == []
    )


def test_eval_config_is_validated():
    with pytest.raises(ConfigError):
        EvalConfig(shots=-1)
    with pytest.raises(ConfigError):
        EvalConfig(answer_kind="word")
    with pytest.raises(ConfigError):
        EvalConfig(example="no placeholders")


# --------------------------------------------------------------- teacher forcing, generation


def test_teacher_forced_score_matches_the_plain_reference(tiny_lm, samples, tmp_path):
    config = EvalConfig(batch_size=3)
    texts = [build_prompt(s, samples[(i + 1) % 7 : (i + 1) % 7 + 1], config) for i, s in
             enumerate(samples)]  # fmt: skip
    prompts = [tiny_lm.encode(t) for t in texts]
    answers = [s.output for s in samples]
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        got = score_answers(tiny_lm, prompts, answers, config, cache)
        again = score_answers(tiny_lm, prompts, answers, config, cache)  # from the cache
    for text, sample, value in zip(texts, samples, got, strict=True):
        _, logp_sum = reference_distance(tiny_lm, text, sample.response)
        count = len(tiny_lm.encode(sample.response)) + 1
        assert value == pytest.approx(logp_sum / count, abs=1e-4)
    np.testing.assert_allclose(again, got)
    assert np.ptp(got) > 1e-3


def test_generation_is_greedy_cached_and_cleaned(tiny_lm, samples, tmp_path, monkeypatch):
    config = EvalConfig(max_new_tokens=6)
    prompts = [tiny_lm.encode(build_prompt(s, [], config)) for s in samples[:3]]
    first = generate_answers(tiny_lm, prompts, config)
    assert first == generate_answers(tiny_lm, prompts, config)
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        stored = generate_answers(tiny_lm, prompts, config, cache)

        def refuse(*args, **kwargs):
            raise AssertionError("generation should come from the cache")

        monkeypatch.setattr(tiny_lm.model, "generate", refuse)
        assert generate_answers(tiny_lm, prompts, config, cache) == stored == first
    raw = "\nassistant\nParis.\n\n\nExample:\nmore text"
    assert clean_generation(raw, ["\n\n\n"]) == "Paris."
    assert clean_generation("  Rome  ", ["\n\n\n"]) == "Rome"


def test_batched_generation_matches_one_prompt_at_a_time(tiny_lm, samples, tmp_path):
    """Left-padded batches of different prompt lengths give each prompt its own answer, also
    when every other prompt comes from the cache and when a prompt appears twice."""
    shots = [[], samples[:1], samples[:2], samples[1:3]]
    prompts = [tiny_lm.encode(build_prompt(s, x, EvalConfig())) for s in samples[:4] for x in shots]
    assert len({len(p) for p in prompts}) > 4
    alone = generate_answers(tiny_lm, prompts, EvalConfig(max_new_tokens=8, batch_size=1))
    batched = EvalConfig(max_new_tokens=8, batch_size=5)
    assert generate_answers(tiny_lm, prompts, batched) == alone
    assert len(set(alone)) > 1 and all(alone)
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        generate_answers(tiny_lm, prompts[::2], batched, cache)
        steps: list[tuple[int, int]] = []
        mixed = prompts + prompts[:3]
        got = generate_answers(tiny_lm, mixed, batched, cache, lambda _, d, t: steps.append((d, t)))
    assert got == alone + alone[:3]
    assert steps[-1] == (len(mixed), len(mixed))


def test_evaluate_examples_shapes_and_partial_generation(tiny_lm, samples, embedder):
    test = [Item("What is 2 + 2?", "", "4", {"final_answer": "4"}), *samples[:3]]
    config = EvalConfig(shots=2, max_new_tokens=4, generate_limit=2)
    result = evaluate_examples(tiny_lm, embedder, test, samples[3:], config, name="x")
    assert result.shots.shape == (4, 2) and (result.shots >= 0).all()
    assert np.isfinite(result.scores["logprob"]).all()
    assert np.isfinite(result.scores["rouge1"][:2]).all()
    assert np.isnan(result.scores["rouge1"][2:]).all()
    assert np.isfinite(result.scores["exact"][0]) and np.isnan(result.scores["exact"][1])
    assert result.predictions[2:] == ("", "")
    zero = evaluate_examples(tiny_lm, embedder, test, [], config)
    assert (zero.shots == -1).all()
    averaged = average_results([result, zero], "mean")
    np.testing.assert_allclose(
        averaged.scores["logprob"], (result.scores["logprob"] + zero.scores["logprob"]) / 2
    )


# ----------------------------------------------------------------------- whole comparisons


def _pool(n: int) -> list[Item]:
    topics = ["capital", "sum", "miles", "grammar", "python", "river", "colour", "planet"]
    return [
        Item(f"Question {i} about the {topics[i % 8]}?", "", f"Answer {i} on {topics[i % 8]}.")
        for i in range(n)
    ]


def _compare(tiny_lm, embedder, data: StageData, cache=None):
    return compare_methods(
        tiny_lm, embedder, data, ScoringConfig(mode="sparse", k=2),
        EvalConfig(shots=2, max_new_tokens=3, generate_limit=1), budget=0.5, seeds=(0, 1), cache=cache,
        methods=("initial", "random", "delift-se", "fl-only", "delift", "full")
        + (("existing",) if data.stage == "continual" else ()),
    )  # fmt: skip


def test_fixed_seed_reproduces_a_comparison(tiny_lm, embedder, tmp_path):
    pool, test = _pool(10), _pool(14)[10:]
    data = StageData("instruction", pool, test)
    with UtilityCache(tmp_path / "c.duckdb") as cache:
        first = _compare(tiny_lm, embedder, data, cache)
    second = _compare(tiny_lm, embedder, data)  # no cache: everything recomputed
    assert set(first.results) == {
        "initial", "random", "random-s0", "random-s1", "delift-se", "fl-only", "delift", "full"
    }  # fmt: skip
    assert first.budget == 5 and len(first.subsets["delift"]) == 5
    assert len(first.subsets["full"]) == 10
    assert not np.array_equal(first.subsets["random-s0"], first.subsets["random-s1"])
    for label, subset in first.subsets.items():
        np.testing.assert_array_equal(subset, second.subsets[label])
    for label, result in first.results.items():
        for metric, values in result.scores.items():
            np.testing.assert_allclose(values, second.results[label].scores[metric], atol=1e-6)
    summary = summarize_results(first.results, resamples=200)
    assert set(summary["delift"]["logprob"]["vs"]) == {"random", "initial"}
    assert "random" not in summary["random"]["logprob"]["vs"]
    assert summary["initial"]["logprob"]["n"] == 4


def test_continual_examples_include_the_existing_data(tiny_lm, embedder):
    existing, new, test = _pool(4), _pool(12)[4:10], _pool(14)[12:]
    result = _compare(tiny_lm, embedder, StageData("continual", new, test, existing=existing))
    assert "existing" in result.results
    # example indices below len(existing) are existing samples; they are available to all
    assert result.results["existing"].shots.max() < len(existing)
    assert set(result.subsets) >= {"delift", "delift-se", "fl-only"}


def test_task_stage_and_leak_check(tiny_lm, embedder):
    pool, targets, test = _pool(8), _pool(11)[8:], _pool(13)[11:]
    result = _compare(tiny_lm, embedder, StageData("task", pool, test, targets=targets))
    assert len(result.subsets["delift"]) == 4
    with pytest.raises(ConfigError, match="test items also appear"):
        StageData("instruction", pool, [pool[0]])
    with pytest.raises(ConfigError):
        StageData("task", pool, test)


# ----------------------------------------------------------------------------------- the CLI


def _write_jsonl(path, items: list[Item]) -> str:
    lines = [json.dumps({"instruction": i.instruction, "input": i.input, "output": i.output})
             for i in items]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _eval_parser():
    import argparse

    from delift_core.cli.eval import add_parser

    parser = argparse.ArgumentParser(prog="delift")
    add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_eval_runs_and_writes_json(tiny_lm, tmp_path, monkeypatch, capsys):
    from delift_core.cli import scoring
    from delift_core.cli.eval import run as cmd_eval

    monkeypatch.setattr(scoring, "load_causal_lm", lambda name, device: tiny_lm)
    monkeypatch.setattr(scoring, "load_embedder", lambda name, device: HashEmbedder(dim=64))
    monkeypatch.setattr(scoring, "embedder_id", lambda name: HashEmbedder.key)
    pool = _write_jsonl(tmp_path / "pool.jsonl", _pool(8))
    test = _write_jsonl(tmp_path / "test.jsonl", _pool(11)[8:])
    out = tmp_path / "out.json"
    args = _eval_parser().parse_args(
        ["eval", pool, "--test", test, "--mode", "sparse", "--k", "2", "--shots", "2",
         "--max-new-tokens", "3", "--generate", "1", "--seeds", "0,1", "--budget", "0.5",
         "--resamples", "100", "--cache", str(tmp_path / "c.duckdb"), "--out", str(out)]
    )  # fmt: skip
    assert cmd_eval(args) == 0
    printed = capsys.readouterr().out
    assert "stage instruction, budget 4 of 8, 3 test items" in printed
    assert "delift-se" in printed and "log-prob vs random" in printed
    payload = json.loads(out.read_text())
    assert payload["budget"] == 4 and len(payload["subsets"]["delift"]) == 4
    assert set(payload["summary"]["delift"]) == {"logprob", "rouge1", "rougeL", "cosine"}
    assert len(payload["per_item"]["initial"]["logprob"]) == 3


def test_cli_eval_refuses_bad_method_and_leaks(tmp_path):
    from delift_core.cli.eval import run as cmd_eval

    pool = _write_jsonl(tmp_path / "pool.jsonl", _pool(6))
    args = _eval_parser().parse_args(["eval", pool, "--test", pool, "--methods", "existing"])
    with pytest.raises(ConfigError, match="continual"):
        cmd_eval(args)
    args = _eval_parser().parse_args(["eval", pool, "--test", pool, "--methods", "initial"])
    with pytest.raises(ConfigError, match="test items also appear"):
        cmd_eval(args)
