"""In-context evaluation of a training subset (the DELIFT paper's ICL protocol).

For each test item, the `shots` training examples whose prompts are most similar to the test
prompt (sentence-embedding cosine) are put in a few-shot prompt; the model then

- is scored teacher-forced: the mean log-probability per gold-answer token (closing EOS
  included), given that prompt — cheap and low-noise;
- generates greedily (up to `max_new_tokens`), and the answer is scored with ROUGE-1/ROUGE-L,
  embedding cosine similarity and exact match where the task has one (metrics.py).

Every sequence has the layout of the utility engine (docs/design.md §2): `tokens(prompt) + [EOS] +
tokens(" " + answer) + [EOS]`; generation starts after the separating EOS. With no examples the
prompt is the engine's no-example template. Scores and generations are cached by the exact
prompt text, so methods whose subsets give the same prompt share the work and reruns are fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache, read_through
from delift_core.config import NO_EXAMPLE_TEMPLATE
from delift_core.errors import ConfigError
from delift_core.evaluation.metrics import (
    ANSWER_KINDS,
    answer_kind_of,
    cosine_rows,
    gold_answer,
    match_exact,
    score_rouge,
)
from delift_core.models import LanguageModel, embed_texts
from delift_core.pipeline import Embedder
from delift_core.prompts import TextPair, fill_template

log = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = ("logprob", "rouge1", "rougeL", "cosine", "exact")

FEW_SHOT_HEAD = (
    "Instruction:\nUse the following examples as a guide to answer the query in the same format "
    "and style, providing a clear and concise response.\n\n\n"
)
FEW_SHOT_EXAMPLE = "Example:\n{prompt_j}\n{response_j}\n\n\n"
FEW_SHOT_QUERY = "Query:\n{prompt_i}\n"

# Chat-tuned models answer the separating EOS with a role header line; it is not the answer.
_ROLE_HEADERS = frozenset({"assistant", "model", "gpt", "bot"})

# (phase, items done, items in all): the evaluation's steps are items, not forward passes, so
# its callback differs from the scoring engine's `utility.ProgressFn`.
StepProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EvalConfig:
    """How a subset is evaluated.

    shots: examples per prompt (the paper uses 5); shots are dropped, least similar first,
    until the prompt has at most max_prompt_tokens tokens. max_answer_tokens: gold-answer
    tokens scored teacher-forced. generate_limit: generate only for the first N test items
    (None: all; 0: none); generation metrics are NaN beyond. stop: generation is cut at the
    first of these strings. answer_kind: exact-match rule, 'auto' decides per item.
    """

    shots: int = 5
    max_new_tokens: int = 128
    max_prompt_tokens: int = 2048
    max_answer_tokens: int = 512
    generate_limit: int | None = None
    stop: tuple[str, ...] = ("\n\n\n",)
    answer_kind: str = "auto"
    batch_size: int = 8
    max_batch_tokens: int = 8192
    no_example: str = NO_EXAMPLE_TEMPLATE
    head: str = FEW_SHOT_HEAD
    example: str = FEW_SHOT_EXAMPLE
    query: str = FEW_SHOT_QUERY

    def __post_init__(self) -> None:
        if self.shots < 0:
            raise ConfigError(f"shots must be 0 or more; got {self.shots}")
        for name in ("max_new_tokens", "max_prompt_tokens", "max_answer_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.generate_limit is not None and self.generate_limit < 0:
            raise ConfigError(f"generate_limit must be 0 or more; got {self.generate_limit}")
        if self.answer_kind not in ANSWER_KINDS:
            raise ConfigError(f"answer_kind must be one of {', '.join(ANSWER_KINDS)}")
        if "{prompt_i}" not in self.no_example or "{prompt_i}" not in self.query:
            raise ConfigError("the no-example and query templates must contain {prompt_i}")
        if "{prompt_j}" not in self.example or "{response_j}" not in self.example:
            raise ConfigError("the example template must contain {prompt_j} and {response_j}")

    @property
    def hash(self) -> str:
        """Content hash of what determines a prompt's scores (part of cache keys)."""
        blob = json.dumps(
            [self.max_new_tokens, self.max_answer_tokens, list(self.stop)], ensure_ascii=False
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EvalResult:
    """Per-item scores of one example set on m test items.

    scores: METRIC_NAMES -> (m,) float64; NaN where not measured (no generation, no exact
    answer). shots: (m, config.shots) int64 example indices used in each prompt, most similar
    first, -1 where fewer fit. predictions: the generated answers ("" where not generated).
    """

    name: str
    scores: dict[str, np.ndarray]
    shots: np.ndarray
    predictions: tuple[str, ...] = field(default=())


def build_prompt(query: TextPair, shots: Sequence[TextPair], config: EvalConfig) -> str:
    """The few-shot prompt text; `shots` most similar first, placed so that the most similar
    example stands next to the query. No shots: the engine's no-example template."""
    if not shots:
        return fill_template(config.no_example, prompt_i=query.prompt)
    blocks = [
        fill_template(config.example, prompt_j=s.prompt, response_j=s.response)
        for s in reversed(shots)
    ]
    return config.head + "".join(blocks) + fill_template(config.query, prompt_i=query.prompt)


def retrieve_examples(query_emb: np.ndarray, example_emb: np.ndarray, k: int) -> np.ndarray:
    """Indices (m, min(k, n)) int64 of the k examples most similar to each query, best first.

    query_emb (m, d) and example_emb (n, d) are unit-norm; ties go to the lower index.
    """
    if query_emb.ndim != 2 or example_emb.ndim != 2 or query_emb.shape[1] != example_emb.shape[1]:
        raise ConfigError(
            f"embeddings must be (m, d) and (n, d); got {query_emb.shape}, {example_emb.shape}"
        )
    k = min(k, example_emb.shape[0])
    if k == 0:
        return np.zeros((query_emb.shape[0], 0), dtype=np.int64)
    sims = query_emb.astype(np.float32) @ example_emb.astype(np.float32).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k].astype(np.int64)


