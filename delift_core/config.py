"""Frozen configuration dataclasses, validated on construction."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Literal

from delift_core.errors import ConfigError

NO_EXAMPLE_TEMPLATE = (
    "Instruction: Please generate a response to the following query.\n\n\nQuery: {prompt_i}\n"
)
WITH_EXAMPLE_TEMPLATE = (
    "Instruction:\nUse the following example as a guide to answer the query in the same format "
    "and style, providing a clear and concise response.\n\n\nExample:\n{prompt_j}\n{response_j}"
    "\n\n\nQuery:\n{prompt_i}\n"
)

Mode = Literal["exact", "sparse"]
Stage = Literal["instruction", "task", "continual"]
KernelKind = Literal["minmax", "clip"]
Metric = Literal["rms", "logprob"]

STAGES: tuple[str, ...] = ("instruction", "task", "continual")
# The default selection method and its quality prior (selection.py, quality.py), chosen on
# validation scenarios and reported on test ones (docs/quality.md).
DEFAULT_METHOD = "delift-q"
DEFAULT_QUALITY_WEIGHT = 0.0
DEFAULT_QUALITY_GATE = 0.4
DEFAULT_QUALITY_SIGNAL = "ifd_logprob"
DEFAULT_SIDE_WEIGHT = 2.0
DEFAULT_DUPLICATE_THRESHOLD: float | None = None
QUALITY_SIGNALS: tuple[str, ...] = ("help_logprob", "help_rms", "ifd_logprob", "ifd_rms")
MODES: tuple[str, ...] = ("exact", "sparse")
KERNELS: tuple[str, ...] = ("minmax", "clip")
METRICS: tuple[str, ...] = ("rms", "logprob")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_whole(name: str, value: object, minimum: int) -> None:
    # numbers.Integral admits numpy integers; a bool or a float (2.5 rows) is refused.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}; got {value!r}")


@dataclass(frozen=True)
class TemplateConfig:
    """Prompt templates of docs/design.md §2.

    `no_example` has the placeholder {prompt_i}; `with_example` has {prompt_j}, {response_j}
    and ends with {prompt_i} followed by fixed text, so that every pair with the same example
    shares the prefix before {prompt_i}.
    """

    no_example: str = NO_EXAMPLE_TEMPLATE
    with_example: str = WITH_EXAMPLE_TEMPLATE

    def __post_init__(self) -> None:
        if "{prompt_i}" not in self.no_example:
            raise ConfigError("the no-example template must contain {prompt_i}")
        for key in ("{prompt_j}", "{response_j}", "{prompt_i}"):
            if key not in self.with_example:
                raise ConfigError(f"the with-example template must contain {key}")
        if self.with_example.index("{prompt_i}") < max(
            self.with_example.index("{prompt_j}"), self.with_example.index("{response_j}")
        ):
            raise ConfigError("in the with-example template {prompt_i} must come after the example")

    @property
    def hash(self) -> str:
        """Short content hash, part of every cache key."""
        blob = json.dumps([self.no_example, self.with_example]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class ScoringConfig:
    """How the utility matrix is computed.

    mode: "exact" scores every (target, example) pair; "sparse" only each target's k nearest
    candidates by sentence embedding, plus itself when the target is also a candidate.
    max_batch_tokens bounds the padded tokens per forward batch (memory). max_prompt_tokens
    bounds each prompt (and an example's answer, as context, to max_prompt_tokens +
    max_response_tokens): a longer one is scored cut to that length (prompts.clip_records), so
    that no single row can take all memory.
    """

    mode: Mode = "exact"
    k: int = 8
    batch_size: int = 32
    max_batch_tokens: int = 8192
    template: TemplateConfig = field(default_factory=TemplateConfig)
    max_response_tokens: int = 512
    max_prompt_tokens: int = 2048

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_whole("k", self.k, 1)
        _check_whole("batch size", self.batch_size, 1)
        _check_whole("max_batch_tokens", self.max_batch_tokens, 64)
        _check_whole("max_response_tokens", self.max_response_tokens, 1)
        _check_whole("max_prompt_tokens", self.max_prompt_tokens, 1)

    def as_dict(self) -> dict:
        return asdict(self)


def parse_budget(text: str) -> float | int:
    """A budget as written by a user: '120' (digits only) is a count of samples, anything else
    a fraction of the pool ('0.3'). Only the syntax is checked here; SelectionConfig checks the
    range. ConfigError when the text is neither."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit():
        return int(stripped)
    try:
        return float(stripped)
    except ValueError:
        raise ConfigError(
            f"budget must be a fraction like 0.3 or a count like 120; got {text!r}"
        ) from None


