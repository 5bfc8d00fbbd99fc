"""Fine-tune a causal LM on a subset (LoRA or full weights), for the fine-tuning evaluation protocol.

A training row has the engine's layout (docs/design.md §2): `tokens(context) + [EOS] +
tokens(response) + [EOS]`, where the context is `config.template` filled with the record's prompt
(by default the prompt itself). The loss is the mean cross-entropy over the response tokens and
the closing EOS of the batch; context, separator and padding carry the label -100. The loop is
plain PyTorch (AdamW, linear warm-up and decay, gradient clipping) rather than the HF Trainer,
so that progress, cancelling between steps and determinism stay in our hands: for a fixed seed
the LoRA initialisation, the dropout masks and the order of the rows are the same on every run.

The given model is never changed: training works on a deep copy, and LoRA adapters are merged
into that copy at the end, so the fine-tuned model runs as fast as the base one in evaluation.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from delift_core.cache import UtilityCache
from delift_core.errors import CancelledError, ConfigError
from delift_core.evaluation.evaluate import EvalConfig, EvalResult, evaluate_examples
from delift_core.evaluation.finetune_types import (
    DEFAULT_LEARNING_RATES,
    DEFAULT_TARGET_MODULES,
    FINETUNE_METHODS,
    IGNORE_INDEX,
    FinetuneConfig,
    FinetuneResult,
    TrainBatch,
    TrainRow,
    build_batch,
    epoch_batches,
    finetuned_model_id,
    micro_batches,
    subset_hash,
)
from delift_core.models import LanguageModel
from delift_core.pipeline import Embedder
from delift_core.prompts import TextPair, fill_template
from delift_core.utility import CancelFn, Progress, ProgressFn

__all__ = [
    "DEFAULT_LEARNING_RATES", "DEFAULT_TARGET_MODULES", "FINETUNE_METHODS", "IGNORE_INDEX",
    "FinetuneConfig", "FinetuneResult", "TrainBatch", "TrainRow", "batch_loss", "build_batch",
    "build_rows", "epoch_batches", "evaluate_finetuned", "finetune", "finetuned_eval_config",
    "finetuned_model_id", "micro_batches", "resolve_target_modules", "save_adapter", "subset_hash",
]  # fmt: skip

log = logging.getLogger(__name__)

# Read once at import: reading the umask means setting it, which is not thread-safe later.
_UMASK = os.umask(0)
os.umask(_UMASK)


def build_rows(
    lm: LanguageModel, records: Sequence[TextPair], config: FinetuneConfig
) -> tuple[list[TrainRow], int]:
    """Tokenised training rows and how many of them were cut to config.max_tokens.

    The answer side is cut first; a context so long that less than a quarter of the row (or
    the whole answer, if shorter) would remain for the answer loses its oldest tokens instead,
    so that every row keeps something to learn from.
    """
    eos, limit = lm.eos_id, config.max_tokens
    rows, truncated = [], 0
    for record in records:
        context = lm.encode(fill_template(config.template, prompt_i=record.prompt))
        answer = [*lm.encode(record.response), eos]
        if len(context) + 1 + len(answer) > limit:
            truncated += 1
            keep = max(limit - 1 - len(context), min(len(answer), limit // 4))
            # A cut answer gets no closing EOS: the model must not learn to stop mid-answer.
            answer = answer[:keep]
            context = context[len(context) - (limit - 1 - keep) :]
        rows.append(TrainRow((*context, eos, *answer), len(context)))
    return rows, truncated


def resolve_target_modules(model: Any, names: Sequence[str]) -> list[str]:
    """The names of `names` that are linear layers of `model`, in the order given."""
    import torch

    linear = {
        full.rsplit(".", 1)[-1]
        for full, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    found = [n for n in names if n in linear]
    if not found:
        raise ConfigError(
            f"none of the LoRA target modules {', '.join(names)} is a linear layer of this model;"
            f" its linear layers are: {', '.join(sorted(linear)) or 'none'}"
        )
    return found


def batch_loss(model: Any, batch: TrainBatch, device: str, reduction: str = "mean") -> Any:
    """Cross-entropy over the scored positions of a batch (a 0-dim tensor): their mean, or with
    reduction="sum" their sum (micro-batches of one step add up, then divide once).

    Hidden states are projected to the vocabulary only where a label is scored: at 49k tokens
    of vocabulary the full logits of a batch would dwarf the rest of the activations.
    """
    import torch

    ids = batch.input_ids.to(device)
    # Rows are right-padded and attention is causal, so no real token attends to padding; the
    # mask is left out because it would force a slower attention path.
    hidden = model.get_decoder()(input_ids=ids).last_hidden_state
    labels = batch.labels[:, 1:].to(device)
    scored = labels != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][scored]).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.nn.functional.cross_entropy(logits, labels[scored], reduction=reduction)


def _step_loss(
    causal: Any, rows: Sequence[TrainRow], config: FinetuneConfig, pad_id: int, device: str
) -> tuple[float, int]:
    """Forward and backward of one optimizer step's rows, in micro-batches of at most
    config.max_batch_tokens padded tokens; gradients accumulate to those of the mean loss over
    every scored token of the step. Returns (that mean loss, real tokens)."""
    scored = sum(len(r.ids) - r.context - 1 for r in rows)
    total, tokens = 0.0, 0
    for run in micro_batches([len(r.ids) for r in rows], config.max_batch_tokens):
        batch = build_batch([rows[i] for i in run], pad_id)
        loss = batch_loss(causal, batch, device, reduction="sum") / scored
        loss.backward()
        total += float(loss.detach())
        tokens += int(batch.attention_mask.sum())
        del batch, loss  # free this micro-batch's activations before the next one
    return total, tokens


def _prepare(lm: LanguageModel, config: FinetuneConfig) -> tuple[Any, Any, list[Any]]:
    """(module to train, causal LM inside it, trainable parameters) on a deep copy of lm."""
    model = copy.deepcopy(lm.model)
    if config.method == "full":
        # fp32 weights for the optimizer: in bf16 (GPUs) most small updates would round away.
        model.float()
        params = list(model.parameters())
        for p in params:
            p.requires_grad_(True)
        return model, model, params
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=resolve_target_modules(model, config.target_modules), bias="none",
        task_type="CAUSAL_LM",
    )  # fmt: skip
    with warnings.catch_warnings():
        # peft calls a transformers property that is deprecated (FutureWarning); harmless.
        warnings.simplefilter("ignore", FutureWarning)
        wrapped = get_peft_model(model, lora)
    # Informational in the saved adapter_config.json; peft sets it from the model's own path.
    wrapped.peft_config["default"].base_model_name_or_path = lm.model_id
    params = [p for p in wrapped.parameters() if p.requires_grad]
    return wrapped, wrapped.get_base_model(), params


def _linear_schedule(total: int, warmup: float) -> Any:
    warm = int(round(total * warmup))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        return max(0.0, (total - step) / max(1, total - warm))

    return factor


def _rng_devices(device: str) -> list[int]:
    import torch

    if device.startswith("cuda"):
        return [torch.device(device).index or torch.cuda.current_device()]
    return []


def finetune(
    lm: LanguageModel,
    records: Sequence[TextPair],
    config: FinetuneConfig,
    *,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of lm on records; lm itself is left as it was.

    on_progress gets Progress(done steps, total steps, 0, elapsed, eta) after every optimizer
    step; should_cancel is checked before each step and raises CancelledError when true.
    """
    import torch

    if not records:
        raise ConfigError("nothing to fine-tune on: the training set is empty")
    rows, truncated = build_rows(lm, records, config)
    n, size = len(rows), config.batch_size
    per_epoch = math.ceil(n / size)
    total = config.epochs * per_epoch
    losses: list[float] = []
    step_seconds: list[float] = []
    tokens, train_seconds = 0, 0.0
    start = time.perf_counter()
    # A private RNG stream: the same seed gives the same LoRA init and dropout masks, and the
    # caller's global RNG state is left as it was.
    with torch.random.fork_rng(devices=_rng_devices(lm.device)), torch.enable_grad():
        torch.manual_seed(config.seed)
        trained, causal, params = _prepare(lm, config)
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _linear_schedule(total, config.warmup)
        )
        order = np.random.default_rng(config.seed)
        lengths = [len(r.ids) for r in rows]
        trained.train()
        for _ in range(config.epochs):
            for chosen in epoch_batches(lengths, size, order):
                if should_cancel is not None and should_cancel():
                    raise CancelledError("fine-tuning was cancelled; nothing was saved")
                t0 = time.perf_counter()
                loss, seen = _step_loss(
                    causal, [rows[i] for i in chosen], config, lm.eos_id, lm.device
                )
                t1 = time.perf_counter()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss)
                step_seconds.append(time.perf_counter() - t0)
                tokens += seen
                train_seconds += t1 - t0
                if on_progress is not None:
                    elapsed = time.perf_counter() - start
                    done = len(losses)
                    eta = elapsed / done * (total - done)
                    on_progress(Progress(done, total, 0, elapsed, eta))
        trained.eval()
        adapter, adapter_config, final = None, None, trained
        if config.method == "lora":
            from peft import get_peft_model_state_dict

            # Embeddings are never adapted; "auto" would look the base model up on the Hub.
            adapter = {
                k: v.detach().to("cpu", copy=True)
                for k, v in get_peft_model_state_dict(trained, save_embedding_layers=False).items()
            }
            adapter_config = trained.peft_config["default"]
            final = trained.merge_and_unload()
    final.to(dtype=getattr(torch, lm.dtype))  # back to the base model's dtype (no-op on CPU)
    for p in final.parameters():
        p.requires_grad_(False)
    model_id = finetuned_model_id(lm.model_id, records, config)
    log.info(
        "fine-tuned %s (%s) on %d rows: %d steps, loss %.3f -> %.3f, %.0f tokens/s",
        lm.model_id, config.method, n, total, losses[0], losses[-1],
        tokens / train_seconds if train_seconds else 0.0,
    )  # fmt: skip
    return FinetuneResult(
        LanguageModel(final, lm.tokenizer, model_id, lm.device, lm.dtype),
        config, tuple(losses), tuple(step_seconds), per_epoch, tokens, train_seconds, n,
        truncated, adapter, adapter_config,
    )  # fmt: skip