def embed_prompts(
    records: Sequence[TextPair], embedder: Embedder, cache: UtilityCache | None = None
) -> np.ndarray:
    """Unit-norm sentence embeddings (n, d) float32 of the records' prompts (no answers: a test
    item's answer is unknown at retrieval time), cached under the embedder and prompt hashes."""
    texts = [r.prompt for r in records]
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
    return read_through(
        cache,
        "embedding",
        ("prompt", embedder.key, digest),
        lambda: embed_texts(embedder.model, texts),
        meta={"n": len(records), "embedder": embedder.key},
        valid=lambda stored: stored.shape[0] == len(records),
    )


def fit_prompt(
    lm: LanguageModel,
    query: TextPair,
    examples: Sequence[TextPair],
    ranked: Sequence[int],
    config: EvalConfig,
) -> tuple[list[int], list[int]]:
    """(prompt token ids, shots used) with the most similar `ranked` examples that fit."""
    used = [int(j) for j in ranked if j >= 0][: config.shots]
    while True:
        ids = lm.encode(build_prompt(query, [examples[j] for j in used], config))
        if len(ids) <= config.max_prompt_tokens or not used:
            return ids, used
        used = used[:-1]


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def score_answers(
    lm: LanguageModel,
    prompts: Sequence[list[int]],
    answers: Sequence[str],
    config: EvalConfig,
    cache: UtilityCache | None = None,
    on_progress: StepProgressFn | None = None,
) -> np.ndarray:
    """Teacher-forced mean log-probability per gold token, (m,) float64.

    prompts[i]: prompt token ids; answers[i]: the gold output (scored as " " + output, at most
    max_answer_tokens tokens, plus the closing EOS).
    """
    # Imported here: batching imports torch, which `delift --help` and the parsers do not need.
    from delift_core.batching import score_row_batches

    eos = lm.eos_id
    out = np.full(len(prompts), np.nan)
    keys = [
        _key("tf", lm.model_id, config.hash, p, a) for p, a in zip(prompts, answers, strict=True)
    ]
    todo = []
    for i, key in enumerate(keys):
        stored = cache.get_array("eval-logprob", key) if cache is not None else None
        if stored is not None:
            out[i] = stored[0] / stored[1]
        else:
            todo.append(i)
    rows = []
    for i in todo:
        answer = lm.encode(" " + answers[i])[: config.max_answer_tokens]
        rows.append(prompts[i] + [eos] + answer + [eos])
    done = len(prompts) - len(todo)
    for batch, scores in score_row_batches(
        lm, rows, [len(prompts[i]) for i in todo], config.batch_size, config.max_batch_tokens
    ):
        idx = [todo[b] for b in batch]
        for b, i, logp in zip(batch, idx, scores.logp, strict=True):
            count = len(rows[b]) - len(prompts[i]) - 1  # answer tokens + closing EOS
            out[i] = logp / count
            if cache is not None:
                cache.put_array("eval-logprob", keys[i], np.array([logp, count], dtype=np.float64))
        done += len(batch)
        if on_progress is not None:
            on_progress("teacher-forced", done, len(prompts))
    return out