def check_quality_options(
    weight: float,
    gate: float,
    side_weight: float = DEFAULT_SIDE_WEIGHT,
    duplicate_threshold: float | None = DEFAULT_DUPLICATE_THRESHOLD,
) -> None:
    """ConfigError unless delift-q's settings hold: weight >= 0, 0 <= gate < 1, side_weight >= 0
    (finite numbers) and duplicate_threshold None or in (0, 1]."""
    for name, value in (("quality weight", weight), ("side weight", side_weight)):
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a number >= 0; got {value!r}")
    if not _is_number(gate) or not math.isfinite(gate) or not 0 <= gate < 1:
        raise ConfigError(f"quality gate must be a fraction in [0, 1); got {gate!r}")
    if duplicate_threshold is not None and (
        not _is_number(duplicate_threshold) or not 0 < duplicate_threshold <= 1
    ):
        raise ConfigError(
            "duplicate threshold must be a cosine in (0, 1], or off (None);"
            f" got {duplicate_threshold!r}"
        )


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class SelectionConfig:
    """What to select.

    budget: a fraction in (0, 1] of the pool, or a whole count >= 1 given as an int.
    kernel: how raw utility becomes a similarity in [0, 1].
    metric: which utility: "rms" (distance form, default) or "logprob" (KL form).
    quality_weight, quality_gate, quality_signal, side_weight, duplicate_threshold: the priors of
    method "delift-q" (select/selection.py); the defaults were chosen on validation scenarios
    (docs/quality.md).
    """

    stage: Stage = "instruction"
    method: str = DEFAULT_METHOD
    budget: float | int = 0.3
    kernel: KernelKind = "minmax"
    metric: Metric = "rms"
    seed: int = 0
    quality_weight: float = DEFAULT_QUALITY_WEIGHT
    quality_gate: float = DEFAULT_QUALITY_GATE
    quality_signal: str = DEFAULT_QUALITY_SIGNAL
    side_weight: float = DEFAULT_SIDE_WEIGHT
    duplicate_threshold: float | None = DEFAULT_DUPLICATE_THRESHOLD

    def __post_init__(self) -> None:
        _check_choice("stage", self.stage, STAGES)
        _check_choice("kernel", self.kernel, KERNELS)
        _check_choice("metric", self.metric, METRICS)
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, float)):
            raise ConfigError(f"budget must be a number; got {self.budget!r}")
        if isinstance(self.budget, float) and not (0.0 < self.budget <= 1.0):
            raise ConfigError(
                f"budget as a fraction must be in (0, 1]; got {self.budget}"
                " (give a whole number for a count)"
            )
        if isinstance(self.budget, int) and self.budget < 1:
            raise ConfigError(f"budget must be at least 1 sample; got {self.budget}")
        _check_choice("quality signal", self.quality_signal, QUALITY_SIGNALS)
        check_quality_options(
            self.quality_weight, self.quality_gate, self.side_weight, self.duplicate_threshold
        )

    def budget_count(self, n: int) -> int:
        """The number of samples to select from a pool of n: round(fraction * n) or the count."""
        count = max(1, round(self.budget * n)) if isinstance(self.budget, float) else self.budget
        if count > n:
            raise ConfigError(f"budget {count} is larger than the pool ({n} samples)")
        return count


@dataclass(frozen=True)
class SelectionSize:
    """How many samples a selection keeps (selection_size). count: the samples to select;
    budget: what the budget allows, at most the samples not excluded; capped: the budget asked
    for more samples than are not excluded. count > budget when more samples are pinned than
    the budget allows: pins are kept all the same."""

    count: int
    budget: int
    capped: bool

    @property
    def raised_to_pins(self) -> bool:
        return self.count > self.budget


def selection_size(
    budget: float | int, pool_size: int, *, available: int, pinned: int, method: str
) -> SelectionSize:
    """The samples to select from a pool of `pool_size`, of which `available` are not excluded
    and `pinned` must be kept: the budget's count (SelectionConfig.budget_count), at most the
    `available` samples, at least the pinned ones. Method "full" keeps every available sample.
    The caller decides whether a cap or a raise is a note or an error: it is reported, never
    raised here (a budget larger than the pool is a ConfigError, as in budget_count)."""
    if method == "full":
        return SelectionSize(available, available, False)
    wanted = SelectionConfig(budget=budget).budget_count(pool_size)
    allowed = min(available, wanted)
    return SelectionSize(max(allowed, pinned), allowed, wanted > available)