def save_adapter(result: FinetuneResult, folder: str | os.PathLike) -> Path:
    """Write the LoRA adapter (adapter_model.safetensors, adapter_config.json, loadable with
    peft's PeftModel.from_pretrained) or, for full fine-tuning, the whole model and tokenizer
    (a folder `delift --model` can load), plus finetune.json (config, losses, model id).

    The folder appears complete or not at all (written beside it, then renamed). An existing
    non-empty folder is refused.
    """
    target = Path(folder).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} already exists and is not empty; choose a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        if result.adapter is not None:
            from safetensors.torch import save_file

            save_file(result.adapter, str(tmp / "adapter_model.safetensors"), {"format": "pt"})
            result.adapter_config.save_pretrained(str(tmp))
        else:
            result.lm.model.save_pretrained(str(tmp), safe_serialization=True)
            result.lm.tokenizer.save_pretrained(str(tmp))
        manifest = {
            "model_id": result.lm.model_id,
            "config": result.config.as_dict(),
            "rows": result.rows,
            "truncated": result.truncated,
            "losses": list(result.losses),
            "tokens_per_second": result.tokens_per_second,
        }
        (tmp / "finetune.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes an owner-only folder
        if target.exists():
            target.rmdir()  # empty (checked above); rename cannot replace it on every platform
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved the fine-tuned %s to %s", result.config.method, target)
    return target


def finetuned_eval_config(eval_config: EvalConfig, config: FinetuneConfig) -> EvalConfig:
    """The evaluation settings of the fine-tuning protocol: no in-context examples, and the
    test prompt built like a training row's context (config.template), so that the model is
    asked in the format it was trained on. The base model ("initial") is asked the same way."""
    return replace(eval_config, shots=0, no_example=config.template)


class _NotCached(Exception):
    """Evaluation needed a forward pass of a model that has not been trained in this run."""


class _UntrainedModel:
    """Stands in for the fine-tuned weights before training: any use raises _NotCached, so an
    evaluation either finds every score in the cache or nothing is computed with wrong weights."""

    def __getattr__(self, name: str) -> Any:
        raise _NotCached(name)


def evaluate_finetuned(
    lm: LanguageModel,
    records_train: Sequence[TextPair],
    test: Sequence[TextPair],
    config: FinetuneConfig,
    eval_config: EvalConfig,
    *,
    embedder: Embedder,
    name: str = "",
    cache: UtilityCache | None = None,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    on_trained: Callable[[FinetuneResult], None] | None = None,
    retrain: bool = False,
) -> EvalResult:
    """Fine-tune lm on records_train, then evaluate it on test without in-context examples.

    Every test item gets its teacher-forced mean log-probability per answer token; the first
    eval_config.generate_limit items also a greedy answer with ROUGE, cosine and exact match
    (evaluate.evaluate_examples, prompts as finetuned_eval_config). Scores are cached under
    the fine-tuned model's own id (finetuned_model_id), so the base model's scores are never
    reused for it, and a rerun that finds every score in the cache skips training. on_progress
    and should_cancel follow training (finetune); on_trained receives the training result when
    training runs; retrain=True trains even when every score is cached (e.g. to save it).
    """
    settings = finetuned_eval_config(eval_config, config)
    if cache is not None and not retrain:
        model_id = finetuned_model_id(lm.model_id, records_train, config)
        stand_in = LanguageModel(_UntrainedModel(), lm.tokenizer, model_id, lm.device, lm.dtype)
        try:
            result = evaluate_examples(
                stand_in, embedder, test, [], settings, name=name, cache=cache
            )
            log.info("fine-tuned %s: every score came from the cache", name or model_id)
            return result
        except _NotCached:
            pass
    trained = finetune(
        lm, records_train, config, on_progress=on_progress, should_cancel=should_cancel
    )
    if on_trained is not None:
        on_trained(trained)
    return evaluate_examples(trained.lm, embedder, test, [], settings, name=name, cache=cache)