def clean_generation(text: str, stop: Sequence[str]) -> str:
    """Drop a leading role header line ("assistant"), cut at the first stop string, strip."""
    text = text.lstrip()
    first, sep, rest = text.partition("\n")
    if sep and first.strip().lower() in _ROLE_HEADERS:
        text = rest
    for marker in stop:
        if marker:
            text = text.split(marker, 1)[0]
    return text.strip()


def generate_answers(
    lm: LanguageModel,
    prompts: Sequence[list[int]],
    config: EvalConfig,
    cache: UtilityCache | None = None,
    on_progress: StepProgressFn | None = None,
) -> list[str]:
    """Greedy answers, one per prompt (prompt ids + [EOS], then up to max_new_tokens).

    Prompts not in the cache are generated once each (duplicates share the answer), in batches
    of similar length (config.batch_size rows, config.max_batch_tokens tokens), left-padded: a
    decoding step of one row is mostly per-step overhead, so batches of 8 are 2-3 times as
    fast on a 2-core CPU (bench/generation.py). In fp32 each answer is the one its prompt gets
    alone (tests/test_evaluate.py); in bf16 (GPUs) padding can change a near-tied token.
    """
    # Imported here: scoring imports torch, which `delift --help` and the parsers do not need.
    from delift_core.scoring import plan_batches

    keys = [_key("gen", lm.model_id, config.hash, ids) for ids in prompts]
    answers: dict[str, str] = {}  # key -> answer, from the cache or generated here
    if cache is not None:
        for key in dict.fromkeys(keys):
            meta = cache.get_meta("eval-generation", key)
            if meta is not None:
                answers[key] = str(meta["text"])
    first: dict[str, int] = {}  # key -> its first prompt index, for the keys still to generate
    for i, key in enumerate(keys):
        if key not in answers:
            first.setdefault(key, i)
    todo = list(first.values())
    done = len(prompts) - len(todo)
    widths = [len(prompts[i]) + 1 + config.max_new_tokens for i in todo]
    for batch in plan_batches(widths, config.batch_size, config.max_batch_tokens):
        idx = [todo[b] for b in batch]
        for i, text in zip(
            idx, _generate_batch(lm, [prompts[i] for i in idx], config), strict=True
        ):
            answers[keys[i]] = text
            if cache is not None:
                cache.put_array("eval-generation", keys[i], np.zeros(0), {"text": text})
        done += len(idx)
        if on_progress is not None:
            on_progress("generation", done, len(prompts))
    if on_progress is not None and not todo and prompts:
        on_progress("generation", len(prompts), len(prompts))
    return [answers[key] for key in keys]


