"""Fine-tuning evaluation: the training rows and their labels, the loss, that training learns,
is reproducible for a seed and leaves the base model alone, cancel and progress, saving, the
evaluation's own cache keys, compare_methods under protocol "finetune" and `delift eval
--protocol finetune` end to end. Runs on the tiny random model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from delift_core.cache import UtilityCache
from delift_core.cli import main
from delift_core.config import ScoringConfig
from delift_core.data.dataset import Record, hash_record
from delift_core.errors import CancelledError, ConfigError
from delift_core.evaluation.eval_compare import StageData, compare_methods, summarize_results
from delift_core.evaluation.evaluate import EvalConfig
from delift_core.evaluation.finetune import (
    IGNORE_INDEX,
    FinetuneConfig,
    batch_loss,
    build_batch,
    build_rows,
    epoch_batches,
    evaluate_finetuned,
    finetune,
    finetuned_eval_config,
    micro_batches,
    resolve_target_modules,
    save_adapter,
)
from delift_core.pipeline import Embedder
from delift_core.testing import HashEmbedder, build_tiny_lm

# A learning rate far above the defaults: the tiny random model must visibly learn in a few steps.
FAST = FinetuneConfig(epochs=4, learning_rate=1e-2, lora_rank=4, lora_alpha=8, batch_size=4)


def Item(instruction: str, output: str) -> Record:  # noqa: N802 - reads like the record type
    digest = hash_record(instruction, "", output)
    return Record(digest[:12], instruction, "", output, digest, 0, {})


def _pool(n: int) -> list[Record]:
    topics = ["capital", "sum", "miles", "grammar", "python", "river", "colour", "planet"]
    return [Item(f"Question {i} about the {topics[i % 8]}?", f"Answer {i}.") for i in range(n)]


@pytest.fixture()
def embedder() -> Embedder:
    return Embedder(HashEmbedder(dim=64), HashEmbedder.key)


def _weights(lm) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


# ------------------------------------------------------------------------- config and rows


def test_config_defaults_validation_and_hash():
    config = FinetuneConfig()
    assert (config.method, config.lora_rank, config.lora_alpha, config.epochs) == (
        "lora", 16, 32.0, 3
    )  # fmt: skip
    assert config.lr == 2e-4 and FinetuneConfig(method="full").lr == 5e-5
    assert FinetuneConfig(learning_rate=1e-3).lr == 1e-3
    for bad in (
        {"method": "qlora"}, {"epochs": 0}, {"learning_rate": 0.0}, {"lora_dropout": 1.0},
        {"warmup": 1.0}, {"max_tokens": 4}, {"target_modules": ()}, {"template": "no slot"},
        {"max_batch_tokens": 4},
    ):  # fmt: skip
        with pytest.raises(ConfigError):
            FinetuneConfig(**bad)
    assert config.hash != FinetuneConfig(seed=1).hash
    assert config.hash != FinetuneConfig(max_batch_tokens=2048).hash
    assert config.hash == FinetuneConfig(learning_rate=2e-4).hash  # the same resolved rate
    # LoRA settings do not change full fine-tuning, nor its hash
    assert FinetuneConfig(method="full").hash == FinetuneConfig(method="full", lora_rank=4).hash


def test_rows_label_only_the_answer_and_its_closing_eos(tiny_lm, samples):
    config = FinetuneConfig()
    rows, truncated = build_rows(tiny_lm, samples[:3], config)
    assert truncated == 0
    eos = tiny_lm.eos_id
    for row, record in zip(rows, samples[:3], strict=True):
        prompt, answer = tiny_lm.encode(record.prompt), tiny_lm.encode(record.response)
        assert list(row.ids) == [*prompt, eos, *answer, eos] and row.context == len(prompt)
    batch = build_batch(rows, eos)
    width = max(len(r.ids) for r in rows)
    assert batch.input_ids.shape == batch.labels.shape == (3, width)
    for b, row in enumerate(rows):
        n = len(row.ids)
        labels = batch.labels[b].tolist()
        # context and the separating EOS are never scored, nor is padding
        assert labels[: row.context + 1] == [IGNORE_INDEX] * (row.context + 1)
        assert labels[row.context + 1 : n] == list(row.ids[row.context + 1 :])
        assert labels[n:] == [IGNORE_INDEX] * (width - n)
        assert batch.attention_mask[b].tolist() == [1] * n + [0] * (width - n)


def test_loss_is_the_cross_entropy_of_the_labelled_tokens(tiny_lm, samples):
    batch = build_batch(build_rows(tiny_lm, samples, FinetuneConfig())[0], tiny_lm.eos_id)
    with torch.no_grad():
        ours = batch_loss(tiny_lm.model, batch, tiny_lm.device)
        # transformers shifts the labels itself and ignores -100: the same mean
        reference = tiny_lm.model(input_ids=batch.input_ids, labels=batch.labels).loss
        # a different context token changes the loss only through the context it gives
        changed = build_batch(build_rows(tiny_lm, samples, FinetuneConfig())[0], tiny_lm.eos_id)
        changed.input_ids[0, 0] = (changed.input_ids[0, 0] + 1) % len(tiny_lm.tokenizer)
        assert torch.equal(changed.labels, batch.labels)
    assert float(ours) == pytest.approx(float(reference), rel=1e-5)


def test_long_rows_are_cut_on_the_answer_side_first(tiny_lm):
    long_answer = Item("Add 12 and 30.", " ".join(["The sum of 12 and 30 is 42."] * 20))
    long_prompt = Item(" ".join(["What is the capital of France?"] * 20), "Paris.")
    config = FinetuneConfig(max_tokens=32)
    rows, truncated = build_rows(tiny_lm, [long_answer, long_prompt], config)
    assert truncated == 2 and all(len(r.ids) <= 32 for r in rows)
    prompt = tiny_lm.encode(long_answer.prompt)
    assert rows[0].ids[: len(prompt)] == tuple(prompt)  # the prompt is whole
    assert rows[0].ids[-1] != tiny_lm.eos_id  # a cut answer does not end with EOS
    answer = [*tiny_lm.encode(long_prompt.response), tiny_lm.eos_id]
    assert list(rows[1].ids[-len(answer) :]) == answer  # the answer is whole, the prompt cut


def test_epoch_batches_cover_every_row_once_in_similar_lengths():
    lengths = list(np.random.default_rng(5).integers(5, 500, size=50))
    batches = epoch_batches(lengths, 4, np.random.default_rng(0))
    assert sorted(i for b in batches for i in b) == list(range(50))
    assert all(1 <= len(b) <= 4 for b in batches) and len(batches) == 13
    assert batches == epoch_batches(lengths, 4, np.random.default_rng(0))
    assert batches != epoch_batches(lengths, 4, np.random.default_rng(1))
    # padding: far below what random batches of 4 would waste
    waste = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    assert waste < 0.25 * sum(lengths)


def test_micro_batches_stay_within_the_token_limit_in_order():
    assert micro_batches([10, 20, 30, 600, 700], 1024) == [[0, 1, 2], [3], [4]]
    assert micro_batches([100] * 8, 512) == [[0, 1, 2, 3, 4], [5, 6, 7]]
    assert micro_batches([2000], 1024) == [[0]]  # a row longer than the limit goes alone
    lengths = list(np.random.default_rng(3).integers(5, 300, size=40))
    runs = micro_batches(lengths, 600)
    assert [i for run in runs for i in run] == list(range(40))
    assert all(len(run) == 1 or len(run) * max(lengths[i] for i in run) <= 600 for run in runs)


def test_micro_batches_train_like_one_pass_per_batch(tiny_lm, samples):
    """Splitting a step's batch changes the memory it takes, not the gradient: full
    fine-tuning (no dropout anywhere) gives the same losses and weights either way."""
    config = FinetuneConfig(method="full", epochs=2, learning_rate=3e-3, batch_size=4)
    whole = finetune(tiny_lm, samples, replace(config, max_batch_tokens=100_000))
    split = finetune(tiny_lm, samples, replace(config, max_batch_tokens=8))  # one row per pass
    lengths = [len(r.ids) for r in build_rows(tiny_lm, samples, config)[0]]
    assert min(lengths) > 4 and len(samples) > config.batch_size  # every row in a pass alone
    np.testing.assert_allclose(split.losses, whole.losses, rtol=1e-5)
    assert split.tokens == whole.tokens == sum(lengths) * 2
    a, b = _weights(whole.lm), _weights(split.lm)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_target_modules_resolve_to_what_the_model_has(tiny_lm):
    assert resolve_target_modules(tiny_lm.model, ("q_proj", "c_attn", "down_proj")) == [
        "q_proj", "down_proj"
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="linear layers are"):
        resolve_target_modules(tiny_lm.model, ("c_attn",))


# ---------------------------------------------------------------------------------- training


@pytest.mark.parametrize("method", ["lora", "full"])
def test_training_learns_and_leaves_the_base_model_alone(tiny_lm, samples, method):
    before = _weights(tiny_lm)
    config = FinetuneConfig(
        method=method, epochs=4, learning_rate=1e-2 if method == "lora" else 3e-3, batch_size=4,
        lora_rank=4, lora_alpha=8,
    )  # fmt: skip
    result = finetune(tiny_lm, samples, config)
    assert len(result.losses) == 4 * 2 and result.steps_per_epoch == 2
    assert result.epoch_losses[-1] < 0.8 * result.epoch_losses[0]
    assert result.tokens > 0 and result.tokens_per_second > 0
    assert (result.adapter is not None) == (method == "lora")
    after = _weights(tiny_lm)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert result.lm.model is not tiny_lm.model
    assert result.lm.model_id.startswith(tiny_lm.model_id + ":ft-")
    assert not any(p.requires_grad for p in result.lm.model.parameters())
    trained = _weights(result.lm)
    assert any(not torch.equal(before[k], trained[k]) for k in before)


def test_same_seed_same_losses_and_scores_other_seed_differs(tiny_lm, samples, embedder):
    train, test = samples[:5], samples[5:]
    eval_config = EvalConfig(max_new_tokens=3, generate_limit=1)
    first = finetune(tiny_lm, train, FAST)
    assert finetune(tiny_lm, train, FAST).losses == first.losses
    assert finetune(tiny_lm, train, replace(FAST, seed=1)).losses != first.losses
    scores = [
        evaluate_finetuned(tiny_lm, train, test, FAST, eval_config, embedder=embedder)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(scores[0].scores["logprob"], scores[1].scores["logprob"])
    assert scores[0].predictions == scores[1].predictions
    assert np.isfinite(scores[0].scores["rougeL"][0]) and np.isnan(scores[0].scores["rougeL"][1])


def test_cancel_and_progress(tiny_lm, samples):
    seen = []
    result = finetune(tiny_lm, samples, FAST, on_progress=seen.append)
    assert [p.done for p in seen] == list(range(1, 9)) and seen[-1].total == 8
    assert seen[-1].eta_s == 0 and len(result.losses) == 8
    calls = []

    def cancel_on_third() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(CancelledError):
        finetune(tiny_lm, samples, FAST, should_cancel=cancel_on_third)
    with pytest.raises(ConfigError, match="empty"):
        finetune(tiny_lm, [], FAST)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls a deprecated transformers API
def test_save_adapter_writes_only_when_called(tiny_lm, samples, tmp_path, monkeypatch):
    from peft import PeftModel

    monkeypatch.chdir(tmp_path)
    result = finetune(tiny_lm, samples[:4], FAST)
    assert list(tmp_path.iterdir()) == []
    folder = save_adapter(result, tmp_path / "adapter")
    names = {p.name for p in folder.iterdir()}
    assert names == {"adapter_model.safetensors", "adapter_config.json", "finetune.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no temporary folder left
    # the adapter loads with peft on the base model and gives the fine-tuned model's logits
    base = build_tiny_lm()
    loaded = PeftModel.from_pretrained(base.model, str(folder)).merge_and_unload()
    ids = torch.tensor([tiny_lm.encode(samples[0].prompt)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, result.lm.model(ids).logits)
    with pytest.raises(ConfigError, match="not empty"):
        save_adapter(result, folder)
    full = finetune(tiny_lm, samples[:2], FinetuneConfig(method="full", epochs=1))
    saved = save_adapter(full, tmp_path / "full")
    assert {"config.json", "model.safetensors", "finetune.json"} <= {
        p.name for p in saved.iterdir()
    }
    manifest = json.loads((saved / "finetune.json").read_text())
    assert manifest["config"]["method"] == "full" and manifest["model_id"] == full.lm.model_id


# ------------------------------------------------------------------------------- evaluation


def test_finetuned_scores_have_their_own_cache_keys(
    tiny_lm, samples, embedder, tmp_path, monkeypatch
):
    import delift_core.evaluation.finetune as ft
    from delift_core.evaluation.evaluate import evaluate_examples

    train, test = samples[:4], samples[4:]
    eval_config = EvalConfig(max_new_tokens=3, generate_limit=2)

    with UtilityCache(tmp_path / "c.duckdb") as cache:
        base = evaluate_examples(
            tiny_lm, embedder, test, [], finetuned_eval_config(eval_config, FAST), cache=cache
        )
        tuned = evaluate_finetuned(
            tiny_lm, train, test, FAST, eval_config, embedder=embedder, cache=cache
        )
        assert not np.allclose(base.scores["logprob"], tuned.scores["logprob"])
        assert tuned.shots.shape == (len(test), 0)  # no in-context examples

        def refuse(*args, **kwargs):
            raise AssertionError("every score is cached: no training expected")

        with monkeypatch.context() as patch:
            patch.setattr(ft, "finetune", refuse)
            again = evaluate_finetuned(
                tiny_lm, train, test, FAST, eval_config, embedder=embedder, cache=cache
            )
        np.testing.assert_array_equal(again.scores["logprob"], tuned.scores["logprob"])
        assert again.predictions == tuned.predictions
        # a longer generation is not cached: the model is trained again, then evaluated
        seen = []
        longer = EvalConfig(max_new_tokens=4, generate_limit=2)
        evaluate_finetuned(
            tiny_lm, train, test, FAST, longer, embedder=embedder, cache=cache,
            on_trained=seen.append,
        )  # fmt: skip
        assert len(seen) == 1


def test_compare_methods_under_the_finetune_protocol(tiny_lm, embedder):
    pool, test = _pool(8), _pool(11)[8:]
    config = FinetuneConfig(epochs=1, learning_rate=1e-2, lora_rank=4, lora_alpha=8)
    trained: list[str] = []
    result = compare_methods(
        tiny_lm, embedder, StageData("instruction", pool, test), ScoringConfig(mode="sparse", k=2),
        EvalConfig(max_new_tokens=3, generate_limit=1), budget=0.5, seeds=(0, 1),
        methods=("initial", "random", "delift"), protocol="finetune", finetune=config,
        train_seeds=(0, 1), on_trained=lambda label, _: trained.append(label),
    )  # fmt: skip
    assert set(result.results) == {
        "initial", "random", "random-s0", "random-s1", "delift", "delift-t0", "delift-t1"
    }  # fmt: skip
    assert trained == ["random-s0", "random-s1", "delift-t0", "delift-t1"]
    mean = (result.results["delift-t0"].scores["logprob"] + result.results["delift-t1"].scores[
        "logprob"]) / 2  # fmt: skip
    np.testing.assert_allclose(result.results["delift"].scores["logprob"], mean)
    summary = summarize_results(result.results, resamples=100)
    assert set(summary["delift"]["logprob"]["vs"]) == {"random", "initial"}
    with pytest.raises(ConfigError, match="protocol"):
        compare_methods(
            tiny_lm, embedder, StageData("instruction", pool, test), ScoringConfig(),
            EvalConfig(), methods=("initial",), protocol="sft",
        )  # fmt: skip


# ---------------------------------------------------------------------------------- the CLI


def _write(path: Path, items: list[Record]) -> str:
    path.write_text("".join(json.dumps({"instruction": i.instruction, "output": i.output}) + "\n"
                            for i in items))  # fmt: skip
    return str(path)


def test_cli_eval_finetune_end_to_end(tmp_path, tiny_model_dir, capsys, monkeypatch):
    from delift_core.cli import scoring

    monkeypatch.setattr(scoring, "load_embedder", lambda name, device: HashEmbedder(dim=64))
    monkeypatch.setattr(scoring, "embedder_id", lambda name: HashEmbedder.key)
    pool = _write(tmp_path / "pool.jsonl", _pool(6))
    test = _write(tmp_path / "test.jsonl", _pool(9)[6:])
    common = [
        "eval", pool, "--test", test, "--model", str(tiny_model_dir), "--protocol", "finetune",
        "--epochs", "1", "--learning-rate", "0.01", "--lora-rank", "4", "--max-new-tokens", "3",
        "--generate", "1", "--resamples", "100", "--cache", str(tmp_path / "c.duckdb"),
        "--mode", "sparse", "--k", "2", "--budget", "0.5",
    ]  # fmt: skip
    out = tmp_path / "out.json"
    code = main(
        [*common, "--methods", "initial,random,fl-only", "--seeds", "0,1", "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "fine-tuned (lora, 1 epochs, no examples)" in captured.out
    assert "fl-only" in captured.out and "log-prob vs random" in captured.out
    assert "delift: fine-tuned random-s1 on 3 rows" in captured.err
    payload = json.loads(out.read_text())
    assert payload["protocol"] == "finetune" and payload["finetune"]["lora_alpha"] == 8.0
    assert set(payload["training"]) == {"random-s0", "random-s1", "fl-only"}
    # --save-adapter needs one run: refused before any work, nothing written
    adapter = tmp_path / "adapter"
    code = main([*common, "--methods", "random,fl-only", "--save-adapter", str(adapter)])
    err = capsys.readouterr().err
    assert code == 2 and "--save-adapter needs exactly one" in err and len(err.splitlines()) == 1
    assert not adapter.exists()
    # one run: trained again although its scores are cached, and saved
    code = main([*common, "--methods", "initial,fl-only", "--save-adapter", str(adapter)])
    assert code == 0 and (adapter / "adapter_model.safetensors").is_file()
    assert "delift: fine-tuned fl-only" in capsys.readouterr().err
    # fine-tuning options under the icl protocol are a mistake, said in one line
    code = main(["eval", pool, "--test", test, "--epochs", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--epochs applies only with --protocol finetune" in err


def test_reproduce_renders_a_finetune_stage():
    from bench.reproduce_report import is_run, render_stage

    assert is_run("random-s1") and is_run("delift-q-t0") and not is_run("delift-se")
    entry = {"mean": -2.0, "low": -2.5, "high": -1.5, "n": 40}
    summary = {
        label: {"logprob": entry | {"vs": {"random": entry}}}
        for label in ("initial", "random", "random-s0", "delift-q", "full")
    }
    losses = {"epoch_losses": [2.5, 1.75]}
    record = {
        "protocol": "finetune", "summary": summary,
        "sizes": {"initial": 0, "random": 24, "delift-q": 24, "full": 80},
        "training": {"random-s0": losses, "random-s1": losses, "delift-q": losses},
    }  # fmt: skip
    table = render_stage("task", record)
    assert "| Initial (no fine-tuning) | 0 | - |" in table
    assert "| Random | 24 | 2.50 → 1.75; 2.50 → 1.75 | -2.000 [-2.500, -1.500] |" in table
    assert "| DELIFT-Q | 24 | 2.50 → 1.75 |" in table and "random-s0" not in table
    assert "training rows" in table and "shots used" not in table
