"""Answer metrics and bootstrap intervals for the in-context evaluation (evaluate.py).

Text metrics compare one generated answer with one gold answer and return a float per item:
ROUGE-1 and ROUGE-L F-measure (the `rouge-score` package, Porter stemming), cosine similarity
of sentence embeddings, and exact match where the task has a checkable answer (a final number as
in GSM8K, or an option letter as in MMLU). Intervals are percentile bootstraps over test items;
methods are compared on the same items with a paired bootstrap of the per-item differences.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from delift_core.errors import ConfigError

AnswerKind = Literal["auto", "number", "letter", "none"]
ANSWER_KINDS: tuple[str, ...] = ("auto", "number", "letter", "none")

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_GSM_MARK = re.compile(r"####\s*(-?\$?\d[\d,]*(?:\.\d+)?)")
_LETTER_START = re.compile(r"^\s*\(?([A-J])(?:[).:,]|[ \t]*(?:\n|$))")
_LETTER_PHRASE = re.compile(r"answer(?: is)?\s*[:\-]?\s*\(?([A-J])\b", re.IGNORECASE)


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def score_rouge(prediction: str, reference: str) -> tuple[float, float]:
    """(ROUGE-1 F, ROUGE-L F) of a prediction against the reference, each in [0, 1].

    An empty prediction or reference scores 0.
    """
    if not prediction.strip() or not reference.strip():
        return 0.0, 0.0
    scores = _rouge_scorer().score(reference, prediction)
    return float(scores["rouge1"].fmeasure), float(scores["rougeL"].fmeasure)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of a (m, d) and b (m, d): (m,) float64; 0 for a zero row."""
    if a.shape != b.shape or a.ndim != 2:
        raise ConfigError(
            f"cosine_rows needs two (m, d) arrays of one shape; got {a.shape}, {b.shape}"
        )
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)


def _to_number(text: str) -> float | None:
    cleaned = text.replace(",", "").replace("$", "").rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    """The final numeric answer of a text: after '####' when present, else the last number.

    Commas, a dollar sign and a trailing period are ignored ("$1,250." -> 1250.0); None when the
    text holds no number.
    """
    marked = _GSM_MARK.findall(text)
    if marked:
        return _to_number(marked[-1])
    found = _NUMBER.findall(text)
    return _to_number(found[-1]) if found else None


def extract_letter(text: str) -> str | None:
    """The option letter (A-J) a text answers with: a leading letter alone or followed by
    punctuation ("C", "(C)", "C. 12"), else one after "answer is"; None otherwise. A leading
    word such as "I think" or "A cat" is not a letter answer."""
    start = _LETTER_START.match(text)
    if start:
        return start.group(1)
    phrase = _LETTER_PHRASE.search(text)
    return phrase.group(1).upper() if phrase else None


def answer_kind_of(record: Any) -> str:
    """'number' when the record has a `final_answer` field (GSM8K), 'letter' when its output is
    a single option letter (MMLU), else 'none'."""
    fields = getattr(record, "fields", None) or {}
    if fields.get("final_answer") not in (None, ""):
        return "number"
    if re.fullmatch(r"\s*[A-J]\s*", record.output):
        return "letter"
    return "none"


def gold_answer(record: Any, kind: str) -> str:
    """The text an exact-match check compares with: `final_answer` or the output."""
    fields = getattr(record, "fields", None) or {}
    if kind == "number" and fields.get("final_answer") not in (None, ""):
        return str(fields["final_answer"])
    return record.output


def match_exact(prediction: str, gold: str, kind: str) -> float:
    """1.0 when the prediction's answer equals the gold one, 0.0 when not, NaN for kind 'none'.

    number: numeric equality of extract_number() of both (1e-6 tolerance); letter: the
    prediction's extract_letter() equals the gold letter.
    """
    if kind == "number":
        got, want = extract_number(prediction), extract_number(gold)
        return float(got is not None and want is not None and abs(got - want) < 1e-6)
    if kind == "letter":
        return float(extract_letter(prediction) == gold.strip().upper())
    if kind == "none":
        return float("nan")
    raise ConfigError(f"answer kind must be one of {', '.join(ANSWER_KINDS)}; got {kind!r}")


@dataclass(frozen=True)
class Interval:
    """A mean with a percentile-bootstrap interval; n: items that had a value (NaNs dropped)."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of the finite values and its `level` percentile-bootstrap interval (items resampled
    with replacement, `resamples` times, seeded). All-NaN or empty input gives NaN, n = 0."""
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must be in (0, 1); got {level}")
    if resamples < 1:
        raise ConfigError(f"resamples must be at least 1; got {resamples}")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // x.size)  # bounds the index block to ~16 MB
    for start in range(0, resamples, step):
        count = min(step, resamples - start)
        means[start : start + count] = x[rng.integers(0, x.size, (count, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(x.mean()), float(low), float(high), int(x.size))


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of a[i] - b[i] over the same test items, with a paired bootstrap interval.

    a, b: (m,) per-item scores of two methods on the same m items; items where either is NaN
    are dropped. An interval that excludes 0 says a and b differ beyond resampling noise.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"paired scores must cover the same items; got {a.size} and {b.size}")
    return bootstrap_mean(a - b, resamples=resamples, level=level, seed=seed)