def _generate_batch(
    lm: LanguageModel, prompts: Sequence[list[int]], config: EvalConfig
) -> list[str]:
    """Greedy generation for a few prompts at once, left-padded with EOS under a zero mask."""
    import torch
    from transformers import GenerationConfig

    eos = lm.eos_id
    stop = [s for s in config.stop if s]
    generation = GenerationConfig(
        max_new_tokens=config.max_new_tokens, do_sample=False,
        eos_token_id=eos, pad_token_id=eos, stop_strings=stop or None,
    )  # fmt: skip
    extra: dict[str, Any] = {"tokenizer": lm.tokenizer} if stop else {}
    rows = [list(ids) + [eos] for ids in prompts]
    width = max(len(row) for row in rows)
    tokens = torch.full((len(rows), width), eos, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        tokens[r, width - len(row) :] = torch.tensor(row)
        mask[r, width - len(row) :] = 1
    with torch.inference_mode():
        out = lm.model.generate(
            input_ids=tokens.to(lm.device), attention_mask=mask.to(lm.device),
            generation_config=generation, **extra,
        )  # fmt: skip
    return [
        clean_generation(lm.tokenizer.decode(out[r, width:], skip_special_tokens=True), stop)
        for r in range(len(rows))
    ]


def evaluate_examples(
    lm: LanguageModel,
    embedder: Embedder,
    test: Sequence[TextPair],
    examples: Sequence[TextPair],
    config: EvalConfig,
    *,
    name: str = "",
    example_embeddings: np.ndarray | None = None,
    test_embeddings: np.ndarray | None = None,
    cache: UtilityCache | None = None,
    on_progress: StepProgressFn | None = None,
) -> EvalResult:
    """Evaluate one example set (e.g. a selected subset) on the test items.

    example_embeddings (n, d) / test_embeddings (m, d): prompt embeddings when already known
    (embed_prompts); computed otherwise. An empty example set gives zero-shot prompts.
    """
    if not test:
        raise ConfigError("the test set is empty")
    m = len(test)
    if examples and config.shots:
        q = test_embeddings if test_embeddings is not None else embed_prompts(test, embedder, cache)
        e = example_embeddings
        if e is None:
            e = embed_prompts(examples, embedder, cache)
        if e.shape[0] != len(examples) or q.shape[0] != m:
            raise ConfigError("the embeddings do not match the example or test sets")
        ranked = retrieve_examples(q, e, config.shots)
    else:
        ranked = np.zeros((m, 0), dtype=np.int64)
    prompts, shots = [], np.full((m, config.shots), -1, dtype=np.int64)
    for i, item in enumerate(test):
        ids, used = fit_prompt(lm, item, examples, ranked[i], config)
        prompts.append(ids)
        shots[i, : len(used)] = used
    outputs = [t.output for t in test]  # type: ignore[attr-defined]
    scores = {name_: np.full(m, np.nan) for name_ in METRIC_NAMES}
    scores["logprob"] = score_answers(lm, prompts, outputs, config, cache, on_progress)
    n_gen = m if config.generate_limit is None else min(m, config.generate_limit)
    predictions = [""] * m
    if n_gen:
        predictions[:n_gen] = generate_answers(lm, prompts[:n_gen], config, cache, on_progress)
        for i in range(n_gen):
            r1, rl = score_rouge(predictions[i], outputs[i])
            scores["rouge1"][i], scores["rougeL"][i] = r1, rl
            kind = answer_kind_of(test[i]) if config.answer_kind == "auto" else config.answer_kind
            scores["exact"][i] = match_exact(predictions[i], gold_answer(test[i], kind), kind)
        pred_emb = embed_texts(embedder.model, predictions[:n_gen])
        gold_emb = embed_texts(embedder.model, outputs[:n_gen])
        cosine = cosine_rows(pred_emb, gold_emb)
        empty = np.array([not p.strip() for p in predictions[:n_gen]])
        scores["cosine"][:n_gen] = np.where(empty, 0.0, cosine)
    log.info("evaluated %s: %d items, %d generated", name or "examples", m, n_gen)
    return EvalResult(name, scores, shots, tuple(predictions))


def average_results(results: Sequence[EvalResult], name: str) -> EvalResult:
    """Per-item mean over runs of the same test items (e.g. random subsets of several seeds).

    Shots and predictions are those of the first run.
    """
    if not results:
        raise ConfigError("nothing to average")
    scores = {}
    for metric in METRIC_NAMES:
        stacked = np.stack([r.scores[metric] for r in results])
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(stacked)
            total = np.where(finite, stacked, 0.0).sum(axis=0)
            count = finite.sum(axis=0)
            scores[metric] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return EvalResult(name, scores, results[0].shots, results[0].predictions)
