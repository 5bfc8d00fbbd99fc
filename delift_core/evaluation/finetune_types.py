"""What fine-tuning takes and gives: `FinetuneConfig` (validated on construction, hashed for
cache keys), the tokenised rows, how they are ordered and cut into (micro-)batches and padded,
and `FinetuneResult` (the fine-tuned model and its training curve). The training itself is in
finetune.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from delift_core.errors import ConfigError
from delift_core.models import LanguageModel
from delift_core.prompts import TextPair

FINETUNE_METHODS: tuple[str, ...] = ("lora", "full")
# Attention and MLP projections of Llama-style models (Llama, SmolLM2, Qwen2, Mistral, Gemma).
DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
)  # fmt: skip
DEFAULT_LEARNING_RATES: dict[str, float] = {"lora": 2e-4, "full": 5e-5}
IGNORE_INDEX = -100
# Bumped when the training recipe changes in a way the config does not show (cache keys).
# 2: batches above max_batch_tokens are split into micro-batches (gradient accumulation).
_RECIPE_VERSION = 2


@dataclass(frozen=True)
class FinetuneConfig:
    """How a subset is fine-tuned.

    Defaults suit SmolLM2-135M on a CPU with a few hundred rows: LoRA r=16, alpha=32 (scale 2)
    on every attention and MLP projection, dropout 0.05; learning rate 2e-4 for LoRA and 5e-5
    for full fine-tuning (learning_rate=None picks these); 3 epochs of batches of 8 rows; rows
    cut to 512 tokens on the answer side; no weight decay (it would pull a small adapter back
    to the base model); 10% of the steps of linear warm-up, then linear decay to zero; gradient
    norm clipped at 1.

    max_batch_tokens: the most padded tokens (rows x longest row) one forward and backward pass
    holds; a larger batch is run as several micro-batches whose gradients add up to the whole
    batch's (one optimizer step all the same). What the backward pass keeps grows with the
    tokens of a pass (and attention with the square of the row length): for SmolLM2-135M in
    fp32 with LoRA on every projection, one pass over 8 rows of 512 tokens peaked at 16 GB of
    RSS, micro-batches of 1024 tokens at 5 GB, at the same tokens per second
    (docs/benchmarks.md, "Fine-tuning (LoRA)").

    target_modules: names (last component) of the linear layers LoRA adapts; those the model
    lacks are skipped, none at all is an error. template: the context of a training row and
    of the evaluation prompt, with {prompt_i} standing for the record's prompt.
    """

    method: str = "lora"
    epochs: int = 3
    learning_rate: float | None = None
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    batch_size: int = 8
    max_tokens: int = 512
    max_batch_tokens: int = 1024
    seed: int = 0
    weight_decay: float = 0.0
    warmup: float = 0.1
    max_grad_norm: float = 1.0
    template: str = "{prompt_i}"

    def __post_init__(self) -> None:
        if self.method not in FINETUNE_METHODS:
            raise ConfigError(f"method must be one of {', '.join(FINETUNE_METHODS)}")
        for name in ("epochs", "lora_rank", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")
        for name in ("max_tokens", "max_batch_tokens"):
            if getattr(self, name) < 8:
                raise ConfigError(f"{name} must be at least 8; got {getattr(self, name)}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive; got {self.learning_rate}")
        if not self.lora_alpha > 0:
            raise ConfigError(f"lora_alpha must be positive; got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1); got {self.lora_dropout}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup must be a fraction in [0, 1); got {self.warmup}")
        if self.weight_decay < 0 or not self.max_grad_norm > 0:
            raise ConfigError("weight_decay must be 0 or more and max_grad_norm positive")
        if not self.target_modules or not all(self.target_modules):
            raise ConfigError("target_modules must name at least one layer")
        if "{prompt_i}" not in self.template:
            raise ConfigError("the fine-tuning template must contain {prompt_i}")

    @property
    def lr(self) -> float:
        """The learning rate used: learning_rate, or the method's default."""
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.method]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, the learning rate resolved."""
        return asdict(self) | {
            "learning_rate": self.lr,
            "target_modules": list(self.target_modules),
        }

    @property
    def hash(self) -> str:
        """Content hash of everything that determines the trained weights (cache keys)."""
        fields = self.as_dict()
        if self.method == "full":  # LoRA settings do not touch full fine-tuning
            fields = {k: v for k, v in fields.items() if not k.startswith(("lora_", "target_"))}
        blob = json.dumps([_RECIPE_VERSION, fields], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TrainRow:
    """ids: context + [EOS] + response (+ [EOS] unless the response was cut); context: the
    number of context tokens, so ids[context] is the separator and later tokens are scored."""

    ids: tuple[int, ...]
    context: int


@dataclass(frozen=True)
class TrainBatch:
    """Right-padded batch, (rows, width) int64 each: labels are the ids at scored positions
    (response tokens and closing EOS) and IGNORE_INDEX elsewhere (context, separator,
    padding); attention_mask is 0 on padding."""

    input_ids: Any
    attention_mask: Any
    labels: Any


def build_batch(rows: Sequence[TrainRow], pad_id: int) -> TrainBatch:
    """Right-pad rows into tensors; see TrainBatch."""
    import torch

    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        tokens = torch.tensor(row.ids, dtype=torch.long)
        ids[b, : len(row.ids)] = tokens
        mask[b, : len(row.ids)] = 1
        labels[b, row.context + 1 : len(row.ids)] = tokens[row.context + 1 :]
    return TrainBatch(ids, mask, labels)


def epoch_batches(
    lengths: Sequence[int], size: int, rng: np.random.Generator, group: int = 8
) -> list[list[int]]:
    """One epoch's batches of row indices: a random order, cut into windows of `group`
    batches, each window sorted by length before it is cut into batches, and the batches of
    the epoch shuffled. Every row once; batches of similar length waste little on padding
    (the HF Trainer's group_by_length), which on a CPU is most of the cost of a mixed batch."""
    perm = rng.permutation(len(lengths))
    batches: list[list[int]] = []
    for start in range(0, len(perm), size * group):
        window = sorted(perm[start : start + size * group].tolist(), key=lambda i: lengths[i])
        batches += [window[k : k + size] for k in range(0, len(window), size)]
    return [batches[k] for k in rng.permutation(len(batches))]


def micro_batches(lengths: Sequence[int], limit: int) -> list[list[int]]:
    """Positions 0..len(lengths)-1 of one batch cut, in order, into runs whose padded size (rows
    x longest row) stays within limit tokens; a row longer than limit goes alone."""
    runs: list[list[int]] = []
    longest = 0
    for pos, n in enumerate(lengths):
        if runs and max(longest, n) * (len(runs[-1]) + 1) <= limit:
            runs[-1].append(pos)
            longest = max(longest, n)
        else:
            runs.append([pos])
            longest = n
    return runs


@dataclass(frozen=True, eq=False)
class FinetuneResult:
    """A fine-tuned model and how its training went.

    lm: the fine-tuned model (LoRA merged in), model_id = base id + ":ft-" + config hash + "-"
    + subset hash. losses / step_seconds: (steps,) per optimizer step (mean loss over the scored
    tokens of the batch; wall time of the whole step). tokens: real (non-padding) tokens through
    forward and backward, in train_seconds. adapter: the LoRA weights (CPU tensors, named as
    peft saves them) and adapter_config its LoraConfig; None for full fine-tuning.
    """

    lm: LanguageModel
    config: FinetuneConfig
    losses: tuple[float, ...]
    step_seconds: tuple[float, ...]
    steps_per_epoch: int
    tokens: int
    train_seconds: float
    rows: int
    truncated: int
    adapter: dict[str, Any] | None = None
    adapter_config: Any = None

    @property
    def tokens_per_second(self) -> float:
        """Forward + backward throughput, real tokens per second."""
        return self.tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def epoch_losses(self) -> tuple[float, ...]:
        """Mean step loss per epoch."""
        k = self.steps_per_epoch
        return tuple(float(np.mean(self.losses[e : e + k])) for e in range(0, len(self.losses), k))


def subset_hash(records: Sequence[TextPair]) -> str:
    """Hash of the training rows in order (the order drives the seeded shuffle)."""
    return hashlib.sha256("\n".join(r.hash for r in records).encode()).hexdigest()[:12]


def finetuned_model_id(base_id: str, records: Sequence[TextPair], config: FinetuneConfig) -> str:
    """The model_id of `base_id` fine-tuned on `records` with `config`: distinct from the base,
    so that cached scores of one model are never read for another."""
    return f"{base_id}:ft-{config.hash}-{subset_hash(records)}"
